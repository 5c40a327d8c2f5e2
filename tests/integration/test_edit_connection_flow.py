"""Edit Connection end to end at the service level: a real worker, the live
simulator over HTTP, the test database."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import pytest

from companies.audit import Actor
from connections import services
from connections.models import ConnectionChange, PermissionCheck
from orgs.models import ConnectionStatus, SalesforceOrg
from tests.factories import (
    CompanyFactory,
    ExternalClientAppFactory,
    SalesforceOrgFactory,
)
from tests.live import wait_for
from tests.simclient import salesforce_login

pytestmark = pytest.mark.integration


def _connected_org(stack, *, name="acme", permissions=None):
    sim = stack.sim
    callback = stack.url + "/oauth/callback/"
    created = sim.create_org(name)
    user_id = sim.create_user(created["org_id"], f"old@{name}.example")
    old_app = sim.create_app(created["org_id"], callback, name=f"{name}-old")
    tokens = sim.mint_tokens(old_app["consumer_key"], user_id)
    company = CompanyFactory(name=f"{name.title()} Co")
    app = ExternalClientAppFactory(
        consumer_key=old_app["consumer_key"], consumer_secret=old_app["consumer_secret"]
    )
    org = SalesforceOrgFactory(
        alias=f"{name}-prod",
        org_id=created["org_id"],
        login_url=created["login_url"],
        instance_url=created["instance_url"],
        company=company,
        client_app=app,
        refresh_token=tokens["refresh_token"],
        connected_as_username=f"old@{name}.example",
    )
    return org, created, tokens["refresh_token"]


def _state(change_id):
    return ConnectionChange.objects.get(pk=change_id).state


def test_edit_connection_end_to_end(stack):
    sim = stack.sim
    org, created, old_token = _connected_org(stack)
    new_user = sim.create_user(created["org_id"], "new@acme.example")
    new_app = sim.create_app(
        created["org_id"],
        stack.url + "/oauth/callback/",
        name="acme-new",
        activation_delay_seconds=2,
    )
    sim.clear_requests()
    change = services.connection_change_start(
        actor=Actor.system(),
        org=org,
        consumer_key=new_app["consumer_key"],
        consumer_secret=new_app["consumer_secret"],
    )
    wait_for(lambda: _state(change.pk) == "active", timeout=40)
    probes = [r for r in sim.requests() if r["path"].endswith("/oauth2/token")]
    assert 1 <= len(probes) <= 6
    # The org still runs on its old app while the change is staged.
    org.refresh_from_db()
    assert org.client_app.consumer_key != new_app["consumer_key"]

    auth = services.connection_change_begin_authorization(change=change)
    callback = salesforce_login(auth.url, "new@acme.example", "sf-password")
    params = parse_qs(urlsplit(callback).query)
    assert params["state"] == [auth.state]
    services.connection_change_receive_code(change_id=change.pk, code=params["code"][0])
    wait_for(lambda: _state(change.pk) == "authorized")
    change.refresh_from_db()
    assert change.new_username == "new@acme.example"
    assert change.new_user_id == new_user
    assert change.code_encrypted == "" and change.code_verifier_encrypted == ""

    check = wait_for(
        lambda: PermissionCheck.objects.filter(
            change=change, state=PermissionCheck.State.DONE
        ).first()
    )
    assert check.backup_ok and check.restore_ok

    new_company = CompanyFactory(name="Moved Co")
    services.connection_change_apply(
        actor=Actor.system(), change=change, company=new_company, permission_check=check
    )
    org = SalesforceOrg.objects.get(pk=org.pk)
    assert org.client_app.consumer_key == new_app["consumer_key"]
    assert org.connected_as_username == "new@acme.example"
    assert org.company == new_company
    assert org.status == ConnectionStatus.CONNECTED
    assert (
        org.backup_policy.client_app == org.client_app
        if hasattr(org, "backup_policy")
        else True
    )
    wait_for(lambda: not sim.token_active(old_token))
    assert sim.token_active(org.get_refresh_token())


def test_wrong_secret_is_reported_at_once(stack):
    sim = stack.sim
    org, created, _ = _connected_org(stack, name="wrongsecret")
    new_app = sim.create_app(created["org_id"], stack.url + "/oauth/callback/")
    change = services.connection_change_start(
        actor=Actor.system(),
        org=org,
        consumer_key=new_app["consumer_key"],
        consumer_secret="not-the-right-secret",
    )
    wait_for(lambda: _state(change.pk) == "failed", timeout=20)
    change.refresh_from_db()
    assert change.failure_code == "wrong_secret"
    assert "rejected the consumer secret" in change.failure_message
    assert change.probe_count == 1


def test_login_to_another_org_stores_nothing(stack):
    sim = stack.sim
    org, created, _ = _connected_org(stack, name="right")
    other = sim.create_org("wrong")
    sim.create_user(other["org_id"], "someone@wrong.example")
    new_app = sim.create_app(created["org_id"], stack.url + "/oauth/callback/")
    change = services.connection_change_start(
        actor=Actor.system(),
        org=org,
        consumer_key=new_app["consumer_key"],
        consumer_secret=new_app["consumer_secret"],
    )
    wait_for(lambda: _state(change.pk) == "active")
    auth = services.connection_change_begin_authorization(change=change)
    callback = salesforce_login(auth.url, "someone@wrong.example", "sf-password")
    code = parse_qs(urlsplit(callback).query)["code"][0]
    services.connection_change_receive_code(change_id=change.pk, code=code)
    wait_for(
        lambda: (
            ConnectionChange.objects.get(pk=change.pk).failure_code == "org_mismatch"
        )
    )
    change.refresh_from_db()
    assert change.state == "active"
    assert "different Salesforce org" in change.failure_message
    assert change.new_refresh_token_encrypted == ""
