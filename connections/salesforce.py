"""The console's only Salesforce client: OAuth web-server flow and REST calls.

No other module imports ``requests`` or ``requests_oauthlib``. Rules:

* **Allow-listed URLs only.** Login, instance and identity URLs, including
  those Salesforce returns, pass :mod:`connections.salesforce_urls` before
  any request (R34, R37). On real networks the connection factory also
  refuses hosts that resolve to non-public addresses (R35).
* **Simulator mapping after validation.** With ``SALESFORCE_SIMULATOR_URL``
  set, :func:`wire_url` maps ``https://<host>/<path>`` to
  ``<simulator>/h/<host>/<path>`` for server calls and browser redirects.
* **Timeouts on every call; redirects reported, never followed** (R36).
* **Bounded retries** (``SALESFORCE_MAX_RETRIES``, exponential backoff with
  full jitter from ``SALESFORCE_RETRY_BACKOFF``) for connection errors,
  timeouts, 429 and 502/503/504. Codes are single-use, so a code exchange
  is never retried; a refresh is retried only when Salesforce cannot have
  processed it, because a rotated refresh token must not be replayed.
* **Typed errors:** :class:`SalesforceError` subclasses with ``code``,
  ``permanent`` and a user-safe ``message`` that never carries tokens,
  codes, secrets or response bodies.
* **Logging** (``vbsf.salesforce``): method, host, path, status, duration;
  never query strings, headers, bodies or secrets.
"""

from __future__ import annotations

import base64
import enum
import hashlib
import hmac
import logging
import random
import re
import secrets
import socket
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal
from urllib.parse import parse_qsl, urlencode, urlsplit

import requests
from django.conf import settings
from django.views.decorators.debug import sensitive_variables
from requests.adapters import HTTPAdapter
from requests_oauthlib import OAuth2Session
from urllib3 import HTTPSConnectionPool
from urllib3.connection import HTTPSConnection
from urllib3.exceptions import (
    ConnectTimeoutError,
    NameResolutionError,
    NewConnectionError,
)

from connections.salesforce_urls import (
    InvalidSalesforceId,
    InvalidSalesforceUrl,
    is_allowed_salesforce_url,
    is_public_address,
    normalize_org_url,
    to_18,
    validate_server_url,
)

logger = logging.getLogger("vbsf.salesforce")

USER_AGENT = "vbsf-console"
# A longer Retry-After is left to the caller (a Celery countdown) instead
# of holding a worker.
MAX_RETRY_AFTER_SECONDS = 10.0
MAX_QUERY_PAGES = 10
_RETRY_STATUSES = frozenset({429, 502, 503, 504})
_PROBE_REFRESH_TOKEN = "vbsf-activation-probe-not-a-real-token"
_ID_PATH_RE = re.compile(r"^/id/(00D[a-zA-Z0-9]{12,15})/(005[a-zA-Z0-9]{12,15})$")
_NEXT_RECORDS_RE = re.compile(r"^/services/data/v\d+\.\d+/query/[A-Za-z0-9-]+$")
_FIELD_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")
_CODE_RE = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
RetryPolicy = Literal["all", "unsent", "none"]


# --- Errors -----------------------------------------------------------------


class SalesforceError(Exception):
    """Base of the client's errors; ``message`` is safe to show to users."""

    code = "salesforce_error"
    permanent = False
    default_message = "Salesforce returned an unexpected error."

    def __init_subclass__(cls, code: str = "", permanent: bool | None = None) -> None:
        cls.code = code or cls.code
        cls.permanent = cls.permanent if permanent is None else permanent

    def __init__(
        self,
        message: str | None = None,
        *,
        code: str | None = None,
        permanent: bool | None = None,
        description: str = "",
    ) -> None:
        self.message = message or self.default_message
        self.code = code or type(self).code
        self.permanent = type(self).permanent if permanent is None else permanent
        # Salesforce's short error text (error_description or REST message),
        # never a body that could echo a token.
        self.description = description
        super().__init__(self.message)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(code={self.code!r}, permanent={self.permanent})"


