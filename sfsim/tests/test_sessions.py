"""Access-token lifetimes and revocation (§4, §9), and fixtures of fleet size.

The console keeps access tokens between health checks and refreshes only on
401 ``INVALID_SESSION_ID``, so every way a session ends must answer exactly
that envelope.
"""

from __future__ import annotations

from typing import Any

from .conftest import Sim, World

EXPIRED = [{"message": "Session expired or invalid", "errorCode": "INVALID_SESSION_ID"}]


def _ended(sim: Sim, world: World, token: str) -> bool:
    resp = sim.rest(world.host, token, "/limits")
    if resp.status_code == 200:
        return False
    assert resp.status_code == 401
    assert resp.get_json() == EXPIRED
    return True


def test_the_session_lifetime_can_be_told(sim: Sim, world: World) -> None:
    sim.ctl("POST", "/config", {"session_timeout_seconds": 60})
    token = sim.tokens(world)["access_token"]
    sim.advance(59)
    assert not _ended(sim, world, token)  # use extends it, as at Salesforce
    sim.advance(59)
    assert not _ended(sim, world, token)
    sim.advance(61)
    assert _ended(sim, world, token)


def test_the_default_session_lasts_two_hours_without_use(
    sim: Sim, world: World
) -> None:
    assert sim.ctl("GET", "/config")["session_timeout_seconds"] == 7200
    token = sim.tokens(world)["access_token"]
    sim.advance(7201)
    assert _ended(sim, world, token)


def test_a_refresh_after_the_session_ended_gives_a_working_token(
    sim: Sim, world: World
) -> None:
    body = sim.tokens(world)
    sim.advance(7201)
    refreshed = sim.refresh(world.host, world.key, world.secret, body["refresh_token"])
    assert refreshed.status_code == 200
    assert not _ended(sim, world, refreshed.get_json()["access_token"])


def test_revoking_a_refresh_token_ends_its_sessions(sim: Sim, world: World) -> None:
    body = sim.tokens(world)
    refreshed = sim.refresh(world.host, world.key, world.secret, body["refresh_token"])
    later = refreshed.get_json()["access_token"]
    other = sim.tokens(world)  # another approval of the same user and app
    resp = sim.client.post(
        f"/h/{world.host}/services/oauth2/revoke", data={"token": body["refresh_token"]}
    )
    assert resp.status_code == 200
    assert _ended(sim, world, body["access_token"])
    assert _ended(sim, world, later)
    assert not _ended(sim, world, other["access_token"])


def test_an_admin_revoking_the_users_tokens_ends_the_sessions(
    sim: Sim, world: World
) -> None:
    body = sim.tokens(world)
    sim.ctl("POST", f"/orgs/{world.org_id}/users/{world.user_id}/revoke-tokens")
    assert _ended(sim, world, body["access_token"])


def test_a_revoked_access_token_leaves_its_refresh_token_working(
    sim: Sim, world: World
) -> None:
    body = sim.tokens(world)
    sim.client.post(
        f"/h/{world.host}/services/oauth2/revoke", data={"token": body["access_token"]}
    )
    assert _ended(sim, world, body["access_token"])
    refreshed = sim.refresh(world.host, world.key, world.secret, body["refresh_token"])
    assert not _ended(sim, world, refreshed.get_json()["access_token"])


def _fleet(count: int, tokens_per_user: int = 1) -> dict[str, Any]:
    orgs = []
    for n in range(count):
        user_id = f"0056h0000{n:06d}"
        key = f"3MVG9FLEET{n:075d}"
        orgs.append(
            {
                "org_id": f"00D6h0000{n:06d}",
                "name": f"Fleet {n}",
                "my_domain": f"fleet-{n}",
                "users": [
                    {
                        "user_id": user_id,
                        "username": f"u@fleet-{n}.example",
                        "password": "pw",
                    }
                ],
                "apps": [
                    {
                        "name": f"app-{n}",
                        "consumer_key": key,
                        "consumer_secret": f"{n:064x}",
                        "scopes": ["api", "refresh_token"],
                        "callback_urls": ["http://127.0.0.1:8000/oauth/callback/"],
                    }
                ],
                "refresh_tokens": [
                    {
                        "token": f"5Aep861FLEET{n:06d}x{t}",
                        "consumer_key": key,
                        "user_id": user_id,
                    }
                    for t in range(tokens_per_user)
                ],
            }
        )
    return {"orgs": orgs}


def test_a_fleet_fixture_loads_and_every_org_is_found_by_either_id_form(
    sim: Sim,
) -> None:
    loaded = sim.ctl("POST", "/fixture", _fleet(2000))["loaded"]
    assert loaded == {"orgs": 2000, "users": 2000, "apps": 2000, "refresh_tokens": 2000}
    org = sim.state.org("00D6h0000001999")  # 15 characters
    assert sim.state.org(org.org_id) is org  # 18 characters
    assert sim.state.user("0056h0000001999", org.org_id).org_id == org.org_id
    sim.ctl("GET", "/orgs/00D6h0000009999", status=404)
    # The fixture's refresh tokens work.
    resp = sim.refresh(
        "fleet-1999.my.salesforce.com",
        f"3MVG9FLEET{1999:075d}",
        f"{1999:064x}",
        "5Aep861FLEET001999x0",
    )
    assert resp.status_code == 200


def test_a_sixth_approval_in_a_fixture_revokes_the_oldest(sim: Sim) -> None:
    sim.ctl("POST", "/fixture", _fleet(1, tokens_per_user=6))
    assert sim.ctl("GET", "/refresh-tokens") == {"active": 5, "revoked": 1}
    assert sim.ctl(
        "POST", "/check-token", {"refresh_token": "5Aep861FLEET000000x0"}
    ) == {"active": False}
    # Approvals after the fixture count against the same five.
    sim.ctl(
        "POST",
        "/tokens",
        {"consumer_key": f"3MVG9FLEET{0:075d}", "user_id": "0056h0000000000"},
    )
    assert sim.ctl("GET", "/refresh-tokens") == {"active": 5, "revoked": 2}


def test_a_rejected_fixture_leaves_the_approvals_as_they_were(
    sim: Sim, world: World
) -> None:
    sim.tokens(world)
    before = sim.ctl("GET", "/refresh-tokens")
    bad = _fleet(1, tokens_per_user=6)
    bad["orgs"][0]["users"][0]["license"] = "Nope"
    sim.ctl("POST", "/fixture", bad, 400)
    assert sim.ctl("GET", "/refresh-tokens") == before
    for _ in range(4):
        sim.tokens(world)
    assert sim.ctl("GET", "/refresh-tokens") == {"active": 5, "revoked": 0}


def test_blocking_an_app_ends_its_sessions(sim: Sim, world: World) -> None:
    body = sim.tokens(world)
    sim.ctl("POST", f"/apps/{world.key}/block")
    assert _ended(sim, world, body["access_token"])
    refresh = sim.refresh(world.host, world.key, world.secret, body["refresh_token"])
    assert refresh.get_json()["error"] == "invalid_grant"


def test_a_locked_org_ends_its_sessions_and_refuses_refreshes(
    sim: Sim, world: World
) -> None:
    body = sim.tokens(world)
    sim.ctl("POST", f"/orgs/{world.org_id}", {"active": False})
    assert _ended(sim, world, body["access_token"])
    refresh = sim.refresh(world.host, world.key, world.secret, body["refresh_token"])
    assert refresh.get_json()["error"] == "inactive_org"
