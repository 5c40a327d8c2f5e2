"""The Salesforce URL allow-list (R34, R37) and ID helpers; pure functions."""

from __future__ import annotations

import ipaddress
from collections.abc import Callable

import pytest

from connections.salesforce.urls import (
    InvalidSalesforceId,
    InvalidSalesforceUrl,
    host_of,
    is_allowed_salesforce_url,
    is_public_address,
    login_host_for,
    normalize_org_url,
    org_type_hint,
    same_id,
    to_18,
    validate_server_url,
)

VALID_HOSTS = [
    "login.salesforce.com",
    "test.salesforce.com",
    "acme.my.salesforce.com",
    "acme-corp2.my.salesforce.com",
    "acme--uat.sandbox.my.salesforce.com",
    "acme-dev-ed.develop.my.salesforce.com",
    "site-power-1234-dev-ed.scratch.my.salesforce.com",
    "xyz-dev-ed.trailblaze.my.salesforce.com",
    "acme.patch.my.salesforce.com",
    "acme.demo.my.salesforce.com",
    "acme.free.my.salesforce.com",
    # Pre-enhanced sandbox My Domain without a partition.
    "acme--uat.my.salesforce.com",
    "1acme.my.salesforce.com",
]

# (input, reason)
REJECTED = [
    # R34's table.
    ("http://acme.my.salesforce.com", "scheme"),
    ("https://169.254.169.254", "ip"),
    ("https://0x7f000001", "ip"),
    ("https://a.my.salesforce.com@evil.com", "userinfo"),
    ("https://a.my.salesforce.com.evil.com", "host"),
    ("https://evil.com/.my.salesforce.com", "host"),
    ("https://acme.my.salesforce.com:8443", "port"),
    ("https://acme.my.s\u0430lesforce.com", "lookalike"),  # Cyrillic a
    # Other schemes.
    ("ftp://acme.my.salesforce.com", "scheme"),
    ("javascript://acme.my.salesforce.com", "scheme"),
    ("file:///etc/passwd", "scheme"),
    ("//acme.my.salesforce.com", "host"),
    ("https://", "host"),
    # IP literals in every spelling.
    ("https://127.0.0.1", "ip"),
    ("https://2130706433", "ip"),
    ("https://017700000001", "ip"),
    ("https://0177.0.0.1", "ip"),
    ("https://127.1", "ip"),
    ("https://0x7f.0x0.0x0.0x1", "ip"),
    ("https://[::1]", "ip"),
    ("https://[::ffff:169.254.169.254]", "ip"),
    ("https://::1", "ip"),
    ("https://[fd00::1]/", "ip"),
    ("169.254.169.254", "ip"),
    # User info, ports.
    ("https://user:pw@acme.my.salesforce.com", "userinfo"),
    ("https://@acme.my.salesforce.com", "userinfo"),
    ("https://acme.my.salesforce.com:443", "port"),
    ("https://acme.my.salesforce.com:", "port"),
    ("acme.my.salesforce.com:443", "port"),
    # Paths, queries, fragments.
    ("https://acme.my.salesforce.com/services/oauth2/token", "path"),
    ("https://acme.my.salesforce.com//", "path"),
    ("https://acme.my.salesforce.com?x=1", "path"),
    ("https://acme.my.salesforce.com/?", "path"),
    ("https://acme.my.salesforce.com#frag", "path"),
    ("https://acme.my.salesforce.com/..", "path"),
    # Trailing dots, empty labels, escapes, odd characters.
    ("https://acme.my.salesforce.com.", "host"),
    ("https://acme..my.salesforce.com", "host"),
    ("https://acme.my.salesforce.com%2eevil.com", "characters"),
    ("https://evil.com\\.my.salesforce.com", "characters"),
    ("https://ac me.my.salesforce.com", "characters"),
    ("https://acme.my.salesforce.com\n.evil.com", "characters"),
    ("https://acme\u200b.my.salesforce.com", "characters"),
    ("https://acme.my.salesforce.com\x00.evil.com", "characters"),
    # Unicode look-alikes and punycode.
    ("https://\u0430cme.my.salesforce.com", "lookalike"),  # Cyrillic a
    ("https://xn--cme-8cd.my.salesforce.com", "lookalike"),
    ("https://acme.my.salesforce.xn--com-9o0a", "lookalike"),
    ("https://acme.my.\u0455alesforce.com", "lookalike"),  # Cyrillic dze
    # Suffix tricks and hosts that are Salesforce's but not API hosts.
    ("https://my.salesforce.com", "host"),
    ("https://xmy.salesforce.com", "host"),
    ("https://acme.xmy.salesforce.com", "host"),
    ("https://acme.my.salesforce.com.evil.com", "host"),
    ("https://acme.my-salesforce.com", "host"),
    ("https://acme.my.salesforce.co", "host"),
    ("https://acme.lightning.force.com", "host"),
    ("https://acme--uat.sandbox.lightning.force.com", "host"),
    ("https://acme.force.com", "host"),
    ("https://acme.my.site.com", "host"),
    ("https://acme.file.force.com", "host"),
    ("https://acme.my.salesforce-setup.com", "host"),
    ("https://developer.salesforce.com", "host"),
    ("https://trailhead.salesforce.com", "host"),
    ("https://salesforce.com", "host"),
    ("https://www.salesforce.com", "host"),
    ("https://evil.com", "host"),
    ("https://acme.evil.my.salesforce.com", "host"),
    ("https://acme.sandbox.sandbox.my.salesforce.com", "host"),
    ("https://-acme.my.salesforce.com", "host"),
    ("https://acme-.my.salesforce.com", "host"),
    ("https://acme_x.my.salesforce.com", "host"),
    # Not URLs at all.
    ("", "empty"),
    ("   ", "empty"),
    ("https://" + "a" * 250 + ".my.salesforce.com", "length"),
    ("https://" + "a" * 64 + ".my.salesforce.com", "host"),
]


