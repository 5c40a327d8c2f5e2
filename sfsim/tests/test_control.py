"""The /_sim/ control API, fixtures, request log, Setup page and logging."""

from __future__ import annotations

import logging
import re

import pytest
from flask.testing import FlaskClient

from sfsim.app import create_app
from sfsim.state import SimState

from .conftest import CALLBACK, EXAMPLE_FIXTURE, PASSWORD, Sim, World


def test_health(sim: Sim) -> None:
    assert sim.ctl("GET", "/health") == {"ok": True}


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"my_domain": "acme"}, "'name' is required"),
        ({"name": "A"}, "'my_domain' is required"),
        ({"name": "A", "my_domain": "Acme Corp"}, "my_domain"),
        ({"name": "A", "my_domain": "acme", "org_type": "galaxy"}, "org_type"),
        ({"name": "A", "my_domain": "acme", "org_type": "sandbox"}, "sandbox_name"),
        (
            {"name": "A", "my_domain": "acme", "org_id": "00D36000000arMLEAC"},
            "checksum",
        ),
        ({"name": "A", "my_domain": "acme", "org_id": "00536000000IigR"}, "00D"),
        ({"name": "A", "my_domain": "acme", "legacy": "yes"}, "legacy"),
    ],
)
def test_org_validation(sim: Sim, body: dict, message: str) -> None:
    assert message in sim.ctl("POST", "/orgs", body, status=400)["error"]


def test_bad_json_and_unknown_ids(sim: Sim, client: FlaskClient) -> None:
    resp = client.post("/_sim/orgs", data="{nope", content_type="application/json")
    assert resp.status_code == 400 and "error" in resp.get_json()
    assert client.post("/_sim/orgs", json=[1]).status_code == 400
    sim.ctl(
        "POST",
        "/orgs/00Dx0000000BV7z/users",
        {"username": "a@b.c", "password": "x"},
        404,
    )
    sim.ctl("POST", "/apps/3MVG9nope/rotate-secret", status=404)


def test_explicit_ids_are_normalised_to_18(sim: Sim) -> None:
    org = sim.org("acme", org_id="00D36000000arML")
    assert org["org_id"] == "00D36000000arMLEAY"
    user = sim.user(org["org_id"][:15], "a@acme.example", user_id="00536000000IigR")
    assert user["user_id"] == "00536000000IigRAAS"
    assert (
        "exists"
        in sim.ctl(
            "POST",
            "/orgs",
            {"name": "B", "my_domain": "b", "org_id": "00D36000000arMLEAY"},
            400,
        )["error"]
    )


def test_user_validation(sim: Sim, world: World) -> None:
    path = f"/orgs/{world.org_id}/users"
    assert (
        "exists"
        in sim.ctl(
            "POST", path, {"username": "ADMIN@acme.example", "password": "x"}, 400
        )["error"]
    )
    sim.ctl("POST", path, {"username": "nobody", "password": "x"}, 400)
    sim.ctl(
        "POST", path, {"username": "a@x.y", "password": "x", "license": "Gold"}, 400
    )
    sim.ctl(
        "POST",
        path,
        {"username": "a@x.y", "password": "x", "permissions": ["ApiOn"]},
        400,
    )
    sim.ctl("POST", path, {"username": "a@x.y"}, 400)


def test_app_validation(sim: Sim, world: World) -> None:
    path = f"/orgs/{world.org_id}/apps"
    base = {"name": "X", "scopes": ["api"], "callback_urls": [CALLBACK]}
    sim.ctl("POST", path, {**base, "scopes": ["api", "godmode"]}, 400)
    sim.ctl("POST", path, {**base, "callback_urls": []}, 400)
    sim.ctl("POST", path, {**base, "callback_urls": ["/relative"]}, 400)
    sim.ctl("POST", path, {**base, "activation_delay_seconds": -1}, 400)
    sim.ctl("POST", path, {**base, "require_pkce": "yes"}, 400)
    sim.ctl("POST", path, {**base, "consumer_key": world.key}, 400)
    made = sim.ctl(
        "POST", path, {**base, "consumer_key": "3MVG9mine", "consumer_secret": "s3"}
    )
    assert (made["consumer_key"], made["consumer_secret"]) == ("3MVG9mine", "s3")


def test_listing_never_shows_secrets_or_passwords(sim: Sim, world: World) -> None:
    listing = sim.client.get("/_sim/orgs").get_data(as_text=True)
    assert world.key in listing and world.username in listing
    assert world.secret not in listing and PASSWORD not in listing
    apps = sim.client.get("/_sim/apps").get_data(as_text=True)
    assert world.secret not in apps


