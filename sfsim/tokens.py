"""Token endpoint, revoke and introspect (reference §3, §4, §7.5).

Check order on ``/services/oauth2/token`` (the console's activation probe
depends on it: a bogus refresh token tells the three app states apart):

1. grant type        -> ``unsupported_grant_type``
2. consumer key      -> ``invalid_client_id`` (unknown *or* not yet active)
3. consumer secret   -> ``invalid_client``
4. app blocked       -> ``invalid_grant`` / ``app blocked``
5. the grant itself  -> ``invalid_grant`` / ``redirect_uri_mismatch`` / PKCE /
   ``inactive_user`` / ``inactive_org``
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
from typing import Any

from flask import Response, request

from . import ids, jwt
from .models import REFRESH_SCOPES, AccessToken, App, RefreshToken, User
from .state import BadInput, SimState
from .web import Ctx, client_credentials, json_response, oauth_error, text_response

EXPIRED_TOKEN = "expired access/refresh token"


def signature(secret: str, id_url: str, issued_at: str) -> str:
    """base64 HMAC-SHA256 over ``id + issued_at``, keyed with the secret."""
    mac = hmac.new(
        secret.encode("utf-8"), (id_url + issued_at).encode("utf-8"), "sha256"
    )
    return base64.b64encode(mac.digest()).decode("ascii")


def identity_url(state: SimState, user: User) -> str:
    """`id` URL: on login. for production/developer, test. for sandbox/scratch."""
    org = state.orgs[user.org_id]
    return f"https://{org.identity_host}/id/{org.org_id}/{user.user_id}"


def issue(
    state: SimState,
    app: App,
    user: User,
    scopes: list[str],
    issuer_host: str,
    *,
    nonce: str | None = None,
    parent: RefreshToken | None = None,
    new_refresh: bool = True,
) -> dict[str, Any]:
    """Mint an access token (and maybe a refresh token); return the response.

    `new_refresh` is true for a code exchange (a new approval) and for a
    refresh with rotation; `parent` is the refresh token being used, if any.
    """
    with state.lock:
        org = state.orgs[user.org_id]
        now = state.now()
        issued_at = str(int(now * 1000))  # milliseconds, as a string (obs)
        id_url = identity_url(state, user)
        refresh: RefreshToken | None = None
        if new_refresh and set(scopes) & REFRESH_SCOPES:
            refresh = state.add_refresh_token(app, user, scopes)
            if parent is not None:
                refresh.seq = parent.seq  # rotation keeps the approval's age
        access = AccessToken(
            token=ids.new_access_token(org.org_id),
            consumer_key=app.consumer_key,
            user_id=user.user_id,
            org_id=org.org_id,
            scopes=list(scopes),
            issued_at=now,
            last_used=now,
            refresh_token=(refresh or parent).token if (refresh or parent) else None,
        )
        state.add_access_token(access)
        body: dict[str, Any] = {"access_token": access.token}
        if refresh is not None:
            body["refresh_token"] = refresh.token
        body["signature"] = signature(app.consumer_secret, id_url, issued_at)
        body["scope"] = " ".join(scopes)
        if "openid" in scopes:
            claims: dict[str, Any] = {
                "at_hash": jwt.at_hash(access.token),
                "sub": id_url,
                "aud": app.consumer_key,
                "iss": f"https://{issuer_host}",
                "iat": int(now),
                "exp": int(now) + state.config.id_token_ttl_seconds,
            }
            if nonce:
                claims["nonce"] = nonce
            body["id_token"] = jwt.encode(claims)
        body["instance_url"] = org.url
        body["id"] = id_url
        body["token_type"] = "Bearer"
        body["issued_at"] = issued_at
        # No expires_in: Salesforce never says how long a token lives (obs).
        return body


def _client(state: SimState, grant_type: str) -> App | Response:
    client_id, secret = client_credentials()
    app = state.apps.get(client_id)
    if app is None or not state.app_is_active(app):
        return oauth_error("invalid_client_id", "client identifier invalid")
    # Introspection always needs the secret; the grants follow the app's
    # "Require Secret for ... Flow" settings.
    required = {
        "refresh_token": app.require_secret_refresh,
        "authorization_code": app.require_secret_web_server,
    }.get(grant_type, True)
    if secret is None:
        if required:
            return oauth_error("invalid_client", "invalid client credentials")
    elif not hmac.compare_digest(
        secret.encode("utf-8"), app.consumer_secret.encode("utf-8")
    ):
        return oauth_error("invalid_client", "invalid client credentials")
    return app


def _user_problem(state: SimState, user: User) -> Response | None:
    if not user.active:
        return oauth_error("inactive_user", "user is inactive")
    if not state.orgs[user.org_id].active:
        return oauth_error("inactive_org", "org is locked, closed, or suspended")
    return None


def _exchange_code(ctx: Ctx, app: App) -> Response:
    state = ctx.state
    form = request.form
    redirect_uri = form.get("redirect_uri", "")
    if redirect_uri not in app.callback_urls:
        return oauth_error(
            "redirect_uri_mismatch", "redirect_uri must match configuration"
        )
    code = state.codes.get(form.get("code", ""))
    if code is None or code.consumer_key != app.consumer_key:
        return oauth_error("invalid_grant", "invalid authorization code")
    if code.used or state.now() > code.expires_at:
        return oauth_error("invalid_grant", "expired authorization code")
    # Any attempt that reaches a valid code spends it, so a PKCE failure
    # cannot be retried with another verifier.
    code.used = True
    if code.redirect_uri != redirect_uri:
        return oauth_error(
            "redirect_uri_mismatch", "redirect_uri must match configuration"
        )
    if code.code_challenge:
        # Both a missing and a wrong verifier are ``invalid_grant`` (reference
        # §2: the wire, not the older doc page that says ``invalid_request``).
        verifier = form.get("code_verifier")
        if not verifier:
            return oauth_error("invalid_grant", "invalid code verifier")
        digest = hashlib.sha256(verifier.encode("ascii", "replace")).digest()
        if not hmac.compare_digest(jwt.b64url(digest), code.code_challenge):
            return oauth_error("invalid_grant", "invalid code verifier")
    user = state.users[code.user_id]
    problem = _user_problem(state, user)
    if problem is not None:
        return problem
    body = issue(state, app, user, code.scopes, ctx.host, nonce=code.nonce)
    return json_response(body, no_store=True)


def _refresh(ctx: Ctx, app: App) -> Response:
    state = ctx.state
    rt = state.refresh_tokens.get(request.form.get("refresh_token", ""))
    if rt is None or rt.revoked or rt.consumer_key != app.consumer_key:
        return oauth_error("invalid_grant", EXPIRED_TOKEN)
    user = state.users[rt.user_id]
    problem = _user_problem(state, user)
    if problem is not None:
        return problem
    fault = state.take_instance_url_fault(ctx.host, ctx.path)
    if fault is not None:
        new_host = fault.new_instance_url[8:] if fault.new_instance_url else None
        # If the requested host is taken the org simply stays where it is.
        with contextlib.suppress(BadInput):
            state.switch_domain(user.org_id, new_host)
    if app.rotate_refresh_tokens:
        # The old token dies but its access tokens live on until they expire.
        rt.revoked = True
        rt.revoked_reason = "rotated"
    body = issue(
        state,
        app,
        user,
        rt.scopes,
        ctx.host,
        parent=rt,
        new_refresh=app.rotate_refresh_tokens,
    )
    return json_response(body, no_store=True)


def token(ctx: Ctx) -> Response:
    """``POST /services/oauth2/token``."""
    grant_type = request.form.get("grant_type", "")
    if grant_type not in ("authorization_code", "refresh_token"):
        return oauth_error("unsupported_grant_type", "grant type not supported")
    with ctx.state.lock:
        app = _client(ctx.state, grant_type)
        if isinstance(app, Response):
            return app
        if app.blocked:
            return oauth_error("invalid_grant", "app blocked")
        if grant_type == "authorization_code":
            return _exchange_code(ctx, app)
        return _refresh(ctx, app)


def revoke(ctx: Ctx) -> Response:
    """``POST token=`` or ``GET ?token=``; a refresh token takes its access tokens."""
    value = request.values.get("token", "")
    with ctx.state.lock:
        rt = ctx.state.refresh_tokens.get(value)
        if rt is not None and not rt.revoked:
            ctx.state.revoke_refresh(rt, "revoked by client")
            return text_response("", 200)
        at = ctx.state.access_tokens.get(value)
        if at is not None and not at.revoked:
            at.revoked = True
            return text_response("", 200)
    # jsforce parses this body as form-urlencoded (reference §4).
    return text_response(
        "error=invalid_token&error_description=Invalid+token",
        400,
        "application/x-www-form-urlencoded;charset=UTF-8",
    )


def introspect(ctx: Ctx) -> Response:
    """RFC 7662 introspection; other apps' tokens are simply inactive."""
    state = ctx.state
    with state.lock:
        app = _client(state, "introspect")
        if isinstance(app, Response):
            return app
        value = request.form.get("token", "")
        at = state.access_tokens.get(value)
        rt = state.refresh_tokens.get(value)
        now = state.now()
        timeout = state.config.session_timeout_seconds
        if at is not None and at.consumer_key == app.consumer_key:
            if at.revoked or now - at.last_used > timeout:
                return json_response({"active": False})
            user = state.users[at.user_id]
            return json_response(
                {
                    "active": True,
                    "scope": " ".join(at.scopes),
                    "client_id": app.consumer_key,
                    "username": user.username,
                    "sub": identity_url(state, user),
                    "token_type": "access_token",
                    "exp": int(at.last_used + timeout),
                    "iat": int(at.issued_at),
                    "nbf": int(at.issued_at),
                }
            )
        if rt is not None and rt.consumer_key == app.consumer_key and not rt.revoked:
            user = state.users[rt.user_id]
            return json_response(
                {
                    "active": True,
                    "scope": " ".join(rt.scopes),
                    "client_id": app.consumer_key,
                    "username": user.username,
                    "sub": identity_url(state, user),
                    "token_type": "refresh_token",
                    "iat": int(rt.created_at),
                    "nbf": int(rt.created_at),
                }
            )
        return json_response({"active": False})
