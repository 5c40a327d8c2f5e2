"""The Setup page's forms: one test per form, plus bad input, escaping and labels.

Each form is submitted through the Flask test client like a browser would
(POST, 303, GET); its effect is checked through the control API or the
Salesforce endpoints the console calls, and its outcome message word for word.
"""

from __future__ import annotations

import re
from html import unescape
from html.parser import HTMLParser
from typing import Any

import pytest

from .conftest import CALLBACK, Sim, World, callback_params

BACKUP = [
    "PermissionsApiEnabled",
    "PermissionsViewAllData",
    "PermissionsQueryAllFiles",
    "PermissionsViewSetup",
    "PermissionsViewEncryptedData",
]
RESTORE = [
    "PermissionsModifyAllData",
    "PermissionsAllowViewEditConvertedLeads",
    "PermissionsCreateAuditFields",
    "PermissionsUpdateWithInactiveOwner",
    "PermissionsBulkApiHardDelete",
]


def submit(sim: Sim, path: str, data: dict[str, Any]) -> str:
    """POST a form, follow its 303 like a browser, return the outcome message."""
    resp = sim.client.post(f"/_sim/setup{path}", data=data)
    assert resp.status_code == 303, resp.get_data(as_text=True)
    location = resp.headers["Location"]
    assert re.fullmatch(r"/_sim/setup\?done=[\w-]+#outcome", location), location
    return outcome(sim.client.get(location).get_data(as_text=True))


def outcome(html: str) -> str:
    match = re.search(r'<p role="status">(.*?)</p>', html, re.S)
    assert match, html
    return unescape(match[1])


def error_of(html: str) -> str:
    match = re.search(r'role="alert">\s*<h2>Nothing changed</h2>\s*<p>(.*?)</p>', html)
    assert match, html
    return unescape(match[1])


def mint(sim: Sim, world: World, user_id: str | None = None) -> dict[str, Any]:
    body = {"consumer_key": world.key, "user_id": user_id or world.user_id}
    return sim.ctl("POST", "/tokens", body)


def refresh_error(sim: Sim, world: World, refresh_token: str) -> str | None:
    resp = sim.refresh(world.host, world.key, world.secret, refresh_token)
    return None if resp.status_code == 200 else resp.get_json()["error"]


def token_counts(sim: Sim, **query: str) -> dict[str, int]:
    return sim.client.get("/_sim/refresh-tokens", query_string=query).get_json()


# -- 1. New org ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("org_type", "sandbox", "legacy", "host"),
    [
        ("production", "", False, "acme.my.salesforce.com"),
        ("sandbox", "uat", False, "acme--uat.sandbox.my.salesforce.com"),
        ("sandbox", "uat", True, "acme--uat.my.salesforce.com"),
        ("developer", "", False, "acme-dev-ed.develop.my.salesforce.com"),
    ],
)
def test_new_org_form_creates_the_org_on_its_my_domain(
    sim: Sim, org_type: str, sandbox: str, legacy: bool, host: str
) -> None:
    form = {"name": "Acme", "my_domain": "acme", "org_type": org_type}
    form["sandbox_name"] = sandbox
    if legacy:
        form["legacy"] = "1"
    message = submit(sim, "/orgs", form)
    (org,) = sim.ctl("GET", "/orgs")["orgs"]
    assert org["login_url"] == f"https://{host}"
    assert (org["org_type"], org["legacy"]) == (org_type, legacy)
    identity = "test" if org_type == "sandbox" else "login"
    assert message == (
        f"Created {org_type} org Acme ({org['org_id']}) with My Domain "
        f"https://{host}. The console can add it with the organization URL "
        f"https://{host} (its users also log in through "
        f"https://{identity}.salesforce.com); it has no users yet, so create one "
        "before authorizing."
    )
    discovery = sim.client.get(f"/h/{host}/.well-known/openid-configuration")
    assert discovery.get_json()["issuer"] == f"https://{host}"


# -- 2. New user -----------------------------------------------------------------


