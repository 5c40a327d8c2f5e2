"""The Salesforce client against mocked HTTP (``responses``).

Sentinels are unique fake secrets: none may appear in a log record, an
error message or a ``repr``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import socket
from collections.abc import Iterator
from typing import Any
from unittest import mock
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
import responses
from urllib3.exceptions import MaxRetryError, NameResolutionError, NewConnectionError

from connections import salesforce as sf
from connections.salesforce import (
    errors,
    id_tokens,
    messages,
    oauth,
    rest,
    results,
    transport,
    urls,
)
from vbsf import http as outbound

LOGIN = "https://login.salesforce.com"
INSTANCE = "https://acme.my.salesforce.com"
ORG_ID = "00D36000000arMLEAY"
USER_ID = "00536000000IigRAAS"
ID_URL = f"{LOGIN}/id/{ORG_ID}/{USER_ID}"
TOKEN_URL = f"{LOGIN}/services/oauth2/token"
REVOKE_URL = f"{LOGIN}/services/oauth2/revoke"
DATA = f"{INSTANCE}/services/data/v66.0"
QUERY_URL = f"{DATA}/query"

CLIENT_ID = "3MVG9-client-id"
SECRET = "SENTINEL-client-secret-7f3a"
CODE = "SENTINEL-auth-code-91bc"
VERIFIER = "SENTINEL-code-verifier-0d2e-padding-to-forty-three-chars"
ACCESS = "00D36000000arML!SENTINEL-access-token-55aa"
REFRESH = "SENTINEL-refresh-token-c4d1"
NEW_REFRESH = "SENTINEL-rotated-refresh-8e21"
ID_TOKEN = "eyJSENTINEL-id-token.x.y"
SENTINELS = [SECRET, CODE, VERIFIER, ACCESS, REFRESH, NEW_REFRESH, ID_TOKEN]


@pytest.fixture(autouse=True)
def sf_settings(settings: Any) -> Any:
    settings.SALESFORCE_SIMULATOR_URL = ""
    settings.SALESFORCE_CONNECT_TIMEOUT = 5.0
    settings.SALESFORCE_READ_TIMEOUT = 20.0
    settings.SALESFORCE_API_VERSION = "66.0"
    settings.SALESFORCE_MAX_RETRIES = 2
    settings.SALESFORCE_RETRY_BACKOFF = 0.0
    return settings


@pytest.fixture
def http() -> Iterator[responses.RequestsMock]:
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        yield rsps


def signed_token_body(secret: str = SECRET, **overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "access_token": ACCESS,
        "refresh_token": REFRESH,
        "id_token": ID_TOKEN,
        "instance_url": INSTANCE,
        "id": ID_URL,
        "token_type": "Bearer",
        "issued_at": "1511895199410",
        "scope": "refresh_token api id openid",
    }
    body.update(overrides)
    message = f"{body['id']}{body['issued_at']}".encode()
    digest = hmac.new(secret.encode(), message, hashlib.sha256).digest()
    body.setdefault("signature", base64.b64encode(digest).decode())
    return body


def exchange(**overrides: Any) -> sf.TokenSet:
    kwargs: dict[str, Any] = {
        "login_url": LOGIN,
        "client_id": CLIENT_ID,
        "client_secret": SECRET,
        "code": CODE,
        "redirect_uri": "https://console.example/oauth/callback/",
        "code_verifier": VERIFIER,
    }
    kwargs.update(overrides)
    return sf.exchange_code(**kwargs)


def do_refresh(**overrides: Any) -> sf.TokenSet:
    kwargs: dict[str, Any] = {
        "login_url": LOGIN,
        "client_id": CLIENT_ID,
        "client_secret": SECRET,
        "refresh_token": REFRESH,
    }
    kwargs.update(overrides)
    return sf.refresh(**kwargs)


def form_of(call: Any) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(call.request.body).items()}


def assert_no_sentinel(*texts: str) -> None:
    for text in texts:
        for sentinel in SENTINELS:
            assert sentinel not in text


def dns_error() -> requests.ConnectionError:
    reason = NameResolutionError("acme.my.salesforce.com", None, socket.gaierror())  # type: ignore[arg-type]
    return requests.ConnectionError(MaxRetryError(None, "/", reason))  # type: ignore[arg-type]


def refused_error() -> requests.ConnectionError:
    reason = NewConnectionError(None, "Connection refused")  # type: ignore[arg-type]
    return requests.ConnectionError(MaxRetryError(None, "/", reason))  # type: ignore[arg-type]


# --- PKCE and the authorize URL ---------------------------------------------


def test_pkce_pair_is_s256_and_fresh() -> None:
    verifier, challenge = sf.new_pkce_pair()
    assert 43 <= len(verifier) <= 128
    assert set(verifier) <= set(
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    )
    digest = hashlib.sha256(verifier.encode()).digest()
    assert challenge == base64.urlsafe_b64encode(digest).rstrip(b"=").decode()
    assert sf.new_pkce_pair() != (verifier, challenge)


def test_authorize_url_carries_every_parameter() -> None:
    url = sf.build_authorize_url(
        login_url="https://ACME.my.salesforce.com/",
        client_id=CLIENT_ID,
        redirect_uri="https://console.example/oauth/callback/",
        scopes=["api", "refresh_token", "id"],
        state="state-1",
        code_challenge="challenge-1",
        prompt="login consent",
        nonce="nonce-1",
        login_hint="admin@acme.example",
    )
    parts = urlsplit(url)
    assert (parts.scheme, parts.hostname, parts.path) == (
        "https",
        "acme.my.salesforce.com",
        "/services/oauth2/authorize",
    )
    params = {k: v[0] for k, v in parse_qs(parts.query).items()}
    assert params == {
        "response_type": "code",
        "client_id": CLIENT_ID,
        "redirect_uri": "https://console.example/oauth/callback/",
        "scope": "api refresh_token id",
        "state": "state-1",
        "code_challenge": "challenge-1",
        "code_challenge_method": "S256",
        "prompt": "login consent",
        "nonce": "nonce-1",
        "login_hint": "admin@acme.example",
    }


def test_authorize_url_omits_unset_options() -> None:
    url = sf.build_authorize_url(
        login_url=LOGIN,
        client_id=CLIENT_ID,
        redirect_uri="http://localhost:8000/oauth/callback/",
        scopes=["api"],
        state="s",
        code_challenge="c",
    )
    params = parse_qs(urlsplit(url).query)
    assert not {"prompt", "nonce", "login_hint"} & set(params)


@pytest.mark.parametrize(
    "login_url",
    ["http://login.salesforce.com", "https://169.254.169.254", "https://evil.com"],
)
def test_authorize_url_rejects_unsafe_login_url(login_url: str) -> None:
    with pytest.raises(sf.UnsafeUrl) as caught:
        sf.build_authorize_url(
            login_url=login_url,
            client_id=CLIENT_ID,
            redirect_uri="https://console.example/cb",
            scopes=["api"],
            state="s",
            code_challenge="c",
        )
    assert caught.value.permanent is True


def test_start_authorization_ties_state_and_verifier_to_the_url() -> None:
    request = sf.start_authorization(
        login_url=LOGIN,
        client_id=CLIENT_ID,
        redirect_uri="https://console.example/cb",
        scopes=["api", "refresh_token"],
        with_nonce=True,
    )
    params = {k: v[0] for k, v in parse_qs(urlsplit(request.url).query).items()}
    digest = hashlib.sha256(request.code_verifier.encode()).digest()
    assert params["code_challenge"] == base64.urlsafe_b64encode(digest).rstrip(
        b"="
    ).decode("ascii")
    assert params["state"] == request.state
    assert params["nonce"] == request.nonce
    assert params["prompt"] == "login"
    assert request.state not in repr(request)
    assert request.code_verifier not in repr(request)
    other = sf.start_authorization(
        login_url=LOGIN,
        client_id=CLIENT_ID,
        redirect_uri="https://console.example/cb",
        scopes=["api"],
    )
    assert other.state != request.state
    assert other.code_verifier != request.code_verifier


# --- Simulator mapping -------------------------------------------------------


def test_wire_url_is_identity_without_simulator() -> None:
    url = "https://acme.my.salesforce.com/services/data/?x=1"
    assert sf.wire_url(url) == url


def test_wire_url_maps_onto_simulator(sf_settings: Any) -> None:
    sf_settings.SALESFORCE_SIMULATOR_URL = "http://127.0.0.1:8999/"
    assert (
        sf.wire_url("https://acme.my.salesforce.com/services/data/v66.0/query?q=a+b")
        == "http://127.0.0.1:8999/h/acme.my.salesforce.com/services/data/v66.0/query?q=a+b"
    )
    assert (
        sf.wire_url("https://login.salesforce.com")
        == "http://127.0.0.1:8999/h/login.salesforce.com/"
    )


def test_authorize_url_is_mapped_after_validation(sf_settings: Any) -> None:
    sf_settings.SALESFORCE_SIMULATOR_URL = "http://127.0.0.1:8999"
    url = sf.build_authorize_url(
        login_url="acme.my.salesforce.com",
        client_id=CLIENT_ID,
        redirect_uri="http://localhost:8000/oauth/callback/",
        scopes=["api"],
        state="s",
        code_challenge="c",
    )
    assert url.startswith(
        "http://127.0.0.1:8999/h/acme.my.salesforce.com/services/oauth2/authorize?"
    )
    # The simulator does not relax validation.
    with pytest.raises(sf.UnsafeUrl):
        sf.build_authorize_url(
            login_url="http://127.0.0.1:8999",
            client_id=CLIENT_ID,
            redirect_uri="http://localhost:8000/oauth/callback/",
            scopes=["api"],
            state="s",
            code_challenge="c",
        )


def test_server_calls_go_to_the_simulator(
    sf_settings: Any, http: responses.RequestsMock
) -> None:
    sf_settings.SALESFORCE_SIMULATOR_URL = "http://127.0.0.1:8999"
    http.post(
        "http://127.0.0.1:8999/h/login.salesforce.com/services/oauth2/token",
        json=signed_token_body(),
    )
    tokens = exchange()
    # Tokens keep the real-looking Salesforce URLs.
    assert tokens.instance_url == INSTANCE
    assert tokens.identity_url == ID_URL


def test_simulator_mode_still_rejects_unsafe_instance_url(
    sf_settings: Any, http: responses.RequestsMock
) -> None:
    sf_settings.SALESFORCE_SIMULATOR_URL = "http://127.0.0.1:8999"
    http.post(
        "http://127.0.0.1:8999/h/login.salesforce.com/services/oauth2/token",
        json=signed_token_body(instance_url="http://127.0.0.1:8999"),
    )
    with pytest.raises(sf.UnsafeUrl):
        exchange()


# --- Code exchange -----------------------------------------------------------


def test_exchange_code_returns_a_validated_token_set(
    http: responses.RequestsMock,
) -> None:
    http.post(TOKEN_URL, json=signed_token_body())
    tokens = exchange()
    assert tokens.access_token == ACCESS
    assert tokens.refresh_token == REFRESH
    assert tokens.id_token == ID_TOKEN
    assert tokens.instance_url == INSTANCE
    assert tokens.identity_url == ID_URL
    assert (tokens.org_id, tokens.user_id) == (ORG_ID, USER_ID)
    assert tokens.scopes == frozenset({"refresh_token", "api", "id", "openid"})
    assert tokens.issued_at.isoformat() == "2017-11-28T18:53:19.410000+00:00"

    (call,) = http.calls
    assert form_of(call) == {
        "grant_type": "authorization_code",
        "code": CODE,
        "client_id": CLIENT_ID,
        "client_secret": SECRET,
        "redirect_uri": "https://console.example/oauth/callback/",
        "code_verifier": VERIFIER,
    }
    assert call.request.headers["User-Agent"] == "vbsf-console"
    assert call.request.headers["Accept"] == "application/json"
    assert call.request.req_kwargs["timeout"] == (5.0, 20.0)
    assert not call.request.req_kwargs["proxies"]
    # R10: nothing secret in the URL.
    assert "?" not in call.request.url


def test_timeouts_come_from_settings_at_call_time(
    sf_settings: Any, http: responses.RequestsMock
) -> None:
    sf_settings.SALESFORCE_CONNECT_TIMEOUT = 1.5
    sf_settings.SALESFORCE_READ_TIMEOUT = 7.0
    http.post(TOKEN_URL, json=signed_token_body())
    exchange()
    assert http.calls[0].request.req_kwargs["timeout"] == (1.5, 7.0)


def test_15_character_ids_in_the_identity_url_are_widened(
    http: responses.RequestsMock,
) -> None:
    id_url = f"{LOGIN}/id/{ORG_ID[:15]}/{USER_ID[:15]}"
    http.post(TOKEN_URL, json=signed_token_body(id=id_url))
    tokens = exchange()
    assert (tokens.org_id, tokens.user_id) == (ORG_ID, USER_ID)


def test_a_sandbox_identity_url_on_test_is_accepted(
    http: responses.RequestsMock,
) -> None:
    body = signed_token_body(
        id=f"https://test.salesforce.com/id/{ORG_ID}/{USER_ID}",
        instance_url="https://acme--uat.sandbox.my.salesforce.com",
    )
    http.post(TOKEN_URL, json=body)
    assert exchange().instance_url == "https://acme--uat.sandbox.my.salesforce.com"


def test_a_missing_signature_is_accepted(http: responses.RequestsMock) -> None:
    body = signed_token_body()
    del body["signature"]
    http.post(TOKEN_URL, json=body)
    assert exchange().signature is None


@pytest.mark.parametrize(
    "body",
    [
        signed_token_body(secret="another-secret"),
        {**signed_token_body(), "issued_at": "1511895199411"},
        {**signed_token_body(), "signature": "not base64 at all"},
    ],
)
def test_a_wrong_signature_is_malformed(
    http: responses.RequestsMock, body: dict[str, Any]
) -> None:
    http.post(TOKEN_URL, json=body)
    with pytest.raises(sf.MalformedResponse) as caught:
        exchange()
    assert "signature" in caught.value.message
    assert_no_sentinel(caught.value.message, repr(caught.value))


@pytest.mark.parametrize(
    "overrides",
    [
        {"instance_url": "https://169.254.169.254"},
        {"instance_url": "http://acme.my.salesforce.com"},
        {"instance_url": "https://acme.my.salesforce.com:8443"},
        {"instance_url": "https://acme.lightning.force.com"},
        {"instance_url": "https://evil.com"},
        {"id": f"https://169.254.169.254/id/{ORG_ID}/{USER_ID}"},
        {"id": f"https://evil.com/id/{ORG_ID}/{USER_ID}"},
        {"id": f"https://user@login.salesforce.com/id/{ORG_ID}/{USER_ID}"},
    ],
)
def test_unsafe_urls_in_a_token_response_are_rejected(
    http: responses.RequestsMock, overrides: dict[str, str]
) -> None:
    """R37: a token response naming a non-Salesforce host is refused."""
    http.post(TOKEN_URL, json=signed_token_body(**overrides))
    with pytest.raises(sf.UnsafeUrl) as caught:
        exchange()
    assert caught.value.permanent is True
    assert len(http.calls) == 1


@pytest.mark.parametrize(
    "overrides",
    [
        {"id": f"{LOGIN}/id/{ORG_ID}"},
        {"id": f"{LOGIN}/id/{ORG_ID}/{USER_ID}/extra"},
        {"id": f"{LOGIN}/id/001360000000aaa/{USER_ID}"},
        {"id": f"{LOGIN}/id/00D36000000arMLEAC/{USER_ID}"},
        {"access_token": ""},
        {"access_token": None},
        {"instance_url": None},
        {"issued_at": "yesterday"},
    ],
)
def test_malformed_token_responses(
    http: responses.RequestsMock, overrides: dict[str, Any]
) -> None:
    http.post(TOKEN_URL, json=signed_token_body(**overrides))
    with pytest.raises(sf.MalformedResponse):
        exchange()


def test_exchange_rejects_tokens_of_another_org(http: responses.RequestsMock) -> None:
    http.post(TOKEN_URL, json=signed_token_body())
    with pytest.raises(sf.OrgMismatch) as caught:
        exchange(expected_org_id="00Dx0000000BV7z")
    error = caught.value
    assert (error.expected_org_id, error.actual_org_id) == (
        "00Dx0000000BV7zEAG",
        ORG_ID,
    )
    assert error.permanent is True
    assert ORG_ID in error.message


def test_exchange_accepts_the_expected_org_in_15_characters(
    http: responses.RequestsMock,
) -> None:
    http.post(TOKEN_URL, json=signed_token_body())
    assert exchange(expected_org_id=ORG_ID[:15]).org_id == ORG_ID


@pytest.mark.parametrize(
    ("granted", "required", "missing"),
    [
        ("api id", ["api", "refresh_token"], {"refresh_token"}),
        ("api offline_access", ["api", "refresh_token"], set()),
        ("refresh_token", ["offline_access"], set()),
        ("full", ["api", "web"], set()),
        ("full", ["api", "refresh_token"], {"refresh_token"}),
        ("id", ["api", "openid"], {"api", "openid"}),
    ],
)
def test_exchange_checks_required_scopes(
    http: responses.RequestsMock, granted: str, required: list[str], missing: set[str]
) -> None:
    http.post(TOKEN_URL, json=signed_token_body(scope=granted))
    if not missing:
        assert exchange(required_scopes=required).scopes == frozenset(granted.split())
        return
    with pytest.raises(sf.MissingScope) as caught:
        exchange(required_scopes=required)
    assert caught.value.missing == missing
    assert all(scope in caught.value.message for scope in missing)


# §4 error catalog: (status, body, content type, error class, code, permanent)
TOKEN_ERRORS = [
    (
        400,
        {
            "error": "invalid_client_id",
            "error_description": "client identifier invalid",
        },
        sf.CredentialsNotActive,
        "invalid_client_id",
        False,
    ),
    (
        400,
        {"error": "invalid_client", "error_description": "invalid client credentials"},
        sf.InvalidClientSecret,
        "invalid_client",
        True,
    ),
    (
        401,
        {"error": "invalid_client", "error_description": "invalid client credentials"},
        sf.InvalidClientSecret,
        "invalid_client",
        True,
    ),
    (
        400,
        {
            "error": "redirect_uri_mismatch",
            "error_description": "redirect_uri must match configuration",
        },
        sf.RedirectUriMismatch,
        "redirect_uri_mismatch",
        True,
    ),
    (
        400,
        {"error": "invalid_grant", "error_description": "expired authorization code"},
        sf.InvalidGrant,
        "invalid_grant",
        True,
    ),
    (
        400,
        {"error": "invalid_grant", "error_description": "expired access/refresh token"},
        sf.InvalidGrant,
        "invalid_grant",
        True,
    ),
    (
        400,
        {"error": "invalid_grant", "error_description": "authentication failure"},
        sf.InvalidGrant,
        "invalid_grant",
        True,
    ),
    (
        400,
        {"error": "invalid_grant", "error_description": "ip restricted"},
        sf.InvalidGrant,
        "invalid_grant",
        True,
    ),
    (
        400,
        {
            "error": "invalid_grant",
            "error_description": "user hasn't approved this consumer",
        },
        sf.InvalidGrant,
        "invalid_grant",
        True,
    ),
    (
        400,
        {"error": "inactive_user", "error_description": "User is inactive"},
        sf.InactiveUser,
        "inactive_user",
        True,
    ),
    (
        400,
        {
            "error": "inactive_org",
            "error_description": "Org is locked, closed, or suspended",
        },
        sf.InactiveOrg,
        "inactive_org",
        True,
    ),
    (
        400,
        {
            "error": "rate_limit_exceeded",
            "error_description": "Number of logins exceeded",
        },
        sf.RateLimited,
        "rate_limit_exceeded",
        False,
    ),
    (
        400,
        {
            "error": "invalid_scope",
            "error_description": "Requested scope is invalid, unknown, or malformed",
        },
        sf.MissingScope,
        "invalid_scope",
        True,
    ),
    # An older doc page's form of a PKCE mismatch; the wire answers
    # invalid_grant (test_a_wrong_code_verifier_is_invalid_grant).
    (
        400,
        {"error": "invalid_request", "error_description": "invalid code verifier"},
        sf.PkceError,
        "invalid_request",
        True,
    ),
    (
        400,
        {
            "error": "unsupported_grant_type",
            "error_description": "grant type not supported",
        },
        sf.SalesforceError,
        "unsupported_grant_type",
        True,
    ),
    (400, "<html><body>Bad Request</body></html>", sf.TransientError, None, False),
    (
        404,
        "<html><body>Not Found</body></html>",
        sf.HostUnreachable,
        "not_found",
        False,
    ),
    (404, "URL No Longer Exists", sf.HostUnreachable, "not_found", False),
    (500, "<html>Internal error</html>", sf.TransientError, "http_500", False),
    (503, "Service Unavailable", sf.TransientError, "http_503", False),
    (
        200,
        "<html>Salesforce is down for maintenance</html>",
        sf.MalformedResponse,
        None,
        False,
    ),
    (200, "not json", sf.MalformedResponse, None, False),
    (200, ["a", "list"], sf.MalformedResponse, None, False),
    (
        400,
        "error=invalid_grant&error_description=authentication+failure",
        sf.InvalidGrant,
        "invalid_grant",
        True,
    ),
]


@pytest.mark.parametrize(
    ("status", "body", "error_class", "code", "permanent"), TOKEN_ERRORS
)
def test_token_endpoint_errors_are_typed(
    http: responses.RequestsMock,
    status: int,
    body: Any,
    error_class: type[sf.SalesforceError],
    code: str | None,
    permanent: bool,
) -> None:
    if isinstance(body, str):
        content_type = "text/html" if body.startswith("<") else "text/plain"
        http.post(TOKEN_URL, body=body, status=status, content_type=content_type)
    else:
        http.post(TOKEN_URL, json=body, status=status)
    with pytest.raises(sf.SalesforceError) as caught:
        exchange()
    error = caught.value
    assert type(error) is error_class
    if code is not None:
        assert error.code == code
    assert error.permanent is permanent
    assert error.message and str(error) == error.message
    assert_no_sentinel(error.message, repr(error), error.description)
    # Authorization codes are single-use: never retried.
    assert len(http.calls) == 1


def test_invalid_grant_keeps_the_description(http: responses.RequestsMock) -> None:
    body = {
        "error": "invalid_grant",
        "error_description": "expired access/refresh token",
    }
    http.post(TOKEN_URL, json=body, status=400)
    with pytest.raises(sf.InvalidGrant) as caught:
        do_refresh()
    assert caught.value.description == "expired access/refresh token"
    assert "expired access/refresh token" in caught.value.message


def test_a_wrong_code_verifier_is_invalid_grant(http: responses.RequestsMock) -> None:
    """Salesforce's wire answer to a code exchanged with the wrong verifier
    (reference §2 "PKCE semantics")."""
    http.post(
        TOKEN_URL,
        body='{"error":"invalid_grant","error_description":"invalid code verifier"}',
        status=400,
        content_type="application/json;charset=UTF-8",
    )
    with pytest.raises(sf.SalesforceError) as caught:
        exchange()
    error = caught.value
    assert type(error) is sf.InvalidGrant
    assert error.code == "invalid_grant" and error.permanent is True
    assert error.description == "invalid code verifier"
    assert "invalid code verifier" in error.message
    assert "re-authorize" in error.message
    # The page of a failed exchange tells the admin to authorize again.
    assert sf.authorization_problem(error).endswith("Authorize again.")
    assert_no_sentinel(error.message, error.description, repr(error))
    # The verifier was sent, and the single-use code is never retried.
    assert len(http.calls) == 1
    assert form_of(http.calls[0])["code_verifier"] == VERIFIER


def test_an_echoed_secret_is_cut_from_the_description(
    http: responses.RequestsMock,
) -> None:
    body = {"error": "invalid_grant", "error_description": f"bad token {REFRESH}"}
    http.post(TOKEN_URL, json=body, status=400)
    with pytest.raises(sf.InvalidGrant) as caught:
        do_refresh()
    assert_no_sentinel(caught.value.message, caught.value.description)
    assert "[redacted]" in caught.value.description


# --- Redirects (R36) ---------------------------------------------------------


def test_a_redirect_is_not_followed(http: responses.RequestsMock) -> None:
    http.post(
        TOKEN_URL,
        status=302,
        headers={"Location": "http://127.0.0.1/steal?token=x"},
    )
    http.post("http://127.0.0.1/steal", json=signed_token_body())
    with pytest.raises(sf.HostUnreachable) as caught:
        exchange()
    assert caught.value.code == "redirect"
    assert "127.0.0.1" not in caught.value.message
    assert "non-Salesforce" in caught.value.message
    assert len(http.calls) == 1


def test_a_redirect_to_a_new_my_domain_is_reported(
    http: responses.RequestsMock,
) -> None:
    http.get(
        f"{DATA}/limits",
        status=301,
        headers={
            "Location": "https://acme2.my.salesforce.com/services/data/v66.0/limits"
        },
    )
    with pytest.raises(sf.HostUnreachable) as caught:
        sf.get_limits(instance_url=INSTANCE, access_token=ACCESS)
    assert "acme2.my.salesforce.com" in caught.value.message
    assert "org URL may have changed" in caught.value.message
    assert len(http.calls) == 1


def test_the_session_refuses_to_follow_redirects_even_when_asked(
    http: responses.RequestsMock,
) -> None:
    http.get(f"{INSTANCE}/a", status=302, headers={"Location": f"{INSTANCE}/b"})
    http.get(f"{INSTANCE}/b", body="followed")
    with sf.new_session() as session:
        response = session.get(f"{INSTANCE}/a", allow_redirects=True)
    assert response.status_code == 302
    assert len(http.calls) == 1
    assert http.calls[0].request.req_kwargs["timeout"] == (5.0, 20.0)


# --- Retries -----------------------------------------------------------------


def test_get_retries_503_a_bounded_number_of_times(
    http: responses.RequestsMock,
) -> None:
    http.get(f"{DATA}/limits", status=503, body="Service Unavailable")
    with pytest.raises(sf.TransientError) as caught:
        sf.get_limits(instance_url=INSTANCE, access_token=ACCESS)
    assert caught.value.code == "http_503"
    assert len(http.calls) == 3  # one try + SALESFORCE_MAX_RETRIES


def test_get_recovers_after_transient_failures(http: responses.RequestsMock) -> None:
    url = f"{DATA}/limits"
    http.get(url, status=502)
    http.get(url, body=requests.ReadTimeout("slow"))
    http.get(url, json={"DailyApiRequests": {"Max": 15000, "Remaining": 14980}})
    limits = sf.get_limits(instance_url=INSTANCE, access_token=ACCESS)
    assert limits["DailyApiRequests"]["Remaining"] == 14980
    assert len(http.calls) == 3


@pytest.mark.parametrize("retries", [0, 1, 4])
def test_retry_count_follows_the_setting(
    sf_settings: Any, http: responses.RequestsMock, retries: int
) -> None:
    sf_settings.SALESFORCE_MAX_RETRIES = retries
    http.get(f"{DATA}/limits", status=504)
    with pytest.raises(sf.TransientError):
        sf.get_limits(instance_url=INSTANCE, access_token=ACCESS)
    assert len(http.calls) == retries + 1


def test_backoff_grows_and_is_jittered(
    sf_settings: Any, http: responses.RequestsMock
) -> None:
    sf_settings.SALESFORCE_RETRY_BACKOFF = 0.5
    http.get(f"{DATA}/limits", status=503)
    with (
        mock.patch("connections.salesforce.transport.time.sleep") as sleep,
        mock.patch(
            "connections.salesforce.transport.random.uniform",
            side_effect=lambda a, b: b,
        ),
        pytest.raises(sf.TransientError),
    ):
        sf.get_limits(instance_url=INSTANCE, access_token=ACCESS)
    assert [c.args[0] for c in sleep.call_args_list] == [0.5, 1.0]


def test_429_honours_a_short_retry_after(
    http: responses.RequestsMock,
) -> None:
    url = f"{DATA}/limits"
    http.get(url, status=429, headers={"Retry-After": "2"})
    http.get(url, json={})
    with mock.patch("connections.salesforce.transport.time.sleep") as sleep:
        sf.get_limits(instance_url=INSTANCE, access_token=ACCESS)
    sleep.assert_called_once_with(2.0)


def test_429_with_a_long_retry_after_is_left_to_the_caller(
    http: responses.RequestsMock,
) -> None:
    http.get(f"{DATA}/limits", status=429, headers={"Retry-After": "120"})
    with pytest.raises(sf.RateLimited) as caught:
        sf.get_limits(instance_url=INSTANCE, access_token=ACCESS)
    assert caught.value.retry_after == 120.0
    assert caught.value.permanent is False
    assert len(http.calls) == 1


@pytest.mark.parametrize(
    "failure",
    [
        {"status": 503},
        {"status": 502},
        {"body": requests.ReadTimeout("slow")},
        {"body": requests.ConnectTimeout("no connect")},
        {"body": dns_error()},
    ],
)
def test_code_exchange_is_never_retried(
    http: responses.RequestsMock, failure: dict[str, Any]
) -> None:
    http.post(TOKEN_URL, **failure)
    http.post(TOKEN_URL, json=signed_token_body())
    with pytest.raises(sf.SalesforceError):
        exchange()
    assert len(http.calls) == 1


@pytest.mark.parametrize(
    ("failure", "calls"),
    [
        # Salesforce cannot have processed these: safe to repeat.
        ({"status": 503}, 2),
        ({"status": 429}, 2),
        ({"body": requests.ConnectTimeout("no connect")}, 2),
        ({"body": refused_error()}, 2),
        # These may have rotated the refresh token already.
        ({"status": 502}, 1),
        ({"status": 504}, 1),
        ({"body": requests.ReadTimeout("slow")}, 1),
        ({"body": requests.ConnectionError("reset by peer")}, 1),
    ],
)
def test_refresh_retries_only_unprocessed_requests(
    http: responses.RequestsMock, failure: dict[str, Any], calls: int
) -> None:
    http.post(TOKEN_URL, **failure)
    http.post(TOKEN_URL, json=signed_token_body())
    if calls == 2:
        assert do_refresh().access_token == ACCESS
    else:
        with pytest.raises(sf.TransientError):
            do_refresh()
    assert len(http.calls) == calls


# --- Transport failures --------------------------------------------------------


def test_a_read_timeout_is_transient(http: responses.RequestsMock) -> None:
    http.get(f"{DATA}/limits", body=requests.ReadTimeout("slow"))
    with pytest.raises(sf.TransientError) as caught:
        sf.get_limits(instance_url=INSTANCE, access_token=ACCESS)
    assert caught.value.code == "timeout"
    assert caught.value.permanent is False
    assert caught.value.__cause__ is None
    assert len(http.calls) == 3


@pytest.mark.parametrize(
    ("failure", "code"), [(dns_error(), "dns"), (refused_error(), "refused")]
)
def test_unreachable_hosts(
    http: responses.RequestsMock, failure: Exception, code: str
) -> None:
    http.get(f"{DATA}/limits", body=failure)
    with pytest.raises(sf.HostUnreachable) as caught:
        sf.get_limits(instance_url=INSTANCE, access_token=ACCESS)
    assert caught.value.code == code
    assert "acme.my.salesforce.com" in caught.value.message
    assert len(http.calls) == 3


def test_a_broken_connection_is_transient(http: responses.RequestsMock) -> None:
    http.get(f"{DATA}/limits", body=requests.ConnectionError("reset by peer"))
    with pytest.raises(sf.TransientError) as caught:
        sf.get_limits(instance_url=INSTANCE, access_token=ACCESS)
    assert caught.value.code == "connection_error"


def test_an_unsafe_instance_url_is_refused_before_any_request(
    http: responses.RequestsMock,
) -> None:
    with pytest.raises(sf.UnsafeUrl):
        sf.get_limits(instance_url="https://169.254.169.254", access_token=ACCESS)
    with pytest.raises(sf.UnsafeUrl):
        sf.query(
            instance_url="http://acme.my.salesforce.com", access_token=ACCESS, soql="x"
        )
    with pytest.raises(sf.UnsafeUrl):
        sf.get_identity(identity_url="https://evil.com/id/a/b", access_token=ACCESS)
    assert len(http.calls) == 0


# --- Connect-time address check (R35) ------------------------------------------


def _addrinfo(*addresses: str) -> Any:
    def fake(host: str, port: int, *args: Any, **kwargs: Any) -> list[Any]:
        return [
            (
                socket.AF_INET6 if ":" in a else socket.AF_INET,
                socket.SOCK_STREAM,
                6,
                "",
                (a, port),
            )
            for a in addresses
        ]

    return fake


@pytest.mark.parametrize(
    "addresses",
    [
        ("169.254.169.254",),
        ("127.0.0.1",),
        ("10.0.0.5",),
        ("8.8.8.8", "192.168.0.1"),
        ("::1",),
        # IPv6 transition forms embedding 169.254.169.254, 127.0.0.1, 10.0.0.1
        ("64:ff9b::a9fe:a9fe",),
        ("2002:7f00:1::1",),
        ("2001:0:4136:e378:8000:63bf:f5ff:fffe",),
        ("2a00:1450::1", "::127.0.0.1"),
    ],
)
def test_hosts_resolving_to_private_addresses_are_refused(
    addresses: tuple[str, ...],
) -> None:
    with (
        mock.patch("socket.getaddrinfo", side_effect=_addrinfo(*addresses)),
        mock.patch("urllib3.util.connection.create_connection") as connect,
        pytest.raises(sf.UnsafeUrl),
    ):
        sf.list_api_versions(instance_url=INSTANCE)
    connect.assert_not_called()


def test_public_addresses_are_connected_to_directly() -> None:
    with (
        mock.patch("socket.getaddrinfo", side_effect=_addrinfo("8.8.4.4", "8.8.8.8")),
        mock.patch(
            "urllib3.util.connection.create_connection",
            side_effect=ConnectionRefusedError(),
        ) as connect,
        pytest.raises(sf.HostUnreachable) as caught,
    ):
        sf.list_api_versions(instance_url=INSTANCE)
    # The validated addresses are used, each in turn, so DNS cannot change
    # in between; then the whole request is retried.
    targets = [c.args[0] for c in connect.call_args_list]
    assert targets == [("8.8.4.4", 443), ("8.8.8.8", 443)] * 3
    assert caught.value.code == "refused"


def test_tls_still_verifies_the_host_name() -> None:
    """The socket goes to the checked IP; TLS (SNI and certificate) keeps
    using the host name."""
    conn = outbound.GuardedHTTPSConnection("acme.my.salesforce.com", 443)
    with (
        mock.patch("socket.getaddrinfo", side_effect=_addrinfo("8.8.4.4")),
        mock.patch("urllib3.util.connection.create_connection") as connect,
    ):
        conn._new_conn()
    assert connect.call_args.args[0] == ("8.8.4.4", 443)
    assert conn.host == "acme.my.salesforce.com"


def test_the_address_check_is_off_for_the_simulator(sf_settings: Any) -> None:
    sf_settings.SALESFORCE_SIMULATOR_URL = "http://127.0.0.1:8999"
    session = sf.new_session()
    assert not isinstance(session.get_adapter("https://x"), outbound.GuardedAdapter)
    sf_settings.SALESFORCE_SIMULATOR_URL = ""
    assert isinstance(
        sf.new_session().get_adapter("https://x"), outbound.GuardedAdapter
    )
    assert sf.new_session().trust_env is False


# --- Refresh, revoke, activation probe -------------------------------------------


def test_refresh_without_rotation_returns_no_refresh_token(
    http: responses.RequestsMock,
) -> None:
    body = signed_token_body()
    del body["refresh_token"]
    http.post(TOKEN_URL, json=body)
    tokens = do_refresh()
    assert tokens.refresh_token is None
    assert tokens.access_token == ACCESS
    assert form_of(http.calls[0]) == {
        "grant_type": "refresh_token",
        "refresh_token": REFRESH,
        "client_id": CLIENT_ID,
        "client_secret": SECRET,
    }


def test_refresh_with_rotation_returns_the_new_token(
    http: responses.RequestsMock,
) -> None:
    http.post(TOKEN_URL, json=signed_token_body(refresh_token=NEW_REFRESH))
    assert do_refresh().refresh_token == NEW_REFRESH


def test_refresh_detects_a_changed_org(http: responses.RequestsMock) -> None:
    http.post(TOKEN_URL, json=signed_token_body())
    with pytest.raises(sf.OrgMismatch):
        do_refresh(expected_org_id="00Dx0000000BV7zEAG")


@pytest.mark.parametrize(
    ("status", "body", "content_type"),
    [
        (200, "", "text/plain"),
        (400, "error=invalid_token&error_description=invalid+token", "text/plain"),
        (
            400,
            '{"error":"invalid_token","error_description":"invalid token"}',
            "application/json",
        ),
        (400, "error=unsupported_token_type", "application/x-www-form-urlencoded"),
    ],
)
def test_revoke_treats_dead_tokens_as_revoked(
    http: responses.RequestsMock, status: int, body: str, content_type: str
) -> None:
    http.post(REVOKE_URL, body=body, status=status, content_type=content_type)
    assert sf.revoke(login_url=LOGIN, token=REFRESH) is None
    (call,) = http.calls
    assert form_of(call) == {"token": REFRESH}
    assert "?" not in call.request.url


def test_revoke_raises_on_transient_errors(http: responses.RequestsMock) -> None:
    http.post(REVOKE_URL, status=503)
    with pytest.raises(sf.TransientError):
        sf.revoke(login_url=LOGIN, token=REFRESH)
    assert len(http.calls) == 3


def test_revoke_raises_on_other_errors(http: responses.RequestsMock) -> None:
    http.post(
        REVOKE_URL, status=400, body="error=invalid_request", content_type="text/plain"
    )
    with pytest.raises(sf.SalesforceError) as caught:
        sf.revoke(login_url=LOGIN, token=REFRESH)
    assert caught.value.code == "invalid_request"


@pytest.mark.parametrize(
    ("error", "result"),
    [
        ("invalid_client_id", sf.ActivationProbe.NOT_ACTIVE),
        ("invalid_client", sf.ActivationProbe.WRONG_SECRET),
        ("invalid_grant", sf.ActivationProbe.ACTIVE),
    ],
)
def test_probe_activation(
    http: responses.RequestsMock, error: str, result: sf.ActivationProbe
) -> None:
    http.post(TOKEN_URL, json={"error": error, "error_description": "x"}, status=400)
    assert (
        sf.probe_activation(login_url=LOGIN, client_id=CLIENT_ID, client_secret=SECRET)
        is result
    )
    sent = form_of(http.calls[0])
    assert sent["grant_type"] == "refresh_token"
    assert sent["client_id"] == CLIENT_ID
    assert sent["client_secret"] == SECRET
    assert sent["refresh_token"] not in SENTINELS


def test_probe_activation_transient(http: responses.RequestsMock) -> None:
    http.post(TOKEN_URL, status=503)
    with pytest.raises(sf.TransientError):
        sf.probe_activation(login_url=LOGIN, client_id=CLIENT_ID, client_secret=SECRET)
    assert len(http.calls) == 3


def test_probe_activation_other_errors_raise(http: responses.RequestsMock) -> None:
    http.post(TOKEN_URL, json={"error": "inactive_org"}, status=400)
    with pytest.raises(sf.InactiveOrg):
        sf.probe_activation(login_url=LOGIN, client_id=CLIENT_ID, client_secret=SECRET)


def test_probe_activation_success_is_suspicious(http: responses.RequestsMock) -> None:
    http.post(TOKEN_URL, json=signed_token_body())
    with pytest.raises(sf.MalformedResponse):
        sf.probe_activation(login_url=LOGIN, client_id=CLIENT_ID, client_secret=SECRET)


# --- Callback errors ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("error", "description", "error_class"),
    [
        ("access_denied", "end-user denied authorization", sf.AccessDenied),
        ("OAUTH_APP_BLOCKED", "this app is blocked by admin", sf.InvalidGrant),
        ("OAUTH_APPROVAL_ERROR_GENERIC", "", sf.InvalidGrant),
        ("invalid_client_id", "client identifier invalid", sf.InvalidClient),
        (
            "redirect_uri_mismatch",
            "redirect_uri must match configuration",
            sf.RedirectUriMismatch,
        ),
        ("invalid_request", "missing required code challenge", sf.PkceError),
        ("invalid_scope", "", sf.MissingScope),
        ("immediate_unsuccessful", "", sf.SalesforceError),
        ("<script>", "x", sf.SalesforceError),
    ],
)
def test_error_from_callback(
    error: str, description: str, error_class: type[sf.SalesforceError]
) -> None:
    result = sf.error_from_callback(error=error, description=description)
    assert type(result) is error_class
    assert result.permanent is True
    assert "<script>" not in result.code


# --- Identity and userinfo -----------------------------------------------------------

IDENTITY_BODY = {
    "id": ID_URL,
    "user_id": USER_ID,
    "organization_id": ORG_ID,
    "username": "a@b.com",
    "display_name": "Pipe Dream",
    "email": "a@b.com",
    "active": True,
    "user_type": "STANDARD",
}


def test_get_identity(http: responses.RequestsMock) -> None:
    http.get(ID_URL, json=IDENTITY_BODY)
    identity = sf.get_identity(identity_url=ID_URL, access_token=ACCESS)
    assert identity == sf.Identity(
        user_id=USER_ID,
        org_id=ORG_ID,
        username="a@b.com",
        display_name="Pipe Dream",
        email="a@b.com",
        active=True,
        user_type="STANDARD",
    )
    request = http.calls[0].request
    assert request.headers["Authorization"] == f"Bearer {ACCESS}"
    assert "oauth_token" not in request.url and "?" not in request.url


def test_identity_with_a_bad_token(http: responses.RequestsMock) -> None:
    http.get(ID_URL, body="Bad_OAuth_Token", status=403, content_type="text/plain")
    with pytest.raises(sf.SessionInvalid) as caught:
        sf.get_identity(identity_url=ID_URL, access_token=ACCESS)
    assert caught.value.permanent is False
    assert len(http.calls) == 1


def test_identity_with_a_malformed_body(http: responses.RequestsMock) -> None:
    http.get(ID_URL, json={"user_id": "nope"})
    with pytest.raises(sf.MalformedResponse):
        sf.get_identity(identity_url=ID_URL, access_token=ACCESS)


def test_userinfo(http: responses.RequestsMock) -> None:
    url = f"{LOGIN}/services/oauth2/userinfo"
    http.get(url, json={"sub": ID_URL, "user_id": USER_ID})
    assert sf.userinfo(login_url=LOGIN, access_token=ACCESS)["user_id"] == USER_ID
    http.get(url, body="Bad_OAuth_Token", status=403)
    with pytest.raises(sf.SessionInvalid):
        sf.userinfo(login_url=LOGIN, access_token=ACCESS)


# --- REST ------------------------------------------------------------------------------

REST_ERRORS = [
    (
        401,
        [{"message": "Session expired or invalid", "errorCode": "INVALID_SESSION_ID"}],
        sf.SessionInvalid,
        "INVALID_SESSION_ID",
        False,
    ),
    (
        401,
        [
            {
                "message": "This session is not valid for use with the REST API",
                "errorCode": "INVALID_SESSION_ID",
            }
        ],
        sf.MissingScope,
        "INVALID_SESSION_ID",
        True,
    ),
    (
        403,
        [
            {
                "message": "TotalRequests Limit exceeded.",
                "errorCode": "REQUEST_LIMIT_EXCEEDED",
            }
        ],
        sf.RateLimited,
        "REQUEST_LIMIT_EXCEEDED",
        False,
    ),
    (
        403,
        [
            {
                "message": "API is disabled for this User",
                "errorCode": "API_DISABLED_FOR_ORG",
            }
        ],
        sf.PermissionMissing,
        "API_DISABLED_FOR_ORG",
        True,
    ),
    (
        400,
        [{"message": "unexpected token: FORM", "errorCode": "MALFORMED_QUERY"}],
        sf.InvalidQuery,
        "MALFORMED_QUERY",
        True,
    ),
    (
        404,
        [
            {
                "message": "The requested resource does not exist",
                "errorCode": "NOT_FOUND",
            }
        ],
        sf.SalesforceError,
        "NOT_FOUND",
        True,
    ),
    (404, "<html>Unknown host</html>", sf.HostUnreachable, "not_found", False),
    (
        500,
        [{"message": "An unexpected error occurred", "errorCode": "UNKNOWN_EXCEPTION"}],
        sf.TransientError,
        "http_500",
        False,
    ),
    (503, "<html>Maintenance</html>", sf.TransientError, "http_503", False),
    (429, "", sf.RateLimited, "rate_limited", False),
    (200, "<html>login page</html>", sf.MalformedResponse, "malformed_response", False),
    (200, "[1, 2]", sf.MalformedResponse, "malformed_response", False),
]


@pytest.mark.parametrize(
    ("status", "body", "error_class", "code", "permanent"), REST_ERRORS
)
def test_rest_errors_are_typed(
    http: responses.RequestsMock,
    status: int,
    body: Any,
    error_class: type[sf.SalesforceError],
    code: str,
    permanent: bool,
) -> None:
    if isinstance(body, str):
        http.get(f"{DATA}/limits", body=body, status=status, content_type="text/html")
    else:
        http.get(f"{DATA}/limits", json=body, status=status)
    with pytest.raises(sf.SalesforceError) as caught:
        sf.get_limits(instance_url=INSTANCE, access_token=ACCESS)
    error = caught.value
    assert type(error) is error_class
    assert (error.code, error.permanent) == (code, permanent)
    if error_class is sf.MissingScope:
        assert error.missing == {"api"}
    assert_no_sentinel(error.message, repr(error))


def test_list_api_versions(http: responses.RequestsMock) -> None:
    http.get(
        f"{INSTANCE}/services/data/",
        json=[
            {"label": "Winter '26", "url": "/services/data/v65.0", "version": "65.0"},
            {"label": "Summer '14", "url": "/services/data/v31.0", "version": "31.0"},
            {"label": "Spring '26", "url": "/services/data/v66.0", "version": "66.0"},
        ],
    )
    assert sf.list_api_versions(instance_url=INSTANCE) == ["31.0", "65.0", "66.0"]
    assert "Authorization" not in http.calls[0].request.headers


def page(records: list[dict[str, Any]], next_url: str | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {
        "totalSize": 99,
        "done": next_url is None,
        "records": [
            {"attributes": {"type": "User", "url": "/x"}, **r} for r in records
        ],
    }
    if next_url:
        body["nextRecordsUrl"] = next_url
    return body


def test_query_follows_next_records_url(http: responses.RequestsMock) -> None:
    next_url = "/services/data/v66.0/query/01gD0000002HU6KIAW-2000"
    http.get(QUERY_URL, json=page([{"Id": "1"}], next_url))
    http.get(
        f"{INSTANCE}{next_url}",
        json=page([{"Id": "2", "Profile": {"attributes": {}, "Name": "P"}}]),
    )
    records = sf.query(
        instance_url=INSTANCE, access_token=ACCESS, soql="SELECT Id FROM User"
    )
    assert records == [{"Id": "1"}, {"Id": "2", "Profile": {"Name": "P"}}]
    assert parse_qs(urlsplit(http.calls[0].request.url).query) == {
        "q": ["SELECT Id FROM User"]
    }


def test_query_stops_after_ten_pages(http: responses.RequestsMock) -> None:
    next_url = "/services/data/v66.0/query/01gD0000002HU6KIAW-2000"
    http.get(QUERY_URL, json=page([{"Id": "1"}], next_url))
    http.get(f"{INSTANCE}{next_url}", json=page([{"Id": "1"}], next_url))
    with pytest.raises(sf.MalformedResponse):
        sf.query(instance_url=INSTANCE, access_token=ACCESS, soql="SELECT Id FROM User")
    assert len(http.calls) == 10


@pytest.mark.parametrize(
    "next_url",
    [
        "https://evil.com/services/data/v66.0/query/01g-2000",
        "//evil.com/x",
        "/services/data/../../x",
    ],
)
def test_query_refuses_foreign_next_records_urls(
    http: responses.RequestsMock, next_url: str
) -> None:
    http.get(QUERY_URL, json=page([{"Id": "1"}], next_url))
    with pytest.raises(sf.MalformedResponse):
        sf.query(instance_url=INSTANCE, access_token=ACCESS, soql="SELECT Id FROM User")
    assert len(http.calls) == 1


ORG_ROW = {
    "Id": ORG_ID,
    "Name": "Acme",
    "OrganizationType": "Enterprise Edition",
    "IsSandbox": False,
    "InstanceName": "NA123",
    "TrialExpirationDate": None,
    "NamespacePrefix": None,
}


def test_get_organization_and_check_org(http: responses.RequestsMock) -> None:
    http.get(QUERY_URL, json=page([ORG_ROW]))
    assert (
        sf.get_organization(
            instance_url=INSTANCE, access_token=ACCESS, org_id=ORG_ID[:15]
        )
        == ORG_ROW
    )
    result = sf.check_org(
        instance_url=INSTANCE, access_token=ACCESS, expected_org_id=ORG_ID
    )
    assert result["org_type"] == "production"
    assert result["Name"] == "Acme"


def test_check_org_detects_another_org(http: responses.RequestsMock) -> None:
    http.get(QUERY_URL, json=page([{**ORG_ROW, "Id": "00Dx0000000BV7zEAG"}]))
    with pytest.raises(sf.OrgMismatch) as caught:
        sf.check_org(instance_url=INSTANCE, access_token=ACCESS, expected_org_id=ORG_ID)
    assert caught.value.actual_org_id == "00Dx0000000BV7zEAG"
    assert caught.value.expected_org_id == ORG_ID


@pytest.mark.parametrize(
    ("row", "org_type"),
    [
        ({"IsSandbox": True, "TrialExpirationDate": None}, "sandbox"),
        (
            {"IsSandbox": True, "TrialExpirationDate": "2026-12-01T00:00:00.000+0000"},
            "scratch",
        ),
        ({"IsSandbox": False, "OrganizationType": "Developer Edition"}, "developer"),
        ({"IsSandbox": False, "OrganizationType": "Unlimited Edition"}, "production"),
    ],
)
def test_org_type_of(row: dict[str, Any], org_type: str) -> None:
    assert sf.org_type_of(row) == org_type


PERMISSIONS = [
    "PermissionsApiEnabled",
    "PermissionsViewAllData",
    "PermissionsQueryAllFiles",
]


def test_fetch_user_permissions_in_one_query(http: responses.RequestsMock) -> None:
    http.get(
        QUERY_URL,
        json=page(
            [
                {
                    "PermissionsApiEnabled": True,
                    "PermissionsViewAllData": False,
                    "PermissionsQueryAllFiles": True,
                }
            ]
        ),
    )
    result = sf.fetch_user_permissions(
        instance_url=INSTANCE, access_token=ACCESS, fields=PERMISSIONS
    )
    assert result == {
        "PermissionsApiEnabled": True,
        "PermissionsViewAllData": False,
        "PermissionsQueryAllFiles": True,
    }
    assert result.unknown_fields == frozenset()
    soql = parse_qs(urlsplit(http.calls[0].request.url).query)["q"][0]
    assert soql == f"SELECT {', '.join(PERMISSIONS)} FROM UserPermissionAccess"


def test_fetch_user_permissions_falls_back_field_by_field(
    http: responses.RequestsMock, caplog: pytest.LogCaptureFixture
) -> None:
    invalid = [
        {
            "message": "No such column 'PermissionsQueryAllFiles'",
            "errorCode": "INVALID_FIELD",
        }
    ]

    def answer(request: Any) -> tuple[int, dict[str, str], str]:
        soql = parse_qs(urlsplit(request.url).query)["q"][0]
        if "PermissionsQueryAllFiles" in soql:
            return 400, {}, json.dumps(invalid)
        field = soql.split()[1]
        return 200, {}, json.dumps(page([{field: field == "PermissionsApiEnabled"}]))

    http.add_callback(
        responses.GET, QUERY_URL, callback=answer, content_type="application/json"
    )
    with caplog.at_level(logging.WARNING, logger="vbsf.salesforce"):
        result = sf.fetch_user_permissions(
            instance_url=INSTANCE, access_token=ACCESS, fields=PERMISSIONS
        )
    assert result == {
        "PermissionsApiEnabled": True,
        "PermissionsViewAllData": False,
        "PermissionsQueryAllFiles": False,
    }
    assert result.unknown_fields == {"PermissionsQueryAllFiles"}
    assert len(http.calls) == 4
    assert "PermissionsQueryAllFiles" in caplog.text


def test_fetch_user_permissions_refuses_injection() -> None:
    with pytest.raises(ValueError):
        sf.fetch_user_permissions(
            instance_url=INSTANCE, access_token=ACCESS, fields=["Id FROM User --"]
        )


def test_fetch_user(http: responses.RequestsMock) -> None:
    row = {
        "Id": USER_ID,
        "Username": "a@b.com",
        "IsActive": True,
        "UserType": "Standard",
        "Profile": {
            "attributes": {},
            "Name": "System Administrator",
            "UserLicense": {"attributes": {}, "Name": "Salesforce"},
        },
    }
    http.get(QUERY_URL, json=page([row]))
    assert sf.fetch_user(
        instance_url=INSTANCE, access_token=ACCESS, user_id=USER_ID[:15]
    ) == {
        "user_id": USER_ID,
        "username": "a@b.com",
        "is_active": True,
        "user_type": "Standard",
        "profile_name": "System Administrator",
        "license_name": "Salesforce",
    }
    soql = parse_qs(urlsplit(http.calls[0].request.url).query)["q"][0]
    assert soql.endswith(f"FROM User WHERE Id = '{USER_ID}'")


def test_fetch_user_without_license_relationship(http: responses.RequestsMock) -> None:
    invalid = [
        {
            "message": "Didn't understand relationship 'UserLicense'",
            "errorCode": "INVALID_FIELD",
        }
    ]
    http.get(QUERY_URL, json=invalid, status=400)
    http.get(
        QUERY_URL,
        json=page(
            [
                {
                    "Id": USER_ID,
                    "Username": "u",
                    "IsActive": False,
                    "UserType": "Standard",
                    "Profile": None,
                }
            ]
        ),
    )
    user = sf.fetch_user(instance_url=INSTANCE, access_token=ACCESS, user_id=USER_ID)
    assert user["license_name"] is None
    assert user["profile_name"] is None
    assert user["is_active"] is False


def test_fetch_user_not_found(http: responses.RequestsMock) -> None:
    http.get(QUERY_URL, json=page([]))
    with pytest.raises(sf.SalesforceError) as caught:
        sf.fetch_user(instance_url=INSTANCE, access_token=ACCESS, user_id=USER_ID)
    assert caught.value.code == "NOT_FOUND"


# --- Secrets stay secret -----------------------------------------------------------------


def test_reprs_hide_secrets(http: responses.RequestsMock) -> None:
    http.post(TOKEN_URL, json=signed_token_body())
    tokens = exchange()
    assert_no_sentinel(repr(tokens), str(tokens))
    assert "acme.my.salesforce.com" in repr(tokens)
    request = sf.AuthorizationRequest(
        url="u", state="s", code_verifier=VERIFIER, nonce="n"
    )
    assert_no_sentinel(repr(request))


def test_logs_name_the_call_but_hold_no_secrets(
    http: responses.RequestsMock, caplog: pytest.LogCaptureFixture
) -> None:
    http.post(TOKEN_URL, json=signed_token_body())
    http.post(REVOKE_URL, body="")
    http.get(ID_URL, json=IDENTITY_BODY)
    http.get(
        QUERY_URL,
        status=401,
        json=[{"message": f"bad {ACCESS}", "errorCode": "INVALID_SESSION_ID"}],
    )
    with caplog.at_level(logging.DEBUG):
        tokens = exchange()
        do_refresh()
        sf.revoke(login_url=LOGIN, token=REFRESH)
        sf.get_identity(
            identity_url=tokens.identity_url, access_token=tokens.access_token
        )
        with pytest.raises(sf.SessionInvalid) as caught:
            sf.query(
                instance_url=INSTANCE, access_token=ACCESS, soql="SELECT Id FROM User"
            )
    assert_no_sentinel(caplog.text, *(r.getMessage() for r in caplog.records))
    assert_no_sentinel(caught.value.message)
    messages = [r.getMessage() for r in caplog.records if r.name == "vbsf.salesforce"]
    assert any(
        m.startswith(
            "salesforce POST login.salesforce.com/services/oauth2/token -> 200"
        )
        for m in messages
    )
    assert any(f"/id/{ORG_ID}/{USER_ID} -> 200" in m for m in messages)
    assert any("/services/data/v66.0/query -> 401" in m for m in messages)
    # Query strings (SOQL) are not logged either.
    assert not any("SELECT" in m for m in messages)


def test_errors_carry_no_exception_chain_with_requests(
    http: responses.RequestsMock,
) -> None:
    http.get(f"{DATA}/limits", body=requests.ConnectTimeout("x"))
    with pytest.raises(sf.TransientError) as caught:
        sf.get_limits(instance_url=INSTANCE, access_token=ACCESS)
    # The requests exception holds the request, Authorization header included.
    assert caught.value.__cause__ is None
    assert caught.value.__suppress_context__ is True


def test_error_classes_and_permanence() -> None:
    permanent = {
        sf.InvalidGrant,
        sf.InactiveUser,
        sf.InactiveOrg,
        sf.InvalidClientSecret,
        sf.InvalidClient,
        sf.RedirectUriMismatch,
        sf.PkceError,
        sf.UnsafeUrl,
        sf.PermissionMissing,
        sf.AccessDenied,
        sf.InvalidQuery,
    }
    transient = {
        sf.CredentialsNotActive,
        sf.SessionInvalid,
        sf.RateLimited,
        sf.HostUnreachable,
        sf.TransientError,
        sf.MalformedResponse,
    }
    for cls in permanent:
        assert cls().permanent is True, cls
        assert cls().message
    for cls in transient:
        assert cls().permanent is False, cls
        assert cls().message
    assert sf.OrgMismatch(expected_org_id="a", actual_org_id="b").permanent is True
    assert sf.MissingScope({"api"}).permanent is True
    assert all(issubclass(c, sf.SalesforceError) for c in permanent | transient)
    assert sf.InvalidGrant(description="expired authorization code").message == (
        "Salesforce no longer accepts this authorization (expired authorization "
        "code); re-authorize the connection."
    )


# --- Package surface ---------------------------------------------------------------


def test_every_public_name_is_re_exported_from_its_module() -> None:
    """``salesforce.X`` is the very object its concern module defines, so
    callers and ``mock.patch`` targets agree."""
    modules = (errors, id_tokens, messages, oauth, rest, results, transport, urls)
    assert len(sf.__all__) == len(set(sf.__all__))
    for name in sf.__all__:
        homes = [m for m in modules if getattr(m, name, None) is getattr(sf, name)]
        assert homes, name
    assert not [name for name in sf.__all__ if name.startswith("_")]


def test_transient_errors_are_the_retryable_ones() -> None:
    retryable = (
        sf.TransientError,
        sf.HostUnreachable,
        sf.RateLimited,
        sf.MalformedResponse,
    )
    assert retryable == sf.TRANSIENT_ERRORS
    assert not [e for e in sf.TRANSIENT_ERRORS if e.permanent]
    assert all(issubclass(e, sf.SalesforceError) for e in sf.TRANSIENT_ERRORS)
