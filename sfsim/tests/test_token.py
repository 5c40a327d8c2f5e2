"""POST /services/oauth2/token: success shape and the §4 error table."""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from urllib.parse import quote

import jwt as pyjwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from sfsim import jwt

from .conftest import CALLBACK, Sim, World, pkce_pair

EXPIRED_CODE = {
    "error": "invalid_grant",
    "error_description": "expired authorization code",
}
EXPIRED_TOKEN = {
    "error": "invalid_grant",
    "error_description": "expired access/refresh token",
}
INVALID_CLIENT_ID = {
    "error": "invalid_client_id",
    "error_description": "client identifier invalid",
}
INVALID_CLIENT = {
    "error": "invalid_client",
    "error_description": "invalid client credentials",
}


def test_success_shape(sim: Sim, world: World) -> None:
    before_ms = int(sim.state.now() * 1000)
    body = sim.tokens(world, scope="full refresh_token openid")
    assert list(body) == [
        "access_token",
        "refresh_token",
        "signature",
        "scope",
        "id_token",
        "instance_url",
        "id",
        "token_type",
        "issued_at",
    ]
    assert "expires_in" not in body
    assert re.fullmatch(r"(00D\w{12,15})![.\w]*", body["access_token"])
    assert body["access_token"].startswith(world.org_id[:15] + "!")
    assert body["token_type"] == "Bearer"
    assert body["instance_url"] == "https://acme.my.salesforce.com"
    assert (
        body["id"] == f"https://login.salesforce.com/id/{world.org_id}/{world.user_id}"
    )
    assert body["scope"] == "full refresh_token openid"
    # issued_at is a string of milliseconds.
    assert isinstance(body["issued_at"], str) and len(body["issued_at"]) == 13
    assert abs(int(body["issued_at"]) - before_ms) < 5000


def test_signature_is_hmac_of_id_and_issued_at(sim: Sim, world: World) -> None:
    body = sim.tokens(world)
    mac = hmac.new(
        world.secret.encode(), (body["id"] + body["issued_at"]).encode(), hashlib.sha256
    )
    assert body["signature"] == base64.b64encode(mac.digest()).decode()


@pytest.mark.parametrize(
    ("org_type", "extra", "id_host"),
    [
        ("production", {}, "login.salesforce.com"),
        ("developer", {}, "login.salesforce.com"),
        ("sandbox", {"sandbox_name": "uat"}, "test.salesforce.com"),
        ("scratch", {}, "test.salesforce.com"),
    ],
)
def test_id_url_host_is_login_or_test(
    sim: Sim, org_type: str, extra: dict, id_host: str
) -> None:
    org = sim.org("zeta", org_type, **extra)
    user = sim.user(org["org_id"], f"u@{org_type}.example")
    app = sim.app(org["org_id"])
    host = org["login_url"].removeprefix("https://")
    code = sim.code(host, app["consumer_key"], f"u@{org_type}.example")
    body = sim.exchange(
        host, app["consumer_key"], app["consumer_secret"], code
    ).get_json()
    assert body["id"] == f"https://{id_host}/id/{org['org_id']}/{user['user_id']}"
    assert body["instance_url"] == org["login_url"]


def test_refresh_token_only_with_refresh_scope(sim: Sim, world: World) -> None:
    assert "refresh_token" not in sim.tokens(world, scope="full openid")
    assert "refresh_token" in sim.tokens(world, scope="full offline_access")
    assert "refresh_token" in sim.tokens(world, scope="api refresh_token")


def test_granted_scope_is_requested_within_app_scopes(sim: Sim, world: World) -> None:
    app = sim.app(world.org_id, name="Narrow", scopes=["api", "refresh_token"])
    code = sim.code(
        world.host, app["consumer_key"], world.username, scope="api web openid"
    )
    body = sim.exchange(
        world.host, app["consumer_key"], app["consumer_secret"], code
    ).get_json()
    assert body["scope"] == "api"
    code = sim.code(world.host, app["consumer_key"], world.username)  # no scope asked
    body = sim.exchange(
        world.host, app["consumer_key"], app["consumer_secret"], code
    ).get_json()
    assert body["scope"] == "api refresh_token"


def test_id_token_only_with_openid_and_verifies_with_jwks(
    sim: Sim, world: World
) -> None:
    assert "id_token" not in sim.tokens(world, scope="full refresh_token")
    body = sim.tokens(world, scope="full openid", nonce="n-123")
    keys = sim.client.get("/h/login.salesforce.com/id/keys").get_json()
    claims = jwt.decode_and_verify(body["id_token"], keys)
    assert claims["iss"] == "https://acme.my.salesforce.com"
    assert claims["sub"] == body["id"]
    assert claims["aud"] == world.key
    assert claims["nonce"] == "n-123"
    assert claims["at_hash"] == jwt.at_hash(body["access_token"])
    assert claims["exp"] > claims["iat"]
    tampered = body["id_token"][:-4] + (
        "AAAA" if not body["id_token"].endswith("AAAA") else "BBBB"
    )
    with pytest.raises(ValueError):
        jwt.decode_and_verify(tampered, keys)