def test_new_user_form_sets_permissions_and_license(sim: Sim, world: World) -> None:
    chosen = [p for p in BACKUP if p != "PermissionsQueryAllFiles"] + RESTORE[:3]
    message = submit(
        sim,
        "/users",
        {
            "org_id": world.org_id,
            "username": "ana@acme.example",
            "password": "Ana-Passw0rd!",
            "license": "Salesforce",
            "permissions": chosen,
            "grant_via": "profile",
        },
    )
    users = sim.ctl("GET", f"/orgs/{world.org_id}/users")["users"]
    ana = next(u for u in users if u["username"] == "ana@acme.example")
    assert ana["license"] == "Salesforce" and ana["active"]
    assert ana["permissions"] == sorted(chosen)
    assert message == (
        "Created user ana@acme.example in Acme with a Salesforce license and 7 of "
        "the 10 permissions the console checks. The console's Verify permissions "
        "shows Query All Files missing for backup, so Finish is blocked, and an "
        "org connected as this user shows Permissions missing."
    )
    # What the console's permission check reads: UserPermissionAccess.
    token = mint(sim, world, ana["user_id"])["access_token"]
    fields = ", ".join(BACKUP + RESTORE)
    (row,) = sim.soql(
        world.host, token, f"SELECT {fields} FROM UserPermissionAccess"
    ).get_json()["records"]
    assert {f for f in BACKUP + RESTORE if row[f]} == set(chosen)
    # ... and the password logs in (approved already: minting counts as approval).
    login = sim.login(world.host, world.key, "ana@acme.example", "Ana-Passw0rd!")
    assert "code" in callback_params(login)


def test_new_user_form_grants_through_a_permission_set_with_integration_license(
    sim: Sim, world: World
) -> None:
    message = submit(
        sim,
        "/users",
        {
            "org_id": world.org_id,
            "username": "etl@acme.example",
            "password": "Etl-Passw0rd!",
            "license": "Salesforce Integration",
            "permissions": BACKUP + RESTORE,
            "grant_via": "permission_set",
            "permission_set": "Backup_Access",
        },
    )
    assert message == (
        "Created user etl@acme.example in Acme with a Salesforce Integration "
        "license and 10 of the 10 permissions the console checks through "
        "permission set Backup_Access. The console's Verify permissions says a "
        "Salesforce Integration license cannot back up, so Finish is blocked, and "
        "an org connected as this user shows Permissions missing."
    )
    user = sim.state.find_login_user("etl@acme.example")
    assert user is not None and user.profile_ps.permissions == set()
    token = mint(sim, world, user.user_id)["access_token"]
    rows = sim.soql(
        world.host,
        token,
        "SELECT PermissionSet.Name, PermissionSet.IsOwnedByProfile "
        f"FROM PermissionSetAssignment WHERE AssigneeId = '{user.user_id}'",
    ).get_json()["records"]
    names = {r["PermissionSet"]["Name"] for r in rows}
    assert "Backup_Access" in names and len(rows) == 2  # plus the profile's own
    (record,) = sim.soql(
        world.host,
        token,
        f"SELECT Profile.UserLicense.Name FROM User WHERE Id = '{user.user_id}'",
    ).get_json()["records"]
    assert record["Profile"]["UserLicense"]["Name"] == "Salesforce Integration"


@pytest.mark.parametrize(
    ("permissions", "verdict"),
    [
        (
            BACKUP + RESTORE,
            "The console's Verify permissions shows every backup and restore "
            "permission granted; Finish is allowed and the org shows Connected.",
        ),
        (
            BACKUP + RESTORE[:1],
            "The console's Verify permissions shows every backup permission granted "
            "and warns that restore lacks View and Edit Converted Leads, Set Audit "
            "Fields upon Record Creation, Update Records with Inactive Owners and "
            "Bulk API Hard Delete; Finish is allowed and the org shows Connected.",
        ),
        (
            [],
            "Without API Enabled every API call answers API_DISABLED_FOR_ORG: the "
            "console's Verify permissions fails, and an org connected as this user "
            "shows Needs re-authorization after its next health check.",
        ),
    ],
)
def test_new_user_outcome_says_what_verify_permissions_shows(
    sim: Sim, world: World, permissions: list[str], verdict: str
) -> None:
    form = {"org_id": world.org_id, "username": "bo@acme.example", "password": "pw"}
    message = submit(sim, "/users", {**form, "permissions": permissions})
    assert message.endswith(verdict), message