def test_request_log_records_calls_without_secrets(sim: Sim, world: World) -> None:
    sim.ctl("DELETE", "/requests")
    body = sim.tokens(world, state="s")
    sim.refresh(world.host, world.key, world.secret, body["refresh_token"])
    sim.client.get(
        f"/h/login.salesforce.com/id/{world.org_id}/{world.user_id}",
        query_string={"oauth_token": body["access_token"]},
    )
    log = sim.ctl("GET", "/requests")
    text = str(log)
    for secret in (world.secret, body["access_token"], body["refresh_token"], "code="):
        assert secret not in text
    grants = [e["grant_type"] for e in log["requests"] if "grant_type" in e]
    assert grants == ["authorization_code", "refresh_token"]
    entry = log["requests"][-1]
    assert set(entry) >= {"method", "host", "path", "status", "time"}
    assert entry["path"] == f"/id/{world.org_id}/{world.user_id}"
    only = sim.client.get(
        "/_sim/requests", query_string={"path_prefix": "/services/oauth2/token"}
    ).get_json()
    assert only["count"] == 2
    sim.ctl("DELETE", "/requests")
    assert sim.ctl("GET", "/requests")["count"] == 0


def test_check_token_and_counts(sim: Sim, world: World) -> None:
    body = sim.tokens(world)
    assert sim.ctl(
        "POST", "/check-token", {"refresh_token": body["refresh_token"]}
    ) == {"active": True}
    assert sim.ctl("POST", "/check-token", {"access_token": body["access_token"]}) == {
        "active": True
    }
    assert sim.ctl("POST", "/check-token", {"refresh_token": "nope"}) == {
        "active": False
    }
    sim.ctl("POST", "/check-token", {}, 400)
    counts = sim.client.get(
        "/_sim/refresh-tokens", query_string={"user_id": world.user_id}
    )
    assert counts.get_json() == {"active": 1, "revoked": 0}


def test_mint_tokens_directly(sim: Sim, world: World) -> None:
    body = sim.ctl(
        "POST",
        "/tokens",
        {"consumer_key": world.key, "user_id": world.user_id, "scopes": ["api"]},
    )
    assert body["scope"] == "api" and "refresh_token" not in body
    assert "expires_in" not in body and body["token_type"] == "Bearer"
    sim.ctl("POST", "/tokens", {"consumer_key": world.key, "user_id": world.user_id,
                                "scopes": ["nope"]}, 400)  # fmt: skip
    sim.ctl(
        "POST",
        "/tokens",
        {"consumer_key": world.key, "user_id": "005x00000012Q9P"},
        404,
    )


def test_clock(sim: Sim) -> None:
    before = sim.ctl("GET", "/clock")
    after = sim.ctl("POST", "/clock", {"advance_seconds": 3600})
    assert after["offset_seconds"] == before["offset_seconds"] + 3600
    assert after["now"] - before["now"] >= 3600
    sim.ctl("POST", "/clock", {"advance_seconds": -1}, 400)
    sim.ctl("POST", "/clock", {"advance_seconds": "1"}, 400)


def test_config(sim: Sim) -> None:
    assert sim.ctl("GET", "/config")["latency_ms"] == 0
    assert (
        sim.ctl("POST", "/config", {"code_ttl_seconds": 60})["code_ttl_seconds"] == 60
    )
    sim.ctl("POST", "/config", {"bogus": 1}, 400)
    sim.ctl("POST", "/config", {"latency_ms": -5}, 400)


def test_reset_clears_everything(sim: Sim, world: World) -> None:
    sim.ctl("POST", "/faults", {"kind": "error_500"})
    sim.ctl("POST", "/reset")
    assert sim.ctl("GET", "/orgs") == {"orgs": []}
    assert sim.ctl("GET", "/faults") == {"faults": []}
    assert sim.client.get(f"/h/{world.host}/services/data/").status_code == 404