@pytest.mark.parametrize("host", VALID_HOSTS)
def test_it_accepts_every_partition(host: str) -> None:
    assert normalize_org_url(f"https://{host}") == f"https://{host}"
    assert normalize_org_url(host) == f"https://{host}"
    assert is_allowed_salesforce_url(f"https://{host}/")


@pytest.mark.parametrize(("value", "reason"), REJECTED)
def test_it_rejects_unsafe_urls(value: str, reason: str) -> None:
    with pytest.raises(InvalidSalesforceUrl) as caught:
        normalize_org_url(value)
    assert caught.value.reason == reason
    assert not is_allowed_salesforce_url(value)
    # Allowing legacy hosts makes none of them acceptable.
    assert not is_allowed_salesforce_url(value, allow_legacy_instance=True)
    if reason != "path":
        # Nor are they acceptable when a token response names them.
        with pytest.raises(InvalidSalesforceUrl):
            validate_server_url(value)


def test_it_strips_surrounding_whitespace() -> None:
    assert (
        normalize_org_url("  https://acme.my.salesforce.com\t\n")
        == "https://acme.my.salesforce.com"
    )


@pytest.mark.parametrize(
    "value",
    [
        "HTTPS://ACME.MY.SALESFORCE.COM/",
        "https://Acme.My.Salesforce.Com",
        "Acme.my.salesforce.com/",
        # Full-width letters, which IDNA maps to ASCII as browsers do.
        "https://\uff41\uff43\uff4d\uff45.my.salesforce.com",
    ],
)
def test_it_normalizes_case_and_trailing_slash(value: str) -> None:
    assert normalize_org_url(value) == "https://acme.my.salesforce.com"


def test_message_is_user_facing() -> None:
    with pytest.raises(InvalidSalesforceUrl) as caught:
        normalize_org_url("https://acme.my.salesforce.com:8443")
    assert "port" in str(caught.value)
    assert "https://acme.my.salesforce.com" in str(caught.value)
    assert isinstance(caught.value, ValueError)