class CredentialsNotActive(SalesforceError, code="invalid_client_id"):
    default_message = (
        "Salesforce does not accept this consumer key yet. New or changed apps "
        "take up to 10 minutes to activate; if this persists, check the key."
    )


class InvalidClient(SalesforceError, code="invalid_client_id", permanent=True):
    default_message = "Salesforce does not recognize this consumer key."


class InvalidClientSecret(SalesforceError, code="invalid_client", permanent=True):
    default_message = "Salesforce rejected the consumer secret. Enter it again."


class InvalidGrant(SalesforceError, code="invalid_grant", permanent=True):
    default_message = "Salesforce no longer accepts this authorization; re-authorize."

    def __init__(self, message: str | None = None, **kwargs: Any) -> None:
        if message is None and kwargs.get("description"):
            message = (
                "Salesforce no longer accepts this authorization "
                f"({kwargs['description']}); re-authorize the connection."
            )
        super().__init__(message, **kwargs)


class InactiveUser(SalesforceError, code="inactive_user", permanent=True):
    default_message = "The Salesforce user of this connection is inactive."


class InactiveOrg(SalesforceError, code="inactive_org", permanent=True):
    default_message = "The Salesforce org is locked, closed or suspended."


class RedirectUriMismatch(
    SalesforceError, code="redirect_uri_mismatch", permanent=True
):
    default_message = (
        "The callback URL is not registered in the Salesforce app exactly as "
        "the console shows it."
    )


class PkceError(SalesforceError, code="invalid_request", permanent=True):
    default_message = (
        "Salesforce rejected the PKCE code verifier. Start the login again."
    )


class AccessDenied(SalesforceError, code="access_denied", permanent=True):
    default_message = "The authorization was cancelled at Salesforce."


class OrgMismatch(SalesforceError, code="org_mismatch", permanent=True):
    default_message = "These credentials belong to another Salesforce org."

    def __init__(self, *, expected_org_id: str, actual_org_id: str) -> None:
        self.expected_org_id, self.actual_org_id = expected_org_id, actual_org_id
        super().__init__(
            f"These credentials belong to Salesforce org {actual_org_id}, "
            f"not to org {expected_org_id}."
        )


class MissingScope(SalesforceError, code="missing_scope", permanent=True):
    default_message = "The Salesforce app was not granted the required OAuth scopes."

    def __init__(self, missing: Iterable[str], **kwargs: Any) -> None:
        self.missing = frozenset(missing)
        names = ", ".join(sorted(self.missing))
        message = f"The Salesforce app was not granted the OAuth scopes: {names}."
        super().__init__(message if names else None, **kwargs)


class PermissionMissing(SalesforceError, code="API_DISABLED_FOR_ORG", permanent=True):
    default_message = "API access is disabled for this Salesforce org or user."


class SessionInvalid(SalesforceError, code="INVALID_SESSION_ID"):
    default_message = "The Salesforce session expired or is invalid."


class RateLimited(SalesforceError, code="REQUEST_LIMIT_EXCEEDED"):
    default_message = "Salesforce API limits are used up; try again later."

    def __init__(self, message: str | None = None, **kwargs: Any) -> None:
        self.retry_after: float | None = kwargs.pop("retry_after", None)
        super().__init__(message, **kwargs)


class HostUnreachable(SalesforceError, code="host_unreachable"):
    default_message = (
        "Salesforce could not be reached. Check that the org exists and that "
        "its URL is right."
    )


class TransientError(SalesforceError, code="transient"):
    default_message = "Salesforce is temporarily unavailable; try again shortly."


class UnsafeUrl(SalesforceError, code="unsafe_url", permanent=True):
    default_message = "The address is not an allowed Salesforce host."


class MalformedResponse(SalesforceError, code="malformed_response"):
    default_message = "Salesforce sent a response the console could not read."


class InvalidQuery(SalesforceError, code="INVALID_FIELD", permanent=True):
    default_message = "Salesforce rejected a query of the console."


# --- Results ----------------------------------------------------------------


