"""Pure checks for Salesforce URLs and record IDs. Nothing here does I/O.

The console only talks to hosts that Salesforce itself serves OAuth and the
REST API from. Admins type org URLs, and token responses name further URLs
(``instance_url`` and the identity URL ``id``), so every URL passes through
the same allow-list before any request is made (SSRF requirements R34 and
R37). The allow-list is deliberately narrow: login and test hosts, My Domain
hosts of every partition, and, for orgs stored before enhanced domains,
legacy instance hosts when the caller opts in.

Salesforce record IDs come in a case-sensitive 15-character form and an
18-character form with a case-insensitive checksum; :func:`to_18` and
:func:`same_id` make comparisons safe.
"""

from __future__ import annotations

import ipaddress
import re
import socket
import unicodedata
from urllib.parse import urlsplit

from django.core.exceptions import ValidationError

from vbsf.http import is_public_address  # the one address check (R35)

__all__ = [
    "InvalidSalesforceId",
    "InvalidSalesforceUrl",
    "host_of",
    "is_allowed_salesforce_url",
    "is_public_address",
    "login_host_for",
    "normalize_org_url",
    "org_type_hint",
    "same_id",
    "to_18",
    "validate_server_url",
]

LOGIN_URL = "https://login.salesforce.com"
TEST_URL = "https://test.salesforce.com"
MAX_URL_LENGTH = 255

_GENERIC_HOSTS = frozenset({"login.salesforce.com", "test.salesforce.com"})
_PARTITIONS = "sandbox|develop|scratch|trailblaze|patch|demo|free"
# A My Domain name: letters, digits and single hyphens; "--" separates the
# sandbox name.
_LABEL = r"[a-z0-9]+(?:-[a-z0-9]+)*"
_MY_DOMAIN_RE = re.compile(
    rf"^(?P<name>{_LABEL})(?P<sandbox>--{_LABEL})?"
    rf"(?:\.(?P<partition>{_PARTITIONS}))?\.my\.salesforce\.com$"
)
# Only for orgs stored before enhanced domains: na123, eu5, cs42, usa2s ...
_LEGACY_INSTANCE_RE = re.compile(
    r"^(?P<pod>[a-z]{2,4}\d{1,3})(?P<s>s?)\.salesforce\.com$"
)
# Pre-enhanced sandbox My Domain: NAME--SB.cs42.my.salesforce.com
_LEGACY_SANDBOX_RE = re.compile(
    rf"^{_LABEL}--{_LABEL}\.cs\d{{1,3}}\.my\.salesforce\.com$"
)
# Paths of server-supplied URLs (identity URL, instance URL): no dot
# segments, no escapes, nothing a parser could read two ways.
_SAFE_PATH_RE = re.compile(r"^(?:/[A-Za-z0-9_~-][A-Za-z0-9._~-]*)*/?$")
_ID_CHARS_RE = re.compile(r"^[a-zA-Z0-9]+$")
_CHECKSUM_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZ012345"

_HINT = (
    "Enter an https URL of a Salesforce login or My Domain host, "
    "such as https://acme.my.salesforce.com"
)


class InvalidSalesforceUrl(ValueError):
    """A URL is not an https URL of an allowed Salesforce host.

    ``str(error)`` is safe to show to users; ``reason`` is a short code for
    tests and logs (``scheme``, ``port``, ``userinfo``, ``ip``, ``host`` ...).
    """

    def __init__(self, reason: str, problem: str = "") -> None:
        self.reason = reason
        self.message = f"{problem} {_HINT}." if problem else f"{_HINT}."
        super().__init__(self.message)


def validate_salesforce_url(value: str) -> None:
    """Django validator: the one URL check, on every model field that stores
    a Salesforce URL (login, instance, suggested, policy URLs), so no path
    (a service, the admin, a form) can store another host."""
    if value:
        try:
            normalize_org_url(value, allow_legacy_instance=True)
        except InvalidSalesforceUrl as exc:
            # django.core.exceptions is no app: the client package may use it.
            raise ValidationError(str(exc), code="not_salesforce") from None


class InvalidSalesforceId(ValueError):
    """A string is not a well-formed 15- or 18-character Salesforce ID."""