def test_id_token_names_its_key_and_another_key_with_that_kid_fails(
    sim: Sim, world: World
) -> None:
    body = sim.tokens(world, scope="full openid", nonce="n-123")
    keys = sim.client.get("/h/login.salesforce.com/id/keys").get_json()
    assert keys == jwt.jwks()
    header = pyjwt.get_unverified_header(body["id_token"])
    assert header == {"alg": "RS256", "kid": jwt.KEY_ID, "typ": "JWT"}
    claims = jwt.decode_and_verify(body["id_token"], keys)
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    forged = pyjwt.encode(claims, other, algorithm="RS256", headers={"kid": jwt.KEY_ID})
    with pytest.raises(ValueError, match="bad signature"):
        jwt.decode_and_verify(forged, keys)


def test_unsupported_grant_type(sim: Sim, world: World) -> None:
    for grant in ("password", "client_credentials", ""):
        resp = sim.token(world.host, grant_type=grant, client_id=world.key)
        assert resp.status_code == 400
        assert resp.get_json()["error"] == "unsupported_grant_type"


def test_probe_ordering_tells_the_three_app_states_apart(
    sim: Sim, world: World
) -> None:
    """The console's activation probe: refresh with a bogus refresh token."""
    pending = sim.app(world.org_id, name="New", activation_delay_seconds=300)

    def probe(key: str, secret: str) -> dict:
        resp = sim.refresh(world.host, key, secret, "5Aep861bogus")
        assert resp.status_code == 400
        return resp.get_json()

    assert probe("3MVG9nope", "x") == INVALID_CLIENT_ID
    assert (
        probe(pending["consumer_key"], pending["consumer_secret"]) == INVALID_CLIENT_ID
    )
    assert probe(pending["consumer_key"], "wrong") == INVALID_CLIENT_ID
    sim.advance(300)
    assert probe(pending["consumer_key"], "wrong") == INVALID_CLIENT
    assert probe(pending["consumer_key"], pending["consumer_secret"]) == EXPIRED_TOKEN


def test_missing_secret_is_invalid_client(sim: Sim, world: World) -> None:
    resp = sim.token(
        world.host, grant_type="refresh_token", refresh_token="x", client_id=world.key
    )
    assert resp.get_json() == INVALID_CLIENT


def test_http_basic_client_authentication(sim: Sim, world: World) -> None:
    rt = sim.tokens(world)["refresh_token"]
    creds = base64.b64encode(
        f"{quote(world.key)}:{quote(world.secret)}".encode()
    ).decode()
    resp = sim.client.post(
        f"/h/{world.host}/services/oauth2/token",
        data={"grant_type": "refresh_token", "refresh_token": rt},
        headers={"Authorization": f"Basic {creds}"},
    )
    assert resp.status_code == 200, resp.get_data(as_text=True)
    bad = base64.b64encode(f"{world.key}:nope".encode()).decode()
    resp = sim.client.post(
        f"/h/{world.host}/services/oauth2/token",
        data={"grant_type": "refresh_token", "refresh_token": rt},
        headers={"Authorization": f"Basic {bad}"},
    )
    assert resp.get_json() == INVALID_CLIENT


def test_code_is_single_use(sim: Sim, world: World) -> None:
    code = sim.code(world.host, world.key, world.username)
    assert sim.exchange(world.host, world.key, world.secret, code).status_code == 200
    resp = sim.exchange(world.host, world.key, world.secret, code)
    assert resp.status_code == 400 and resp.get_json() == EXPIRED_CODE


def test_code_expires_after_15_minutes(sim: Sim, world: World) -> None:
    code = sim.code(world.host, world.key, world.username)
    sim.advance(15 * 60 + 1)
    assert (
        sim.exchange(world.host, world.key, world.secret, code).get_json()
        == EXPIRED_CODE
    )
    code = sim.code(world.host, world.key, world.username)
    sim.advance(15 * 60 - 5)
    assert sim.exchange(world.host, world.key, world.secret, code).status_code == 200


def test_code_is_bound_to_client_and_decoded_once(sim: Sim, world: World) -> None:
    other = sim.app(world.org_id, name="Other")
    code = sim.code(world.host, world.key, world.username)
    resp = sim.exchange(
        world.host, other["consumer_key"], other["consumer_secret"], code
    )
    assert resp.get_json()["error"] == "invalid_grant"
    resp = sim.exchange(world.host, world.key, world.secret, quote(code, safe=""))
    assert resp.get_json() == {
        "error": "invalid_grant",
        "error_description": "invalid authorization code",
    }