@pytest.mark.parametrize(
    "host",
    [
        "na123.salesforce.com",
        "eu5.salesforce.com",
        "cs42.salesforce.com",
        "usa2s.salesforce.com",
        "acme--uat.cs42.my.salesforce.com",
    ],
)
def test_legacy_hosts_need_opt_in(host: str) -> None:
    assert not is_allowed_salesforce_url(host)
    assert is_allowed_salesforce_url(host, allow_legacy_instance=True)
    assert normalize_org_url(host, allow_legacy_instance=True) == f"https://{host}"


@pytest.mark.parametrize(
    "host",
    ["login1.salesforce.com", "developer.salesforce.com", "na12345.salesforce.com"],
)
def test_legacy_opt_in_stays_narrow(host: str) -> None:
    assert not is_allowed_salesforce_url(host, allow_legacy_instance=True)


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        (
            "https://login.salesforce.com/id/00D36000000arMLEAY/00536000000IigRAAS",
            "https://login.salesforce.com/id/00D36000000arMLEAY/00536000000IigRAAS",
        ),
        ("https://acme.my.salesforce.com", "https://acme.my.salesforce.com"),
        ("https://acme.my.salesforce.com/", "https://acme.my.salesforce.com"),
        ("https://na123.salesforce.com", "https://na123.salesforce.com"),
        ("https://ACME.my.salesforce.com/services/data/", None),
    ],
)
def test_validate_server_url_allows_paths(url: str, expected: str | None) -> None:
    result = validate_server_url(url)
    assert result == (expected or "https://acme.my.salesforce.com/services/data")


@pytest.mark.parametrize(
    "url",
    [
        "https://169.254.169.254",
        "https://169.254.169.254/latest/meta-data/",
        "http://acme.my.salesforce.com",
        "https://acme.my.salesforce.com:8443/id/00D/005",
        "https://evil.com/id/00D36000000arMLEAY/00536000000IigRAAS",
        "https://user@login.salesforce.com/id/00D/005",
        "https://login.salesforce.com/id/../../admin",
        "https://login.salesforce.com/id/%2e%2e/x",
        "https://login.salesforce.com/id/x?oauth_token=1",
        "https://login.salesforce.com/id/x#y",
        "https://acme.lightning.force.com",
    ],
)
def test_validate_server_url_rejects(url: str) -> None:
    with pytest.raises(InvalidSalesforceUrl):
        validate_server_url(url)


def test_host_of() -> None:
    assert host_of("https://Acme.my.salesforce.com/") == "acme.my.salesforce.com"
    assert host_of("acme.my.salesforce.com") == "acme.my.salesforce.com"
    with pytest.raises(InvalidSalesforceUrl):
        host_of("https://")


@pytest.mark.parametrize(
    ("host", "org_type"),
    [
        ("login.salesforce.com", "production"),
        ("test.salesforce.com", "sandbox"),
        ("acme.my.salesforce.com", "production"),
        ("acme--uat.sandbox.my.salesforce.com", "sandbox"),
        ("acme--uat.my.salesforce.com", "sandbox"),
        ("acme--uat.cs42.my.salesforce.com", "sandbox"),
        ("acme-dev-ed.develop.my.salesforce.com", "developer"),
        ("xyz-dev-ed.trailblaze.my.salesforce.com", "developer"),
        ("acme.scratch.my.salesforce.com", "scratch"),
        ("acme.patch.my.salesforce.com", "scratch"),
        ("acme.demo.my.salesforce.com", "production"),
        ("acme.free.my.salesforce.com", "production"),
        ("cs42.salesforce.com", "sandbox"),
        ("usa2s.salesforce.com", "sandbox"),
        ("na123.salesforce.com", "production"),
        ("evil.com", None),
    ],
)
def test_org_type_hint(host: str, org_type: str | None) -> None:
    assert org_type_hint(host) == org_type


@pytest.mark.parametrize(
    ("org_type", "url"),
    [
        ("production", "https://login.salesforce.com"),
        ("developer", "https://login.salesforce.com"),
        ("sandbox", "https://test.salesforce.com"),
        ("scratch", "https://test.salesforce.com"),
        (None, "https://login.salesforce.com"),
    ],
)
def test_login_host_for(org_type: str | None, url: str) -> None:
    assert login_host_for(org_type) == url


