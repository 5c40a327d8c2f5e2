"""Records held by the simulator, plus the Salesforce constants they use.

Everything here is plain data; the operations and the lock live in
:mod:`sfsim.state`.  Times are seconds on the simulated clock.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field
from typing import Any

from . import ids

ORG_TYPES = ("production", "sandbox", "developer", "scratch")
LICENSES = ("Salesforce", "Salesforce Integration")
LOGIN_HOST = "login.salesforce.com"
TEST_HOST = "test.salesforce.com"

# Scopes from login.salesforce.com's discovery document (reference §1).  A
# requested scope outside this list is `invalid_scope`; a known scope that
# the app does not have is silently not granted.
KNOWN_SCOPES = (
    "api",
    "refresh_token",
    "offline_access",
    "id",
    "openid",
    "profile",
    "email",
    "address",
    "phone",
    "web",
    "full",
    "chatter_api",
    "visualforce",
    "custom_permissions",
    "lightning",
    "content",
    "wave_api",
    "sfap_api",
    "einstein_gpt_api",
    "mcp_api",
    "pardot_api",
    "cdp_api",
    "cdp_query_api",
    "cdp_profile_api",
    "cdp_ingest_api",
)
REFRESH_SCOPES = frozenset({"refresh_token", "offline_access"})
REST_SCOPES = frozenset({"api", "full"})

# Real UserPermissionAccess / PermissionSet fields that a query may name even
# when nobody holds them.  Any other `Permissions*` name given to a user via
# the control API is added (per org) so tests can use fields not listed here.
KNOWN_PERMISSIONS = (
    "PermissionsAllowViewEditConvertedLeads",
    "PermissionsApiEnabled",
    "PermissionsApiUserOnly",
    "PermissionsAssignPermissionSets",
    "PermissionsAuthorApex",
    "PermissionsBulkApiHardDelete",
    "PermissionsConvertLeads",
    "PermissionsCreateAuditFields",
    "PermissionsCustomizeApplication",
    "PermissionsDataExport",
    "PermissionsEditReadonlyFields",
    "PermissionsManageContentPermissions",
    "PermissionsManageInternalUsers",
    "PermissionsManageProfilesPermissionsets",
    "PermissionsManageSandboxes",
    "PermissionsManageUsers",
    "PermissionsModifyAllData",
    "PermissionsModifyMetadata",
    "PermissionsQueryAllFiles",
    "PermissionsTransferAnyEntity",
    "PermissionsUpdateWithInactiveOwner",
    "PermissionsViewAllData",
    "PermissionsViewAllUsers",
    "PermissionsViewEncryptedData",
    "PermissionsViewSetup",
)
# What a user gets when the control API is not told their permissions: a
# System Administrator's relevant subset (note: not Query All Files, View
# Encrypted Data or the audit-field permissions, which admins lack by default).
DEFAULT_PERMISSIONS = (
    "PermissionsApiEnabled",
    "PermissionsViewAllData",
    "PermissionsModifyAllData",
    "PermissionsViewSetup",
    "PermissionsCustomizeApplication",
    "PermissionsManageUsers",
    "PermissionsAssignPermissionSets",
    "PermissionsManageProfilesPermissionsets",
    "PermissionsBulkApiHardDelete",
    "PermissionsAllowViewEditConvertedLeads",
    "PermissionsTransferAnyEntity",
    "PermissionsDataExport",
    "PermissionsAuthorApex",
    "PermissionsModifyMetadata",
)
EDITIONS = {
    "production": "Enterprise Edition",
    "sandbox": "Enterprise Edition",
    "developer": "Developer Edition",
    "scratch": "Developer Edition",
}
DEFAULT_PROFILE = {
    "Salesforce": "System Administrator",
    "Salesforce Integration": "Salesforce API Only System Integrations",
}


def is_sandbox_type(org_type: str) -> bool:
    """Sandboxes and scratch orgs log in through test.salesforce.com."""
    return org_type in ("sandbox", "scratch")


def enhanced_host(name: str, org_type: str, sandbox_name: str | None) -> str:
    """The My Domain host an org of this type has under enhanced domains."""
    if org_type == "sandbox":
        return f"{name}--{sandbox_name}.sandbox.my.salesforce.com"
    if org_type == "developer":
        return f"{name}-dev-ed.develop.my.salesforce.com"
    if org_type == "scratch":
        return f"{name}.scratch.my.salesforce.com"
    return f"{name}.my.salesforce.com"


def legacy_host(name: str, org_type: str, sandbox_name: str | None, org_id: str) -> str:
    """A pre-enhanced-domains My Domain host (reference §6.1 "Legacy hosts")."""
    if org_type == "sandbox":
        return f"{name}--{sandbox_name}.my.salesforce.com"
    if org_type == "developer":
        return f"{name}-dev-ed.my.salesforce.com"
    if org_type == "scratch":
        return f"{name}.cs{instance_number(org_id)}.my.salesforce.com"
    # Production My Domain hosts did not change with enhanced domains.
    return f"{name}.my.salesforce.com"


def instance_number(org_id: str) -> int:
    """A stable pseudo instance number (the "NA123"/"CS42" part) for an org."""
    return zlib.crc32(ids.to15(org_id).encode("ascii")) % 190 + 10


@dataclass
class Org:
    org_id: str
    name: str
    my_domain: str
    org_type: str
    sandbox_name: str | None
    host: str
    legacy: bool
    created_at: float
    edition: str
    previous_hosts: list[str] = field(default_factory=list)
    renames: int = 0  # My Domain renames done by the switch (acme-2, acme-3)
    active: bool = True
    api_usage: int = 0
    api_limit: int = 15000
    unavailable_permission_fields: set[str] = field(default_factory=set)
    extra_permission_fields: set[str] = field(default_factory=set)

    @property
    def url(self) -> str:
        return f"https://{self.host}"

    @property
    def identity_host(self) -> str:
        """login.salesforce.com, or test.salesforce.com for sandbox/scratch."""
        return TEST_HOST if is_sandbox_type(self.org_type) else LOGIN_HOST

    @property
    def instance_name(self) -> str:
        prefix = "CS" if is_sandbox_type(self.org_type) else "NA"
        return f"{prefix}{instance_number(self.org_id)}"

    def permission_fields(self) -> list[str]:
        """Permissions* fields this org's API version knows."""
        names = set(KNOWN_PERMISSIONS) | self.extra_permission_fields
        return sorted(names - self.unavailable_permission_fields)


