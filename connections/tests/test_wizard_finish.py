"""Finish in the wizard: the org version the run started from is checked on
every path, with or without the hidden version field."""

from __future__ import annotations

import pytest
from django.test import Client

from companies.models import RoleGrant
from connections.models import PermissionCheck, WizardState
from orgs.models import SalesforceOrg
from tests.factories import CompanyFactory, SalesforceOrgFactory, UserFactory

pytestmark = pytest.mark.django_db


def walk_to_summary(client: Client, org: SalesforceOrg, target_company) -> str:
    base = f"/orgs/{org.pk}/edit-connection/"
    prefix = f"connection_wizard_{org.pk}"
    client.get(base, follow=True)  # the run begins: its version is recorded
    # "Keep the current app", posted without the hidden version field.
    client.post(base, {f"{prefix}-current_step": "app", "app-choice": "keep"})
    check = PermissionCheck.objects.create(
        org=org, state=PermissionCheck.State.DONE, backup_ok=True, restore_ok=True
    )
    client.post(
        base, {f"{prefix}-current_step": "permissions", "permissions-check": check.pk}
    )
    client.post(
        base,
        {f"{prefix}-current_step": "company", "company-company": target_company.pk},
    )
    return base


@pytest.fixture
def admin_client():
    user = UserFactory(username="alice", is_staff=True)
    RoleGrant.objects.create(user=user, role="administrator", company=None)
    client = Client()
    client.force_login(user)
    return client


def test_finish_without_the_version_field_still_refuses_a_changed_org(admin_client):
    org = SalesforceOrgFactory()
    target = CompanyFactory()
    base = walk_to_summary(admin_client, org, target)
    # Someone else changes the org after the run began.
    SalesforceOrg.objects.filter(pk=org.pk).update(version=org.version + 1)

    response = admin_client.post(
        base, {f"connection_wizard_{org.pk}-current_step": "summary"}, follow=True
    )

    assert "Someone else changed this org" in response.content.decode()
    assert SalesforceOrg.objects.get(pk=org.pk).company_id == org.company_id


def test_finish_applies_once_and_a_stale_page_says_who_finished(admin_client):
    org = SalesforceOrgFactory()
    target = CompanyFactory()
    base = walk_to_summary(admin_client, org, target)
    run = WizardState.objects.get(org=org).run
    finish = {f"connection_wizard_{org.pk}-current_step": "summary", "wizard_run": run}

    first = admin_client.post(base, finish)
    assert first.status_code == 302
    assert SalesforceOrg.objects.get(pk=org.pk).company_id == target.pk

    second = admin_client.post(base, finish, follow=True)
    assert "alice already finished this" in second.content.decode()
    assert WizardState.objects.get(org=org).run == run + 1


def test_another_administrator_opens_the_wizard_at_the_same_step(admin_client):
    org = SalesforceOrgFactory()
    walk_to_summary(admin_client, org, CompanyFactory())
    bob = UserFactory(username="bob", is_staff=True)
    RoleGrant.objects.create(user=bob, role="administrator", company=None)
    other = Client()
    other.force_login(bob)

    response = other.get(f"/orgs/{org.pk}/edit-connection/")

    assert response["Location"].endswith("/edit-connection/summary/")