# -- 3. Enhanced domains ---------------------------------------------------------


def test_enhanced_domains_form_moves_a_legacy_org(sim: Sim) -> None:
    org = sim.org("acme", "sandbox", sandbox_name="uat", legacy=True, name="Acme UAT")
    user = sim.user(org["org_id"], "admin@acme.example.uat")
    app = sim.app(org["org_id"])
    world = World(
        org["org_id"],
        "acme--uat.sandbox.my.salesforce.com",
        user["user_id"],
        "admin@acme.example.uat",
        app["consumer_key"],
        app["consumer_secret"],
    )
    refresh_token = mint(sim, world)["refresh_token"]
    message = submit(sim, "/enhanced-domains", {"org_id": org["org_id"]})
    assert message == (
        "Acme UAT moved from https://acme--uat.my.salesforce.com to "
        "https://acme--uat.sandbox.my.salesforce.com; acme--uat.my.salesforce.com "
        "no longer answers. The console's next health check of Acme UAT shows URL "
        "changed (Salesforce now answers at acme--uat.sandbox.my.salesforce.com); "
        "Edit organization URL applies the new URL."
    )
    moved = sim.ctl("GET", f"/orgs/{org['org_id']}")
    assert moved["login_url"] == "https://acme--uat.sandbox.my.salesforce.com"
    old = sim.client.get("/h/acme--uat.my.salesforce.com/services/data/")
    assert old.status_code == 404
    resp = sim.refresh("test.salesforce.com", world.key, world.secret, refresh_token)
    assert resp.get_json()["instance_url"] == moved["login_url"]


def test_enhanced_domains_form_can_rename_and_revoke_every_token(
    sim: Sim, world: World
) -> None:
    refresh_token = mint(sim, world)["refresh_token"]
    message = submit(
        sim,
        "/enhanced-domains",
        {
            "org_id": world.org_id,
            "new_url": "https://acme-new.my.salesforce.com",
            "revoke_tokens": "1",
        },
    )
    assert message == (
        "Acme moved from https://acme.my.salesforce.com to "
        "https://acme-new.my.salesforce.com; acme.my.salesforce.com no longer "
        "answers. 1 token of the org was revoked. The console's next health check "
        "of Acme shows Needs re-authorization; re-authorizing uses "
        "https://acme-new.my.salesforce.com."
    )
    assert sim.ctl("POST", "/check-token", {"refresh_token": refresh_token}) == {
        "active": False
    }
    assert sim.ctl("GET", f"/orgs/{world.org_id}")["login_url"] == (
        "https://acme-new.my.salesforce.com"
    )


# -- 4. Revoke tokens ------------------------------------------------------------


def test_revoke_tokens_form_revokes_every_token_of_the_user(
    sim: Sim, world: World
) -> None:
    first, second = mint(sim, world), mint(sim, world)
    message = submit(sim, "/revoke-tokens", {"user_id": world.user_id})
    assert message == (
        "Revoked 2 tokens of admin@acme.example. The console's next health check "
        "of Acme shows Needs re-authorization."
    )
    assert token_counts(sim, user_id=world.user_id) == {"active": 0, "revoked": 2}
    resp = sim.refresh(world.host, world.key, world.secret, first["refresh_token"])
    assert resp.get_json() == {
        "error": "invalid_grant",
        "error_description": "expired access/refresh token",
    }
    check = sim.ctl("POST", "/check-token", {"access_token": second["access_token"]})
    assert check == {"active": False}
    again = submit(sim, "/revoke-tokens", {"user_id": world.user_id})
    assert again == (
        "Revoked 0 tokens of admin@acme.example: no connection runs on this user's "
        "tokens, so the console shows no change."
    )


# -- 5. Deactivate a user --------------------------------------------------------


