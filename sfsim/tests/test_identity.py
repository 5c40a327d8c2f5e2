"""Revoke, userinfo, Identity URL, introspect, discovery and JWKS (§3, §4, §7.5)."""

from __future__ import annotations

from .conftest import Sim, World

IDENTITY_KEYS = {
    "id", "asserted_user", "user_id", "organization_id", "username", "nick_name",
    "display_name", "email", "email_verified", "first_name", "last_name", "timezone",
    "photos", "addr_street", "addr_city", "addr_state", "addr_country", "addr_zip",
    "mobile_phone", "mobile_phone_verified", "is_lightning_login_user", "status", "urls",
    "active", "user_type", "language", "locale", "utcOffset", "last_modified_date",
    "is_app_installed",
}  # fmt: skip


def test_revoke_refresh_token_kills_its_access_tokens(sim: Sim, world: World) -> None:
    body = sim.tokens(world)
    assert sim.rest(world.host, body["access_token"], "/limits").status_code == 200
    resp = sim.client.post(
        "/h/login.salesforce.com/services/oauth2/revoke",
        data={"token": body["refresh_token"]},
    )
    assert resp.status_code == 200
    assert sim.rest(world.host, body["access_token"], "/limits").status_code == 401
    refresh = sim.refresh(world.host, world.key, world.secret, body["refresh_token"])
    assert refresh.get_json()["error_description"] == "expired access/refresh token"
    assert sim.ctl(
        "POST", "/check-token", {"refresh_token": body["refresh_token"]}
    ) == {"active": False}


def test_revoke_access_token_by_get(sim: Sim, world: World) -> None:
    body = sim.tokens(world)
    resp = sim.client.get(
        f"/h/{world.host}/services/oauth2/revoke",
        query_string={"token": body["access_token"]},
    )
    assert resp.status_code == 200
    assert sim.rest(world.host, body["access_token"], "/limits").status_code == 401
    # Revoking an access token leaves the refresh token alone.
    assert (
        sim.refresh(
            world.host, world.key, world.secret, body["refresh_token"]
        ).status_code
        == 200
    )


def test_revoke_bad_token_is_form_encoded_400(sim: Sim, world: World) -> None:
    resp = sim.client.post(
        f"/h/{world.host}/services/oauth2/revoke", data={"token": "nope"}
    )
    assert resp.status_code == 400
    assert resp.get_data(as_text=True).startswith(
        "error=invalid_token&error_description="
    )


def test_userinfo(sim: Sim, world: World) -> None:
    body = sim.tokens(world)
    resp = sim.client.get(
        f"/h/{world.host}/services/oauth2/userinfo",
        headers={"Authorization": f"Bearer {body['access_token']}"},
    )
    info = resp.get_json()
    assert info["sub"] == body["id"]
    assert info["user_id"] == world.user_id and info["organization_id"] == world.org_id
    assert info["preferred_username"] == world.username
    assert info["urls"]["custom_domain"] == "https://acme.my.salesforce.com"


def test_userinfo_and_identity_bad_token_is_403_text(sim: Sim, world: World) -> None:
    for path in ("/services/oauth2/userinfo", f"/id/{world.org_id}/{world.user_id}"):
        resp = sim.client.get(
            f"/h/login.salesforce.com{path}",
            headers={"Authorization": "Bearer 00Dbogus!x"},
        )
        assert resp.status_code == 403
        assert resp.get_data(as_text=True) == "Bad_OAuth_Token"
        assert resp.mimetype == "text/plain"


def test_identity_url_with_bearer_or_oauth_token_param(sim: Sim, world: World) -> None:
    body = sim.tokens(world)
    path = body["id"].removeprefix("https://")
    resp = sim.client.get(
        f"/h/{path}", headers={"Authorization": f"Bearer {body['access_token']}"}
    )
    ident = resp.get_json()
    assert set(ident) == IDENTITY_KEYS
    assert ident["id"] == body["id"] and ident["username"] == world.username
    assert (
        ident["urls"]["rest"]
        == "https://acme.my.salesforce.com/services/data/v{version}/"
    )
    resp = sim.client.get(
        f"/h/{path}",
        query_string={"oauth_token": body["access_token"], "version": "latest"},
    )
    assert (
        resp.get_json()["urls"]["rest"]
        == "https://acme.my.salesforce.com/services/data/v66.0/"
    )


def test_identity_url_of_another_user_is_refused(sim: Sim, world: World) -> None:
    other = sim.user(world.org_id, "other@acme.example")
    token = sim.tokens(world)["access_token"]
    resp = sim.client.get(
        f"/h/login.salesforce.com/id/{world.org_id}/{other['user_id']}",
        headers={"Authorization": f"Bearer {token}"},
    )
    assert resp.status_code == 403


def test_access_token_expires_after_idle_session_timeout(
    sim: Sim, world: World
) -> None:
    token = sim.tokens(world)["access_token"]
    sim.advance(7100)
    assert sim.rest(world.host, token, "/limits").status_code == 200  # use extends it
    sim.advance(7100)
    assert sim.rest(world.host, token, "/limits").status_code == 200
    sim.advance(7201)
    assert sim.rest(world.host, token, "/limits").status_code == 401


def test_introspect(sim: Sim, world: World) -> None:
    body = sim.tokens(world)
    form = {
        "token": body["access_token"],
        "client_id": world.key,
        "client_secret": world.secret,
    }
    info = sim.client.post(
        f"/h/{world.host}/services/oauth2/introspect", data=form
    ).get_json()
    assert info["active"] is True and info["token_type"] == "access_token"
    assert info["client_id"] == world.key and info["sub"] == body["id"]
    assert info["exp"] - info["iat"] == 7200
    form["token"] = body["refresh_token"]
    info = sim.client.post(
        f"/h/{world.host}/services/oauth2/introspect", data=form
    ).get_json()
    assert info["active"] is True and info["token_type"] == "refresh_token"
    other = sim.app(world.org_id, name="Other")
    form.update(client_id=other["consumer_key"], client_secret=other["consumer_secret"])
    info = sim.client.post(
        f"/h/{world.host}/services/oauth2/introspect", data=form
    ).get_json()
    assert info == {"active": False}
    form["client_secret"] = "wrong"
    resp = sim.client.post(f"/h/{world.host}/services/oauth2/introspect", data=form)
    assert resp.status_code == 400 and resp.get_json()["error"] == "invalid_client"


def test_discovery_document(sim: Sim, world: World) -> None:
    doc = sim.client.get(
        "/h/login.salesforce.com/.well-known/openid-configuration"
    ).get_json()
    assert doc["issuer"] == "https://login.salesforce.com"
    assert doc["jwks_uri"] == "https://login.salesforce.com/id/keys"
    assert doc["id_token_signing_alg_values_supported"] == ["RS256"]
    assert "code_challenge_methods_supported" not in doc
    assert {"api", "refresh_token", "offline_access", "openid", "full"} <= set(
        doc["scopes_supported"]
    )
    doc = sim.client.get(f"/h/{world.host}/.well-known/openid-configuration").get_json()
    assert (
        doc["token_endpoint"] == "https://acme.my.salesforce.com/services/oauth2/token"
    )


def test_jwks(sim: Sim) -> None:
    keys = sim.client.get("/h/test.salesforce.com/id/keys").get_json()["keys"]
    assert keys[0]["kty"] == "RSA" and keys[0]["alg"] == "RS256" and keys[0]["kid"]
