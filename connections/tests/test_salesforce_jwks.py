"""``fetch_jwks`` against mocked HTTP (``responses``)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import requests
import responses

from connections import salesforce as sf

MY_DOMAIN = "https://acme.my.salesforce.com"
KEYS_URL = f"{MY_DOMAIN}/id/keys"
JWKS = {
    "keys": [{"kty": "RSA", "kid": "238", "alg": "RS256", "n": "AQAB", "e": "AQAB"}]
}


@pytest.fixture(autouse=True)
def sf_settings(settings: Any) -> Any:
    settings.SALESFORCE_SIMULATOR_URL = ""
    settings.SALESFORCE_CONNECT_TIMEOUT = 5.0
    settings.SALESFORCE_READ_TIMEOUT = 20.0
    settings.SALESFORCE_MAX_RETRIES = 2
    settings.SALESFORCE_RETRY_BACKOFF = 0.0
    return settings


@pytest.fixture
def http() -> Iterator[responses.RequestsMock]:
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        yield rsps


def test_it_gets_the_login_hosts_keys(http: responses.RequestsMock) -> None:
    http.get(KEYS_URL, json=JWKS)
    assert sf.fetch_jwks(login_url=MY_DOMAIN + "/") == JWKS
    (call,) = http.calls
    assert call.request.url == KEYS_URL
    assert "Authorization" not in call.request.headers


def test_it_sends_with_timeouts_and_no_redirects(
    http: responses.RequestsMock,
) -> None:
    seen: dict[str, Any] = {}
    original = requests.Session.send

    def spy(self: requests.Session, request: Any, **kwargs: Any) -> Any:
        seen.update(kwargs)
        return original(self, request, **kwargs)

    http.get(KEYS_URL, json=JWKS)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(requests.Session, "send", spy)
        sf.fetch_jwks(login_url=MY_DOMAIN)
    assert seen["timeout"] == (5.0, 20.0)
    assert seen["allow_redirects"] is False


def test_it_maps_onto_the_simulator(
    http: responses.RequestsMock, sf_settings: Any
) -> None:
    sf_settings.SALESFORCE_SIMULATOR_URL = "http://127.0.0.1:8765"
    http.get("http://127.0.0.1:8765/h/acme.my.salesforce.com/id/keys", json=JWKS)
    assert sf.fetch_jwks(login_url=MY_DOMAIN) == JWKS


@pytest.mark.parametrize(
    "url",
    [
        "https://evil.example.com",
        "http://acme.my.salesforce.com",
        "https://acme.lightning.force.com",
        "https://169.254.169.254",
    ],
)
def test_it_refuses_hosts_off_the_allow_list(
    http: responses.RequestsMock, url: str
) -> None:
    with pytest.raises(sf.UnsafeUrl):
        sf.fetch_jwks(login_url=url)
    assert len(http.calls) == 0


def test_transient_errors_are_retried(http: responses.RequestsMock) -> None:
    http.get(KEYS_URL, status=503, body="<html>down</html>")
    http.get(KEYS_URL, json=JWKS)
    assert sf.fetch_jwks(login_url=MY_DOMAIN) == JWKS
    assert len(http.calls) == 2


def test_a_redirect_is_reported_not_followed(http: responses.RequestsMock) -> None:
    http.get(KEYS_URL, status=302, headers={"Location": "https://evil.example/keys"})
    with pytest.raises(sf.HostUnreachable):
        sf.fetch_jwks(login_url=MY_DOMAIN)
    assert len(http.calls) == 1


@pytest.mark.parametrize(
    "kwargs",
    [
        {"body": "not json"},
        {"json": ["keys"]},
        {"json": {"keys": "none"}},
        {"json": {"issuer": MY_DOMAIN}},
    ],
)
def test_a_malformed_document_is_refused(
    http: responses.RequestsMock, kwargs: dict[str, Any]
) -> None:
    http.get(KEYS_URL, **kwargs)
    with pytest.raises(sf.MalformedResponse):
        sf.fetch_jwks(login_url=MY_DOMAIN)


def test_a_404_means_the_host_does_not_serve_keys(
    http: responses.RequestsMock,
) -> None:
    http.get(KEYS_URL, status=404, body="sfsim: unknown host")
    with pytest.raises(sf.HostUnreachable):
        sf.fetch_jwks(login_url=MY_DOMAIN)