def test_deactivate_form_deactivates_and_reactivates_the_user(
    sim: Sim, world: World
) -> None:
    refresh_token = mint(sim, world)["refresh_token"]
    form = {"user_id": world.user_id, "action": "deactivate"}
    message = submit(sim, "/user-status", form)
    assert message == (
        "Deactivated admin@acme.example in Acme; their sessions ended and logging "
        "in as them now fails. The console's next health check of Acme shows Needs "
        "re-authorization (the connected Salesforce user is inactive); "
        "re-authorize as another user."
    )
    (user,) = sim.ctl("GET", f"/orgs/{world.org_id}/users")["users"]
    assert user["active"] is False
    assert refresh_error(sim, world, refresh_token) == "inactive_user"
    login = sim.login(world.host, world.key, world.username)
    assert "Allow Access?" not in login.get_data(as_text=True)

    message = submit(sim, "/user-status", {**form, "action": "reactivate"})
    assert message == (
        "Reactivated admin@acme.example in Acme; they can log in again. Their "
        "refresh tokens work again, so the console's next health check of Acme "
        "shows Connected."
    )
    assert refresh_error(sim, world, refresh_token) is None


# -- 6. Block an app -------------------------------------------------------------


def test_block_form_blocks_and_unblocks_the_app(sim: Sim, world: World) -> None:
    refresh_token = mint(sim, world)["refresh_token"]
    form = {"consumer_key": world.key, "action": "block"}
    message = submit(sim, "/app-block", form)
    assert message == (
        "Blocked Backup. Authorizing it now comes back with OAUTH_APP_BLOCKED "
        "(this app is blocked by admin) and its refresh tokens answer "
        "invalid_grant. The console's next health check of Acme shows Needs "
        "re-authorization, and Re-authorize connection fails until the app is "
        "unblocked."
    )
    (app,) = sim.ctl("GET", "/apps")["apps"]
    assert app["blocked"] is True
    location = sim.authorize(world.host, world.key, state="s1").headers["Location"]
    assert "error=OAUTH_APP_BLOCKED" in location and "state=s1" in location
    assert refresh_error(sim, world, refresh_token) == "invalid_grant"

    message = submit(sim, "/app-block", {**form, "action": "unblock"})
    assert message == (
        "Unblocked Backup; authorizing it works again. Its refresh tokens work "
        "again, so the console's next health check of Acme shows Connected."
    )
    assert refresh_error(sim, world, refresh_token) is None


# -- 7. New External Client App -------------------------------------------------


def test_new_app_form_shows_the_secret_once_and_activates_after_the_delay(
    sim: Sim, world: World
) -> None:
    resp = sim.client.post(
        "/_sim/setup/apps",
        data={
            "org_id": world.org_id,
            "name": "Demo ECA",
            "callback_url": CALLBACK,
            "scopes": ["full", "refresh_token", "openid"],
            "activation_delay_seconds": "120",
        },
    )
    assert resp.status_code == 303
    location = resp.headers["Location"]
    html = sim.client.get(location).get_data(as_text=True)
    key = re.search(r"<code id='consumer-key'>([^<]+)</code>", html)[1]
    secret = re.search(r"<code id='consumer-secret'>([^<]+)</code>", html)[1]
    assert secret not in location and key not in location
    assert outcome(html) == (
        "Created external client app Demo ECA in Acme. It activates after 2 "
        "minutes. Paste its consumer key and secret into the console's Edit "
        "Connection: it shows “Waiting for Salesforce to activate the new app” for "
        "about 2 minutes, then sends you to the Salesforce login. The consumer "
        "secret is shown only now."
    )
    again = sim.client.get(location)
    assert secret not in again.get_data(as_text=True)  # once only
    assert key in again.get_data(as_text=True)
    assert again.headers["Cache-Control"].startswith("no-cache")

    (app,) = [a for a in sim.ctl("GET", "/apps")["apps"] if a["consumer_key"] == key]
    assert app["scopes"] == ["full", "refresh_token", "openid", "offline_access"]
    assert app["activation_delay_seconds"] == 120 and not app["active"]
    probe = sim.refresh(world.host, key, secret, "bogus").get_json()
    assert probe["error"] == "invalid_client_id"
    sim.advance(121)
    probe = sim.refresh(world.host, key, secret, "bogus").get_json()
    assert probe["error"] == "invalid_grant"  # active, right secret