@dataclass(frozen=True)
class TokenSet:
    """A validated token response. Token fields are hidden from ``repr``."""

    access_token: str = field(repr=False)
    refresh_token: str | None = field(repr=False)
    instance_url: str
    identity_url: str
    org_id: str
    user_id: str
    scopes: frozenset[str]
    issued_at: datetime
    id_token: str | None = field(default=None, repr=False)
    signature: str | None = field(default=None, repr=False)


@dataclass(frozen=True)
class Identity:
    """The identity URL's answer about the connected user."""

    user_id: str
    org_id: str
    username: str
    display_name: str
    email: str
    active: bool
    user_type: str


class ActivationProbe(enum.StrEnum):
    """What :func:`probe_activation` learned about new app credentials."""

    ACTIVE = "active"
    NOT_ACTIVE = "not_active"
    WRONG_SECRET = "wrong_secret"


@dataclass(frozen=True)
class AuthorizationRequest:
    """Where to send the browser, and what to keep server-side for the
    callback (state, PKCE verifier, nonce). Nothing shows in ``repr``."""

    url: str = field(repr=False)
    state: str = field(repr=False)
    code_verifier: str = field(repr=False)
    nonce: str | None = field(default=None, repr=False)


class PermissionMap(dict[str, bool]):
    """Field → granted; ``unknown_fields`` do not exist in the org."""

    unknown_fields: frozenset[str] = frozenset()


# --- Transport --------------------------------------------------------------


def _setting(name: str, default: Any) -> Any:
    return getattr(settings, name, default)


def _simulator() -> str:
    return str(_setting("SALESFORCE_SIMULATOR_URL", "") or "").rstrip("/")


def wire_url(url: str) -> str:
    """Map an already validated Salesforce URL onto the simulator, if set."""
    parts = urlsplit(url)
    if parts.scheme != "https" or not parts.hostname:
        raise UnsafeUrl()
    if not (simulator := _simulator()):
        return url
    query = f"?{parts.query}" if parts.query else ""
    return f"{simulator}/h/{parts.hostname}{parts.path or '/'}{query}"


class _BlockedAddress(NewConnectionError):
    pass


class _GuardedHTTPSConnection(HTTPSConnection):
    """Connects only to public addresses, checked after DNS (R35).

    The check runs on the very addresses used, which defeats DNS rebinding;
    TLS still verifies the certificate against the host name.
    """

    def _new_conn(self) -> socket.socket:
        name = self._dns_host
        try:
            infos = socket.getaddrinfo(name, self.port, type=socket.SOCK_STREAM)
        except socket.gaierror as exc:
            raise NameResolutionError(self.host, self, exc) from exc
        addresses = [str(info[4][0]) for info in infos]
        if not addresses or not all(map(is_public_address, addresses)):
            raise _BlockedAddress(self, "host resolves to a non-public address")
        # Like urllib3 itself, try each address in turn; never re-resolve.
        for address in addresses:
            self._dns_host = address
            try:
                return super()._new_conn()
            except ConnectTimeoutError as exc:  # NewConnectionError included
                error = exc
            finally:
                self._dns_host = name
        raise error


class _GuardedHTTPSPool(HTTPSConnectionPool):
    ConnectionCls = _GuardedHTTPSConnection


class _GuardedAdapter(HTTPAdapter):
    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        pools = self.poolmanager.pool_classes_by_scheme
        self.poolmanager.pool_classes_by_scheme = {**pools, "https": _GuardedHTTPSPool}


class _SalesforceSession(requests.Session):
    """A session that never follows redirects and always has timeouts."""

    def send(
        self, request: requests.PreparedRequest, **kwargs: Any
    ) -> requests.Response:
        # Session.request() and direct send() calls both pass through here.
        kwargs["allow_redirects"] = False
        if kwargs.get("timeout") is None:
            connect = float(_setting("SALESFORCE_CONNECT_TIMEOUT", 5.0))
            read = float(_setting("SALESFORCE_READ_TIMEOUT", 20.0))
            kwargs["timeout"] = (connect, read)
        return super().send(request, **kwargs)


def new_session() -> requests.Session:
    """Return a session for Salesforce calls: no redirects, timeouts, UA.

    Environment proxies and ``.netrc`` are ignored so that nothing outside
    the settings can redirect traffic or add credentials.
    """
    session = _SalesforceSession()
    session.trust_env = False
    session.headers["User-Agent"] = USER_AGENT
    if not _simulator():
        session.mount("https://", _GuardedAdapter())
    return session


