"""The demo: companies, users of every role, orgs in every status.

``seed_demo`` creates these in the console and writes the same orgs, users,
apps and pre-issued refresh tokens as a simulator fixture, so the console and
the simulator agree. Every credential here is fake and for the demo only.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass, field

from connections.salesforce.urls import to_18

DEMO_PASSWORD = "demo"
SALESFORCE_DEMO_PASSWORD = "demo-salesforce"

ALL_PERMISSIONS = [
    "PermissionsApiEnabled",
    "PermissionsViewAllData",
    "PermissionsQueryAllFiles",
    "PermissionsViewSetup",
    "PermissionsViewEncryptedData",
    "PermissionsModifyAllData",
    "PermissionsAllowViewEditConvertedLeads",
    "PermissionsCreateAuditFields",
    "PermissionsUpdateWithInactiveOwner",
    "PermissionsBulkApiHardDelete",
]


def demo_value(kind: str, name: str, length: int = 48) -> str:
    """A deterministic fake credential, so re-seeding gives the same one."""
    digest = hmac.new(b"vbsf-demo-only", f"{kind}:{name}".encode(), hashlib.sha256)
    return digest.hexdigest()[:length]


@dataclass(frozen=True)
class DemoOrg:
    alias: str
    org_id15: str
    company: str
    org_type: str
    my_domain: str
    sandbox_name: str = ""
    status: str = "connected"
    status_reason: str = ""
    username: str = ""
    shared_app: bool = False
    # The URL the console stores; differs from the simulator's after an
    # enhanced-domains switch (status url_changed).
    console_url: str = ""
    suggested_url: str = ""
    token_revoked: bool = False
    missing_permissions: list[str] = field(default_factory=list)

    @property
    def org_id(self) -> str:
        return to_18(self.org_id15)

    @property
    def host(self) -> str:
        if self.org_type == "sandbox":
            return f"{self.my_domain}--{self.sandbox_name}.sandbox.my.salesforce.com"
        if self.org_type == "developer":
            return f"{self.my_domain}-dev-ed.develop.my.salesforce.com"
        if self.org_type == "scratch":
            return f"{self.my_domain}.scratch.my.salesforce.com"
        return f"{self.my_domain}.my.salesforce.com"

    @property
    def url(self) -> str:
        return f"https://{self.host}"

    @property
    def consumer_key(self) -> str:
        if self.shared_app:
            return SHARED_APP_KEY
        return "3MVG9" + demo_value("key", self.alias, 80)

    @property
    def consumer_secret(self) -> str:
        if self.shared_app:
            return SHARED_APP_SECRET
        return demo_value("secret", self.alias, 64).upper()

    @property
    def user_id(self) -> str:
        return to_18("0055g000" + self.org_id15[10:15] + "U1")

    @property
    def second_user_id(self) -> str:
        return to_18("0055g000" + self.org_id15[10:15] + "U2")

    @property
    def refresh_token(self) -> str:
        return "5Aep861" + demo_value("refresh", self.alias, 80)


SHARED_APP_KEY = "3MVG9" + demo_value("key", "shared-connected-app", 80)
SHARED_APP_SECRET = demo_value("secret", "shared-connected-app", 64).upper()

COMPANIES = {
    "Acme Corp": "alerts@acme.example",
    "Globex": "it@globex.example",
    "Initech": "",
}

ORGS = [
    DemoOrg(
        "acme-prod",
        "00D5g00000ACMEP",
        "Acme Corp",
        "production",
        "acme",
        username="integration@acme.example",
    ),
    DemoOrg(
        "acme-uat",
        "00D5g00000ACMEU",
        "Acme Corp",
        "sandbox",
        "acme",
        sandbox_name="uat",
        status="needs_reauthorization",
        status_reason="The refresh token was revoked at Salesforce.",
        username="old.admin@acme.example.uat",
        token_revoked=True,
    ),
    DemoOrg(
        "acme-dev",
        "00D5g00000ACMED",
        "Acme Corp",
        "developer",
        "acme",
        status="pending_activation",
        status_reason="New client app saved; waiting for Salesforce to activate it.",
        username="dev@acme.example",
    ),
    DemoOrg(
        "globex-uat",
        "00D5g00000GLBXU",
        "Globex",
        "sandbox",
        "globex",
        sandbox_name="uat",
        status="url_changed",
        status_reason="Salesforce now answers at globex--uat.sandbox.my.salesforce.com",
        username="backup@globex.example.uat",
        console_url="https://globex--uat.cs42.my.salesforce.com",
        suggested_url="https://globex--uat.sandbox.my.salesforce.com",
    ),
    DemoOrg(
        "globex-sales",
        "00D5g00000GLBXS",
        "Globex",
        "production",
        "globex-sales",
        status="permissions_missing",
        status_reason="Backup permission missing: View All Data.",
        username="backup@globex.example",
        missing_permissions=["PermissionsViewAllData"],
    ),
    DemoOrg(
        "globex-legacy",
        "00D5g00000GLBXL",
        "Globex",
        "production",
        "globex-legacy",
        username="legacy@globex.example",
        shared_app=True,
    ),
    DemoOrg(
        "initech-prod",
        "00D5g00000INTCP",
        "Initech",
        "production",
        "initech",
        status="failed",
        status_reason="Salesforce did not answer in time (3 attempts).",
        username="ops@initech.example",
    ),
]

USERS = {
    # username: (role, companies or None for global)
    "admin": ("administrator", None),
    "operator": ("operator", ["Acme Corp", "Globex"]),
    "support": ("support", ["Acme Corp", "Globex", "Initech"]),
    "viewer": ("viewer", ["Acme Corp"]),
}


def simulator_fixture(callback_url: str) -> dict[str, object]:
    """The simulator's view of the demo orgs (``python -m sfsim --fixture``)."""
    orgs = []
    shared_app_written = False
    for demo in ORGS:
        user_id = demo.user_id
        permissions = [p for p in ALL_PERMISSIONS if p not in demo.missing_permissions]
        apps = []
        if not demo.shared_app or not shared_app_written:
            apps.append(
                {
                    "name": "VBSF shared connected app"
                    if demo.shared_app
                    else f"{demo.alias}-eca",
                    "consumer_key": demo.consumer_key,
                    "consumer_secret": demo.consumer_secret,
                    "scopes": [
                        "api",
                        "refresh_token",
                        "offline_access",
                        "id",
                        "openid",
                    ],
                    "callback_urls": [callback_url],
                    "require_pkce": True,
                    "rotate_refresh_tokens": False,
                    "activation_delay_seconds": 0,
                }
            )
            shared_app_written = shared_app_written or demo.shared_app
        tokens = []
        if not demo.token_revoked:
            tokens.append(
                {
                    "token": demo.refresh_token,
                    "consumer_key": demo.consumer_key,
                    "user_id": user_id,
                    "scopes": ["api", "refresh_token", "id"],
                }
            )
        org: dict[str, object] = {
            "org_id": demo.org_id,
            "name": demo.alias,
            "my_domain": demo.my_domain,
            "org_type": demo.org_type,
            "users": [
                {
                    "user_id": user_id,
                    "username": demo.username,
                    "password": SALESFORCE_DEMO_PASSWORD,
                    "permissions": permissions,
                    "license": "Salesforce",
                    "active": True,
                },
                {
                    "user_id": demo.second_user_id,
                    "username": f"admin2@{demo.alias}.example",
                    "password": SALESFORCE_DEMO_PASSWORD,
                    "permissions": ALL_PERMISSIONS,
                    "license": "Salesforce",
                    "active": True,
                },
            ],
            "apps": apps,
            "refresh_tokens": tokens,
        }
        if demo.sandbox_name:
            org["sandbox_name"] = demo.sandbox_name
        orgs.append(org)
    return {"orgs": orgs}
