"""HTTP to Salesforce: the guarded session, retries, response mapping.

Only this package and ``vbsf/http.py`` (webhooks, and the private-address
guard both use) import ``requests``, ``requests_oauthlib`` or ``urllib3``.
Rules:

* **Allow-listed URLs only.** Login, instance and identity URLs, including
  those Salesforce returns, pass :mod:`connections.salesforce.urls` before
  any request (R34, R37). On real networks the connection factory also
  refuses hosts that resolve to non-public addresses (R35): the guard of
  :mod:`vbsf.http`, mounted on this package's session.
* **Simulator mapping after validation.** With ``SALESFORCE_SIMULATOR_URL``
  set, :func:`wire_url` maps ``https://<host>/<path>`` to
  ``<simulator>/h/<host>/<path>`` for server calls and browser redirects.
* **Timeouts on every call; redirects reported, never followed** (R36).
* **Bounded retries** (``SALESFORCE_MAX_RETRIES``, exponential backoff with
  full jitter from ``SALESFORCE_RETRY_BACKOFF``) for connection errors,
  timeouts, 429 and 502/503/504. Codes are single-use, so a code exchange
  is never retried; a refresh is retried only when Salesforce cannot have
  processed it, because a rotated refresh token must not be replayed.
* **Typed errors:** :class:`~connections.salesforce.errors.SalesforceError`
  subclasses with ``code``, ``permanent`` and a user-safe ``message`` that
  never carries tokens, codes, secrets or response bodies.
* **Logging** (``vbsf.salesforce``): method, host, path, status, duration;
  never query strings, headers, bodies or secrets.

Settings are read at call time, never at import, so tests and the simulator
can change them.
"""

from __future__ import annotations

import logging
import random
import re
import threading
import time
from typing import Any, Literal
from urllib.parse import urlsplit

import requests
from django.conf import settings
from django.views.decorators.debug import sensitive_variables
from urllib3.exceptions import NameResolutionError, NewConnectionError

from vbsf import metrics
from vbsf.http import GuardedAdapter, blocked

from .errors import (
    HostUnreachable,
    InvalidQuery,
    MalformedResponse,
    MissingScope,
    PermissionMissing,
    RateLimited,
    SalesforceError,
    SessionInvalid,
    TransientError,
    UnsafeUrl,
)
from .urls import (
    InvalidSalesforceUrl,
    is_allowed_salesforce_url,
    normalize_org_url,
    validate_server_url,
)

logger = logging.getLogger("vbsf.salesforce")

USER_AGENT = "vbsf-console"
# A longer Retry-After is left to the caller (a Celery countdown) instead
# of holding a worker.
MAX_RETRY_AFTER_SECONDS = 10.0
_RETRY_STATUSES = frozenset({429, 502, 503, 504})
# Error codes Salesforce sends (OAuth ``error``, REST ``errorCode``) are
# kept only when they look like codes; anything else could be an echo.
CODE_RE = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
RetryPolicy = Literal["all", "unsent", "none"]


def setting(name: str, default: Any) -> Any:
    """A Django setting, read now (never at import)."""
    return getattr(settings, name, default)


def _simulator() -> str:
    return str(setting("SALESFORCE_SIMULATOR_URL", "") or "").rstrip("/")


def wire_url(url: str) -> str:
    """Map an already validated Salesforce URL onto the simulator, if set."""
    parts = urlsplit(url)
    if parts.scheme != "https" or not parts.hostname:
        raise UnsafeUrl()
    if not (simulator := _simulator()):
        return url
    query = f"?{parts.query}" if parts.query else ""
    return f"{simulator}/h/{parts.hostname}{parts.path or '/'}{query}"