_local = threading.local()


def _thread_session() -> requests.Session:
    """The calling thread's session, rebuilt when the simulator setting
    changes. Reusing it keeps connections alive between calls, which matters
    when a worker checks thousands of orgs."""
    key = _simulator()
    cached = getattr(_local, "session", None)
    if cached is None or _local.key != key:
        if cached is not None:
            cached.close()
        _local.session, _local.key = new_session(), key
    return _local.session


def _retry_after(response: requests.Response) -> float:
    try:
        return max(0.0, float(response.headers.get("Retry-After", "0")))
    except ValueError:
        return 0.0


def _log(method: str, url: str, outcome: object, started: float, attempt: int) -> None:
    parts, elapsed_ms = urlsplit(url), (time.monotonic() - started) * 1000
    logger.info(
        "salesforce %s %s%s -> %s in %.0f ms (attempt %d)",
        method,
        parts.hostname,
        parts.path,
        outcome,
        elapsed_ms,
        attempt,
    )


def _transport_error(
    exc: requests.RequestException, host: str
) -> tuple[SalesforceError, bool]:
    """Map a requests exception to ``(error, surely_unsent)``."""
    if isinstance(exc, requests.Timeout):
        error = TransientError(
            f"Salesforce at {host} did not answer in time.", code="timeout"
        )
        return error, isinstance(exc, requests.ConnectTimeout)
    # requests wraps urllib3's error in a MaxRetryError whose .reason is it.
    reason = getattr(exc.args[0], "reason", None) if exc.args else None
    if isinstance(reason, _BlockedAddress):
        raise UnsafeUrl(f"{host} resolves to a non-public address.") from None
    if isinstance(reason, NewConnectionError):
        code = "dns" if isinstance(reason, NameResolutionError) else "refused"
        message = f"Salesforce could not be reached at {host}. Check the org URL."
        return HostUnreachable(message, code=code), True
    return TransientError(code="connection_error"), False


@sensitive_variables()
def _send(
    method: str,
    url: str,
    *,
    retry: RetryPolicy = "all",
    headers: dict[str, str] | None = None,
    data: dict[str, str] | None = None,
) -> requests.Response:
    """Send one logical request under the retry policy.

    ``retry`` is ``all`` for idempotent calls, ``unsent`` when only requests
    Salesforce cannot have processed may be repeated, ``none`` for codes.
    Returns the last response; raises for transport failures.
    """
    attempts = 1 + max(0, int(_setting("SALESFORCE_MAX_RETRIES", 2)))
    host = urlsplit(url).hostname or ""
    session = _thread_session()
    # One session per worker thread: pooled, kept-alive connections.
    for attempt in range(1, attempts + 1):
        started, wait = time.monotonic(), 0.0
        try:
            response = session.request(
                method, wire_url(url), headers=headers, data=data
            )
        except requests.RequestException as exc:
            _log(method, url, type(exc).__name__, started, attempt)
            error, unsent = _transport_error(exc, host)
            if (
                retry == "none"
                or (retry == "unsent" and not unsent)
                or attempt == attempts
            ):
                raise error from None
        else:
            status = response.status_code
            _log(method, url, status, started, attempt)
            wait = _retry_after(response)
            if (
                status not in _RETRY_STATUSES
                or retry == "none"
                or (retry == "unsent" and status not in (429, 503))
                or wait > MAX_RETRY_AFTER_SECONDS
                or attempt == attempts
            ):
                return response
        base = float(_setting("SALESFORCE_RETRY_BACKOFF", 0.5))
        time.sleep(max(wait, random.uniform(0, base * 2 ** (attempt - 1))))
    raise AssertionError("unreachable")  # pragma: no cover


def _api_url(url: str, *, what: str) -> str:
    try:
        return validate_server_url(url)
    except InvalidSalesforceUrl:
        raise UnsafeUrl(f"The {what} is not an allowed Salesforce address.") from None