def test_redirect_uri_mismatch_at_token_endpoint(sim: Sim, world: World) -> None:
    app = sim.app(
        world.org_id, name="Two", callback_urls=[CALLBACK, "https://c.example/cb"]
    )
    code = sim.code(world.host, app["consumer_key"], world.username)
    expected = {
        "error": "redirect_uri_mismatch",
        "error_description": "redirect_uri must match configuration",
    }
    for wrong in ("https://c.example/cb", "https://evil.example/cb"):
        resp = sim.exchange(
            world.host,
            app["consumer_key"],
            app["consumer_secret"],
            code,
            redirect_uri=wrong,
        )
        assert resp.status_code == 400 and resp.get_json() == expected


# Reference §2 "PKCE semantics": as observed on the wire (an older doc page
# says invalid_request for a mismatch; the wire wins).
INVALID_VERIFIER = {
    "error": "invalid_grant",
    "error_description": "invalid code verifier",
}


@pytest.mark.parametrize("require_pkce", [False, True])
def test_pkce_missing_verifier_is_invalid_grant(
    sim: Sim, world: World, require_pkce: bool
) -> None:
    key, secret = world.key, world.secret
    if require_pkce:
        app = sim.app(world.org_id, name="PKCE", require_pkce=True)
        key, secret = app["consumer_key"], app["consumer_secret"]
    _, challenge = pkce_pair()
    code = sim.code(world.host, key, world.username, code_challenge=challenge)
    for missing in ({}, {"code_verifier": ""}):
        resp = sim.exchange(world.host, key, secret, code, **missing)
        assert resp.status_code == 400
        assert resp.get_json()["error"] == "invalid_grant"


@pytest.mark.parametrize("require_pkce", [False, True])
def test_pkce_wrong_verifier_is_invalid_grant(
    sim: Sim, world: World, require_pkce: bool
) -> None:
    key, secret = world.key, world.secret
    if require_pkce:
        app = sim.app(world.org_id, name="PKCE", require_pkce=True)
        key, secret = app["consumer_key"], app["consumer_secret"]
    other_flows_verifier, _ = pkce_pair()
    for wrong in ("x" * 43, other_flows_verifier):
        verifier, challenge = pkce_pair()
        code = sim.code(world.host, key, world.username, code_challenge=challenge)
        resp = sim.exchange(world.host, key, secret, code, code_verifier=wrong)
        assert resp.status_code == 400
        assert resp.mimetype == "application/json"
        assert resp.get_json() == INVALID_VERIFIER
        # The failed attempt spent the code: the right verifier is too late.
        again = sim.exchange(world.host, key, secret, code, code_verifier=verifier)
        assert again.status_code == 400 and again.get_json() == EXPIRED_CODE


def test_pkce_right_verifier_with_or_without_method(sim: Sim, world: World) -> None:
    for method in ({}, {"code_challenge_method": "S256"}):
        verifier, challenge = pkce_pair()
        code = sim.code(
            world.host, world.key, world.username, code_challenge=challenge, **method
        )
        resp = sim.exchange(
            world.host, world.key, world.secret, code, code_verifier=verifier
        )
        assert resp.status_code == 200


def test_verifier_without_challenge_is_ignored(sim: Sim, world: World) -> None:
    """jsforce sends code_verifier on every token POST."""
    code = sim.code(world.host, world.key, world.username)
    resp = sim.exchange(
        world.host, world.key, world.secret, code, code_verifier="v" * 43
    )
    assert resp.status_code == 200


def test_inactive_user_at_exchange_and_refresh(sim: Sim, world: World) -> None:
    rt = sim.tokens(world)["refresh_token"]
    code = sim.code(world.host, world.key, world.username)
    sim.ctl("POST", f"/orgs/{world.org_id}/users/{world.user_id}", {"active": False})
    expected = {"error": "inactive_user", "error_description": "user is inactive"}
    assert (
        sim.exchange(world.host, world.key, world.secret, code).get_json() == expected
    )
    assert sim.refresh(world.host, world.key, world.secret, rt).get_json() == expected


def test_inactive_org(sim: Sim, world: World) -> None:
    rt = sim.tokens(world)["refresh_token"]
    sim.ctl("POST", f"/orgs/{world.org_id}", {"active": False})
    assert (
        sim.refresh(world.host, world.key, world.secret, rt).get_json()["error"]
        == "inactive_org"
    )


