"""Bad input and failures around Edit Connection: each gets a clear message,
the old connection keeps working, nothing is half-applied.

Service calls run in this process against the live simulator; enqueued
tasks are captured rather than run, so each step is deterministic.
"""

from __future__ import annotations

from datetime import timedelta
from unittest import mock
from urllib.parse import parse_qs, urlsplit

import pytest
from django.core.exceptions import ValidationError
from django.test import Client
from django.utils import timezone

from companies.audit import Actor
from connections import services
from connections.models import ConnectionChange
from orgs.models import SalesforceOrg
from orgs.services import ConcurrentChange, orgs_move
from tests.factories import (
    CompanyFactory,
    ExternalClientAppFactory,
    RoleGrantFactory,
    SalesforceOrgFactory,
    UserFactory,
)
from tests.simclient import Sim, salesforce_login

pytestmark = pytest.mark.integration

CALLBACK = "http://127.0.0.1:8000/oauth/callback/"


@pytest.fixture
def env(db, settings, sim_url):
    settings.SALESFORCE_SIMULATOR_URL = sim_url
    settings.PUBLIC_URL = "http://127.0.0.1:8000"
    settings.SALESFORCE_RETRY_BACKOFF = 0
    settings.SALESFORCE_READ_TIMEOUT = 1
    sim = Sim(sim_url)
    sim.reset()
    created = sim.create_org("acme")
    user_id = sim.create_user(created["org_id"], "old@acme.example")
    old = sim.create_app(created["org_id"], CALLBACK, name="old")
    tokens = sim.mint_tokens(old["consumer_key"], user_id)
    org = SalesforceOrgFactory(
        org_id=created["org_id"],
        login_url=created["login_url"],
        instance_url=created["instance_url"],
        client_app=ExternalClientAppFactory(
            consumer_key=old["consumer_key"], consumer_secret=old["consumer_secret"]
        ),
        refresh_token=tokens["refresh_token"],
    )
    admin = UserFactory(username="admin-bad", is_staff=True)
    RoleGrantFactory(user=admin, role="administrator", company=None)
    client = Client()
    client.force_login(admin)
    return type(
        "Env",
        (),
        {
            "sim": sim,
            "org": org,
            "created": created,
            "old_token": tokens["refresh_token"],
            "client": client,
            "admin": admin,
        },
    )


def _start(env, **app_options):
    app = env.sim.create_app(env.created["org_id"], CALLBACK, **app_options)
    change = services.connection_change_start(
        actor=Actor(user=env.admin),
        org=env.org,
        consumer_key=app["consumer_key"],
        consumer_secret=app["consumer_secret"],
    )
    return change, app


def _token_calls(sim):
    return [r for r in sim.requests() if r["path"].endswith("/oauth2/token")]


def test_activation_of_a_10_minute_app_takes_at_most_20_probes(env, settings):
    """The real schedule, with both clocks moved instead of waited on."""
    change, _ = _start(env, activation_delay_seconds=600)
    env.sim.clear_requests()
    start = change.activation_started_at
    result, attempt, elapsed = "waiting", 0, 0.0
    while result == "waiting":
        offset = services.ACTIVATION_SCHEDULE[attempt]
        env.sim.advance(offset - elapsed)
        elapsed = offset
        with mock.patch(
            "django.utils.timezone.now", return_value=start + timedelta(seconds=offset)
        ):
            result = services.connection_change_probe(
                change_id=change.pk, attempt=attempt
            )
        attempt += 1
    probes = len(_token_calls(env.sim))
    print(f"activation probes for a 10-minute activation: {probes}")
    assert result == "active"
    assert probes <= 20
    assert probes == attempt
    assert 5 * probes < 600 / 5  # against fixed 5-second polling (120 probes)


def test_a_key_that_never_activates_expires_and_keeps_the_old_connection(env):
    change = services.connection_change_start(
        actor=Actor(user=env.admin),
        org=env.org,
        consumer_key="3MVG9" + "x" * 80,
        consumer_secret="some-secret-value",
    )
    assert services.connection_change_probe(change_id=change.pk, attempt=0) == "waiting"
    ConnectionChange.objects.filter(pk=change.pk).update(
        activation_started_at=timezone.now() - timedelta(minutes=16)
    )
    assert services.connection_change_probe(change_id=change.pk, attempt=1) == "expired"
    change.refresh_from_db()
    assert change.state == "expired"
    assert "did not accept the new consumer key" in change.failure_message
    org = SalesforceOrg.objects.get(pk=env.org.pk)
    assert org.client_app_id == env.org.client_app_id
    assert env.sim.token_active(env.old_token)
    page = env.client.get(f"/orgs/{org.pk}/").content.decode()
    assert "The last connection change expired" in page