def test_example_fixture_seeds_working_refresh_tokens() -> None:
    client = create_app(fixture=EXAMPLE_FIXTURE).test_client()
    orgs = client.get("/_sim/orgs").get_json()["orgs"]
    assert [o["login_url"] for o in orgs] == [
        "https://acme.my.salesforce.com",
        "https://acme--uat.my.salesforce.com",
        "https://globex-dev-ed.develop.my.salesforce.com",
    ]
    acme = orgs[0]
    app = acme["apps"][0]
    resp = client.post(
        "/h/login.salesforce.com/services/oauth2/token",
        data={
            "grant_type": "refresh_token",
            "client_id": app["consumer_key"],
            "client_secret": "DEMO" + "0" * 56 + "ACME",
            "refresh_token": "5Aep861DEMO.acme.refresh.token.for.demo.seeding.only."
            + "0" * 34,
        },
    )
    assert resp.status_code == 200, resp.get_data(as_text=True)
    assert resp.get_json()["instance_url"] == "https://acme.my.salesforce.com"


def test_bad_fixture_changes_nothing(sim: Sim, world: World) -> None:
    bad = {"orgs": [{"name": "N", "my_domain": "new", "users": [{"username": "x"}]}]}
    sim.ctl("POST", "/fixture", bad, 400)
    assert len(sim.ctl("GET", "/orgs")["orgs"]) == 1
    good = {"orgs": [{"name": "N", "my_domain": "new"}]}
    assert sim.ctl("POST", "/fixture", good)["loaded"]["orgs"] == 1


def test_update_user_changes_permissions_and_license(sim: Sim, world: World) -> None:
    user = sim.ctl(
        "POST",
        f"/orgs/{world.org_id}/users/{world.user_id}",
        {"permissions": ["PermissionsApiEnabled"], "license": "Salesforce Integration"},
    )
    assert user["permissions"] == ["PermissionsApiEnabled"]
    assert user["license"] == "Salesforce Integration"
    sim.ctl(
        "POST", f"/orgs/{world.org_id}/users/005x00000012Q9P", {"active": False}, 404
    )


def test_setup_page_creates_an_app_and_shows_key_and_secret(
    sim: Sim, world: World
) -> None:
    page = sim.client.get("/_sim/setup").get_data(as_text=True)
    assert "New External Client App" in page and world.username in page
    assert PASSWORD in page  # demo-only: presenters need to log in
    assert "<script src" not in page and "<link" not in page
    resp = sim.client.post(
        "/_sim/setup/apps",
        data={
            "org_id": world.org_id,
            "name": "Demo ECA",
            "callback_url": CALLBACK,
            "scopes": ["full", "refresh_token", "openid"],
            "activation_delay_seconds": "0",
        },
        follow_redirects=True,  # POST/redirect/GET: the key and secret are on the GET
    )
    html = resp.get_data(as_text=True)
    assert resp.status_code == 200
    key = re.search(r"<code id='consumer-key'>([^<]+)</code>", html)[1]
    secret = re.search(r"<code id='consumer-secret'>([^<]+)</code>", html)[1]
    assert "Copy" in html
    body = sim.refresh(world.host, key, secret, "bogus").get_json()
    assert body["error"] == "invalid_grant"  # active app, right secret
    resp = sim.client.post(
        "/_sim/setup/apps", data={"org_id": world.org_id, "name": ""}
    )
    assert resp.status_code == 400


def test_logs_never_contain_tokens_codes_or_secrets(
    sim: Sim, world: World, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    code = sim.code(world.host, world.key, world.username)
    body = sim.exchange(world.host, world.key, world.secret, code).get_json()
    sim.client.get(
        f"/h/login.salesforce.com/id/{world.org_id}/{world.user_id}",
        query_string={"oauth_token": body["access_token"]},
    )
    sim.client.get(
        f"/h/{world.host}/services/oauth2/revoke",
        query_string={"token": body["refresh_token"]},
    )
    text = caplog.text
    assert "/services/oauth2/revoke" in text  # requests are logged, just not secrets
    for secret in (
        code,
        body["access_token"],
        body["refresh_token"],
        world.secret,
        PASSWORD,
    ):
        assert secret not in text


def test_state_is_shared_with_the_app() -> None:
    state = SimState()
    client = create_app(state).test_client()
    client.post("/_sim/orgs", json={"name": "A", "my_domain": "a"})
    assert len(state.orgs) == 1


def test_a_bad_app_update_changes_nothing(sim: Sim, world: World) -> None:
    before = sim.ctl("GET", "/apps")["apps"][0]
    sim.ctl(
        "POST", f"/apps/{world.key}", {"scopes": ["api"], "callback_urls": ["x"]}, 400
    )
    assert sim.ctl("GET", "/apps")["apps"][0] == before
    changed = sim.ctl(
        "POST", f"/apps/{world.key}", {"callback_urls": ["https://n.example/cb"]}
    )
    assert changed["callback_urls"] == ["https://n.example/cb"]