class _SalesforceSession(requests.Session):
    """A session that never follows redirects and always has timeouts."""

    def send(
        self, request: requests.PreparedRequest, **kwargs: Any
    ) -> requests.Response:
        # Session.request() and direct send() calls both pass through here.
        kwargs["allow_redirects"] = False
        if kwargs.get("timeout") is None:
            connect = float(setting("SALESFORCE_CONNECT_TIMEOUT", 5.0))
            read = float(setting("SALESFORCE_READ_TIMEOUT", 20.0))
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
        session.mount("https://", GuardedAdapter())
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
    metrics.count_salesforce_request(outcome)  # every attempt, for /metrics
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
    if blocked(exc):
        raise UnsafeUrl(f"{host} resolves to a non-public address.") from None
    # requests wraps urllib3's error in a MaxRetryError whose .reason is it.
    reason = getattr(exc.args[0], "reason", None) if exc.args else None
    if isinstance(reason, NewConnectionError):
        code = "dns" if isinstance(reason, NameResolutionError) else "refused"
        message = f"Salesforce could not be reached at {host}. Check the org URL."
        return HostUnreachable(message, code=code), True
    return TransientError(code="connection_error"), False


@sensitive_variables()
def send(
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
    attempts = 1 + max(0, int(setting("SALESFORCE_MAX_RETRIES", 2)))
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
        base = float(setting("SALESFORCE_RETRY_BACKOFF", 0.5))
        time.sleep(max(wait, random.uniform(0, base * 2 ** (attempt - 1))))
    raise AssertionError("unreachable")  # pragma: no cover


def api_url(url: str, *, what: str) -> str:
    """Validate a server-supplied URL (instance, identity); UnsafeUrl if not."""
    try:
        return validate_server_url(url)
    except InvalidSalesforceUrl:
        raise UnsafeUrl(f"The {what} is not an allowed Salesforce address.") from None


def login_base(login_url: str) -> str:
    """``https://<login host>`` of an org's login URL; UnsafeUrl if not allowed."""
    try:
        return normalize_org_url(login_url, allow_legacy_instance=True)
    except InvalidSalesforceUrl:
        raise UnsafeUrl("The login URL is not an allowed Salesforce address.") from None


# --- Response mapping -------------------------------------------------------


def _is_html(response: requests.Response) -> bool:
    content_type = response.headers.get("Content-Type", "").lower()
    return "html" in content_type or response.text.lstrip()[:1] == "<"


def looks_json(response: requests.Response) -> bool:
    return response.text.lstrip()[:1] in ("{", "[")


def parse_json(response: requests.Response, kind: type = object) -> Any:
    """The JSON body, which must be a ``kind``; MalformedResponse if not."""
    try:
        payload = response.json()
    except ValueError:
        raise MalformedResponse() from None
    if not isinstance(payload, kind):
        raise MalformedResponse()
    return payload


def safe_text(value: object, limit: int = 120) -> str:
    """A printable, bounded copy of a server string for error descriptions."""
    text = value if isinstance(value, str) else ""
    return "".join(c for c in text if c.isprintable())[:limit]


def raise_for_transport(response: requests.Response) -> None:
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
    if status == 404 and not looks_json(response):
        raise HostUnreachable(code="not_found")
    if _is_html(response):
        raise TransientError(code=f"http_{status}_html")


def _rest_error(response: requests.Response) -> SalesforceError:
    status = response.status_code
    if status in (401, 403) and "Bad_OAuth_Token" in response.text[:100]:
        return SessionInvalid(code="Bad_OAuth_Token")
    raise_for_transport(response)
    payload = parse_json(response) if looks_json(response) else None
    entry = payload[0] if isinstance(payload, list) and payload else payload
    entry = entry if isinstance(entry, dict) else {}
    code = str(entry.get("errorCode", ""))
    code = code if CODE_RE.match(code) else f"http_{status}"
    description = safe_text(entry.get("message"), 200)
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


@sensitive_variables()
def get_json(url: str, *, access_token: str | None = None, kind: type = object) -> Any:
    """GET a validated URL (bearer token if given); a typed error unless 2xx."""
    headers = {"Accept": "application/json"}
    if access_token is not None:
        headers["Authorization"] = f"Bearer {access_token}"
    response = send("GET", url, headers=headers)
    if not 200 <= response.status_code < 300:
        raise _rest_error(response)
    return parse_json(response, kind)