def test_wrong_secret_is_reported_after_one_probe(env):
    app = env.sim.create_app(env.created["org_id"], CALLBACK)
    change = services.connection_change_start(
        actor=Actor(user=env.admin),
        org=env.org,
        consumer_key=app["consumer_key"],
        consumer_secret="wrong-secret-1234",
    )
    assert services.connection_change_probe(change_id=change.pk, attempt=0) == (
        "wrong_secret"
    )
    page = env.client.get(
        f"/orgs/{env.org.pk}/edit-connection/", follow=True
    ).content.decode()
    assert "rejected the consumer secret" in page
    assert "wrong-secret-1234" not in page


def test_a_duplicate_probe_delivery_is_a_no_op(env):
    change, _ = _start(env)
    assert services.connection_change_probe(change_id=change.pk, attempt=0) == "active"
    assert services.connection_change_probe(change_id=change.pk, attempt=0) == "skipped"


def test_the_key_of_another_orgs_app_is_refused(env):
    other = SalesforceOrgFactory(alias="other-org")
    with pytest.raises(ValidationError) as caught:
        services.connection_change_start(
            actor=Actor(user=env.admin),
            org=env.org,
            consumer_key=other.client_app.consumer_key,
            consumer_secret="whatever-123",
        )
    assert "belongs to the app of other-org" in str(caught.value)
    assert not ConnectionChange.objects.exists()


@pytest.mark.parametrize(
    ("key", "secret", "message"),
    [
        ("short", "secret-123", "Paste the consumer key"),
        ("3MVG9 has spaces in it and more", "secret-123", "Paste the consumer key"),
        ("3MVG9" + "a" * 30, "sp ace s", "Paste the consumer secret"),
        ("3MVG9" + "a" * 30, "x" * 300, "at most 255 characters"),
        (
            "3MVG9" + "a" * 30 + "\u0000",
            "secret-123",
            "Null characters are not allowed",
        ),
    ],
)
def test_malformed_credentials_get_a_clear_message(env, key, secret, message):
    response = env.client.post(
        f"/orgs/{env.org.pk}/edit-connection/",
        {
            "credentials-consumer_key": key,
            "credentials-consumer_secret": secret,
            "save_credentials": "1",
        },
    )
    assert response.status_code == 422  # the form again, with its errors
    assert message in response.content.decode()
    assert not ConnectionChange.objects.exists()


def _authorize_in_browser_session(env, client):
    change, _app = _start(env)
    services.connection_change_probe(change_id=change.pk, attempt=0)
    response = client.post(f"/connections/changes/{change.pk}/authorize/")
    assert response.status_code == 302
    return change, response["Location"]


def test_callback_state_must_come_from_this_session(env):
    change, authorize_url = _authorize_in_browser_session(env, env.client)
    callback = salesforce_login(authorize_url, "old@acme.example", "sf-password")
    query = parse_qs(urlsplit(callback).query)
    code, state = query["code"][0], query["state"][0]
    env.sim.clear_requests()
    cases = {
        "missing": {"code": code},
        "forged": {"code": code, "state": "forged-state"},
        "tampered": {"code": code, "state": state[:-2] + "xx"},
    }
    for name, params in cases.items():
        response = env.client.get("/oauth/callback/", params)
        assert response.status_code == 403, name
    # Another signed-in browser cannot use this session's state.
    stranger = Client()
    stranger.force_login(env.admin)
    assert (
        stranger.get("/oauth/callback/", {"code": code, "state": state}).status_code
        == 403
    )
    change.refresh_from_db()
    assert change.state == "active" and change.code_encrypted == ""
    # The real one works once; a replay is refused.
    assert (
        env.client.get("/oauth/callback/", {"code": code, "state": state}).status_code
        == 302
    )
    assert (
        env.client.get("/oauth/callback/", {"code": code, "state": state}).status_code
        == 403
    )
    assert _token_calls(env.sim) == []  # the exchange runs in a task, never here