def test_new_app_form_can_make_an_app_that_never_activates(
    sim: Sim, world: World
) -> None:
    message = submit(
        sim,
        "/apps",
        {
            "org_id": world.org_id,
            "name": "Never ECA",
            "callback_url": CALLBACK,
            "scopes": ["full", "refresh_token"],
            "activation_delay_seconds": "",
            "never_activates": "1",
        },
    )
    assert message == (
        "Created external client app Never ECA in Acme. It never activates (as if "
        "it were not enabled in the org): Salesforce answers invalid_client_id for "
        "it. Paste its consumer key and secret into the console's Edit Connection: "
        "it shows “Waiting for Salesforce to activate the new app”, and after 15 "
        "minutes the change expires and the org keeps its current connection. The "
        "consumer secret is shown only now."
    )
    app = next(a for a in sim.state.apps.values() if a.name == "Never ECA")
    sim.advance(10**6)
    probe = sim.refresh(world.host, app.consumer_key, app.consumer_secret, "bogus")
    assert probe.get_json()["error"] == "invalid_client_id"
    page = sim.authorize(world.host, app.consumer_key)
    assert page.status_code == 400 and "invalid_client_id" in page.get_data(True)
    # The JSON API shares the setting: enabling the app activates it.
    data = sim.ctl("POST", f"/apps/{app.consumer_key}", {"never_activates": False})
    assert data["never_activates"] is False and data["active"] is True


@pytest.mark.parametrize(
    ("delay", "tail"),
    [
        (
            "0",
            "It is active at once. Paste its consumer key and secret into the "
            "console's Edit Connection: it goes straight on to the Salesforce login.",
        ),
        (
            "1200",
            "It activates after 20 minutes, later than the console waits (15 "
            "minutes). Paste its consumer key and secret into the console's Edit "
            "Connection: it shows “Waiting for Salesforce to activate the new app”, "
            "then the change expires and the org keeps its current connection.",
        ),
    ],
)
def test_new_app_outcome_follows_the_delay(
    sim: Sim, world: World, delay: str, tail: str
) -> None:
    form = {"org_id": world.org_id, "name": "ECA", "callback_url": CALLBACK}
    message = submit(
        sim, "/apps", {**form, "scopes": ["full"], "activation_delay_seconds": delay}
    )
    assert (
        message
        == f"Created external client app ECA in Acme. {tail} The consumer secret is shown only now."
    )


def test_json_api_creates_a_never_active_app(sim: Sim, world: World) -> None:
    app = sim.app(world.org_id, never_activates=True)
    assert app["never_activates"] is True and app["active"] is False
    sim.ctl(
        "POST",
        f"/orgs/{world.org_id}/apps",
        {
            "name": "x",
            "scopes": ["full"],
            "callback_urls": [CALLBACK],
            "never_activates": "yes",
        },
        status=400,
    )


# -- bad input -------------------------------------------------------------------


def snapshot(sim: Sim) -> Any:
    return (
        sim.ctl("GET", "/orgs"),
        sim.ctl("GET", "/apps"),
        token_counts(sim),
        sorted((u.username, u.active) for u in sim.state.users.values()),
    )


