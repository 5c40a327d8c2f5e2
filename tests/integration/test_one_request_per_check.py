"""One Salesforce request per healthy check, on a real worker against the
live simulator: the access token is kept between checks, refreshed only
when Salesforce no longer takes it, and a rotated refresh token is saved.

Requests are counted in the simulator's log (``/_sim/requests``)."""

from __future__ import annotations

import pytest
from django.utils import timezone

from orgs.models import ConnectionStatus, SalesforceOrg
from orgs.tasks import check_all_orgs, check_org_health
from orgs.tokens import org_cached_access_token
from tests.factories import (
    CompanyFactory,
    ExternalClientAppFactory,
    SalesforceOrgFactory,
)
from tests.live import wait_for

pytestmark = pytest.mark.integration


def _org(stack, name: str, *, rotate: bool = False):
    sim = stack.sim
    created = sim.create_org(name)
    user_id = sim.create_user(created["org_id"], f"int@{name}.example")
    app = sim.create_app(
        created["org_id"],
        stack.url + "/oauth/callback/",
        name=name,
        rotate_refresh_tokens=rotate,
    )
    tokens = sim.mint_tokens(app["consumer_key"], user_id)
    org = SalesforceOrgFactory(
        alias=name,
        org_id=created["org_id"],
        login_url=created["login_url"],
        instance_url=created["instance_url"],
        company=CompanyFactory(name=f"{name} Co"),
        client_app=ExternalClientAppFactory(
            consumer_key=app["consumer_key"], consumer_secret=app["consumer_secret"]
        ),
        refresh_token=tokens["refresh_token"],
        connected_as_username=f"int@{name}.example",
        status=ConnectionStatus.CONNECTED,
    )
    return org, tokens["refresh_token"]


def _check(org) -> SalesforceOrg:
    before = SalesforceOrg.objects.get(pk=org.pk).last_checked_at
    check_org_health.apply_async(kwargs={"org_id": org.pk})
    return wait_for(
        lambda: (
            (o := SalesforceOrg.objects.get(pk=org.pk)).last_checked_at != before and o
        )
    )


def _requests(stack) -> list[tuple[str, str]]:
    """(method, last path segment) of each logged Salesforce request."""
    return [(r["method"], r["path"].rsplit("/", 1)[-1]) for r in stack.sim.requests()]


def test_a_second_check_of_a_connected_org_is_one_request(stack):
    org, _ = _org(stack, "steady")
    assert _check(org).status == ConnectionStatus.CONNECTED

    stack.sim.clear_requests()
    checked = _check(org)

    assert checked.status == ConnectionStatus.CONNECTED
    assert _requests(stack) == [("GET", "query")]


def test_the_beat_checks_a_fleet_with_one_request_per_org_the_second_time(stack):
    count = 7  # two batches
    for n in range(count):
        _org(stack, f"fleet-{n}")
    for _ in range(2):
        stack.sim.clear_requests()
        started = timezone.now()
        check_all_orgs.apply_async(kwargs={"spread": False})
        wait_for(
            lambda started=started: (
                SalesforceOrg.objects.filter(last_checked_at__gte=started).count()
                == count
            )
        )
    statuses = set(SalesforceOrg.objects.values_list("status", flat=True))
    assert statuses == {ConnectionStatus.CONNECTED}
    assert _requests(stack) == [("GET", "query")] * count


def test_a_revoked_access_token_takes_one_refresh_then_the_call(stack):
    org, refresh_token = _org(stack, "revokedsession")
    _check(org)
    kept = org_cached_access_token(SalesforceOrg.objects.get(pk=org.pk))
    assert kept is not None
    # Revoked at Salesforce (an admin, a password reset, a logout).
    stack.sim.http.post(
        f"{stack.sim.base_url}/h/login.salesforce.com/services/oauth2/revoke",
        data={"token": kept.access_token},
        timeout=10,
    ).raise_for_status()
    stack.sim.clear_requests()

    checked = _check(org)

    assert checked.status == ConnectionStatus.CONNECTED
    assert _requests(stack) == [("GET", "query"), ("POST", "token"), ("GET", "query")]
    assert [r["status"] for r in stack.sim.requests()] == [401, 200, 200]
    assert checked.get_refresh_token() == refresh_token  # no rotation here
    renewed = org_cached_access_token(checked)
    assert renewed is not None and renewed.access_token != kept.access_token


def test_an_ended_session_is_refreshed_and_a_rotated_refresh_token_saved(stack):
    org, first_refresh_token = _org(stack, "rotating", rotate=True)
    _check(org)
    rotated_once = SalesforceOrg.objects.get(pk=org.pk).get_refresh_token()
    assert rotated_once != first_refresh_token
    # Salesforce ends sessions after their timeout without use.
    stack.sim.post("/config", {"session_timeout_seconds": 60})
    stack.sim.advance(61)
    stack.sim.clear_requests()

    checked = _check(org)

    assert checked.status == ConnectionStatus.CONNECTED
    assert _requests(stack) == [("GET", "query"), ("POST", "token"), ("GET", "query")]
    rotated_twice = checked.get_refresh_token()
    assert rotated_twice != rotated_once
    assert stack.sim.token_active(rotated_twice)
    assert not stack.sim.token_active(rotated_once)

    stack.sim.clear_requests()
    assert _check(org).status == ConnectionStatus.CONNECTED
    assert _requests(stack) == [("GET", "query")]