def test_expired_state_is_refused(env):
    _change, authorize_url = _authorize_in_browser_session(env, env.client)
    session = env.client.session
    flows = session["oauth_flows"]
    for flow in flows.values():
        flow["expires"] = 0
    session["oauth_flows"] = flows
    session.save()
    state = parse_qs(urlsplit(authorize_url).query)["state"][0]
    response = env.client.get("/oauth/callback/", {"code": "abc", "state": state})
    assert response.status_code == 403
    assert "Nothing was changed" in response.content.decode()


def test_a_user_who_denies_access_gets_a_clear_message(env):
    change, authorize_url = _authorize_in_browser_session(env, env.client)
    callback = salesforce_login(
        authorize_url, "old@acme.example", "sf-password", "Deny"
    )
    query = parse_qs(urlsplit(callback).query)
    assert query["error"] == ["access_denied"]
    response = env.client.get("/oauth/callback/", query, follow=True)
    assert (
        "Access was denied at Salesforce, so nothing changed"
        in response.content.decode()
    )
    change.refresh_from_db()
    assert change.state == "active" and not change.new_refresh_token_encrypted


def test_a_503_during_the_exchange_gets_a_clear_message(env):
    change, authorize_url = _authorize_in_browser_session(env, env.client)
    callback = salesforce_login(authorize_url, "old@acme.example", "sf-password")
    env.client.get("/oauth/callback/", parse_qs(urlsplit(callback).query))
    env.sim.fault(kind="error_503", path_prefix="/services/oauth2/token", count=5)
    services.connection_change_exchange(change_id=change.pk)
    change.refresh_from_db()
    assert change.state == "active"
    assert "did not answer while completing the sign-in" in change.failure_message
    assert change.code_encrypted == ""  # codes are single-use: never kept
    assert (
        SalesforceOrg.objects.get(pk=env.org.pk).client_app_id == env.org.client_app_id
    )


def test_timeouts_while_probing_are_retried_with_a_message(env):
    change, _ = _start(env)
    env.sim.fault(
        kind="timeout", path_prefix="/services/oauth2/token", count=3, latency_ms=3000
    )
    assert services.connection_change_probe(change_id=change.pk, attempt=0) == "waiting"
    change.refresh_from_db()
    assert change.state == "awaiting_activation"
    assert "did not answer the last check" in change.failure_message


def _authorized_change(env):
    change, authorize_url = _authorize_in_browser_session(env, env.client)
    callback = salesforce_login(authorize_url, "old@acme.example", "sf-password")
    env.client.get("/oauth/callback/", parse_qs(urlsplit(callback).query))
    assert services.connection_change_exchange(change_id=change.pk) == "authorized"
    change.refresh_from_db()
    return change


def test_finish_refuses_when_the_org_changed_meanwhile(env):
    change = _authorized_change(env)
    orgs_move(actor=Actor.system(), orgs=[env.org], to_company=CompanyFactory())
    with pytest.raises(ConcurrentChange):
        services.connection_change_apply(
            actor=Actor(user=env.admin), change=change, company=env.org.company
        )
    org = SalesforceOrg.objects.get(pk=env.org.pk)
    assert org.client_app_id == env.org.client_app_id
    assert org.get_refresh_token() == env.old_token
    assert ConnectionChange.objects.get(pk=change.pk).state == "authorized"


def test_identity_provider_org_needs_openid(env):
    SalesforceOrg.objects.filter(pk=env.org.pk).update(is_identity_provider=True)
    env.org.refresh_from_db()
    change, authorize_url = _authorize_in_browser_session_without_openid(env)
    callback = salesforce_login(authorize_url, "old@acme.example", "sf-password")
    env.client.get("/oauth/callback/", parse_qs(urlsplit(callback).query))
    services.connection_change_exchange(change_id=change.pk)
    change.refresh_from_db()
    assert change.state == "active"
    assert "must be granted the “openid” scope" in change.failure_message


def _authorize_in_browser_session_without_openid(env):
    app = env.sim.create_app(
        env.created["org_id"], CALLBACK, scopes=["api", "refresh_token", "id"]
    )
    change = services.connection_change_start(
        actor=Actor(user=env.admin),
        org=env.org,
        consumer_key=app["consumer_key"],
        consumer_secret=app["consumer_secret"],
    )
    services.connection_change_probe(change_id=change.pk, attempt=0)
    response = env.client.post(f"/connections/changes/{change.pk}/authorize/")
    return change, response["Location"]