def test_refresh_response_has_no_refresh_token(sim: Sim, world: World) -> None:
    first = sim.tokens(world)
    resp = sim.refresh(
        "login.salesforce.com", world.key, world.secret, first["refresh_token"]
    )
    body = resp.get_json()
    assert resp.status_code == 200
    assert "refresh_token" not in body and "expires_in" not in body
    assert body["access_token"] != first["access_token"]
    assert body["scope"] == first["scope"]
    assert body["instance_url"] == "https://acme.my.salesforce.com"
    assert "id_token" in body  # openid was granted
    # Refreshing again works: tokens are valid until revoked.
    assert (
        sim.refresh(
            world.host, world.key, world.secret, first["refresh_token"]
        ).status_code
        == 200
    )


def test_unknown_or_other_apps_refresh_token(sim: Sim, world: World) -> None:
    rt = sim.tokens(world)["refresh_token"]
    other = sim.app(world.org_id, name="Other")
    resp = sim.refresh(world.host, other["consumer_key"], other["consumer_secret"], rt)
    assert resp.get_json() == EXPIRED_TOKEN


def test_rotation_returns_a_new_refresh_token_and_kills_the_old(
    sim: Sim, world: World
) -> None:
    app = sim.app(world.org_id, name="Rotating", rotate_refresh_tokens=True)
    code = sim.code(world.host, app["consumer_key"], world.username)
    body = sim.exchange(
        world.host, app["consumer_key"], app["consumer_secret"], code
    ).get_json()
    old = body["refresh_token"]
    resp = sim.refresh(world.host, app["consumer_key"], app["consumer_secret"], old)
    new = resp.get_json()["refresh_token"]
    assert new != old
    again = sim.refresh(world.host, app["consumer_key"], app["consumer_secret"], old)
    assert again.get_json() == EXPIRED_TOKEN
    assert (
        sim.refresh(
            world.host, app["consumer_key"], app["consumer_secret"], new
        ).status_code
        == 200
    )


def test_sixth_approval_revokes_the_oldest(sim: Sim, world: World) -> None:
    tokens = [sim.tokens(world)["refresh_token"] for _ in range(6)]
    first = sim.refresh(world.host, world.key, world.secret, tokens[0])
    assert first.get_json() == EXPIRED_TOKEN
    for rt in tokens[1:]:
        assert sim.refresh(world.host, world.key, world.secret, rt).status_code == 200
    counts = sim.client.get(
        "/_sim/refresh-tokens",
        query_string={"user_id": world.user_id, "consumer_key": world.key},
    ).get_json()
    assert counts == {"active": 5, "revoked": 1}


def test_blocked_app_refresh_is_invalid_grant(sim: Sim, world: World) -> None:
    rt = sim.tokens(world)["refresh_token"]
    sim.ctl("POST", f"/apps/{world.key}/block")
    resp = sim.refresh(world.host, world.key, world.secret, rt)
    assert resp.get_json() == {
        "error": "invalid_grant",
        "error_description": "app blocked",
    }
    sim.ctl("POST", f"/apps/{world.key}/unblock")
    assert sim.refresh(world.host, world.key, world.secret, rt).status_code == 200


def test_rotated_secret_is_pending_then_only_new_secret_works(
    sim: Sim, world: World
) -> None:
    rt = sim.tokens(world)["refresh_token"]
    sim.ctl("POST", f"/apps/{world.key}", {"activation_delay_seconds": 120})
    sim.advance(120)
    new = sim.ctl("POST", f"/apps/{world.key}/rotate-secret")["consumer_secret"]
    assert new != world.secret
    assert sim.refresh(world.host, world.key, new, rt).get_json() == INVALID_CLIENT_ID
    sim.advance(120)
    assert (
        sim.refresh(world.host, world.key, world.secret, rt).get_json()
        == INVALID_CLIENT
    )
    assert sim.refresh(world.host, world.key, new, rt).status_code == 200


def test_token_responses_are_not_cacheable(sim: Sim, world: World) -> None:
    code = sim.code(world.host, world.key, world.username)
    resp = sim.exchange(world.host, world.key, world.secret, code)
    assert "no-store" in resp.headers["Cache-Control"]
    assert resp.headers["Content-Type"].startswith("application/json")


def test_dead_access_tokens_are_pruned(sim: Sim, world: World) -> None:
    sim.state._prune_at = 4  # normally 20,000; keeps long demos' memory flat
    first = sim.tokens(world)
    sim.advance(7201)  # the first access token idles out
    live = [sim.tokens(world)["access_token"] for _ in range(3)]
    assert first["access_token"] not in sim.state.access_tokens
    assert all(token in sim.state.access_tokens for token in live)
    assert sim.rest(world.host, live[0], "/limits").status_code == 200
