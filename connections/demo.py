"""The demo: companies, users of every role, orgs in every status.

``seed_demo`` creates these in the console and writes the same orgs, users,
apps and pre-issued refresh tokens as a simulator fixture, so the console and
the simulator agree. Every credential here is fake and for the demo only.

``fleet(n)`` adds a realistic fleet (``seed_demo --fleet N``): N orgs over
20 companies, most connected and the rest in every other status. It is
deterministic and prefix-stable: org ``i`` is the same whatever N is, so a
larger fleet extends a smaller one.
"""

from __future__ import annotations

import hashlib
import hmac
from collections import defaultdict
from dataclasses import dataclass, field

from connections.permissions import BY_KEY
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
    # The connected Salesforce user was deactivated (needs re-authorization).
    user_active: bool = True
    # Names the org's fake credentials; the alias when empty. Fleet orgs use
    # their org ID so that a renamed alias never changes their keys.
    seed: str = ""
    admin_username: str = ""

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
    def app_name(self) -> str:
        return "VBSF shared connected app" if self.shared_app else f"{self.alias}-eca"

    @property
    def consumer_key(self) -> str:
        if self.shared_app:
            return SHARED_APP_KEY
        return "3MVG9" + demo_value("key", self.seed or self.alias, 80)

    @property
    def consumer_secret(self) -> str:
        if self.shared_app:
            return SHARED_APP_SECRET
        return demo_value("secret", self.seed or self.alias, 64).upper()

    # A pending-activation org of the small demo has a staged change whose
    # new app Salesforce activates a little while after the demo starts.
    @property
    def pending_consumer_key(self) -> str:
        return "3MVG9" + demo_value("pending-key", self.seed or self.alias, 80)

    @property
    def pending_consumer_secret(self) -> str:
        return demo_value("pending-secret", self.seed or self.alias, 64).upper()

    @property
    def user_id(self) -> str:
        return to_18("0055g000" + self.org_id15[10:15] + "U1")

    @property
    def second_user_id(self) -> str:
        return to_18("0055g000" + self.org_id15[10:15] + "U2")

    @property
    def second_username(self) -> str:
        return self.admin_username or f"admin2@{self.alias}.example"

    @property
    def refresh_token(self) -> str:
        return "5Aep861" + demo_value("refresh", self.seed or self.alias, 80)


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
        status_reason="The refresh token was revoked or expired at Salesforce.",
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


SCOPES_GRANTED = ["api", "refresh_token", "id"]
APP_SCOPES = ["api", "refresh_token", "offline_access", "id", "openid"]


PENDING_ACTIVATION_DELAY_SECONDS = 150


