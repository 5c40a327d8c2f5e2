"""Bulk actions on a real worker against the live simulator: every selected
org is checked, the progress reaches done, the skipped are said."""

from __future__ import annotations

import pytest
from django.test import Client

from companies.models import RoleGrant
from connections.models import BulkAction, PermissionCheck
from orgs.models import ConnectionStatus, SalesforceOrg
from tests.factories import (
    CompanyFactory,
    ExternalClientAppFactory,
    SalesforceOrgFactory,
    UserFactory,
)
from tests.live import wait_for

pytestmark = pytest.mark.integration


def _org(stack, name: str, *, company=None) -> tuple[SalesforceOrg, dict, str]:
    """An org connected at the simulator, with its user's refresh token."""
    created = stack.sim.create_org(name)
    user_id = stack.sim.create_user(created["org_id"], f"int@{name}.example")
    app = stack.sim.create_app(
        created["org_id"], stack.url + "/oauth/callback/", name=name
    )
    tokens = stack.sim.mint_tokens(app["consumer_key"], user_id)
    org = SalesforceOrgFactory(
        alias=name,
        org_id=created["org_id"],
        login_url=created["login_url"],
        instance_url=created["instance_url"],
        company=company or CompanyFactory(name=f"{name} Co"),
        client_app=ExternalClientAppFactory(
            consumer_key=app["consumer_key"], consumer_secret=app["consumer_secret"]
        ),
        refresh_token=tokens["refresh_token"],
        connected_as_username=f"int@{name}.example",
        status=ConnectionStatus.CONNECTED,
    )
    return org, created, user_id


def _client(role: str, company) -> Client:
    user = UserFactory(username=f"{role}-{company.pk}")
    RoleGrant.objects.create(user=user, role=role, company=company)
    client = Client()
    client.force_login(user)
    return client


def _finished(action_id: int) -> BulkAction:
    return wait_for(
        lambda: (a := BulkAction.objects.get(pk=action_id)).is_finished and a,
        timeout=120,
    )


def test_bulk_check_now_checks_every_org_and_the_progress_reaches_done(stack):
    company = CompanyFactory(name="Bulk Co")
    orgs = [_org(stack, f"bulk-{i}", company=company) for i in range(3)]
    _, created, user_id = orgs[1]
    stack.sim.post(f"/orgs/{created['org_id']}/users/{user_id}/revoke-tokens")
    not_mine, *_ = _org(stack, "bulk-not-mine")
    client = _client("operator", company)
    ticked = [org.pk for org, *_ in orgs] + [not_mine.pk]

    response = client.post(
        "/orgs/bulk/", {"action": "check_now", "orgs": ticked, "source": "list"}
    )

    action = BulkAction.objects.get()
    assert response["Location"] == f"/orgs/?bulk={action.pk}"
    action = _finished(action.pk)
    assert (action.total, action.done, action.failed, action.skipped) == (3, 3, 1, 1)
    for org, *_ in orgs:
        checked = SalesforceOrg.objects.get(pk=org.pk)
        assert checked.last_checked_at >= action.created_at
    assert SalesforceOrg.objects.get(pk=orgs[1][0].pk).status == (
        ConnectionStatus.NEEDS_REAUTHORIZATION
    )
    assert SalesforceOrg.objects.get(pk=not_mine.pk).last_checked_at is None
    line = client.get(f"/orgs/bulk/{action.pk}/").content.decode()
    assert "Checked 3 orgs · 1 failed · 1 skipped: you may not act on them" in line


def test_bulk_verify_permissions_checks_each_org_once(stack):
    company = CompanyFactory(name="Verify Co")
    orgs = [_org(stack, f"verify-{i}", company=company)[0] for i in range(2)]
    client = _client("operator", company)

    client.post(
        "/orgs/bulk/",
        {"action": "verify_permissions", "all_matching": "1", "source": "list"},
    )

    action = _finished(BulkAction.objects.get().pk)
    assert (action.total, action.done, action.skipped) == (2, 2, 0)
    checks = PermissionCheck.objects.filter(org__in=orgs)
    assert checks.count() == 2
    assert set(checks.values_list("state", flat=True)) == {"done"}
