"""Fault injection: latency, 5xx, HTML pages, timeouts, rate limits (§11.5)."""

from __future__ import annotations

import time

from .conftest import Sim, World


def _token(sim: Sim, world: World) -> str:
    body = {"consumer_key": world.key, "user_id": world.user_id}
    return sim.ctl("POST", "/tokens", body)["access_token"]


def test_error_503_with_count_then_normal(sim: Sim, world: World) -> None:
    token = _token(sim, world)
    fid = sim.ctl(
        "POST", "/faults", {"kind": "error_503", "host": world.host, "count": 2}
    )
    assert fid["fault_id"]
    for _ in range(2):
        resp = sim.rest(world.host, token, "/limits")
        assert resp.status_code == 503
        assert resp.get_json()[0]["errorCode"] == "SERVER_UNAVAILABLE"
    assert sim.rest(world.host, token, "/limits").status_code == 200
    assert sim.ctl("GET", "/faults") == {"faults": []}


def test_error_500_and_html_error(sim: Sim, world: World) -> None:
    token = _token(sim, world)
    sim.ctl(
        "POST",
        "/faults",
        {"kind": "error_500", "path_prefix": "/services/data", "count": 1},
    )
    resp = sim.rest(world.host, token, "/limits")
    assert (
        resp.status_code == 500
        and resp.get_json()[0]["errorCode"] == "UNKNOWN_EXCEPTION"
    )
    sim.ctl("POST", "/faults", {"kind": "html_error", "count": 1, "status": 200})
    resp = sim.rest(world.host, token, "/limits")
    assert resp.status_code == 200 and resp.mimetype == "text/html"
    assert "<html>" in resp.get_data(as_text=True)
    sim.ctl(
        "POST",
        "/faults",
        {"kind": "error_503", "path_prefix": "/services/oauth2", "count": 1},
    )
    resp = sim.refresh(world.host, world.key, world.secret, "x")
    assert resp.status_code == 503 and resp.mimetype == "text/html"


def test_request_limit_fault(sim: Sim, world: World) -> None:
    token = _token(sim, world)
    sim.ctl("POST", "/faults", {"kind": "request_limit", "count": 2})
    resp = sim.rest(world.host, token, "/limits")
    assert resp.status_code == 403
    assert resp.get_json()[0]["errorCode"] == "REQUEST_LIMIT_EXCEEDED"
    resp = sim.refresh(world.host, world.key, world.secret, "x")
    assert resp.status_code == 400 and resp.get_json()["error"] == "rate_limit_exceeded"


def test_faults_filter_by_host_and_path(sim: Sim, world: World) -> None:
    token = _token(sim, world)
    sim.ctl("POST", "/faults", {"kind": "error_503", "host": "other.my.salesforce.com"})
    sim.ctl(
        "POST",
        "/faults",
        {"kind": "error_503", "path_prefix": "/services/oauth2/revoke"},
    )
    assert sim.rest(world.host, token, "/limits").status_code == 200
    assert sim.client.post(f"/h/{world.host}/services/oauth2/revoke").status_code == 503
    assert len(sim.ctl("GET", "/faults")["faults"]) == 2
    sim.ctl("DELETE", "/faults")
    assert sim.ctl("GET", "/faults")["faults"] == []


def test_latency_fault_and_global_latency(sim: Sim, world: World) -> None:
    token = _token(sim, world)
    sim.ctl("POST", "/faults", {"kind": "latency", "latency_ms": 120, "count": 1})
    started = time.monotonic()
    assert sim.rest(world.host, token, "/limits").status_code == 200
    assert time.monotonic() - started >= 0.12
    sim.ctl("POST", "/config", {"latency_ms": 80})
    started = time.monotonic()
    assert sim.client.get(f"/h/{world.host}/services/data/").status_code == 200
    assert time.monotonic() - started >= 0.08
    # Control calls are never slowed down.
    started = time.monotonic()
    sim.ctl("GET", "/health")
    assert time.monotonic() - started < 0.08


def test_timeout_fault_hangs_then_gives_up(sim: Sim, world: World) -> None:
    sim.ctl("POST", "/faults", {"kind": "timeout", "latency_ms": 150, "count": 1})
    started = time.monotonic()
    resp = sim.client.get(f"/h/{world.host}/services/data/")
    assert time.monotonic() - started >= 0.15
    assert resp.status_code == 504
    entries = sim.ctl("GET", "/requests")["requests"]
    assert entries[-1]["fault"] == "timeout"


def test_revoke_tokens_for_a_user(sim: Sim, world: World) -> None:
    body = sim.tokens(world)
    assert sim.ctl(
        "POST", f"/orgs/{world.org_id}/users/{world.user_id}/revoke-tokens"
    ) == {"revoked": 1}
    assert sim.rest(world.host, body["access_token"], "/limits").status_code == 401
    resp = sim.refresh(world.host, world.key, world.secret, body["refresh_token"])
    assert resp.get_json()["error_description"] == "expired access/refresh token"
    # Approval is gone too: the next login asks again.
    again = sim.login(world.host, world.key, world.username)
    assert "Allow Access?" in again.get_data(as_text=True)


def test_fault_validation(sim: Sim) -> None:
    assert "kind" in sim.ctl("POST", "/faults", {"kind": "meteor"}, status=400)["error"]
    sim.ctl("POST", "/faults", {"kind": "latency"}, status=400)
    sim.ctl("POST", "/faults", {"kind": "error_500", "count": 0}, status=400)
    sim.ctl(
        "POST", "/faults", {"kind": "error_500", "path_prefix": "services"}, status=400
    )
    sim.ctl("DELETE", "/faults/f999", status=404)