@dataclass
class PermissionSet:
    ps_id: str
    name: str
    label: str
    permissions: set[str]
    assignment_id: str


@dataclass
class User:
    user_id: str
    org_id: str
    username: str
    password: str
    first_name: str
    last_name: str
    email: str
    license: str
    active: bool
    profile_name: str
    profile_id: str
    # The profile's own permission set: every profile has one, and it shows up
    # as a PermissionSetAssignment with IsOwnedByProfile = true (reference §7).
    profile_ps: PermissionSet
    permission_sets: list[PermissionSet]
    created_at: float
    modified_at: float

    @property
    def name(self) -> str:
        return f"{self.first_name} {self.last_name}".strip()

    def effective_permissions(self) -> set[str]:
        perms = set(self.profile_ps.permissions)
        for ps in self.permission_sets:
            perms |= ps.permissions
        return perms


@dataclass
class App:
    consumer_key: str
    consumer_secret: str
    name: str
    org_id: str
    scopes: list[str]
    callback_urls: list[str]
    require_pkce: bool
    rotate_refresh_tokens: bool
    require_secret_web_server: bool
    require_secret_refresh: bool
    activation_delay_seconds: int
    active_from: float
    created_at: float
    blocked: bool = False
    # An app that is never enabled in the org: it answers invalid_client_id
    # for good, whatever the delay (until updated with never_activates false).
    never_activates: bool = False

    def allowed_scopes(self) -> set[str]:
        allowed = set(self.scopes)
        if allowed & REFRESH_SCOPES:
            allowed |= REFRESH_SCOPES  # the two names are synonyms
        return allowed


@dataclass
class AuthCode:
    code: str
    consumer_key: str
    redirect_uri: str
    code_challenge: str | None
    user_id: str
    scopes: list[str]
    nonce: str | None
    expires_at: float
    used: bool = False


@dataclass
class RefreshToken:
    token: str
    consumer_key: str
    user_id: str
    org_id: str
    scopes: list[str]
    created_at: float
    seq: int  # creation order, to find the oldest approval
    revoked: bool = False
    revoked_reason: str = ""


@dataclass
class AccessToken:
    token: str
    consumer_key: str
    user_id: str
    org_id: str
    scopes: list[str]
    issued_at: float
    last_used: float
    refresh_token: str | None
    revoked: bool = False


@dataclass
class LoginTicket:
    """Proof that a user passed the login page, for the approval step."""

    ticket: str
    user_id: str
    consumer_key: str
    redirect_uri: str
    expires_at: float


@dataclass
class Fault:
    fault_id: str
    kind: str
    host: str | None
    path_prefix: str | None
    remaining: int | None
    latency_ms: int | None
    new_instance_url: str | None
    status: int | None
    hits: int = 0

    def as_json(self) -> dict[str, Any]:
        return {
            "fault_id": self.fault_id,
            "kind": self.kind,
            "host": self.host,
            "path_prefix": self.path_prefix,
            "count": self.remaining,
            "latency_ms": self.latency_ms,
            "new_instance_url": self.new_instance_url,
            "status": self.status,
            "hits": self.hits,
        }


@dataclass
class SetupNotice:
    """An outcome of a Setup page form, shown on the page after the redirect.

    A new app's consumer secret is shown once: the page clears it on display.
    """

    message: str
    consumer_key: str | None = None
    consumer_secret: str | None = None


@dataclass
class Config:
    latency_ms: int = 0
    # Real Salesforce only lets an org's own users log in on its My Domain,
    # and only production/developer users on login. (test. for sandboxes).
    # Off by default so a user of another org can log in through any host and
    # the console's "you logged in to a different org" check can be exercised.
    strict_login_hosts: bool = False
    session_timeout_seconds: int = 7200
    code_ttl_seconds: int = 900
    id_token_ttl_seconds: int = 300
    api_daily_limit: int = 15000

    def as_json(self) -> dict[str, Any]:
        return dict(self.__dict__)