BAD_INPUT = [
    ("/orgs", {"name": "X", "my_domain": "Bad Domain!"}, "“My Domain name” must be lower-case letters, digits and hyphens"),
    ("/orgs", {"name": "X", "my_domain": "acme"}, "Host acme.my.salesforce.com is already in use"),
    ("/orgs", {"name": "X", "my_domain": "beta", "org_type": "sandbox"}, "A sandbox needs “Sandbox name” (letters/digits, max 10)"),
    ("/orgs", {"name": "X", "my_domain": "beta", "org_type": "moon"}, "“Org type” must be one of production, sandbox, developer, scratch"),
    ("/orgs", {"name": "", "my_domain": "beta"}, "“Name” must be a non-empty string"),
    ("/users", {"username": "ana@acme.example", "password": "pw"}, "Choose an organization."),
    ("/users", {"org_id": "00D000000000001", "username": "a@b.c", "password": "pw"}, "Unknown org '00D000000000001'"),
    ("/users", {"org_id": "{org}", "username": "ana", "password": "pw"}, "“Username” must look like an email address"),
    ("/users", {"org_id": "{org}", "username": "admin@acme.example", "password": "pw"}, "Username already exists"),
    ("/users", {"org_id": "{org}", "username": "ana@acme.example", "password": ""}, "“Password” must be a non-empty string"),
    ("/users", {"org_id": "{org}", "username": "ana@acme.example", "password": "pw", "license": "Platform"}, "“License” must be one of Salesforce, Salesforce Integration"),
    ("/users", {"org_id": "{org}", "username": "ana@acme.example", "password": "pw", "permissions": ["PermissionsFly"]}, "Unknown permission 'PermissionsFly'."),
    ("/users", {"org_id": "{org}", "username": "ana@acme.example", "password": "pw", "grant_via": "permission_set", "permission_set": " "}, "Name the permission set that grants the permissions."),
    ("/enhanced-domains", {"org_id": "{org}", "new_url": "http://acme.example.com/x"}, "My_domain_url must look like https://HOST"),
    ("/enhanced-domains", {"org_id": "{org}", "new_url": "https://acme.my.salesforce.com"}, "Host acme.my.salesforce.com is already in use"),
    ("/enhanced-domains", {"org_id": ""}, "Choose an organization."),
    ("/revoke-tokens", {}, "Choose a user."),
    ("/revoke-tokens", {"user_id": "005000000000001"}, "Unknown user '005000000000001'"),
    ("/user-status", {"user_id": "{user}", "action": "reactivate"}, "User admin@acme.example is already active."),
    ("/user-status", {"user_id": "{user}", "action": "delete"}, "Choose Deactivate or Reactivate."),
    ("/app-block", {"consumer_key": "{key}", "action": "unblock"}, "App Backup is already unblocked."),
    ("/app-block", {"consumer_key": "3MVGnope", "action": "block"}, "Unknown consumer key"),
    ("/apps", {"org_id": "{org}", "name": "ECA", "callback_url": CALLBACK, "scopes": ["full"], "activation_delay_seconds": "soon"}, "“Activation delay (seconds)” must be a whole number of seconds."),
    ("/apps", {"org_id": "{org}", "name": "ECA", "callback_url": CALLBACK, "scopes": ["full"], "activation_delay_seconds": "-5"}, "“Activation delay (seconds)” must be an integer >= 0"),
    ("/apps", {"org_id": "{org}", "name": "ECA", "callback_url": CALLBACK}, "Unknown scopes: (none given)"),
    ("/apps", {"org_id": "{org}", "name": "ECA", "callback_url": "", "scopes": ["full"]}, "“Callback URL” must not be empty"),
    ("/apps", {"org_id": "{org}", "name": "ECA", "callback_url": "/oauth/callback/", "scopes": ["full"]}, "Callback URL '/oauth/callback/' must be absolute"),
    ("/apps", {"org_id": "{org}", "name": "", "callback_url": CALLBACK, "scopes": ["full"]}, "“Name” must be a non-empty string"),
]  # fmt: skip


@pytest.mark.parametrize(("path", "form", "message"), BAD_INPUT)
def test_bad_input_answers_400_with_the_form_and_changes_nothing(
    sim: Sim, world: World, path: str, form: dict[str, Any], message: str
) -> None:
    fill = {"{org}": world.org_id, "{user}": world.user_id, "{key}": world.key}
    form = {
        k: fill.get(val, val) if isinstance(val, str) else val
        for k, val in form.items()
    }
    mint(sim, world)
    before = snapshot(sim)
    resp = sim.client.post(f"/_sim/setup{path}", data=form)
    html = resp.get_data(as_text=True)
    assert resp.status_code == 400, html
    assert error_of(html) == message
    assert f'action="/_sim/setup{path}"' in html  # the form is on the page again
    assert snapshot(sim) == before
    assert sim.state.setup_notices == {}