def _login_base(login_url: str) -> str:
    try:
        return normalize_org_url(login_url, allow_legacy_instance=True)
    except InvalidSalesforceUrl:
        raise UnsafeUrl("The login URL is not an allowed Salesforce address.") from None


# --- Response mapping -------------------------------------------------------


def _is_html(response: requests.Response) -> bool:
    content_type = response.headers.get("Content-Type", "").lower()
    return "html" in content_type or response.text.lstrip()[:1] == "<"


def _looks_json(response: requests.Response) -> bool:
    return response.text.lstrip()[:1] in ("{", "[")


def _json(response: requests.Response, kind: type = object) -> Any:
    try:
        payload = response.json()
    except ValueError:
        raise MalformedResponse() from None
    if not isinstance(payload, kind):
        raise MalformedResponse()
    return payload


def _safe_text(value: object, limit: int = 120) -> str:
    text = value if isinstance(value, str) else ""
    return "".join(c for c in text if c.isprintable())[:limit]


def _raise_for_transport(response: requests.Response) -> None:
    """Map statuses that mean the same on every endpoint."""
    status = response.status_code
    if 300 <= status < 400:
        # Name the target only when it is a Salesforce host, and never echo
        # its query string, which could carry a session.
        target = urlsplit(response.headers.get("Location", "")).hostname or ""
        if not is_allowed_salesforce_url(target, allow_legacy_instance=True):
            target = "a non-Salesforce address"
        message = (
            f"Salesforce answered with a redirect to {target}; "
            "the org URL may have changed."
        )
        raise HostUnreachable(message, code="redirect")
    if status == 429:
        raise RateLimited(code="rate_limited", retry_after=_retry_after(response))
    if status >= 500:
        raise TransientError(code=f"http_{status}")
    if status == 404 and not _looks_json(response):
        raise HostUnreachable(code="not_found")
    if _is_html(response):
        raise TransientError(code=f"http_{status}_html")


def _oauth_error_fields(
    response: requests.Response, hide: Iterable[str] = ()
) -> tuple[str, str]:
    """``(error, error_description)`` from a JSON or form-encoded body.

    Values in ``hide`` (what was just sent) are cut from the description in
    case a server echoes them.
    """
    payload = _json(response) if _looks_json(response) else None
    if not isinstance(payload, dict):
        # Revoke and authorize errors come form-encoded.
        payload = dict(parse_qsl(response.text.strip()))
    error = str(payload.get("error", ""))
    error = error if _CODE_RE.match(error) else "unknown"
    description = _safe_text(payload.get("error_description"))
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
    code = error if _CODE_RE.match(error or "") else "unknown"
    return _oauth_error(code, _safe_text(description), at_authorize=True)


def _rest_error(response: requests.Response) -> SalesforceError:
    status = response.status_code
    if status in (401, 403) and "Bad_OAuth_Token" in response.text[:100]:
        return SessionInvalid(code="Bad_OAuth_Token")
    _raise_for_transport(response)
    payload = _json(response) if _looks_json(response) else None
    entry = payload[0] if isinstance(payload, list) and payload else payload
    entry = entry if isinstance(entry, dict) else {}
    code = str(entry.get("errorCode", ""))
    code = code if _CODE_RE.match(code) else f"http_{status}"
    description = _safe_text(entry.get("message"), 200)
    kwargs: dict[str, Any] = {"code": code, "description": description}
    if status == 401 or code == "INVALID_SESSION_ID":
        if "not valid for use with the REST API" in description:
            return MissingScope({"api"}, **kwargs)
        return SessionInvalid(**kwargs)
    if code == "REQUEST_LIMIT_EXCEEDED":
        return RateLimited(**kwargs)
    if status == 403:
        return PermissionMissing(**kwargs)
    if code in ("INVALID_FIELD", "MALFORMED_QUERY", "INVALID_TYPE"):
        return InvalidQuery(**kwargs)
    return SalesforceError(permanent=True, **kwargs)


