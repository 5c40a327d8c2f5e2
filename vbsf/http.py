"""Outbound HTTP: the one private-address guard and the webhook sender.

Two places speak HTTP to the outside: the Salesforce client
(``connections/salesforce/transport.py``) and this module, which sends
notification webhooks. Both connect only to public addresses, checked after
DNS on the very addresses used (R35): the guard lives here, once, and the
Salesforce client mounts it on its own session.

The webhook sender (:func:`post_json`) is https only, never follows a
redirect, always has connect and read timeouts, ignores environment proxies
and ``.netrc``, and refuses hosts that resolve to loopback, private,
link-local or other non-public addresses, but for the hosts listed in
``WEBHOOK_ALLOWED_HOSTS`` (local receivers in tests). Its errors carry a
short, safe description: never the body, headers or signature.

Settings are read at call time, so tests can change them.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterable
from typing import Any
from urllib.parse import urlsplit

import requests
from django.conf import settings
from requests.adapters import HTTPAdapter
from urllib3 import HTTPSConnectionPool
from urllib3.connection import HTTPSConnection
from urllib3.exceptions import (
    ConnectTimeoutError,
    NameResolutionError,
    NewConnectionError,
)

USER_AGENT = "vbsf-console"

# IPv6 forms that carry an IPv4 address (or reach one through a gateway): a
# v4-only private network can be reached through any of them, and whatever
# they embed (127.0.0.1, 10/8, 169.254.169.254 ...) would get past a check
# of the IPv6 address alone. Python's ``is_global`` calls most of them
# global, and what it says differs between Python versions.
_TRANSITION_NETWORKS = tuple(
    ipaddress.IPv6Network(net)
    for net in (
        "64:ff9b::/96",  # NAT64, well-known prefix (RFC 6052)
        "64:ff9b:1::/48",  # NAT64, local-use prefix (RFC 8215)
        "2002::/16",  # 6to4 (RFC 3056)
        "2001::/32",  # Teredo (RFC 4380)
        "::/96",  # IPv4-compatible, deprecated (RFC 4291 §2.5.5.1)
        "::ffff:0:0:0/96",  # IPv4-translated, SIIT (RFC 2765)
    )
)


def _is_transition_form(ip: ipaddress.IPv6Address) -> bool:
    return any(ip in net for net in _TRANSITION_NETWORKS)


def is_public_address(address: str) -> bool:
    """Return whether an IP address is globally routable (R35).

    Loopback, private, link-local (cloud metadata), shared (100.64/10),
    unique-local and multicast addresses are not; IPv4-mapped IPv6 addresses
    are judged by the IPv4 address they carry. IPv6 transition forms (NAT64,
    6to4, Teredo, IPv4-compatible, IPv4-translated) are never public, whatever
    IPv4 address they embed.
    """
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        elif _is_transition_form(ip):
            return False
    return ip.is_global and not ip.is_multicast


class BlockedAddress(NewConnectionError):
    """The host resolves to a non-public address: nothing was sent."""


class GuardedHTTPSConnection(HTTPSConnection):
    """Connects only to public addresses, checked after DNS (R35).

    The check runs on the very addresses used, which defeats DNS rebinding;
    TLS still verifies the certificate against the host name. Hosts named in
    ``allowed_hosts`` (a subclass's) skip the check: test receivers only.
    """

    allowed_hosts: frozenset[str] = frozenset()

    def _new_conn(self) -> socket.socket:
        name = self._dns_host
        try:
            infos = socket.getaddrinfo(name, self.port, type=socket.SOCK_STREAM)
        except socket.gaierror as exc:
            raise NameResolutionError(self.host, self, exc) from exc
        addresses = [str(info[4][0]) for info in infos]
        allowed = (self.host or "").lower() in self.allowed_hosts
        if not addresses or not (allowed or all(map(is_public_address, addresses))):
            raise BlockedAddress(self, "host resolves to a non-public address")
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


class GuardedAdapter(HTTPAdapter):
    """An adapter whose https pools connect through the guard."""

    def __init__(self, allowed_hosts: Iterable[str] = (), **kwargs: Any) -> None:
        hosts = frozenset(h.strip().lower() for h in allowed_hosts if h.strip())
        connection = type(
            "GuardedConnection", (GuardedHTTPSConnection,), {"allowed_hosts": hosts}
        )
        self._pool_class = type(
            "GuardedPool", (HTTPSConnectionPool,), {"ConnectionCls": connection}
        )
        super().__init__(**kwargs)

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        pools = self.poolmanager.pool_classes_by_scheme
        self.poolmanager.pool_classes_by_scheme = {**pools, "https": self._pool_class}


def blocked(exc: requests.RequestException) -> bool:
    """Whether requests failed because the guard refused the address."""
    # requests wraps urllib3's error in a MaxRetryError whose .reason is it.
    reason = getattr(exc.args[0], "reason", None) if exc.args else None
    return isinstance(reason, BlockedAddress)


# --- Webhooks ---------------------------------------------------------------


class OutboundError(Exception):
    """A webhook could not be delivered; ``str()`` is safe to store and show
    (no body, headers, signature or query string). ``permanent``: trying
    again cannot help (the address is refused)."""

    def __init__(self, message: str, *, permanent: bool = False) -> None:
        super().__init__(message)
        self.permanent = permanent


class _GuardedSession(requests.Session):
    """Never follows redirects; always has timeouts."""

    def send(
        self, request: requests.PreparedRequest, **kwargs: Any
    ) -> requests.Response:
        kwargs["allow_redirects"] = False
        if kwargs.get("timeout") is None:
            kwargs["timeout"] = (
                float(settings.WEBHOOK_CONNECT_TIMEOUT),
                float(settings.WEBHOOK_READ_TIMEOUT),
            )
        return super().send(request, **kwargs)


def webhook_session() -> requests.Session:
    """A session for webhooks: the guard on https, nothing on http."""
    session = _GuardedSession()
    session.trust_env = False  # no proxies or .netrc from the environment
    session.headers["User-Agent"] = USER_AGENT
    session.mount("https://", GuardedAdapter(settings.WEBHOOK_ALLOWED_HOSTS))
    session.mount("http://", _RefusingAdapter())
    if settings.WEBHOOK_CA_BUNDLE:
        session.verify = settings.WEBHOOK_CA_BUNDLE
    return session


class _RefusingAdapter(HTTPAdapter):
    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> Any:
        raise OutboundError("Only https:// addresses are allowed.", permanent=True)


def check_webhook_url(url: str) -> str:
    """The URL if a webhook may be sent there; OutboundError with the reason
    if not. Names are resolved later, by the guard, on every connection."""
    parts = urlsplit(url.strip())
    if parts.scheme != "https":
        raise OutboundError("Only https:// addresses are allowed.", permanent=True)
    if not parts.hostname:
        raise OutboundError("The address has no host name.", permanent=True)
    if parts.username or parts.password:
        raise OutboundError(
            "The address must not carry a user name or password.", permanent=True
        )
    host = parts.hostname.lower()
    try:
        literal = ipaddress.ip_address(host)
    except ValueError:
        literal = None
    if (
        literal is not None
        and not is_public_address(str(literal))
        and host not in {h.lower() for h in settings.WEBHOOK_ALLOWED_HOSTS}
    ):
        raise OutboundError("The address is not a public one.", permanent=True)
    return url.strip()


def post_json(url: str, body: bytes, headers: dict[str, str]) -> requests.Response:
    """POST a JSON body once; the response, whatever its status, or
    OutboundError when nothing came back (refused, timeout, TLS, DNS).

    The response's body is never read (only its status counts): a receiver
    cannot make the worker hold an endless answer in memory."""
    check_webhook_url(url)
    host = urlsplit(url).hostname
    with webhook_session() as session:
        try:
            response = session.post(
                url,
                data=body,
                headers={"Content-Type": "application/json", **headers},
                stream=True,
            )
            response.close()
            return response
        except OutboundError:
            raise
        except requests.Timeout:
            raise OutboundError(f"{host} did not answer in time.") from None
        except requests.exceptions.SSLError:
            raise OutboundError(
                f"The TLS certificate of {host} could not be verified."
            ) from None
        except requests.RequestException as exc:
            if blocked(exc):
                raise OutboundError(
                    f"{host} resolves to a non-public address: not sent.",
                    permanent=True,
                ) from None
            raise OutboundError(f"{host} could not be reached.") from None
        except OSError:  # requests' own check of the CA bundle setting
            raise OutboundError(
                "The CA bundle in VBSF_WEBHOOK_CA_BUNDLE cannot be read."
            ) from None
