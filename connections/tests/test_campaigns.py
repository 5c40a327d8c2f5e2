"""Campaigns: creation, scoping, query counts, rows and beat (SPEC §9)."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from companies.access import AccessProfile
from companies.audit import Actor
from companies.models import AuditEvent
from connections.models import Campaign, CampaignOrg, ExternalClientApp
from connections.services.campaigns import CampaignError, campaign_create
from orgs.models import SalesforceOrg
from tests.factories import SalesforceOrgFactory

pytestmark = pytest.mark.django_db


def _bulk_orgs(company, n: int, start: int) -> list[int]:
    app = ExternalClientApp.objects.first()
    orgs = [
        SalesforceOrg(
            alias=f"bulk-{start + i:05d}",
            org_id=f"00D5g00001{start + i:05d}AAA"[:18],
            login_url=f"https://bulk{start + i}.my.salesforce.com",
            instance_url=f"https://bulk{start + i}.my.salesforce.com",
            company=company,
            client_app=app,
        )
        for i in range(n)
    ]
    return [o.pk for o in SalesforceOrg.objects.bulk_create(orgs)]


def _create(user, org_ids, **kwargs):
    return campaign_create(
        actor=Actor(user=user, ip_address="192.0.2.1"),
        access=AccessProfile(user),
        org_ids=org_ids,
        **kwargs,
    )


def test_operator_creates_for_own_company_only(world):
    other = SalesforceOrgFactory(company=world.acme, alias="acme-dev")
    campaign, skipped = _create(
        world.users["operator"],
        [world.acme_org.pk, other.pk, world.globex_org.pk],
        filter_query="status=failed",
    )
    assert skipped == 1
    assert sorted(campaign.rows.values_list("org_id", flat=True)) == sorted(
        [world.acme_org.pk, other.pk]
    )
    assert list(campaign.companies.all()) == [world.acme]
    assert campaign.name.startswith("Re-authorization ")
    assert abs(campaign.deadline - timezone.now() - timedelta(days=7)) < timedelta(
        minutes=1
    )
    event = AuditEvent.objects.get(action="campaign.create")
    assert event.after["orgs"] == 2
    assert event.after["skipped"] == 1
    assert event.after["filter"] == "status=failed"


@pytest.mark.parametrize("role", ["viewer", "support", "nobody"])
def test_roles_without_reauthorize_cannot_create(world, role):
    with pytest.raises(CampaignError):
        _create(world.users[role], [world.acme_org.pk])
    assert not Campaign.objects.exists()


def test_administrator_creates_for_any_company(world):
    campaign, skipped = _create(
        world.users["administrator"], [world.acme_org.pk, world.globex_org.pk]
    )
    assert skipped == 0
    assert campaign.companies.count() == 2


def test_deadline_in_the_past_is_refused(world):
    with pytest.raises(CampaignError):
        _create(
            world.users["administrator"],
            [world.acme_org.pk],
            deadline=timezone.now() - timedelta(minutes=1),
        )
    assert not Campaign.objects.exists()


def test_remembered_email_is_offered_again(world):
    first, _ = _create(world.users["administrator"], [world.acme_org.pk])
    first.rows.update(email="admin@acme.example")
    second, _ = _create(world.users["administrator"], [world.acme_org.pk])
    assert second.rows.get().email == "admin@acme.example"


def test_creation_takes_the_same_queries_for_10_and_1000_orgs(world):
    admin = world.users["administrator"]
    small = _bulk_orgs(world.acme, 10, 0)
    large = _bulk_orgs(world.acme, 1000, 100)
    counts = []
    for ids in (small, large):
        access = AccessProfile(admin)
        access.is_administrator  # grants loaded before counting  # noqa: B018
        with CaptureQueriesContext(connection) as ctx:
            campaign_create(actor=Actor(user=admin), access=access, org_ids=ids)
        counts.append(len(ctx.captured_queries))
    assert counts[0] == counts[1]
    assert CampaignOrg.objects.count() == 1010


# --- pages and links ---------------------------------------------------------


def _campaign(world, n_extra: int = 0):
    admin = world.users["administrator"]
    ids = [world.acme_org.pk, world.globex_org.pk]
    ids += [SalesforceOrgFactory(company=world.acme).pk for _ in range(n_extra)]
    campaign, _ = _create(admin, ids)
    return campaign


def _copy_link(client, campaign, row) -> str:
    response = client.post(
        f"/campaigns/{campaign.pk}/rows/{row.pk}/copy-link/", HTTP_HX_REQUEST="true"
    )
    assert response.status_code == 200
    return re.search(r"(/r/[^<\s\"]+/)", response.content.decode()).group(1)


def test_operator_sees_only_rows_of_own_companies(world):
    campaign = _campaign(world)
    page = world.client_for("operator").get(f"/campaigns/{campaign.pk}/")
    assert page.status_code == 200
    html = page.content.decode()
    assert "acme-prod" in html and "globex-prod" not in html
    assert "Re-authorize now" in html and "Send link" in html
    assert "/r/" not in html  # a link is never in the page by default


def test_viewer_reads_but_cannot_act(world):
    campaign = _campaign(world)
    row = campaign.rows.get(org=world.acme_org)
    viewer = world.client_for("viewer")
    html = viewer.get(f"/campaigns/{campaign.pk}/").content.decode()
    assert "acme-prod" in html and "Copy link" not in html
    assert (
        viewer.post(f"/campaigns/{campaign.pk}/rows/{row.pk}/skip/").status_code == 403
    )
    other = campaign.rows.get(org=world.globex_org)
    operator = world.client_for("operator")
    assert (
        operator.post(f"/campaigns/{campaign.pk}/rows/{other.pk}/skip/").status_code
        == 404
    )


def test_campaign_of_other_companies_is_not_found(world):
    campaign, _ = _create(world.users["administrator"], [world.globex_org.pk])
    assert (
        world.client_for("operator").get(f"/campaigns/{campaign.pk}/").status_code
        == 404
    )


def test_copy_link_opens_the_landing_page_without_a_session(world):
    campaign = _campaign(world)
    row = campaign.rows.get(org=world.acme_org)
    path = _copy_link(world.client_for("operator"), campaign, row)
    landing = Client().get(path)
    assert landing.status_code == 200
    html = landing.content.decode()
    assert world.acme_org.org_id in html and "Acme" in html
    assert "Log in with Salesforce" in html
    assert "Organizations" not in html  # none of the console
    row.refresh_from_db()
    assert row.state == "opened" and row.link_opened_at is not None
    event = AuditEvent.objects.get(action="campaign.link_copy")
    assert "/r/" not in str(event.after) + event.summary