# --- OAuth ------------------------------------------------------------------


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
    endpoint = f"{_login_base(login_url)}/services/oauth2/authorize"
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
    instance = _api_url(payload["instance_url"], what="instance URL")
    identity = _api_url(raw_id, what="identity URL")
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
    url = f"{_login_base(login_url)}/services/oauth2/token"
    headers = {"Accept": "application/json"}
    response = _send("POST", url, data=form, retry=retry, headers=headers)
    if response.status_code != 200:
        _raise_for_transport(response)
        sent = [v for k, v in form.items() if k not in ("grant_type", "redirect_uri")]
        raise _oauth_error(*_oauth_error_fields(response, hide=sent))
    return _json(response, dict)  # type: ignore[no-any-return]


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
    url = f"{_login_base(login_url)}/services/oauth2/revoke"
    response = _send("POST", url, data={"token": token})
    if response.status_code == 200:
        return
    _raise_for_transport(response)
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


# --- Identity and REST ------------------------------------------------------


@sensitive_variables()
def _get(url: str, *, access_token: str | None = None, kind: type = object) -> Any:
    headers = {"Accept": "application/json"}
    if access_token is not None:
        headers["Authorization"] = f"Bearer {access_token}"
    response = _send("GET", url, headers=headers)
    if not 200 <= response.status_code < 300:
        raise _rest_error(response)
    return _json(response, kind)


def get_identity(*, identity_url: str, access_token: str) -> Identity:
    """Read the identity URL (403 ``Bad_OAuth_Token`` → SessionInvalid)."""
    url = _api_url(identity_url, what="identity URL")
    data = _get(url, access_token=access_token, kind=dict)
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
    url = f"{_login_base(login_url)}/services/oauth2/userinfo"
    return _get(url, access_token=access_token, kind=dict)  # type: ignore[no-any-return]


def fetch_jwks(*, login_url: str) -> dict[str, Any]:
    """Return the JWKS that verifies the login host's id_tokens (``/id/keys``)."""
    url = f"{_login_base(login_url)}/id/keys"
    jwks = _get(url, kind=dict)
    if not isinstance(jwks.get("keys"), list):
        raise MalformedResponse()
    return jwks  # type: ignore[no-any-return]


def _data_url(instance_url: str) -> str:
    version = _setting("SALESFORCE_API_VERSION", "66.0")
    return f"{_api_url(instance_url, what='instance URL')}/services/data/v{version}"


def list_api_versions(*, instance_url: str) -> list[str]:
    """Return the REST API versions the instance serves, oldest first."""
    url = f"{_api_url(instance_url, what='instance URL')}/services/data/"
    rows = _get(url, kind=list)
    versions = [
        str(r["version"]) for r in rows if isinstance(r, dict) and "version" in r
    ]
    return sorted(versions, key=lambda v: [int(p) for p in v.split(".") if p.isdigit()])


def query(*, instance_url: str, access_token: str, soql: str) -> list[dict[str, Any]]:
    """Run a SOQL query; return every record, following up to 10 pages."""
    instance = _api_url(instance_url, what="instance URL")
    url = f"{_data_url(instance)}/query?{urlencode({'q': soql})}"
    records: list[dict[str, Any]] = []
    for _ in range(MAX_QUERY_PAGES):
        page = _get(url, access_token=access_token, kind=dict)
        if not isinstance(page.get("records"), list):
            raise MalformedResponse()
        records += [_strip(r) for r in page["records"] if isinstance(r, dict)]
        next_url = page.get("nextRecordsUrl")
        if page.get("done", True) or not next_url:
            return records
        if not _NEXT_RECORDS_RE.match(str(next_url)):
            raise MalformedResponse()
        url = f"{instance}{next_url}"
    # Dropping rows silently could make a permission check lie.
    raise MalformedResponse("The Salesforce query returned too many rows.")


def _strip(record: dict[str, Any]) -> dict[str, Any]:
    """Drop the ``attributes`` member at every level of a record."""
    return {
        key: _strip(value) if isinstance(value, dict) else value
        for key, value in record.items()
        if key != "attributes"
    }


def get_limits(*, instance_url: str, access_token: str) -> dict[str, Any]:
    """Return the org's limits document (``DailyApiRequests`` ...)."""
    url = f"{_data_url(instance_url)}/limits"
    return _get(url, access_token=access_token, kind=dict)  # type: ignore[no-any-return]