@pytest.mark.parametrize(
    ("address", "public"),
    [
        ("8.8.8.8", True),
        ("2a00:1450:4001:81c::200e", True),
        ("127.0.0.1", False),
        ("10.1.2.3", False),
        ("172.16.0.1", False),
        ("192.168.1.1", False),
        ("169.254.169.254", False),
        ("100.64.0.1", False),
        ("0.0.0.0", False),
        ("224.0.0.1", False),
        ("::1", False),
        ("fd00::1", False),
        ("fe80::1%eth0", False),
        ("::ffff:127.0.0.1", False),
        ("::ffff:169.254.169.254", False),
        ("not-an-ip", False),
    ],
)
def test_is_public_address(address: str, public: bool) -> None:
    assert is_public_address(address) is public


# --- IPv6 forms that embed an IPv4 address -------------------------------------

_V4 = ipaddress.IPv4Address
_V6 = ipaddress.IPv6Address
_TEREDO_SERVER = _V4("65.54.227.120")  # a public Teredo server


def _nat64(v4: _V4) -> _V6:  # 64:ff9b::a.b.c.d (RFC 6052)
    return _V6(int(_V6("64:ff9b::")) | int(v4))


def _nat64_local(v4: _V4) -> _V6:  # 64:ff9b:1::/48 with the RFC 6052 /48 layout
    high, low = int(v4) >> 16, int(v4) & 0xFFFF
    return _V6(int(_V6("64:ff9b:1::")) | high << 64 | low << 40)


def _sixtofour(v4: _V4) -> _V6:  # 2002:AABB:CCDD::1
    return _V6(int(_V6("2002::")) | int(v4) << 80 | 1)


def _teredo(v4: _V4) -> _V6:  # 2001:0:server:flags:port:client, obfuscated
    server = int(_TEREDO_SERVER) << 64
    return _V6(int(_V6("2001::")) | server | 0x8000 << 48 | (int(v4) ^ 0xFFFFFFFF))


def _compatible(v4: _V4) -> _V6:  # ::a.b.c.d
    return _V6(int(v4))


def _translated(v4: _V4) -> _V6:  # ::ffff:0:a.b.c.d (SIIT)
    return _V6(0xFFFF << 48 | int(v4))


def _mapped(v4: _V4) -> _V6:  # ::ffff:a.b.c.d
    return _V6(0xFFFF << 32 | int(v4))


TRANSITION_FORMS = [_nat64, _nat64_local, _sixtofour, _teredo, _compatible, _translated]
EMBEDDED = ["127.0.0.1", "10.0.0.1", "169.254.169.254", "100.64.0.1", "8.8.8.8"]


@pytest.mark.parametrize("v4", EMBEDDED)
def test_the_test_builders_embed_the_address(v4: str) -> None:
    address = _V4(v4)
    assert _sixtofour(address).sixtofour == address
    assert _teredo(address).teredo == (_TEREDO_SERVER, address)
    assert _mapped(address).ipv4_mapped == address
    assert _nat64(address) in ipaddress.IPv6Network("64:ff9b::/96")
    assert _nat64_local(address) in ipaddress.IPv6Network("64:ff9b:1::/48")
    assert int(_nat64(address)) & 0xFFFFFFFF == int(address)
    assert int(_compatible(address)) == int(int(_translated(address)) & 0xFFFFFFFF)


@pytest.mark.parametrize("v4", EMBEDDED)
@pytest.mark.parametrize("form", TRANSITION_FORMS, ids=lambda f: f.__name__[1:])
def test_transition_forms_are_never_public(form: Callable[[_V4], _V6], v4: str) -> None:
    """Even a public IPv4 address (8.8.8.8) behind NAT64, 6to4, Teredo,
    IPv4-compatible or IPv4-translated is refused."""
    address = form(_V4(v4))
    assert is_public_address(str(address)) is False
    assert is_public_address(f"{address}%eth0") is False