def _check_characters(value: str) -> None:
    if len(value) > MAX_URL_LENGTH:
        raise InvalidSalesforceUrl("length", "The URL is too long.")
    for char in value:
        # Control, format (zero-width), separator and private-use
        # characters can make two parsers disagree about the host.
        if unicodedata.category(char)[0] in "CZ" or char == "\\":
            raise InvalidSalesforceUrl("characters", "The URL has invalid characters.")


def _split_https(value: str) -> tuple[str, str]:
    """Return ``(authority, rest)`` of an https URL or of a bare host."""
    scheme, sep, remainder = value.partition("://")
    if not sep:
        if value.startswith("/"):
            raise InvalidSalesforceUrl("host", "The URL has no host.")
        scheme, remainder = "https", value
    if scheme.lower() != "https":
        raise InvalidSalesforceUrl("scheme", "Only https:// URLs are allowed.")
    cut = min((i for i in map(remainder.find, "/?#") if i >= 0), default=len(remainder))
    return remainder[:cut], remainder[cut:]


def _looks_like_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
        return True
    except ValueError:
        pass
    try:
        # inet_aton accepts the legacy spellings browsers and libc honour:
        # 2130706433, 0x7f000001, 0177.0.0.1, 127.1.
        socket.inet_aton(host)
        return True
    except OSError:
        pass
    # WHATWG URL parsing treats a numeric last label as an IPv4 address.
    last = host.rsplit(".", 1)[-1]
    return last.isdigit() or bool(re.fullmatch(r"0x[0-9a-f]*", last))


def _clean_host(authority: str) -> str:
    if not authority:
        raise InvalidSalesforceUrl("host", "The URL has no host.")
    if "@" in authority:
        raise InvalidSalesforceUrl("userinfo", "The URL must not contain a user name.")
    if authority.startswith("[") or authority.count(":") > 1:
        raise InvalidSalesforceUrl("ip", "IP addresses are not allowed.")
    if ":" in authority:
        # Salesforce serves only the default port; an explicit port (even
        # :443) is either a typo or an attempt to reach another service.
        raise InvalidSalesforceUrl("port", "The URL must not contain a port.")
    if "%" in authority:
        raise InvalidSalesforceUrl("characters", "The URL has invalid characters.")
    host = authority.lower()
    if host.endswith("."):
        raise InvalidSalesforceUrl("host", "The host must not end with a dot.")
    try:
        host = host.encode("idna").decode("ascii")
    except UnicodeError:
        raise InvalidSalesforceUrl("host", "The host name is not valid.") from None
    if any(label.startswith("xn--") for label in host.split(".")):
        # Salesforce host names are plain ASCII; a punycode label is a
        # look-alike of some other name.
        raise InvalidSalesforceUrl("lookalike", "The host has look-alike characters.")
    if _looks_like_ip(host):
        raise InvalidSalesforceUrl("ip", "IP addresses are not allowed.")
    return host


def _host_allowed(host: str, *, allow_legacy_instance: bool) -> bool:
    if host in _GENERIC_HOSTS or _MY_DOMAIN_RE.match(host):
        return True
    return allow_legacy_instance and bool(
        _LEGACY_INSTANCE_RE.match(host) or _LEGACY_SANDBOX_RE.match(host)
    )


def _parse(value: str, *, allow_legacy_instance: bool) -> tuple[str, str]:
    if not isinstance(value, str):
        raise InvalidSalesforceUrl("type", "Enter a URL.")
    value = value.strip()
    if not value:
        raise InvalidSalesforceUrl("empty", "Enter a URL.")
    _check_characters(value)
    authority, rest = _split_https(value)
    host = _clean_host(authority)
    if not _host_allowed(host, allow_legacy_instance=allow_legacy_instance):
        raise InvalidSalesforceUrl("host", f"{host} is not a Salesforce login host.")
    return host, rest