def get_organization(
    *, instance_url: str, access_token: str, org_id: str
) -> dict[str, Any]:
    """Return the Organization row; OrgMismatch if it is another org's."""
    expected = to_18(org_id)
    soql = (
        "SELECT Id, Name, OrganizationType, IsSandbox, InstanceName, "
        "TrialExpirationDate, NamespacePrefix FROM Organization"
    )
    rows = query(instance_url=instance_url, access_token=access_token, soql=soql)
    try:
        (row,) = rows
        actual = to_18(str(row.get("Id")))
    except ValueError:  # not exactly one row, or a bad ID
        raise MalformedResponse() from None
    if actual != expected:
        raise OrgMismatch(expected_org_id=expected, actual_org_id=actual)
    return row


def org_type_of(organization: dict[str, Any]) -> str:
    """The org type of an Organization row, by sfdx-core's sandbox rule."""
    if organization.get("IsSandbox"):
        return "scratch" if organization.get("TrialExpirationDate") else "sandbox"
    if organization.get("OrganizationType") == "Developer Edition":
        return "developer"
    return "production"


def check_org(
    *, instance_url: str, access_token: str, expected_org_id: str
) -> dict[str, Any]:
    """Cheap health check: the Organization row plus ``org_type``; raises
    OrgMismatch when the instance answers for another org."""
    row = get_organization(
        instance_url=instance_url, access_token=access_token, org_id=expected_org_id
    )
    return {**row, "org_type": org_type_of(row)}


def fetch_user_permissions(
    *, instance_url: str, access_token: str, fields: list[str]
) -> PermissionMap:
    """Effective permissions of the connected user (UserPermissionAccess).

    Fields unknown to this org (INVALID_FIELD) count as not granted and are
    listed in the result's ``unknown_fields``.
    """
    if not fields or not all(_FIELD_RE.match(name) for name in fields):
        raise ValueError("Permission fields must be plain field names.")

    def read(names: list[str]) -> dict[str, Any]:
        soql = f"SELECT {', '.join(names)} FROM UserPermissionAccess"
        rows = query(instance_url=instance_url, access_token=access_token, soql=soql)
        return rows[0] if rows else {}

    result, unknown = PermissionMap(), set()
    try:
        row = read(fields)
        result.update({name: row.get(name) is True for name in fields})
    except InvalidQuery as exc:
        if exc.code != "INVALID_FIELD":
            raise
        for name in fields:
            try:
                result[name] = read([name]).get(name) is True
            except InvalidQuery as field_exc:
                if field_exc.code != "INVALID_FIELD":
                    raise
                result[name] = False
                unknown.add(name)
        logger.warning(
            "salesforce permission fields unknown in org: %s", sorted(unknown)
        )
    result.unknown_fields = frozenset(unknown)
    return result


def fetch_user(*, instance_url: str, access_token: str, user_id: str) -> dict[str, Any]:
    """Return ``user_id``, ``username``, ``is_active``, ``user_type``,
    ``profile_name`` and ``license_name`` (``None`` when not readable)."""
    where = f"FROM User WHERE Id = '{to_18(user_id)}'"
    fields = "Id, Username, IsActive, UserType, Profile.Name"
    try:
        soql = f"SELECT {fields}, Profile.UserLicense.Name {where}"
        rows = query(instance_url=instance_url, access_token=access_token, soql=soql)
    except InvalidQuery:
        # Not every org or API version exposes the license relationship.
        soql = f"SELECT {fields} {where}"
        rows = query(instance_url=instance_url, access_token=access_token, soql=soql)
    if not rows:
        raise SalesforceError("The Salesforce user was not found.", code="NOT_FOUND")
    row = rows[0]
    profile = row.get("Profile") if isinstance(row.get("Profile"), dict) else {}
    license_ = profile.get("UserLicense") or {}
    return {
        "user_id": to_18(str(row.get("Id"))),
        "username": row.get("Username"),
        "is_active": row.get("IsActive") is True,
        "user_type": row.get("UserType"),
        "profile_name": profile.get("Name"),
        "license_name": license_.get("Name") if isinstance(license_, dict) else None,
    }