def test_bad_input_keeps_what_was_typed(sim: Sim, world: World) -> None:
    resp = sim.client.post(
        "/_sim/setup/apps",
        data={
            "org_id": world.org_id,
            "name": "My <ECA>",
            "callback_url": "nope",
            "scopes": ["api"],
            "activation_delay_seconds": "30",
        },
    )
    html = resp.get_data(as_text=True)
    assert resp.status_code == 400
    assert 'name="name" required value="My &lt;ECA&gt;"' in html
    assert 'value="30"' in html
    assert re.search(r'value="api" checked', html)
    assert not re.search(r'value="full" checked', html)  # unticked stays unticked
    assert f'<option value="{world.org_id}" selected>' in html


def test_unknown_or_missing_notice_id_shows_the_page_without_an_outcome(
    sim: Sim,
) -> None:
    for url in ("/_sim/setup", "/_sim/setup?done=nope"):
        resp = sim.client.get(url)
        assert resp.status_code == 200
        assert 'role="status"' not in resp.get_data(as_text=True)


# -- escaping, labels, assets --------------------------------------------------


def test_everything_user_supplied_is_escaped(sim: Sim) -> None:
    evil = "<script>alert('x')</script>\"'"
    message = submit(sim, "/orgs", {"name": evil, "my_domain": "evil"})
    assert message.startswith(f"Created production org {evil} (")
    org_id = sim.ctl("GET", "/orgs")["orgs"][0]["org_id"]
    submit(
        sim,
        "/users",
        {"org_id": org_id, "username": 'a"<b>@evil.example', "password": "<pw>"},
    )
    html = sim.client.get("/_sim/setup").get_data(as_text=True)
    assert "<script>alert" not in html and "<b>@" not in html
    assert "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;&#34;&#39;" in html
    assert "a&#34;&lt;b&gt;@evil.example" in html and "&lt;pw&gt;" in html


class _Controls(HTMLParser):
    """Form controls, labels and external references on a page."""

    def __init__(self) -> None:
        super().__init__()
        self.controls: list[tuple[str, dict[str, str | None], bool]] = []
        self.label_for: set[str] = set()
        self.in_label = 0
        self.buttons: list[str] = []
        self.in_button = False
        self.external: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        for key in ("src", "href"):
            if (a.get(key) or "").startswith(("http:", "https:", "//")):
                self.external.append(a[key] or "")
        if tag == "link":
            self.external.append(a.get("href") or "")
        if tag == "label":
            self.in_label += 1
            if a.get("for"):
                self.label_for.add(a["for"] or "")
        if tag in ("input", "select", "textarea") and a.get("type") != "hidden":
            self.controls.append((tag, a, self.in_label > 0))
        if tag == "button":
            self.in_button, self.buttons = True, [*self.buttons, ""]

    def handle_endtag(self, tag: str) -> None:
        if tag == "label":
            self.in_label -= 1
        if tag == "button":
            self.in_button = False

    def handle_data(self, data: str) -> None:
        if self.in_button:
            self.buttons[-1] += data.strip()


def test_every_field_has_a_label_and_nothing_loads_from_elsewhere(
    sim: Sim, world: World
) -> None:
    html = sim.client.get("/_sim/setup").get_data(as_text=True)
    parser = _Controls()
    parser.feed(html)
    assert len(parser.controls) > 20
    for tag, attrs, wrapped in parser.controls:
        assert wrapped or attrs.get("id") in parser.label_for, (tag, attrs)
    assert all(parser.buttons) and "Revoke tokens" in parser.buttons
    for name in (
        "Create org",
        "Create user",
        "Switch to enhanced domains",
        "Deactivate",
        "Block",
        "Create",
    ):
        assert name in parser.buttons
    assert parser.external == []
    assert html.count("<form ") == 7