def simulator_fixture(
    callback_url: str, orgs: list[DemoOrg] | None = None
) -> dict[str, object]:
    """The simulator's view of the demo orgs (``python -m sfsim --fixture``):
    ``ORGS`` and, when given, the fleet after them."""
    fixture_orgs = []
    shared_app_written = False
    for demo in ORGS + (orgs or []):
        apps = []
        if not demo.shared_app or not shared_app_written:
            apps.append(
                {
                    "name": demo.app_name,
                    "consumer_key": demo.consumer_key,
                    "consumer_secret": demo.consumer_secret,
                    "scopes": APP_SCOPES,
                    "callback_urls": [callback_url],
                    "require_pkce": True,
                    "rotate_refresh_tokens": False,
                    "activation_delay_seconds": 0,
                }
            )
            shared_app_written = shared_app_written or demo.shared_app
        if demo.status == "pending_activation" and demo in ORGS:
            apps.append(
                {
                    "name": f"{demo.alias}-new-eca",
                    "consumer_key": demo.pending_consumer_key,
                    "consumer_secret": demo.pending_consumer_secret,
                    "scopes": APP_SCOPES,
                    "callback_urls": [callback_url],
                    "require_pkce": True,
                    "rotate_refresh_tokens": False,
                    "activation_delay_seconds": PENDING_ACTIVATION_DELAY_SECONDS,
                }
            )
        tokens = []
        if not demo.token_revoked:
            tokens.append(
                {
                    "token": demo.refresh_token,
                    "consumer_key": demo.consumer_key,
                    "user_id": demo.user_id,
                    "scopes": SCOPES_GRANTED,
                }
            )
        org: dict[str, object] = {
            "org_id": demo.org_id,
            "name": demo.alias,
            "my_domain": demo.my_domain,
            "org_type": demo.org_type,
            "users": [
                {
                    "user_id": demo.user_id,
                    "username": demo.username,
                    "password": SALESFORCE_DEMO_PASSWORD,
                    "permissions": [
                        p for p in ALL_PERMISSIONS if p not in demo.missing_permissions
                    ],
                    "license": "Salesforce",
                    "active": demo.user_active,
                },
                {
                    "user_id": demo.second_user_id,
                    "username": demo.second_username,
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
        fixture_orgs.append(org)
    return {"orgs": fixture_orgs}


# --- The fleet (seed_demo --fleet N) -----------------------------------------

# 20 companies, the demo's three among them (so the demo's operator, support
# and viewer see part of the fleet too), with a skewed share of the orgs:
# name -> (My Domain stem, alert contacts, share in percent).
FLEET_COMPANIES: dict[str, tuple[str, str, int]] = {
    "Northwind Traders": ("northwind", "salesforce-ops@northwind.example", 14),
    "Contoso": ("contoso", "crm-admins@contoso.example", 12),
    "Fabrikam": ("fabrikam", "it@fabrikam.example", 10),
    "Acme Corp": ("acme", "alerts@acme.example", 9),
    "Umbrella Health": ("umbrella", "sf-alerts@umbrella.example", 8),
    "Wayne Enterprises": ("wayne", "backup@wayne.example", 7),
    "Stark Industries": ("stark", "salesforce@stark.example", 6),
    "Globex": ("globex", "it@globex.example", 5),
    "Cyberdyne Systems": ("cyberdyne", "ops@cyberdyne.example", 4),
    "Tyrell Corporation": ("tyrell", "", 4),
    "Soylent Foods": ("soylent", "crm@soylent.example", 3),
    "Hooli": ("hooli", "sfdc-team@hooli.example", 3),
    "Initech": ("initech", "", 3),
    "Vandelay Industries": ("vandelay", "art@vandelay.example", 2),
    "Wonka Industries": ("wonka", "", 2),
    "Dunder Mifflin": ("dundermifflin", "it@dundermifflin.example", 2),
    "Aperture Science": ("aperture", "", 2),
    "Massive Dynamic": ("massivedynamic", "alerts@massivedynamic.example", 2),
    "Oscorp": ("oscorp", "", 1),
    "Pied Piper": ("piedpiper", "gilfoyle@piedpiper.example", 1),
}

# Fleet org IDs are 00D7Q00000 + five digits: never a demo org's.
FLEET_ORG_ID_PREFIX = "00D7Q00000"
FLEET_MAX = 99_999

# A company's orgs come in families around one production org and its My
# Domain: its sandboxes, a Developer Edition and a scratch org.
_FAMILY = [
    ("production", ""),
    ("sandbox", "uat"),
    ("sandbox", "qa"),
    ("sandbox", "full"),
    ("developer", ""),
    ("sandbox", "staging"),
    ("sandbox", "train"),
    ("scratch", ""),
]
_REGIONS = ["", "eu", "na", "apac", "latam", "uk", "de", "fr", "jp", "au", "ca"]

# Statuses repeat every 51 orgs: 80 % connected, the rest spread so that
# every status is present from 21 orgs on. 51 is prime to the company
# rotation's period (the shares add up to 100), so that every company gets
# a mix of statuses rather than the same few.
_STATUS_EXCEPTIONS = {
    3: "needs_reauthorization",
    7: "failed",
    11: "url_changed",
    15: "permissions_missing",
    19: "pending_activation",
    24: "needs_reauthorization",
    29: "failed",
    33: "permissions_missing",
    38: "needs_reauthorization",
    42: "url_changed",
}
_STATUS_CYCLE = [_STATUS_EXCEPTIONS.get(i, "connected") for i in range(51)]

_FAILED_REASONS = [
    "Salesforce did not answer in time (4 attempts).",
    "Salesforce answered 503 Service Unavailable (4 attempts).",
    "Salesforce's API request limit is exhausted for this org. (4 attempts)",
]
_MISSING_PERMISSIONS = [
    ["view_all_data"],
    ["query_all_files"],
    ["view_all_data", "query_all_files"],
    ["view_encrypted_data"],
]


@dataclass(frozen=True)
class FleetOrg(DemoOrg):
    index: int = 0

    @property
    def schedule(self) -> str:
        if self.org_type == "production":
            return "hourly" if self.index % 3 == 0 else "daily"
        return "weekly" if self.org_type in ("developer", "scratch") else "daily"

    @property
    def retention_days(self) -> int:
        return {"production": 365, "sandbox": 90}.get(self.org_type, 30)

    @property
    def policy_enabled(self) -> bool:
        return self.org_type != "scratch" or self.index % 2 == 0

    @property
    def checked_minutes_ago(self) -> int:
        """Health checks are spread over the hour."""
        return self.index * 7 % 60

    @property
    def status_hours_ago(self) -> int:
        """How long the org has been in its status: failures are recent."""
        if self.status == "connected":
            return 24 * (1 + self.index % 90)
        return 1 + self.index % 72


def fleet_org_id(index: int) -> str:
    return to_18(f"{FLEET_ORG_ID_PREFIX}{index:05d}")


def fleet_index(org_id: str) -> int | None:
    """The fleet position of an org ID, or None for any other org."""
    if len(org_id) != 18 or not org_id.startswith(FLEET_ORG_ID_PREFIX):
        return None
    tail = org_id[len(FLEET_ORG_ID_PREFIX) : 15]
    return int(tail) if tail.isdigit() else None


def _company_sequence(count: int) -> list[str]:
    """Which company each fleet org joins: each company's first org first,
    then smooth weighted round-robin on the shares (prefix-stable)."""
    names = list(FLEET_COMPANIES)
    weights = {name: FLEET_COMPANIES[name][2] for name in names}
    total = sum(weights.values())
    current = dict.fromkeys(names, 0)
    sequence = names[:count]
    while len(sequence) < count:
        for name in names:
            current[name] += weights[name]
        chosen = max(names, key=lambda name: current[name])
        current[chosen] -= total
        sequence.append(chosen)
    return sequence


def _family_domain(company: str, family: int) -> str:
    stem = FLEET_COMPANIES[company][0]
    # The demo's own orgs use the bare stem of its three companies.
    regions = _REGIONS[1:] if company in COMPANIES else _REGIONS
    if family < len(regions):
        region = regions[family]
    else:
        region = f"bu{family - len(regions) + 1}"
    return f"{stem}-{region}" if region else stem


def fleet(count: int) -> list[FleetOrg]:
    """The first ``count`` fleet orgs (see the module docstring)."""
    if not 0 <= count <= FLEET_MAX:
        raise ValueError(f"A fleet has between 0 and {FLEET_MAX:,} orgs.")
    per_company: dict[str, int] = defaultdict(int)
    owed_url_changes = 0
    orgs = []
    for index, company in enumerate(_company_sequence(count)):
        position = per_company[company]
        per_company[company] += 1
        org_type, sandbox = _FAMILY[position % len(_FAMILY)]
        domain = _family_domain(company, position // len(_FAMILY))
        status = _STATUS_CYCLE[index % len(_STATUS_CYCLE)]
        # Salesforce moves sandboxes (enhanced domains); a production
        # org's My Domain host stays, so a URL change waits for a sandbox.
        if status == "url_changed" and org_type != "sandbox":
            owed_url_changes += 1
            status = "connected"
        elif status == "connected" and owed_url_changes and org_type == "sandbox":
            owed_url_changes -= 1
            status = "url_changed"
        orgs.append(_fleet_org(index, company, org_type, domain, sandbox, status))
    return orgs


def _fleet_org(
    index: int,
    company: str,
    org_type: str,
    domain: str,
    sandbox: str,
    status: str,
) -> FleetOrg:
    """One fleet org. Its kind of failure is drawn from its index, so the
    kinds mix across companies instead of following the company order."""
    org_id15 = f"{FLEET_ORG_ID_PREFIX}{index:05d}"
    variant = int(demo_value("variant", org_id15, 8), 16)
    if org_type == "production":
        alias, my_domain, user_suffix = f"{domain}-prod", domain, ""
    elif org_type == "sandbox":
        alias, my_domain, user_suffix = f"{domain}-{sandbox}", domain, f".{sandbox}"
    elif org_type == "developer":
        alias, my_domain, user_suffix = f"{domain}-dev-ed", domain, ".deved"
    else:
        alias, my_domain = f"{domain}-scratch", f"{domain}-scratch"
        user_suffix = ".scratch"
    extra: dict[str, object] = {}
    if status == "needs_reauthorization":
        if variant % 3 == 0:
            extra["user_active"] = False
            extra["status_reason"] = "The connected Salesforce user is inactive."
        else:
            extra["token_revoked"] = True
            extra["status_reason"] = (
                "The refresh token was revoked or expired at Salesforce."
            )
    elif status == "failed":
        extra["status_reason"] = _FAILED_REASONS[variant % len(_FAILED_REASONS)]
    elif status == "pending_activation":
        extra["status_reason"] = (
            "New client app saved; waiting for Salesforce to activate it."
        )
    elif status == "permissions_missing":
        missing = [
            BY_KEY[k] for k in _MISSING_PERMISSIONS[variant % len(_MISSING_PERMISSIONS)]
        ]
        extra["missing_permissions"] = [p.field for p in missing]
        extra["status_reason"] = (
            "Backup permission missing: " + ", ".join(p.label for p in missing) + "."
        )
    elif status == "url_changed":
        new_host = f"{my_domain}--{sandbox}.sandbox.my.salesforce.com"
        instance = 10 + index % 90
        extra["console_url"] = (
            f"https://{my_domain}--{sandbox}.cs{instance}.my.salesforce.com"
        )
        extra["suggested_url"] = f"https://{new_host}"
        extra["status_reason"] = f"Salesforce now answers at {new_host}"
    # Old connected orgs still run on the legacy shared connected app.
    shared = status == "connected" and org_type == "production" and index % 4 == 1
    return FleetOrg(
        alias=alias,
        org_id15=org_id15,
        company=company,
        org_type=org_type,
        my_domain=my_domain,
        sandbox_name=sandbox,
        status=status,
        username=f"vbsf-backup@{domain}.example{user_suffix}",
        admin_username=f"admin@{domain}.example{user_suffix}",
        shared_app=shared,
        seed=org_id15,
        index=index,
        **extra,  # type: ignore[arg-type]
    )
