"""My Domain host formats, host routing and the enhanced-domains switch (§6)."""

from __future__ import annotations

import pytest

from .conftest import Sim, World


@pytest.mark.parametrize(
    ("org_type", "extra", "legacy", "url"),
    [
        ("production", {}, False, "https://acme.my.salesforce.com"),
        (
            "sandbox",
            {"sandbox_name": "uat"},
            False,
            "https://acme--uat.sandbox.my.salesforce.com",
        ),
        ("developer", {}, False, "https://acme-dev-ed.develop.my.salesforce.com"),
        ("scratch", {}, False, "https://acme.scratch.my.salesforce.com"),
        (
            "sandbox",
            {"sandbox_name": "uat"},
            True,
            "https://acme--uat.my.salesforce.com",
        ),
        ("developer", {}, True, "https://acme-dev-ed.my.salesforce.com"),
    ],
)
def test_my_domain_host_formats(
    sim: Sim, org_type: str, extra: dict, legacy: bool, url: str
) -> None:
    org = sim.org("acme", org_type, legacy=legacy, **extra)
    assert org["login_url"] == org["instance_url"] == url


def test_unknown_host_answers_like_an_unreachable_host(sim: Sim) -> None:
    resp = sim.client.get("/h/nobody.my.salesforce.com/services/oauth2/token")
    assert resp.status_code == 404
    assert resp.get_data(as_text=True) == "sfsim: unknown host nobody.my.salesforce.com"


def test_login_and_test_hosts_serve_oauth_but_not_unknown_paths(
    sim: Sim, world: World
) -> None:
    assert sim.authorize("login.salesforce.com", world.key).status_code == 200
    assert sim.authorize("test.salesforce.com", world.key).status_code == 200
    assert sim.client.get("/h/login.salesforce.com/nothing/here").status_code == 404
    resp = sim.client.get("/h/login.salesforce.com/services/oauth2/token")
    assert resp.status_code == 405


def test_explicit_legacy_url(sim: Sim) -> None:
    org = sim.org("initech", my_domain_url="https://initech.cs42.my.salesforce.com")
    assert org["login_url"] == "https://initech.cs42.my.salesforce.com"
    assert org["legacy"] is True


def test_legacy_sandbox_switch_moves_host_and_keeps_refresh_tokens(sim: Sim) -> None:
    org = sim.org("acme", "sandbox", sandbox_name="uat", legacy=True)
    user = sim.user(org["org_id"], "a@acme.example.uat")
    app = sim.app(org["org_id"])
    key, secret = app["consumer_key"], app["consumer_secret"]
    old_host = "acme--uat.my.salesforce.com"
    code = sim.code(old_host, key, "a@acme.example.uat")
    body = sim.exchange(old_host, key, secret, code).get_json()
    assert body["id"].startswith("https://test.salesforce.com/id/")

    switched = sim.ctl("POST", f"/orgs/{org['org_id']}/enhanced-domains")
    assert switched == {
        "old_url": "https://acme--uat.my.salesforce.com",
        "new_url": "https://acme--uat.sandbox.my.salesforce.com",
    }
    new_host = "acme--uat.sandbox.my.salesforce.com"
    # The old host is gone: no redirects since Spring '26.
    assert sim.rest(old_host, body["access_token"], "/limits").status_code == 404
    assert sim.refresh(old_host, key, secret, body["refresh_token"]).status_code == 404
    # Access tokens still work at the new host; refresh works there and at test.
    assert sim.rest(new_host, body["access_token"], "/limits").status_code == 200
    for host in ("test.salesforce.com", new_host):
        refreshed = sim.refresh(host, key, secret, body["refresh_token"]).get_json()
        assert refreshed["instance_url"] == f"https://{new_host}"
    listed = sim.ctl("GET", f"/orgs/{org['org_id']}")
    assert listed["previous_urls"] == ["https://acme--uat.my.salesforce.com"]
    assert user["user_id"] in refreshed["id"]


def test_production_switch_gives_a_distinct_new_host(sim: Sim, world: World) -> None:
    first = sim.ctl("POST", f"/orgs/{world.org_id}/enhanced-domains")
    assert first == {
        "old_url": "https://acme.my.salesforce.com",
        "new_url": "https://acme-2.my.salesforce.com",
    }
    second = sim.ctl("POST", f"/orgs/{world.org_id}/enhanced-domains")
    assert second["new_url"] == "https://acme-3.my.salesforce.com"


def test_switch_can_revoke_tokens(sim: Sim, world: World) -> None:
    body = sim.tokens(world)
    sim.ctl("POST", f"/orgs/{world.org_id}/enhanced-domains", {"revoke_tokens": True})
    resp = sim.refresh(
        "login.salesforce.com", world.key, world.secret, body["refresh_token"]
    )
    assert resp.get_json()["error"] == "invalid_grant"


def test_switch_to_a_given_url(sim: Sim, world: World) -> None:
    moved = sim.ctl(
        "POST",
        f"/orgs/{world.org_id}/enhanced-domains",
        {"new_url": "https://acme-corp.my.salesforce.com"},
    )
    assert moved["new_url"] == "https://acme-corp.my.salesforce.com"
    sim.org("globex")
    sim.ctl(
        "POST",
        f"/orgs/{world.org_id}/enhanced-domains",
        {"new_url": "https://globex.my.salesforce.com"},
        status=400,
    )


def test_instance_url_change_fault_on_refresh(sim: Sim, world: World) -> None:
    body = sim.tokens(world)
    sim.ctl(
        "POST",
        "/faults",
        {
            "kind": "instance_url_change",
            "path_prefix": "/services/oauth2/token",
            "count": 1,
        },
    )
    # A code exchange does not consume it: only refresh responses change.
    sim.tokens(world)
    refreshed = sim.refresh(
        world.host, world.key, world.secret, body["refresh_token"]
    ).get_json()
    assert refreshed["instance_url"] == "https://acme-2.my.salesforce.com"
    new_host = "acme-2.my.salesforce.com"
    assert sim.rest(new_host, refreshed["access_token"], "/limits").status_code == 200
    again = sim.refresh(
        new_host, world.key, world.secret, body["refresh_token"]
    ).get_json()
    assert again["instance_url"] == "https://acme-2.my.salesforce.com"


def test_instance_url_change_fault_with_explicit_url(sim: Sim, world: World) -> None:
    body = sim.tokens(world)
    sim.ctl(
        "POST",
        "/faults",
        {
            "kind": "instance_url_change",
            "new_instance_url": "https://acme-new.my.salesforce.com",
        },
    )
    refreshed = sim.refresh(
        world.host, world.key, world.secret, body["refresh_token"]
    ).get_json()
    assert refreshed["instance_url"] == "https://acme-new.my.salesforce.com"