def normalize_org_url(value: str, *, allow_legacy_instance: bool = False) -> str:
    """Validate a user-typed org URL or bare host; return ``https://<host>``.

    Raises :class:`InvalidSalesforceUrl` for anything but an https URL of an
    allowed Salesforce host with no port, user info, path, query or fragment.
    """
    host, rest = _parse(value, allow_legacy_instance=allow_legacy_instance)
    if rest not in ("", "/"):
        raise InvalidSalesforceUrl("path", "Enter only the address, without a path.")
    return f"https://{host}"


def is_allowed_salesforce_url(url: str, *, allow_legacy_instance: bool = False) -> bool:
    """Return whether :func:`normalize_org_url` accepts ``url``."""
    try:
        normalize_org_url(url, allow_legacy_instance=allow_legacy_instance)
    except InvalidSalesforceUrl:
        return False
    return True


def validate_server_url(url: str) -> str:
    """Validate a URL that Salesforce sent (``instance_url``, identity ``id``).

    The host allow-list is the org one with legacy instances allowed; a plain
    path is allowed, a query or fragment is not. Returns the normalized URL
    without a trailing slash. Raises :class:`InvalidSalesforceUrl`.
    """
    host, rest = _parse(url, allow_legacy_instance=True)
    if not _SAFE_PATH_RE.match(rest):
        raise InvalidSalesforceUrl("path", "The URL path is not allowed.")
    return f"https://{host}{rest.rstrip('/')}"


def host_of(url: str) -> str:
    """Return the lowercase host of an URL (no validation beyond parsing)."""
    host = urlsplit(url.strip() if "://" in url else f"https://{url.strip()}").hostname
    if not host:
        raise InvalidSalesforceUrl("host", "The URL has no host.")
    return host


def org_type_hint(host: str) -> str | None:
    """Guess the org type from a Salesforce host, as sfdx-core does.

    Returns ``"sandbox"``, ``"developer"``, ``"scratch"`` or
    ``"production"``, or ``None`` for hosts that are not Salesforce's.
    """
    host = host.lower()
    if host == "test.salesforce.com" or _LEGACY_SANDBOX_RE.match(host):
        return "sandbox"
    if host == "login.salesforce.com":
        return "production"
    if match := _MY_DOMAIN_RE.match(host):
        partition = match["partition"]
        if partition == "sandbox" or (partition is None and match["sandbox"]):
            return "sandbox"
        if partition in ("develop", "trailblaze"):
            return "developer"
        # Patch orgs are special scratch orgs created from a Dev Hub.
        if partition in ("scratch", "patch"):
            return "scratch"
        return "production"
    if match := _LEGACY_INSTANCE_RE.match(host):
        is_sandbox = match["s"] or match["pod"].startswith("cs")
        return "sandbox" if is_sandbox else "production"
    return None


def login_host_for(org_type: str | None) -> str:
    """Return the generic login URL for an org type (sandboxes use test)."""
    return TEST_URL if org_type in ("sandbox", "scratch") else LOGIN_URL


def _checksum(id15: str) -> str:
    chunks = (id15[i : i + 5] for i in range(0, 15, 5))
    return "".join(
        _CHECKSUM_ALPHABET[sum(1 << j for j, c in enumerate(chunk) if "A" <= c <= "Z")]
        for chunk in chunks
    )


def to_18(value: str) -> str:
    """Return the 18-character form of a Salesforce ID.

    A 15-character ID gets its checksum appended; an 18-character ID has its
    checksum verified and upper-cased. Raises :class:`InvalidSalesforceId`.
    """
    if not isinstance(value, str) or len(value) not in (15, 18):
        raise InvalidSalesforceId("A Salesforce ID has 15 or 18 characters.")
    if not _ID_CHARS_RE.match(value):
        raise InvalidSalesforceId("A Salesforce ID has only letters and digits.")
    id15, checksum = value[:15], _checksum(value[:15])
    if len(value) == 18 and value[15:].upper() != checksum:
        raise InvalidSalesforceId("The Salesforce ID checksum does not match.")
    return id15 + checksum


def same_id(a: str, b: str) -> bool:
    """Return whether two IDs (15 or 18 characters) name the same record.

    Compares the case-sensitive first 15 characters, as sfdx-core does;
    malformed IDs never compare equal.
    """
    try:
        return to_18(a) == to_18(b)
    except InvalidSalesforceId:
        return False
