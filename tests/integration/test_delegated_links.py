"""Delegated re-authorization links on a real worker against the live
simulator (SPEC §9): the link is mailed by a task, opened by a browser with
no console session, and the org becomes connected as the Salesforce user
who logged in, through the same exchange, org-ID guard and permission check
as Re-authorize connection."""

from __future__ import annotations

import re
from urllib.parse import urlsplit

import pytest
from django.test import Client

from companies.access import AccessProfile
from companies.audit import Actor
from companies.models import AuditEvent, RoleGrant
from connections.demo import ALL_PERMISSIONS
from connections.models import CampaignOrg, PermissionCheck
from connections.services import delegation
from connections.services.campaigns import campaign_create
from orgs.models import ConnectionStatus, SalesforceOrg
from tests.factories import (
    CompanyFactory,
    ExternalClientAppFactory,
    SalesforceOrgFactory,
    UserFactory,
)
from tests.live import mailed, wait_for
from tests.simclient import salesforce_login

pytestmark = pytest.mark.integration

INVALID = "This link is no longer valid; ask your administrator for a new one"


def failed_org(stack, name, company):
    """An org whose tokens Salesforce revoked: it needs a person."""
    sim = stack.sim
    created = sim.create_org(name)
    user_id = sim.create_user(created["org_id"], f"int@{name}.example")
    sim.create_user(created["org_id"], f"admin@{name}.example")
    app = sim.create_app(created["org_id"], stack.url + "/oauth/callback/", name=name)
    tokens = sim.mint_tokens(app["consumer_key"], user_id)
    org = SalesforceOrgFactory(
        alias=name,
        org_id=created["org_id"],
        login_url=created["login_url"],
        instance_url=created["instance_url"],
        company=company,
        client_app=ExternalClientAppFactory(
            consumer_key=app["consumer_key"], consumer_secret=app["consumer_secret"]
        ),
        refresh_token=tokens["refresh_token"],
        connected_as_username=f"int@{name}.example",
        status=ConnectionStatus.NEEDS_REAUTHORIZATION,
    )
    sim.post(f"/orgs/{created['org_id']}/users/{user_id}/revoke-tokens")
    return org


def operator_of(company):
    user = UserFactory(username=f"olga-{company.pk}")
    RoleGrant.objects.create(user=user, role="operator", company=company)
    client = Client()
    client.force_login(user)
    return user, client


def mailed_link(email: str) -> str:
    return mailed(email, r"/r/\S+/")


def log_in_through(link: str, browser: Client, username: str) -> str:
    """The person: open the link, Log in with Salesforce, come back."""
    assert browser.get(link).status_code == 200
    response = browser.post(link)
    assert response.status_code == 302
    callback = urlsplit(salesforce_login(response["Location"], username, "sf-password"))
    back = browser.get(f"{callback.path}?{callback.query}")
    assert back.status_code == 302
    return back["Location"]


def copied_link(user, org) -> tuple[CampaignOrg, str]:
    """A campaign of one org started by ``user``, and its row's copied link
    (the path)."""
    campaign, _ = campaign_create(
        actor=Actor(user=user), access=AccessProfile(user), org_ids=[org.pk]
    )
    row = campaign.rows.get()
    url = delegation.campaign_row_link_copy(actor=Actor(user=user), row=row)
    return row, urlsplit(url).path


def retry_until_connected(browser: Client, row: CampaignOrg, username: str) -> None:
    """The person's "Log in with Salesforce" on the result page after a
    failure, as ``username``, until the row is connected as that user."""
    retry = browser.post(f"/r/result/{row.pk}/retry/")
    assert retry.status_code == 302
    callback = urlsplit(salesforce_login(retry["Location"], username, "sf-password"))
    browser.get(f"{callback.path}?{callback.query}")
    connected = wait_for(
        lambda: (r := CampaignOrg.objects.get(pk=row.pk)).state == "connected" and r
    )
    assert connected.connected_as_username == username


