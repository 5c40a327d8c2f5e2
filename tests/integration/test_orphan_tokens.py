"""Every token the console replaces or abandons is revoked at Salesforce
(issue 11, point 5), checked with the simulator's token list."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import pytest

from companies.audit import Actor
from connections import services
from connections.models import ConnectionChange
from tests.integration.test_edit_connection_flow import _connected_org
from tests.live import wait_for
from tests.simclient import salesforce_login

pytestmark = pytest.mark.integration


def authorize(change: ConnectionChange, username: str) -> str:
    """One "Authorize at Salesforce" as ``username``; the new token."""
    auth = services.connection_change_begin_authorization(change=change)
    callback = salesforce_login(auth.url, username, "sf-password")
    code = parse_qs(urlsplit(callback).query)["code"][0]
    services.connection_change_receive_code(change_id=change.pk, code=code)
    wait_for(lambda: ConnectionChange.objects.get(pk=change.pk).state == "authorized")
    return ConnectionChange.objects.get(pk=change.pk).get_secret("new_refresh_token")


def test_authorize_again_and_cancel_leave_no_live_token_behind(stack):
    sim = stack.sim
    org, created, old_token = _connected_org(stack, name="orphans")
    sim.create_user(created["org_id"], "first@orphans.example")
    sim.create_user(created["org_id"], "second@orphans.example")
    app = sim.create_app(created["org_id"], stack.url + "/oauth/callback/")
    change = services.connection_change_start(
        actor=Actor.system(),
        org=org,
        consumer_key=app["consumer_key"],
        consumer_secret=app["consumer_secret"],
    )
    wait_for(lambda: ConnectionChange.objects.get(pk=change.pk).state == "active")

    first = authorize(change, "first@orphans.example")
    second = authorize(change, "second@orphans.example")  # "Authorize again"
    assert first != second
    wait_for(lambda: not sim.token_active(first))  # the replaced one is revoked

    services.connection_change_cancel(actor=Actor.system(), change=change)
    wait_for(lambda: not sim.token_active(second))  # the abandoned one too
    assert sim.token_active(old_token)  # the org's own token is untouched


def test_a_newer_change_revokes_the_token_of_the_one_it_replaces(stack):
    sim = stack.sim
    org, created, old_token = _connected_org(stack, name="replaced")
    sim.create_user(created["org_id"], "u@replaced.example")
    app = sim.create_app(created["org_id"], stack.url + "/oauth/callback/")
    other = sim.create_app(created["org_id"], stack.url + "/oauth/callback/")
    change = services.connection_change_start(
        actor=Actor.system(),
        org=org,
        consumer_key=app["consumer_key"],
        consumer_secret=app["consumer_secret"],
    )
    wait_for(lambda: ConnectionChange.objects.get(pk=change.pk).state == "active")
    token = authorize(change, "u@replaced.example")

    services.connection_change_start(
        actor=Actor.system(),
        org=org,
        consumer_key=other["consumer_key"],
        consumer_secret=other["consumer_secret"],
    )
    wait_for(lambda: not sim.token_active(token))
    assert sim.token_active(old_token)