@pytest.mark.parametrize(
    ("v4", "public"),
    [
        ("127.0.0.1", False),
        ("10.0.0.1", False),
        ("169.254.169.254", False),
        ("100.64.0.1", False),
        ("8.8.8.8", True),
    ],
)
def test_ipv4_mapped_addresses_are_judged_by_their_ipv4(v4: str, public: bool) -> None:
    assert is_public_address(str(_mapped(_V4(v4)))) is public
    assert is_public_address(f"::ffff:{v4}") is public


@pytest.mark.parametrize(
    "address",
    [
        # NAT64, well-known and local-use prefixes
        "64:ff9b::7f00:1",
        "64:ff9b::127.0.0.1",
        "64:ff9b::10.0.0.1",
        "64:ff9b::a9fe:a9fe",
        "64:ff9b::8.8.8.8",
        "64:ff9b:1:7f00:0:100::",
        "64:ff9b:1:a9fe:a9:fe00::",
        # 6to4
        "2002:7f00:1::1",
        "2002:a00:1::",
        "2002:a9fe:a9fe::1",
        "2002:808:808::1",
        # Teredo: the client address is inverted (80ff:fffe = 127.0.0.1)
        "2001:0:4136:e378:8000:63bf:80ff:fffe",
        "2001:0:4136:e378:8000:63bf:f5ff:fffe",
        "2001:0:4136:e378:8000:63bf:5601:5601",
        "2001:0:4136:e378:8000:63bf:f7f7:f7f7",
        # IPv4-compatible (deprecated) and IPv4-translated
        "::127.0.0.1",
        "::10.0.0.1",
        "::169.254.169.254",
        "::8.8.8.8",
        "::ffff:0:127.0.0.1",
        "::ffff:0:a9fe:a9fe",
        "::ffff:0:8.8.8.8",
    ],
)
def test_transition_form_literals_are_refused(address: str) -> None:
    assert is_public_address(address) is False


@pytest.mark.parametrize(
    "address",
    [
        "8.8.8.8",
        "1.1.1.1",
        "2a00:1450::1",
        "2a00:1450:4001:81c::200e",
        "2606:4700:4700::1111",
        # 2001::/32 is Teredo; the rest of 2001::/16 is ordinary address space.
        "2001:4860:4860::8888",
        "::ffff:8.8.8.8",
    ],
)
def test_public_addresses_stay_public(address: str) -> None:
    assert is_public_address(address) is True


# §8 test vectors.
ID_VECTORS = [
    ("00D36000000arML", "00D36000000arMLEAY"),
    ("00536000000IigR", "00536000000IigRAAS"),
    ("00Dx0000000BV7z", "00Dx0000000BV7zEAG"),
    ("005x00000012Q9P", "005x00000012Q9PAAU"),
    ("a0D30000001n7Pi", "a0D30000001n7PiEAI"),
]


@pytest.mark.parametrize(("id15", "id18"), ID_VECTORS)
def test_to_18_vectors(id15: str, id18: str) -> None:
    assert to_18(id15) == id18
    assert to_18(id18) == id18
    # The checksum is case-insensitive; the result is canonical.
    assert to_18(id18[:15] + id18[15:].lower()) == id18
    assert same_id(id15, id18)
    assert same_id(id18, id15)


def test_gist_checksum_is_wrong() -> None:
    with pytest.raises(InvalidSalesforceId):
        to_18("a0D30000001n7PiEAC")


@pytest.mark.parametrize(
    "value", ["", "00D36000000arM", "00D36000000arMLEA", "00D36000000arML!", "x" * 19]
)
def test_to_18_rejects_malformed(value: str) -> None:
    with pytest.raises(InvalidSalesforceId):
        to_18(value)


def test_same_id_is_case_sensitive_on_the_first_15() -> None:
    assert not same_id("00D36000000arML", "00D36000000ARML")
    assert not same_id("00D36000000arML", "00D36000000arMM")
    assert not same_id("00D36000000arML", "garbage")
    assert not same_id("00D36000000arMLEAC", "00D36000000arML")