def test_links_mailed_to_two_admins_connect_their_orgs_concurrently(stack):
    company = CompanyFactory(name="Initech")
    first = failed_org(stack, "initech-a", company)
    second = failed_org(stack, "initech-b", company)
    user, console = operator_of(company)
    campaign, skipped = campaign_create(
        actor=Actor(user=user),
        access=AccessProfile(user),
        org_ids=[first.pk, second.pk],
    )
    assert skipped == 0
    rows = {row.org_id: row for row in campaign.rows.all()}
    for org in (first, second):
        response = console.post(
            f"/campaigns/{campaign.pk}/rows/{rows[org.pk].pk}/send-link/",
            {f"row{rows[org.pk].pk}-email": f"it@{org.alias}.example"},
        )
        assert response.status_code == 302
    links = {org.pk: mailed_link(f"it@{org.alias}.example") for org in (first, second)}

    # Both people log in at Salesforce; their callbacks come back together.
    browsers = {org.pk: Client() for org in (first, second)}
    pending = {}
    for org in (first, second):
        link = links[org.pk]
        browser = browsers[org.pk]
        assert browser.get(link).status_code == 200
        go = browser.post(link)
        pending[org.pk] = urlsplit(
            salesforce_login(
                go["Location"], f"admin@{org.alias}.example", "sf-password"
            )
        )
    results = {
        pk: browsers[pk].get(f"{url.path}?{url.query}")["Location"]
        for pk, url in pending.items()
    }
    for org in (first, second):
        row = wait_for(
            lambda org=org: (
                (r := CampaignOrg.objects.get(pk=rows[org.pk].pk)).state == "connected"
                and r
            )
        )
        assert row.connected_as_username == f"admin@{org.alias}.example"
        fresh = SalesforceOrg.objects.get(pk=org.pk)
        assert fresh.status == ConnectionStatus.CONNECTED
        assert fresh.connected_as_username == f"admin@{org.alias}.example"
        wait_for(
            lambda org=org: PermissionCheck.objects.filter(
                org_id=org.pk, state="done"
            ).exists()
        )
        page = browsers[org.pk].get(results[org.pk]).content.decode()
        assert f"Connected as admin@{org.alias}.example" in page
        assert "Backup" in page and "all granted" in page
        assert "Organizations" not in page  # nothing of the console
        # Used: the link now answers the invalid page and changes nothing.
        again = Client().get(links[org.pk])
        assert again.status_code == 410 and INVALID in again.content.decode()
        event = AuditEvent.objects.get(org_id=org.pk, action="campaign.link_used")
        assert event.actor == user
        assert event.after["salesforce_user"] == f"admin@{org.alias}.example"
        assert event.after["address"] == "127.0.0.1"
    campaign.refresh_from_db()
    assert campaign.is_closed
    # No link in any audit row or Celery-visible field.
    for event in AuditEvent.objects.all():
        assert "/r/" not in f"{event.summary}{event.before}{event.after}"


def test_a_login_to_the_wrong_org_fails_the_row_and_the_same_browser_retries(stack):
    company = CompanyFactory(name="Hooli")
    org = failed_org(stack, "hooli", company)
    other = stack.sim.create_org("hooli-other")
    stack.sim.create_user(other["org_id"], "x@hooli-other.example")
    user, console = operator_of(company)
    campaign, _ = campaign_create(
        actor=Actor(user=user), access=AccessProfile(user), org_ids=[org.pk]
    )
    row = campaign.rows.get()
    copied = console.post(
        f"/campaigns/{campaign.pk}/rows/{row.pk}/copy-link/", HTTP_HX_REQUEST="true"
    )
    link = re.search(r"/r/[^<\s\"]+/", copied.content.decode()).group(0)
    browser = Client()
    result = log_in_through(link, browser, "x@hooli-other.example")
    failed = wait_for(
        lambda: (r := CampaignOrg.objects.get(pk=row.pk)).state == "failed" and r
    )
    assert "different Salesforce org" in failed.last_event
    token_before = SalesforceOrg.objects.get(pk=org.pk).refresh_token_fingerprint
    page = browser.get(result).content.decode()
    assert "different Salesforce org" in page and "Log in with Salesforce" in page
    # Another browser cannot take over the claimed link.
    assert Client().get(link).status_code == 410
    # The same browser logs in again, to the right org this time.
    retry_until_connected(browser, row, "admin@hooli.example")
    fresh = SalesforceOrg.objects.get(pk=org.pk)
    assert fresh.refresh_token_fingerprint != token_before


def test_a_salesforce_user_missing_permissions_is_told_how_to_fix_it(stack):
    company = CompanyFactory(name="Vandelay")
    org = failed_org(stack, "vandelay", company)
    stack.sim.create_user(
        org.org_id,
        "partial@vandelay.example",
        permissions=[p for p in ALL_PERMISSIONS if p != "PermissionsViewAllData"],
    )
    user, _ = operator_of(company)
    row, link = copied_link(user, org)
    browser = Client()
    result = log_in_through(link, browser, "partial@vandelay.example")
    wait_for(lambda: CampaignOrg.objects.get(pk=row.pk).state == "connected")
    wait_for(
        lambda: PermissionCheck.objects.filter(org_id=org.pk, state="done").exists()
    )
    page = browser.get(result).content.decode()
    assert "Connected as partial@vandelay.example" in page
    assert "1 missing" in page and "View All Data" in page
    assert "How to grant it" in page and "Grant what is missing" in page
