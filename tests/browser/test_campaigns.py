"""A re-authorization campaign in Chromium, against the live simulator and a
real worker (SPEC §9): an Operator selects every failed org of one company
with "Select all N matching", starts a campaign, sends links to two of them
and re-authorizes a third himself; each link is opened in a fresh browser
context with no console session and the org becomes connected as the
Salesforce admin who logged in; used, expired and tampered links get the
invalid-link page; the campaign page's counts move without a reload."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.utils import timezone
from playwright.sync_api import expect

from companies.access import AccessProfile
from companies.audit import Actor
from companies.models import RoleGrant
from connections.models import Campaign, CampaignOrg
from connections.services import delegation
from connections.services.campaigns import campaign_create, campaigns_expire
from orgs.models import ConnectionStatus, SalesforceOrg
from tests.factories import CompanyFactory, SalesforceOrgFactory, UserFactory
from tests.integration.test_delegated_links import failed_org, mailed_link

from .conftest import sign_in
from .test_accessibility import violations
from .test_token_budget_guard import approve_at_salesforce as salesforce_login

pytestmark = [pytest.mark.browser, pytest.mark.integration]

INVALID = "This link is no longer valid; ask your administrator for a new one"
QUIET = 50  # failed orgs without a simulator org: the filter spans two pages


def fleet(stack, company) -> list[SalesforceOrg]:
    live = [failed_org(stack, f"camp-{x}", company) for x in "abc"]
    SalesforceOrg.objects.filter(company=company).update(
        status=ConnectionStatus.FAILED, status_reason="Salesforce refused the token"
    )
    for i in range(QUIET):
        SalesforceOrgFactory(
            alias=f"quiet-{i:03d}", company=company, status=ConnectionStatus.FAILED
        )
    SalesforceOrgFactory(alias="healthy", company=company)  # not failed
    SalesforceOrgFactory(alias="elsewhere", status=ConnectionStatus.FAILED)
    return live


def row_of(page, alias: str):
    return page.locator("#campaign-live tbody tr").filter(has_text=alias)


def test_operator_runs_a_campaign_with_delegated_links(browser, page, stack):
    company = CompanyFactory(name="Initech")
    first, second, third = fleet(stack, company)
    total = QUIET + 3
    user = UserFactory(username="olga", password="demo")
    RoleGrant.objects.create(user=user, role="operator", company=company)

    # Select every failed org of the company, across pages, and start.
    sign_in(page, stack, "olga")
    page.goto(f"{stack.url}/orgs/?company={company.pk}&status=failed")
    page.get_by_label("Select all orgs on this page").check()
    page.get_by_label(f"Select all {total} matching").check()
    page.get_by_role("button", name="Start re-authorization campaign").click()
    expect(page).to_have_url(re.compile(r"/campaigns/\d+/$"))
    campaign = Campaign.objects.get()
    assert campaign.rows.count() == total
    expect(page.locator("[data-count=total]")).to_have_text(str(total))
    expect(page.locator("[data-count=pending]")).to_have_text(str(total))
    assert not violations(page)

    # Name it and give the admins two weeks; a past deadline is refused.
    page.get_by_text("Change name or deadline").click()
    page.get_by_label("Name").fill("Initech after the app rotation")
    past = timezone.localtime(timezone.now() - timedelta(days=1))
    page.get_by_label(re.compile("^Deadline")).fill(past.strftime("%Y-%m-%dT%H:%M"))
    page.get_by_role("button", name="Save").click()
    expect(page.locator("#campaign-settings .field [role=alert]")).to_contain_text(
        "Choose a deadline in the future."
    )
    assert not violations(page)
    deadline = timezone.localtime(timezone.now() + timedelta(days=14))
    page.get_by_label(re.compile("^Deadline")).fill(deadline.strftime("%Y-%m-%dT%H:%M"))
    page.get_by_role("button", name="Save").click()
    expect(page.locator("h1")).to_have_text("Initech after the app rotation")
    expect(page.locator("main")).to_contain_text(
        f"deadline {deadline.strftime('%Y-%m-%d %H:%M')}"
    )

    # Send links to the Salesforce admins of the first two orgs.
    for org in (first, second):
        row = row_of(page, org.alias)
        row.get_by_label("Email address").fill(f"it@{org.alias}.example")
        row.get_by_role("button", name="Send link").click()
        expect(page.locator(".messages")).to_contain_text(
            f"sent to it@{org.alias}.example"
        )
    expect(page.locator("[data-count=link_sent]")).to_have_text("2")
    links = {
        org.pk: stack.url + mailed_link(f"it@{org.alias}.example")
        for org in (first, second)
    }
    # The demo shows the sent mail on the page (the worker's file backend).
    expect(row_of(page, first.alias).get_by_text("Sent mail (demo)")).to_be_visible(
        timeout=20_000
    )

    # "Copy link" answers a link for a quiet org, in the page, without a reload.
    quiet = row_of(page, "quiet-000")
    quiet.get_by_role("button", name="Copy link").click()
    copied = quiet.locator("code").inner_text()
    assert "/r/" in copied

    # The Operator re-authorizes the third org himself.
    row_of(page, third.alias).get_by_role("button", name="Re-authorize now").click()
    salesforce_login(page, f"admin@{third.alias}.example")
    expect(page).to_have_url(re.compile(rf"/campaigns/{campaign.pk}/$"))
    expect(page.locator("[data-count=connected]")).to_have_text("1", timeout=30_000)

    # Each link in a fresh browser with no console session.
    navigations: list[str] = []
    page.on("framenavigated", lambda frame: navigations.append(frame.url))
    for org in (first, second):
        context = browser.new_context()
        person = context.new_page()
        person.set_default_timeout(15_000)
        person.goto(links[org.pk])
        expect(person.get_by_text(org.org_id)).to_be_visible()
        expect(person.get_by_text("Initech")).to_be_visible()
        expect(person.get_by_role("link", name="Organizations")).to_have_count(0)
        assert not violations(person)
        person.get_by_role("button", name="Log in with Salesforce").click()
        salesforce_login(person, f"admin@{org.alias}.example")
        expect(
            person.get_by_text(f"Connected as admin@{org.alias}.example")
        ).to_be_visible(timeout=30_000)
        expect(person.get_by_text("all granted").first).to_be_visible(timeout=30_000)
        assert not violations(person)
        context.close()
        fresh = SalesforceOrg.objects.get(pk=org.pk)
        assert fresh.status == ConnectionStatus.CONNECTED
        assert fresh.connected_as_username == f"admin@{org.alias}.example"

    # The campaign page counted them live, without a reload.
    expect(page.locator("[data-count=connected]")).to_have_text("3", timeout=30_000)
    expect(row_of(page, first.alias)).to_contain_text(f"admin@{first.alias}.example")
    assert navigations == [], "the counts moved without a reload"
    rows = CampaignOrg.objects.filter(campaign=campaign, state="connected")
    assert rows.count() == 3

    # Used, expired and tampered links: the plain invalid-link page.
    other = SalesforceOrgFactory(alias="late", company=company)
    late, _ = campaign_create(
        actor=Actor(user=user), access=AccessProfile(user), org_ids=[other.pk]
    )
    expired = delegation.campaign_row_link_copy(
        actor=Actor(user=user), row=late.rows.get()
    )
    Campaign.objects.filter(pk=late.pk).update(deadline="2000-01-01T00:00Z")
    campaigns_expire()
    tampered = copied.replace("/r/", "/r/9")
    for link in (links[first.pk], expired, tampered):
        context = browser.new_context()
        person = context.new_page()
        response = person.goto(link)
        assert response.status == 410
        expect(person.get_by_role("heading", name=INVALID)).to_be_visible()
        expect(person.get_by_text("Initech")).to_have_count(0)
        context.close()
