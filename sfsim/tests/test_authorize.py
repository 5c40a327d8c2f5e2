"""GET/POST /services/oauth2/authorize: login page, approval, errors (ref §2)."""

from __future__ import annotations

from sfsim.oauth import LOGIN_ERROR

from .conftest import CALLBACK, Sim, World, callback_params, pkce_pair

BARE_CLIENT = b"error=invalid_client_id&error_description=client%20identifier%20invalid"
BARE_REDIRECT = b"error=redirect_uri_mismatch&error_description=redirect_uri%20must%20match%20configuration"


def test_unknown_client_id_is_a_bare_400_page(sim: Sim, world: World) -> None:
    resp = sim.authorize(world.host, "3MVG9unknown", state="s1")
    assert resp.status_code == 400
    assert resp.data == BARE_CLIENT
    assert "Location" not in resp.headers


def test_app_is_pending_until_activation_delay_passes(sim: Sim, world: World) -> None:
    app = sim.app(world.org_id, name="Slow", activation_delay_seconds=600)
    assert sim.authorize(world.host, app["consumer_key"]).data == BARE_CLIENT
    sim.advance(599)
    assert sim.authorize(world.host, app["consumer_key"]).status_code == 400
    sim.advance(1)
    assert sim.authorize(world.host, app["consumer_key"]).status_code == 200


def test_redirect_uri_must_match_exactly(sim: Sim, world: World) -> None:
    for wrong in (CALLBACK.rstrip("/"), CALLBACK.replace("127.0.0.1", "localhost"), ""):
        resp = sim.authorize(world.host, world.key, redirect_uri=wrong)
        assert resp.status_code == 400
        assert resp.data == BARE_REDIRECT


def test_pkce_required_without_challenge_has_empty_content_type(
    sim: Sim, world: World
) -> None:
    app = sim.app(world.org_id, name="PKCE", require_pkce=True)
    resp = sim.authorize(world.host, app["consumer_key"], state="s")
    assert resp.status_code == 400
    assert (
        resp.data
        == b"error=invalid_request&error_description=missing required code challenge"
    )
    assert resp.headers.get("Content-Type") == ""
    _, challenge = pkce_pair()
    assert (
        sim.authorize(
            world.host, app["consumer_key"], code_challenge=challenge
        ).status_code
        == 200
    )


def test_bad_response_type_is_redirected_with_state(sim: Sim, world: World) -> None:
    resp = sim.authorize(world.host, world.key, response_type="token", state="a b&c")
    params = callback_params(resp)
    assert params == {
        "error": "unsupported_response_type",
        "error_description": "response type not supported",
        "state": "a b&c",
    }


def test_unknown_scope_is_invalid_scope(sim: Sim, world: World) -> None:
    resp = sim.authorize(world.host, world.key, scope="api bogus_scope", state="s")
    params = callback_params(resp)
    assert params["error"] == "invalid_scope" and params["state"] == "s"


def test_blocked_app_redirects_oauth_app_blocked(sim: Sim, world: World) -> None:
    sim.ctl("POST", f"/apps/{world.key}/block")
    resp = sim.authorize(world.host, world.key, state="s")
    assert resp.headers["Location"] == (
        f"{CALLBACK}?error=OAUTH_APP_BLOCKED"
        "&error_description=this+app+is+blocked+by+admin&state=s"
    )
    sim.ctl("POST", f"/apps/{world.key}/unblock")
    assert sim.authorize(world.host, world.key).status_code == 200


def test_immediate_without_session_is_unsuccessful(sim: Sim, world: World) -> None:
    params = callback_params(sim.authorize(world.host, world.key, immediate="true"))
    assert params["error"] == "immediate_unsuccessful"


def test_login_page_has_salesforce_fields_and_carries_params(
    sim: Sim, world: World
) -> None:
    resp = sim.authorize(
        world.host,
        world.key,
        state="st<>",
        scope="full openid",
        login_hint="admin@acme.example",
    )
    html = resp.get_data(as_text=True)
    assert resp.status_code == 200 and resp.mimetype == "text/html"
    assert "<title>Login | Salesforce</title>" in html
    assert "<label for='username'>Username</label>" in html
    assert "<label for='password'>Password</label>" in html
    assert "name='username' value='admin@acme.example'" in html
    assert "name='pw'" in html and "value='Log In'" in html
    assert "name='state' value='st&lt;&gt;'" in html
    assert f"name='client_id' value='{world.key}'" in html


