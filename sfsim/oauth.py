"""The OAuth web-server flow's browser half: ``/services/oauth2/authorize``.

GET validates the request and shows the login page; the login form and the
"Allow Access?" page POST back to the same URL with every authorize
parameter in hidden fields.  Errors that cannot be trusted to the callback
(bad client_id, redirect_uri mismatch, missing PKCE challenge) are answered
here with bare 400 bodies; the others are redirected to the callback with
``error``, ``error_description`` and ``state`` (reference §2).

There is no browser session: every authorize shows the login page, as with
``prompt=login``.  Approval is remembered per user and app.
"""

from __future__ import annotations

import hmac
from html import escape

from flask import Response, request
from werkzeug.datastructures import MultiDict

from . import ids
from .models import (
    KNOWN_SCOPES,
    LOGIN_HOST,
    App,
    AuthCode,
    LoginTicket,
    User,
    is_sandbox_type,
)
from .web import Ctx, callback_redirect, text_response

INVALID_CLIENT_ID = (
    "error=invalid_client_id&error_description=client%20identifier%20invalid"
)
REDIRECT_MISMATCH = "error=redirect_uri_mismatch&error_description=redirect_uri%20must%20match%20configuration"
MISSING_CHALLENGE = (
    "error=invalid_request&error_description=missing required code challenge"
)
LOGIN_ERROR = (
    "Please check your username and password. If you still can't log in, "
    "contact your Salesforce administrator."
)
# Parameters carried from the authorize URL through the login and approval
# forms.  `login_hint` only pre-fills the username.
CARRIED = (
    "response_type",
    "client_id",
    "redirect_uri",
    "scope",
    "state",
    "code_challenge",
    "code_challenge_method",
    "prompt",
    "nonce",
    "display",
    "immediate",
    "login_hint",
)
SCOPE_TEXT = {
    "api": "Manage user data via APIs",
    "full": "Full access",
    "refresh_token": "Perform requests at any time",
    "offline_access": "Perform requests at any time",
    "openid": "Access unique user identifiers",
    "id": "Access the identity URL service",
    "web": "Manage user data via Web browsers",
    "profile": "Access your basic information",
    "email": "Access your email address",
}

_STYLE = """
body{font-family:Salesforce Sans,Arial,sans-serif;background:#f3f3f3;margin:0}
main{max-width:380px;margin:48px auto;background:#fff;border:1px solid #d8dde6;
border-radius:4px;padding:24px}
h1{font-size:20px;font-weight:400;margin:0 0 16px}
.logo{color:#00a1e0;font-size:28px;font-weight:700;text-align:center;margin:32px 0 0}
.host{text-align:center;color:#54698d;font-size:12px;margin:4px 0 0}
label{display:block;font-size:13px;color:#54698d;margin:12px 0 4px}
input[type=email],input[type=password]{width:100%;box-sizing:border-box;padding:10px;
border:1px solid #d8dde6;border-radius:4px;font-size:14px}
input[type=submit]{width:100%;margin-top:20px;padding:12px;border:0;border-radius:4px;
background:#0070d2;color:#fff;font-size:14px;cursor:pointer}
input[type=submit].deny{background:#fff;color:#0070d2;border:1px solid #d8dde6}
.error{color:#c23934;font-size:13px;border:1px solid #c23934;padding:8px;margin:8px 0}
ul{font-size:14px}
"""


def _page(title: str, ctx: Ctx, body: str) -> Response:
    html = (
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
        f"<title>{escape(title)}</title><style>{_STYLE}</style></head><body>"
        "<div class='logo'>salesforce</div>"
        f"<div class='host'>{escape(ctx.host)} (sfsim)</div>"
        f"<main>{body}</main></body></html>"
    )
    resp = text_response(html, 200)
    resp.headers["Cache-Control"] = "no-store"
    return resp


def _hidden(params: MultiDict[str, str], skip: tuple[str, ...] = ()) -> str:
    return "".join(
        f"<input type='hidden' name='{name}' value='{escape(params[name])}'>"
        for name in CARRIED
        if name in params and name not in skip
    )


def _login_page(ctx: Ctx, params: MultiDict[str, str], error: str | None) -> Response:
    username = params.get("username") or params.get("login_hint") or ""
    who = f" to {escape(ctx.org.name)}" if ctx.org else ""
    err = (
        f"<div id='error' class='error' role='alert'>{escape(error)}</div>"
        if error
        else ""
    )
    # `action='authorize'` is relative, so the form posts back to this same
    # simulator URL whatever prefix the console maps Salesforce hosts to.
    body = (
        f"<h1>Log In{who}</h1>{err}"
        "<form method='post' action='authorize' id='login_form'>"
        "<input type='hidden' name='sfsim_step' value='login'>"
        f"{_hidden(params, skip=('login_hint',))}"
        "<label for='username'>Username</label>"
        f"<input type='email' id='username' name='username' value='{escape(username)}'"
        " autocomplete='username' required>"
        "<label for='password'>Password</label>"
        "<input type='password' id='password' name='pw' autocomplete='current-password'>"
        "<input type='submit' id='Login' name='Login' value='Log In'>"
        "</form>"
    )
    return _page("Login | Salesforce", ctx, body)


