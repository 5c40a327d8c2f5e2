"""The demo "Setup" page: every change the console's journeys need, as forms.

One HTML form per action: create an org, create a user with chosen
permissions and license, switch an org to enhanced domains, revoke a user's
tokens, deactivate (or reactivate) a user, block (or unblock) an app, and
create an external client app with an activation delay (or none ever).  Each
form calls the same :class:`~sfsim.state.SimState` method as the JSON control
API, then redirects (POST/redirect/GET) to the page, which says what happened
and what the console will show afterwards.  The outcome travels as a random
notice id kept in the state; a new app's consumer secret is shown once, from
that notice, and never appears in a URL.

Bad input answers 400 with the page, the message and the submitted values;
nothing changes.  Templates are Jinja with autoescaping on.  Demo-only: the
page shows user passwords so a presenter can log in.  Nothing loads from
other hosts.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from flask import Blueprint, Response, redirect, render_template, request
from werkzeug.datastructures import MultiDict

from . import validate as v
from .models import (
    DEFAULT_PERMISSIONS,
    LICENSES,
    ORG_TYPES,
    App,
    Org,
    SetupNotice,
    User,
)
from .state import BadInput, NotFound, SimState
from .web import NO_STORE

SCOPE_CHOICES = [
    ("full", "Full access (full)", True),
    (
        "refresh_token",
        "Perform requests at any time (refresh_token, offline_access)",
        True,
    ),
    ("openid", "Access unique user identifiers (openid)", True),
    ("api", "Manage user data via APIs (api)", False),
    (
        "id",
        "Access the identity URL service (id, profile, email, address, phone)",
        False,
    ),
    ("web", "Manage user data via Web browsers (web)", False),
]

BACKUP, RESTORE = "backup", "restore"
# The UserPermissionAccess fields the console's "Verify permissions" reads,
# with Salesforce's labels.  This mirrors the console's own table
# (connections/permissions.py) because the simulator imports no console code.
CONSOLE_PERMISSIONS = (
    ("PermissionsApiEnabled", "API Enabled", BACKUP),
    ("PermissionsViewAllData", "View All Data", BACKUP),
    ("PermissionsQueryAllFiles", "Query All Files", BACKUP),
    ("PermissionsViewSetup", "View Setup and Configuration", BACKUP),
    ("PermissionsViewEncryptedData", "View Encrypted Data", BACKUP),
    ("PermissionsModifyAllData", "Modify All Data", RESTORE),
    (
        "PermissionsAllowViewEditConvertedLeads",
        "View and Edit Converted Leads",
        RESTORE,
    ),
    ("PermissionsCreateAuditFields", "Set Audit Fields upon Record Creation", RESTORE),
    (
        "PermissionsUpdateWithInactiveOwner",
        "Update Records with Inactive Owners",
        RESTORE,
    ),
    ("PermissionsBulkApiHardDelete", "Bulk API Hard Delete", RESTORE),
)
INTEGRATION_LICENSE = "Salesforce Integration"
# How long the console waits for new credentials by default: its 10-minute
# activation window plus a 5-minute margin (ACTIVATION_WINDOW/MARGIN_SECONDS).
CONSOLE_ACTIVATION_WAIT_SECONDS = 900

# Field names in state error messages, as the forms label them.
FIELD_LABELS = {
    "name": "Name",
    "my_domain": "My Domain name",
    "org_type": "Org type",
    "sandbox_name": "Sandbox name",
    "my_domain_url": "New My Domain URL",
    "username": "Username",
    "password": "Password",
    "license": "License",
    "scopes": "OAuth scopes",
    "callback_urls": "Callback URL",
    "activation_delay_seconds": "Activation delay (seconds)",
}


@dataclass
class OrgView:
    org: Org
    users: list[User] = field(default_factory=list)
    apps: list[App] = field(default_factory=list)


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def _join(items: list[str]) -> str:
    if len(items) <= 1:
        return "".join(items)
    return ", ".join(items[:-1]) + " and " + items[-1]


def _duration(seconds: int) -> str:
    if seconds < 120 or seconds % 60:
        return _plural(seconds, "second")
    return _plural(seconds // 60, "minute")


def _friendly(message: str) -> str:
    """State errors name JSON keys ('my_domain'); the forms show labels."""
    for key, label in FIELD_LABELS.items():
        message = message.replace(f"'{key}'", f"“{label}”")
    return message[:1].upper() + message[1:]


# -- what the console shows afterwards --------------------------------------


def _live_tokens(state: SimState, **match: str) -> list[Any]:
    return [
        rt
        for rt in state.refresh_tokens.values()
        if not rt.revoked and all(getattr(rt, k) == val for k, val in match.items())
    ]


def org_created(org: Org) -> str:
    return (
        f"Created {org.org_type} org {org.name} ({org.org_id}) with My Domain "
        f"{org.url}. The console can add it with the organization URL {org.url} "
        f"(its users also log in through https://{org.identity_host}); it has no "
        "users yet, so create one before authorizing."
    )


def user_created(org: Org, user: User) -> str:
    granted = user.effective_permissions()
    count = sum(1 for f, _, _ in CONSOLE_PERMISSIONS if f in granted)
    missing = {
        purpose: [
            label
            for f, label, p in CONSOLE_PERMISSIONS
            if p == purpose and f not in granted
        ]
        for purpose in (BACKUP, RESTORE)
    }
    via = (
        f" through permission set {user.permission_sets[0].name}"
        if user.permission_sets
        else ""
    )
    head = (
        f"Created user {user.username} in {org.name} with a {user.license} license "
        f"and {count} of the {len(CONSOLE_PERMISSIONS)} permissions the console "
        f"checks{via}."
    )
    if "PermissionsApiEnabled" not in granted:
        tail = (
            "Without API Enabled every API call answers API_DISABLED_FOR_ORG: the "
            "console's Verify permissions fails, and an org connected as this user "
            "shows Needs re-authorization after its next health check."
        )
    elif user.license == INTEGRATION_LICENSE:
        tail = (
            "The console's Verify permissions says a Salesforce Integration license "
            "cannot back up, so Finish is blocked, and an org connected as this "
            "user shows Permissions missing."
        )
    elif missing[BACKUP]:
        tail = (
            f"The console's Verify permissions shows {_join(missing[BACKUP])} "
            "missing for backup, so Finish is blocked, and an org connected as "
            "this user shows Permissions missing."
        )
    elif missing[RESTORE]:
        tail = (
            "The console's Verify permissions shows every backup permission "
            f"granted and warns that restore lacks {_join(missing[RESTORE])}; "
            "Finish is allowed and the org shows Connected."
        )
    else:
        tail = (
            "The console's Verify permissions shows every backup and restore "
            "permission granted; Finish is allowed and the org shows Connected."
        )
    return f"{head} {tail}"


def domain_switched(
    org: Org, old_url: str, new_url: str, revoked: int, live: int
) -> str:
    old_host = old_url.removeprefix("https://")
    new_host = new_url.removeprefix("https://")
    head = (
        f"{org.name} moved from {old_url} to {new_url}; {old_host} no longer answers."
    )
    if revoked:
        return (
            f"{head} {_plural(revoked, 'token')} of the org "
            f"{'was' if revoked == 1 else 'were'} revoked. The "
            f"console's next health check of {org.name} shows Needs "
            f"re-authorization; re-authorizing uses {new_url}."
        )
    if not live:
        return (
            f"{head} No connection holds tokens for this org, so the console shows "
            f"no change; connect it with the organization URL {new_url}."
        )
    return (
        f"{head} The console's next health check of {org.name} shows URL changed "
        f"(Salesforce now answers at {new_host}); Edit organization URL applies "
        "the new URL."
    )


def tokens_revoked(org: Org, user: User, count: int) -> str:
    if not count:
        return (
            f"Revoked 0 tokens of {user.username}: no connection runs on this "
            "user's tokens, so the console shows no change."
        )
    return (
        f"Revoked {_plural(count, 'token')} of {user.username}. The console's "
        f"next health check of {org.name} shows Needs re-authorization."
    )


def user_deactivated(org: Org, user: User, live: int) -> str:
    head = (
        f"Deactivated {user.username} in {org.name}; their sessions ended and "
        "logging in as them now fails."
    )
    if not live:
        return (
            f"{head} No connection runs as this user, so the console shows no change."
        )
    return (
        f"{head} The console's next health check of {org.name} shows Needs "
        "re-authorization (the connected Salesforce user is inactive); "
        "re-authorize as another user."
    )


def user_reactivated(org: Org, user: User, live: int) -> str:
    head = f"Reactivated {user.username} in {org.name}; they can log in again."
    if not live:
        return (
            f"{head} No connection runs as this user, so the console shows no change."
        )
    return (
        f"{head} Their refresh tokens work again, so the console's next health "
        f"check of {org.name} shows Connected."
    )


def app_blocked(app: App, org_names: list[str]) -> str:
    head = (
        f"Blocked {app.name}. Authorizing it now comes back with OAUTH_APP_BLOCKED "
        "(this app is blocked by admin) and its refresh tokens answer "
        "invalid_grant."
    )
    if not org_names:
        return f"{head} No connection uses it, so the console shows no change."
    return (
        f"{head} The console's next health check of {_join(org_names)} shows "
        "Needs re-authorization, and Re-authorize connection fails until the app "
        "is unblocked."
    )


def app_unblocked(app: App, org_names: list[str]) -> str:
    head = f"Unblocked {app.name}; authorizing it works again."
    if not org_names:
        return f"{head} No connection uses it, so the console shows no change."
    return (
        f"{head} Its refresh tokens work again, so the console's next health check "
        f"of {_join(org_names)} shows Connected."
    )


def app_created(org: Org, app: App) -> str:
    head = f"Created external client app {app.name} in {org.name}."
    paste = "Paste its consumer key and secret into the console's Edit Connection"
    wait = _duration(CONSOLE_ACTIVATION_WAIT_SECONDS)
    delay = app.activation_delay_seconds
    if app.never_activates:
        tail = (
            "It never activates (as if it were not enabled in the org): Salesforce "
            f"answers invalid_client_id for it. {paste}: it shows “Waiting for "
            f"Salesforce to activate the new app”, and after {wait} the change "
            "expires and the org keeps its current connection."
        )
    elif not delay:
        tail = f"It is active at once. {paste}: it goes straight on to the Salesforce login."
    elif delay > CONSOLE_ACTIVATION_WAIT_SECONDS:
        tail = (
            f"It activates after {_duration(delay)}, later than the console waits "
            f"({wait}). {paste}: it shows “Waiting for Salesforce to activate the "
            "new app”, then the change expires and the org keeps its current "
            "connection."
        )
    else:
        tail = (
            f"It activates after {_duration(delay)}. {paste}: it shows “Waiting for "
            f"Salesforce to activate the new app” for about {_duration(delay)}, "
            "then sends you to the Salesforce login."
        )
    return f"{head} {tail} The consumer secret is shown only now."


# -- form handlers ------------------------------------------------------------

Form = MultiDict[str, str]


def _picked(form: Form, key: str, what: str) -> str:
    value = (form.get(key) or "").strip()
    if not value:
        raise BadInput(f"Choose {what}.")
    return value


def _checked(form: Form, key: str) -> bool:
    return form.get(key) == "1"


def create_org(state: SimState, form: Form) -> SetupNotice:
    data: dict[str, Any] = {
        "name": form.get("name", ""),
        "my_domain": form.get("my_domain", ""),
        "org_type": form.get("org_type") or "production",
        "legacy": _checked(form, "legacy"),
    }
    sandbox = (form.get("sandbox_name") or "").strip()
    if data["org_type"] == "sandbox" or sandbox:
        data["sandbox_name"] = sandbox or None
    org = state.create_org(data)
    return SetupNotice(org_created(org))


def create_user(state: SimState, form: Form) -> SetupNotice:
    org = state.org(_picked(form, "org_id", "an organization"))
    chosen = form.getlist("permissions")
    known = {f for f, _, _ in CONSOLE_PERMISSIONS}
    unknown = [p for p in chosen if p not in known]
    if unknown:
        raise BadInput(f"Unknown permission {unknown[0]!r}.")
    data: dict[str, Any] = {
        "username": form.get("username", ""),
        "password": form.get("password", ""),
        "license": form.get("license") or "Salesforce",
        "permissions": list(chosen),
    }
    if form.get("grant_via") == "permission_set":
        name = (form.get("permission_set") or "").strip()
        if not name:
            raise BadInput("Name the permission set that grants the permissions.")
        data["permissions"] = []
        data["permission_sets"] = [{"name": name, "permissions": list(chosen)}]
    user = state.create_user(org.org_id, data)
    return SetupNotice(user_created(org, user))


def switch_domain(state: SimState, form: Form) -> SetupNotice:
    org = state.org(_picked(form, "org_id", "an organization"))
    new_url = (form.get("new_url") or "").strip()
    new_host = v.host_from_url(new_url) if new_url else None
    revoke = _checked(form, "revoke_tokens")
    live = len(_live_tokens(state, org_id=org.org_id))
    old_url, url = state.switch_domain(org.org_id, new_host, revoke)
    return SetupNotice(domain_switched(org, old_url, url, live if revoke else 0, live))


def revoke_tokens(state: SimState, form: Form) -> SetupNotice:
    user = state.user(_picked(form, "user_id", "a user"))
    count = state.revoke_user_tokens(user)
    return SetupNotice(tokens_revoked(state.orgs[user.org_id], user, count))


def user_status(state: SimState, form: Form) -> SetupNotice:
    user = state.user(_picked(form, "user_id", "a user"))
    action = form.get("action")
    if action not in ("deactivate", "reactivate"):
        raise BadInput("Choose Deactivate or Reactivate.")
    active = action == "reactivate"
    if user.active == active:
        raise BadInput(
            f"User {user.username} is already {'active' if active else 'inactive'}."
        )
    org = state.orgs[user.org_id]
    state.update_user(org.org_id, user.user_id, {"active": active})
    live = len(_live_tokens(state, user_id=user.user_id))
    if active:
        return SetupNotice(user_reactivated(org, user, live))
    return SetupNotice(user_deactivated(org, user, live))


def block_app(state: SimState, form: Form) -> SetupNotice:
    app = state.app(_picked(form, "consumer_key", "an app"))
    action = form.get("action")
    if action not in ("block", "unblock"):
        raise BadInput("Choose Block or Unblock.")
    blocked = action == "block"
    if app.blocked == blocked:
        raise BadInput(
            f"App {app.name} is already {'blocked' if blocked else 'unblocked'}."
        )
    state.set_blocked(app.consumer_key, blocked)
    org_ids = {rt.org_id for rt in _live_tokens(state, consumer_key=app.consumer_key)}
    names = sorted(state.orgs[o].name for o in org_ids if o in state.orgs)
    return SetupNotice(
        app_blocked(app, names) if blocked else app_unblocked(app, names)
    )


def create_app(state: SimState, form: Form) -> SetupNotice:
    org = state.org(_picked(form, "org_id", "an organization"))
    scopes = form.getlist("scopes")
    if "refresh_token" in scopes:
        scopes.append("offline_access")
    never = _checked(form, "never_activates")
    raw_delay = (form.get("activation_delay_seconds") or "0").strip()
    try:
        delay = int(raw_delay)
    except ValueError:
        if not never:
            raise BadInput(
                "“Activation delay (seconds)” must be a whole number of seconds."
            ) from None
        delay = 0
    data: dict[str, Any] = {
        "name": form.get("name", ""),
        "callback_urls": (form.get("callback_url") or "").split(),
        "scopes": scopes,
        "require_pkce": _checked(form, "require_pkce"),
        "rotate_refresh_tokens": _checked(form, "rotate_refresh_tokens"),
        "activation_delay_seconds": delay,
        "never_activates": never,
    }
    app = state.create_app(org.org_id, data)
    return SetupNotice(
        app_created(org, app),
        consumer_key=app.consumer_key,
        consumer_secret=app.consumer_secret,
    )


# Form name -> (path under /_sim/setup, handler).
FORMS: dict[str, tuple[str, Callable[[SimState, Form], SetupNotice]]] = {
    "org": ("/orgs", create_org),
    "user": ("/users", create_user),
    "domain": ("/enhanced-domains", switch_domain),
    "revoke": ("/revoke-tokens", revoke_tokens),
    "user_status": ("/user-status", user_status),
    "block": ("/app-block", block_app),
    "app": ("/apps", create_app),
}


# -- rendering ----------------------------------------------------------------


def _views(state: SimState) -> list[OrgView]:
    """Every org with its users and apps, grouped in one pass."""
    views = {org_id: OrgView(org) for org_id, org in state.orgs.items()}
    for user in state.users.values():
        views[user.org_id].users.append(user)
    for app in state.apps.values():
        views[app.org_id].apps.append(app)
    return list(views.values())


def _app_status(state: SimState, app: App) -> str:
    if app.blocked:
        return "blocked"
    if app.never_activates:
        return "never activates"
    if not state.app_is_active(app):
        left = int(app.active_from - state.now()) + 1
        return f"pending, active in {_duration(left)}"
    return "active"


def _page(
    state: SimState,
    *,
    notice: SetupNotice | None = None,
    error: str = "",
    failed: str = "",
    values: Form | None = None,
    status: int = 200,
) -> Response:
    submitted: Form = values if values is not None else MultiDict()

    def value(form: str, key: str, default: str = "") -> str:
        return submitted.get(key, "") if form == failed else default

    def checked(form: str, key: str, option: str, default: bool) -> bool:
        if form == failed:
            return option in submitted.getlist(key)
        return default

    granted = {f for f, _, _ in CONSOLE_PERMISSIONS}
    html = render_template(
        "sfsim_setup.html",
        notice=notice,
        error=error,
        failed=failed,
        value=value,
        checked=checked,
        orgs=_views(state),
        app_status=lambda app: _app_status(state, app),
        console_count=lambda user: len(user.effective_permissions() & granted),
        live_tokens=lambda user: len(_live_tokens(state, user_id=user.user_id)),
        org_types=ORG_TYPES,
        licenses=LICENSES,
        scope_choices=SCOPE_CHOICES,
        backup_permissions=[p for p in CONSOLE_PERMISSIONS if p[2] == BACKUP],
        restore_permissions=[p for p in CONSOLE_PERMISSIONS if p[2] == RESTORE],
        default_permissions=set(DEFAULT_PERMISSIONS),
        console_total=len(CONSOLE_PERMISSIONS),
    )
    resp = Response(html, status, content_type="text/html;charset=UTF-8")
    # Passwords, and once a consumer secret, are on the page: never cache it.
    resp.headers["Cache-Control"] = NO_STORE
    return resp


def blueprint(state: SimState) -> Blueprint:
    bp = Blueprint(
        "sfsim_setup", __name__, url_prefix="/_sim/setup", template_folder="templates"
    )

    @bp.get("")
    def page() -> Response:
        with state.lock:
            notice = state.notice(request.args.get("done", ""))
            shown = None
            if notice is not None:
                shown = SetupNotice(
                    notice.message, notice.consumer_key, notice.consumer_secret
                )
                notice.consumer_secret = None  # the secret is shown once
            return _page(state, notice=shown)

    def add(name: str, path: str, handler: Callable[[SimState, Form], SetupNotice]):
        def submit() -> Response:
            form = request.form
            try:
                with state.lock:
                    notice_id = state.add_notice(handler(state, form))
            except (BadInput, NotFound) as exc:
                message = str(exc.args[0] if exc.args else exc)
                with state.lock:
                    return _page(
                        state,
                        error=_friendly(message),
                        failed=name,
                        values=form,
                        status=400,
                    )
            # 303: the browser GETs the page; the outcome travels as an id.
            return redirect(f"/_sim/setup?done={notice_id}#outcome", 303)

        bp.add_url_rule(path, f"submit_{name}", submit, methods=["POST"])

    for name, (path, handler) in FORMS.items():
        add(name, path, handler)
    return bp