def test_wrong_password_shows_the_login_error(sim: Sim, world: World) -> None:
    resp = sim.login(world.host, world.key, world.username, "wrong")
    assert resp.status_code == 200
    html = resp.get_data(as_text=True)
    assert "Login | Salesforce" in html
    assert (
        "Please check your username and password. If you still can&#x27;t log in"
        in html
    )
    assert LOGIN_ERROR.startswith("Please check your username and password.")


def test_inactive_user_cannot_log_in(sim: Sim, world: World) -> None:
    sim.ctl("POST", f"/orgs/{world.org_id}/users/{world.user_id}", {"active": False})
    resp = sim.login(world.host, world.key, world.username)
    assert resp.status_code == 200 and "Please check your username" in resp.get_data(
        as_text=True
    )


def test_first_login_asks_for_approval_and_deny_redirects(
    sim: Sim, world: World
) -> None:
    approval = sim.login(world.host, world.key, world.username, state="s9")
    html = approval.get_data(as_text=True)
    assert (
        "Allow Access?" in html and "value='Allow'" in html and "value='Deny'" in html
    )
    resp = sim.decide(world.host, approval, "Deny")
    assert resp.headers["Location"] == (
        f"{CALLBACK}?error=access_denied"
        "&error_description=end-user+denied+authorization&state=s9"
    )


def test_allow_redirects_with_url_encoded_code_and_state(
    sim: Sim, world: World
) -> None:
    approval = sim.login(world.host, world.key, world.username, state="xyz")
    resp = sim.decide(world.host, approval, "Allow")
    location = resp.headers["Location"]
    assert location.startswith(f"{CALLBACK}?code=")
    assert location.endswith("%3D%3D&state=xyz")  # decode exactly once
    assert callback_params(resp)["code"].endswith("==")


def test_approval_is_remembered_unless_prompt_consent(sim: Sim, world: World) -> None:
    sim.code(world.host, world.key, world.username)
    again = sim.login(world.host, world.key, world.username)
    assert again.status_code == 302 and "code=" in again.headers["Location"]
    consent = sim.login(world.host, world.key, world.username, prompt="login consent")
    assert consent.status_code == 200 and "Allow Access?" in consent.get_data(
        as_text=True
    )


def test_user_of_another_org_can_use_the_app(sim: Sim, world: World) -> None:
    other = sim.org("globex", "developer")
    user = sim.user(other["org_id"], "dev@globex.example")
    code = sim.code("login.salesforce.com", world.key, "dev@globex.example")
    resp = sim.exchange("login.salesforce.com", world.key, world.secret, code)
    body = resp.get_json()
    # The token belongs to the user's org, which the console must notice.
    assert body["id"].endswith(f"/{other['org_id']}/{user['user_id']}")
    assert body["instance_url"] == "https://globex-dev-ed.develop.my.salesforce.com"


def test_strict_login_hosts_enforces_my_domain_membership(
    sim: Sim, world: World
) -> None:
    sim.ctl("POST", "/config", {"strict_login_hosts": True})
    other = sim.org("globex")
    sim.user(other["org_id"], "dev@globex.example")
    resp = sim.login(world.host, world.key, "dev@globex.example")
    assert "Please check your username" in resp.get_data(as_text=True)
    assert "Please check" in sim.login(
        "test.salesforce.com", world.key, world.username
    ).get_data(as_text=True)
    assert (
        sim.login("login.salesforce.com", world.key, world.username).status_code == 200
    )


def test_approval_ticket_cannot_be_replayed(sim: Sim, world: World) -> None:
    approval = sim.login(world.host, world.key, world.username)
    assert sim.decide(world.host, approval, "Allow").status_code == 302
    resp = sim.client.post(
        f"/h/{world.host}/services/oauth2/authorize",
        data={
            "client_id": world.key,
            "redirect_uri": CALLBACK,
            "response_type": "code",
            "sfsim_step": "approve",
            "sfsim_ticket": "forged",
            "decision": "Allow",
        },
    )
    assert resp.status_code == 200 and "session has expired" in resp.get_data(
        as_text=True
    )