def _approval_page(
    ctx: Ctx, params: MultiDict[str, str], app: App, user: User, ticket: str
) -> Response:
    scopes = params.get("scope", "").split() or app.scopes
    items = "".join(
        f"<li>{escape(SCOPE_TEXT.get(s, s))} ({escape(s)})</li>"
        for s in dict.fromkeys(scopes)
    )
    body = (
        "<h1>Allow Access?</h1>"
        f"<p><strong>{escape(app.name)}</strong> is asking to:</p><ul>{items}</ul>"
        f"<p>Do you want to allow access for {escape(user.username)}?</p>"
        "<form method='post' action='authorize' id='approval_form'>"
        "<input type='hidden' name='sfsim_step' value='approve'>"
        f"<input type='hidden' name='sfsim_ticket' value='{escape(ticket)}'>"
        f"{_hidden(params)}"
        "<input type='submit' name='decision' value='Allow'>"
        "<input type='submit' class='deny' name='decision' value='Deny'>"
        "</form>"
    )
    return _page("Allow Access? | Salesforce", ctx, body)


def _may_log_in_here(ctx: Ctx, user: User) -> bool:
    """Host rule, only enforced with config `strict_login_hosts`."""
    if not ctx.state.config.strict_login_hosts:
        return True
    org = ctx.state.orgs[user.org_id]
    if ctx.kind == "mydomain":
        return ctx.org is not None and ctx.org.org_id == org.org_id
    return is_sandbox_type(org.org_type) == (ctx.host != LOGIN_HOST)


def _issue_code(
    ctx: Ctx, app: App, user: User, params: MultiDict[str, str], scopes: list[str]
) -> Response:
    state = ctx.state
    now = state.now()
    # Drop stale codes and tickets so a long demo does not grow without bound.
    for code, item in list(state.codes.items()):
        if item.expires_at < now - 3600:
            del state.codes[code]
    for key, tk in list(state.tickets.items()):
        if tk.expires_at < now:
            del state.tickets[key]
    code = ids.new_auth_code()
    state.codes[code] = AuthCode(
        code=code,
        consumer_key=app.consumer_key,
        redirect_uri=params["redirect_uri"],
        code_challenge=params.get("code_challenge") or None,
        user_id=user.user_id,
        scopes=scopes,
        nonce=params.get("nonce") or None,
        expires_at=now + state.config.code_ttl_seconds,
    )
    return callback_redirect(
        params["redirect_uri"], {"code": code, "state": params.get("state")}
    )


def granted_scopes(app: App, requested: list[str]) -> list[str] | None:
    """Requested scopes the app allows (or the app's scopes if none asked).

    None means a requested scope is not a Salesforce scope at all.
    """
    if not requested:
        return list(app.scopes)
    if any(s not in KNOWN_SCOPES for s in requested):
        return None
    allowed = app.allowed_scopes()
    return [s for s in dict.fromkeys(requested) if s in allowed]


def authorize(ctx: Ctx) -> Response:
    """GET shows the login page; POST handles the login and approval forms."""
    state = ctx.state
    params = request.args if request.method == "GET" else request.form
    app = state.apps.get(params.get("client_id", ""))
    if app is None or not state.app_is_active(app):
        return text_response(INVALID_CLIENT_ID, 400)
    redirect_uri = params.get("redirect_uri", "")
    if redirect_uri not in app.callback_urls:  # exact, character for character
        return text_response(REDIRECT_MISMATCH, 400)
    if app.require_pkce and not params.get("code_challenge"):
        resp = Response(MISSING_CHALLENGE, 400)
        resp.headers["Content-Type"] = ""  # really empty: browsers save a file
        return resp

    def fail(error: str, description: str) -> Response:
        return callback_redirect(
            redirect_uri,
            {
                "error": error,
                "error_description": description,
                "state": params.get("state"),
            },
        )

    if params.get("response_type") != "code":
        return fail("unsupported_response_type", "response type not supported")
    if params.get("code_challenge") and params.get("code_challenge_method") not in (
        None,
        "",
        "S256",
    ):
        return fail("invalid_request", "invalid code challenge method")
    scopes = granted_scopes(app, params.get("scope", "").split())
    if not scopes:
        return fail("invalid_scope", "the requested scope is not allowed")
    if app.blocked:
        return fail("OAUTH_APP_BLOCKED", "this app is blocked by admin")
    if params.get("immediate") == "true":
        # No browser session exists in the simulator, so immediate never works.
        return fail("immediate_unsuccessful", "user is not logged in")
    if request.method == "GET":
        return _login_page(ctx, params, None)

    if params.get("sfsim_step") == "approve":
        ticket = state.tickets.pop(params.get("sfsim_ticket", ""), None)
        if (
            ticket is None
            or ticket.expires_at < state.now()
            or ticket.consumer_key != app.consumer_key
            or ticket.redirect_uri != redirect_uri
        ):
            return _login_page(ctx, params, "Your session has expired. Please log in.")
        user = state.users[ticket.user_id]
        if params.get("decision") != "Allow":
            return fail("access_denied", "end-user denied authorization")
        state.approvals.add((user.user_id, app.consumer_key))
        return _issue_code(ctx, app, user, params, scopes)

    user = state.find_login_user(params.get("username", ""))
    password_ok = user is not None and hmac.compare_digest(
        user.password.encode("utf-8"), params.get("pw", "").encode("utf-8")
    )
    # Wrong password, unknown user, inactive user and wrong host all get the
    # same message, as on the real login page (no account enumeration).
    if (
        user is None
        or not password_ok
        or not user.active
        or not _may_log_in_here(ctx, user)
    ):
        return _login_page(ctx, params, LOGIN_ERROR)
    prompts = params.get("prompt", "").split()
    if (user.user_id, app.consumer_key) in state.approvals and "consent" not in prompts:
        return _issue_code(ctx, app, user, params, scopes)
    ticket = LoginTicket(
        ticket=ids.new_opaque(),
        user_id=user.user_id,
        consumer_key=app.consumer_key,
        redirect_uri=redirect_uri,
        expires_at=state.now() + state.config.code_ttl_seconds,
    )
    state.tickets[ticket.ticket] = ticket
    return _approval_page(ctx, params, app, user, ticket.ticket)
