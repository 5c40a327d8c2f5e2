"""OAuth 2.0 web-server flow with PKCE, and the identity endpoints.

Authorize URL, code exchange, refresh, revoke, the activation probe of new
app credentials, the identity URL, OpenID Connect UserInfo and the JWKS.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
import time
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import requests
from django.views.decorators.debug import sensitive_variables
from requests_oauthlib import OAuth2Session

from .errors import (
    AccessDenied,
    CredentialsNotActive,
    InactiveOrg,
    InactiveUser,
    InvalidClient,
    InvalidClientSecret,
    InvalidGrant,
    MalformedResponse,
    MissingScope,
    OrgMismatch,
    PkceError,
    RateLimited,
    RedirectUriMismatch,
    SalesforceError,
)
from .results import ActivationProbe, AuthorizationRequest, Identity, TokenSet
from .transport import (
    CODE_RE,
    RetryPolicy,
    api_url,
    get_json,
    login_base,
    looks_json,
    parse_json,
    raise_for_transport,
    safe_text,
    send,
    wire_url,
)
from .urls import InvalidSalesforceId, to_18

_PROBE_REFRESH_TOKEN = "vbsf-activation-probe-not-a-real-token"
_ID_PATH_RE = re.compile(r"^/id/(00D[a-zA-Z0-9]{12,15})/(005[a-zA-Z0-9]{12,15})$")


# --- Error mapping ----------------------------------------------------------


def _oauth_error_fields(
    response: requests.Response, hide: Iterable[str] = ()
) -> tuple[str, str]:
    """``(error, error_description)`` from a JSON or form-encoded body.

    Values in ``hide`` (what was just sent) are cut from the description in
    case a server echoes them.
    """
    payload = parse_json(response) if looks_json(response) else None
    if not isinstance(payload, dict):
        # Revoke and authorize errors come form-encoded.
        payload = dict(parse_qsl(response.text.strip()))
    error = str(payload.get("error", ""))
    error = error if CODE_RE.match(error) else "unknown"
    description = safe_text(payload.get("error_description"))
    for value in hide:
        description = description.replace(value, "[redacted]") if value else description
    return error, description


_OAUTH_ERRORS: dict[str, type[SalesforceError]] = {
    "invalid_client_id": CredentialsNotActive,
    "invalid_client": InvalidClientSecret,
    "invalid_grant": InvalidGrant,
    "OAUTH_APP_BLOCKED": InvalidGrant,
    "OAUTH_APPROVAL_ERROR_GENERIC": InvalidGrant,
    "inactive_user": InactiveUser,
    "inactive_org": InactiveOrg,
    "redirect_uri_mismatch": RedirectUriMismatch,
    "rate_limit_exceeded": RateLimited,
    "access_denied": AccessDenied,
}


def _oauth_error(
    error: str, description: str, *, at_authorize: bool = False
) -> SalesforceError:
    kwargs: dict[str, Any] = {"code": error, "description": description}
    if error == "invalid_client_id" and at_authorize:
        return InvalidClient(**kwargs)
    if error in _OAUTH_ERRORS:
        return _OAUTH_ERRORS[error](**kwargs)
    if error == "invalid_scope":
        return MissingScope((), **kwargs)
    if error == "invalid_request" and re.search(r"challenge|verifier", description):
        return PkceError(**kwargs)
    return SalesforceError(permanent=True, **kwargs)


def error_from_callback(*, error: str, description: str = "") -> SalesforceError:
    """Map the ``error``/``error_description`` of an OAuth callback."""
    code = error if CODE_RE.match(error or "") else "unknown"
    return _oauth_error(code, safe_text(description), at_authorize=True)


# --- Authorization ----------------------------------------------------------


def new_pkce_pair() -> tuple[str, str]:
    """Return ``(code_verifier, code_challenge)`` for PKCE S256."""
    verifier = secrets.token_urlsafe(64)  # 86 characters, within 43-128
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return verifier, base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def build_authorize_url(
    *,
    login_url: str,
    client_id: str,
    redirect_uri: str,
    scopes: Sequence[str],
    state: str,
    code_challenge: str,
    prompt: str | None = None,
    nonce: str | None = None,
    login_hint: str | None = None,
) -> str:
    """Return the authorize URL of the web-server flow, simulator-mapped."""
    endpoint = f"{login_base(login_url)}/services/oauth2/authorize"
    oauth = OAuth2Session(client_id, redirect_uri=redirect_uri, scope=list(scopes))
    url, _ = oauth.authorization_url(
        endpoint,
        state=state,
        code_challenge=code_challenge,
        code_challenge_method="S256",
        prompt=prompt,
        nonce=nonce,
        login_hint=login_hint,
    )
    return wire_url(url)


def start_authorization(
    *,
    login_url: str,
    client_id: str,
    redirect_uri: str,
    scopes: Sequence[str],
    prompt: str | None = "login",
    login_hint: str | None = None,
    with_nonce: bool = False,
) -> AuthorizationRequest:
    """Create a fresh state, PKCE pair (and nonce) and the authorize URL."""
    state, (verifier, challenge) = secrets.token_urlsafe(32), new_pkce_pair()
    nonce = secrets.token_urlsafe(16) if with_nonce else None
    url = build_authorize_url(
        login_url=login_url,
        client_id=client_id,
        redirect_uri=redirect_uri,
        scopes=scopes,
        state=state,
        code_challenge=challenge,
        prompt=prompt,
        nonce=nonce,
        login_hint=login_hint,
    )
    return AuthorizationRequest(
        url=url, state=state, code_verifier=verifier, nonce=nonce
    )


# --- Tokens -----------------------------------------------------------------


def _missing_scopes(granted: frozenset[str], required: Iterable[str]) -> set[str]:
    offline = {"refresh_token", "offline_access"}
    available = granted | offline if granted & offline else granted
    missing = {scope for scope in required if scope not in available}
    # "full" covers every scope except the refresh token.
    return missing & offline if "full" in granted else missing


@sensitive_variables()
def _token_set(
    payload: dict[str, Any],
    *,
    client_secret: str,
    expected_org_id: str | None,
    required_scopes: Iterable[str],
) -> TokenSet:
    raw_id, raw_issued = payload.get("id"), payload.get("issued_at")
    strings = (payload.get("access_token"), payload.get("instance_url"), raw_id)
    if not all(isinstance(value, str) and value for value in strings):
        raise MalformedResponse()
    instance = api_url(payload["instance_url"], what="instance URL")
    identity = api_url(raw_id, what="identity URL")
    # issued_at is milliseconds since the epoch, as a string.
    issued_ms = time.time_ns() // 10**6 if raw_issued is None else raw_issued
    try:
        match = _ID_PATH_RE.match(urlsplit(identity).path)
        org_id, user_id = to_18(match[1]), to_18(match[2])  # type: ignore[index]
        issued_at = datetime.fromtimestamp(int(issued_ms) / 1000, tz=UTC)
    except (TypeError, ValueError, OverflowError):  # incl. InvalidSalesforceId
        raise MalformedResponse() from None
    if (signature := payload.get("signature")) is not None:
        # base64(HMAC-SHA256(client secret, id + issued_at))
        message = f"{raw_id}{raw_issued or ''}".encode()
        digest = hmac.new(client_secret.encode(), message, hashlib.sha256).digest()
        if not hmac.compare_digest(base64.b64encode(digest).decode(), str(signature)):
            raise MalformedResponse("The Salesforce token response signature is wrong.")
    if expected_org_id is not None and to_18(expected_org_id) != org_id:
        raise OrgMismatch(expected_org_id=to_18(expected_org_id), actual_org_id=org_id)
    scopes = frozenset(str(payload.get("scope") or "").split())
    if missing := _missing_scopes(scopes, required_scopes):
        raise MissingScope(missing)
    refresh_token, id_token = payload.get("refresh_token"), payload.get("id_token")
    return TokenSet(
        access_token=payload["access_token"],
        refresh_token=refresh_token if isinstance(refresh_token, str) else None,
        instance_url=instance,
        identity_url=identity,
        org_id=org_id,
        user_id=user_id,
        scopes=scopes,
        issued_at=issued_at,
        id_token=id_token if isinstance(id_token, str) else None,
        signature=signature,
    )


@sensitive_variables()
def _token_post(
    login_url: str, form: dict[str, str], *, retry: RetryPolicy
) -> dict[str, Any]:
    url = f"{login_base(login_url)}/services/oauth2/token"
    headers = {"Accept": "application/json"}
    response = send("POST", url, data=form, retry=retry, headers=headers)
    if response.status_code != 200:
        raise_for_transport(response)
        sent = [v for k, v in form.items() if k not in ("grant_type", "redirect_uri")]
        raise _oauth_error(*_oauth_error_fields(response, hide=sent))
    return parse_json(response, dict)  # type: ignore[no-any-return]


@sensitive_variables()
def exchange_code(
    *,
    login_url: str,
    client_id: str,
    client_secret: str,
    code: str,
    redirect_uri: str,
    code_verifier: str,
    expected_org_id: str | None = None,
    required_scopes: Iterable[str] = (),
) -> TokenSet:
    """Exchange an authorization code for tokens; never retried (codes are
    single-use). Validates ``instance_url``, ``id`` and ``signature`` and,
    when given, the org (OrgMismatch) and granted scopes (MissingScope)."""
    form = {"grant_type": "authorization_code", "code": code, "client_id": client_id}
    form |= {"client_secret": client_secret, "redirect_uri": redirect_uri}
    form["code_verifier"] = code_verifier
    payload = _token_post(login_url, form, retry="none")
    return _token_set(
        payload,
        client_secret=client_secret,
        expected_org_id=expected_org_id,
        required_scopes=required_scopes,
    )


@sensitive_variables()
def refresh(
    *,
    login_url: str,
    client_id: str,
    client_secret: str,
    refresh_token: str,
    expected_org_id: str | None = None,
    required_scopes: Iterable[str] = (),
) -> TokenSet:
    """Get a new access token. The result's ``refresh_token`` is ``None``
    unless Salesforce rotated it; then the old one is dead: persist it."""
    form = {"grant_type": "refresh_token", "refresh_token": refresh_token}
    form |= {"client_id": client_id, "client_secret": client_secret}
    payload = _token_post(login_url, form, retry="unsent")
    return _token_set(
        payload,
        client_secret=client_secret,
        expected_org_id=expected_org_id,
        required_scopes=required_scopes,
    )


@sensitive_variables()
def revoke(*, login_url: str, token: str) -> None:
    """Revoke a refresh or access token; a token already dead is success."""
    url = f"{login_base(login_url)}/services/oauth2/revoke"
    response = send("POST", url, data={"token": token})
    if response.status_code == 200:
        return
    raise_for_transport(response)
    error, description = _oauth_error_fields(response, hide=[token])
    if error not in ("invalid_token", "unsupported_token_type"):
        raise _oauth_error(error, description)


@sensitive_variables()
def probe_activation(
    *, login_url: str, client_id: str, client_secret: str
) -> ActivationProbe:
    """Ask whether Salesforce accepts the consumer key and secret yet.

    Sends a refresh grant with a made-up token: ``invalid_client_id`` means
    the key is not active (yet), ``invalid_client`` a wrong secret, and
    ``invalid_grant`` that key and secret passed. An app with "Require
    Secret for Refresh Token Flow" off cannot report a wrong secret.
    """
    form = {"grant_type": "refresh_token", "refresh_token": _PROBE_REFRESH_TOKEN}
    form |= {"client_id": client_id, "client_secret": client_secret}
    try:
        _token_post(login_url, form, retry="all")
    except CredentialsNotActive:
        return ActivationProbe.NOT_ACTIVE
    except InvalidClientSecret:
        return ActivationProbe.WRONG_SECRET
    except InvalidGrant:
        return ActivationProbe.ACTIVE
    # A 200 for a made-up token means a broken or hostile server.
    raise MalformedResponse()


# --- Identity ---------------------------------------------------------------


def get_identity(*, identity_url: str, access_token: str) -> Identity:
    """Read the identity URL (403 ``Bad_OAuth_Token`` → SessionInvalid)."""
    url = api_url(identity_url, what="identity URL")
    data = get_json(url, access_token=access_token, kind=dict)
    try:
        user_id, org_id = to_18(data["user_id"]), to_18(data["organization_id"])
    except (KeyError, InvalidSalesforceId):
        raise MalformedResponse() from None
    return Identity(
        user_id=user_id,
        org_id=org_id,
        username=str(data.get("username") or ""),
        display_name=str(data.get("display_name") or ""),
        email=str(data.get("email") or ""),
        active=data.get("active") is True,
        user_type=str(data.get("user_type") or ""),
    )


def userinfo(*, login_url: str, access_token: str) -> dict[str, Any]:
    """Return the OpenID Connect UserInfo document."""
    url = f"{login_base(login_url)}/services/oauth2/userinfo"
    return get_json(url, access_token=access_token, kind=dict)  # type: ignore[no-any-return]


def fetch_jwks(*, login_url: str) -> dict[str, Any]:
    """Return the JWKS that verifies the login host's id_tokens (``/id/keys``)."""
    url = f"{login_base(login_url)}/id/keys"
    jwks = get_json(url, kind=dict)
    if not isinstance(jwks.get("keys"), list):
        raise MalformedResponse()
    return jwks  # type: ignore[no-any-return]
