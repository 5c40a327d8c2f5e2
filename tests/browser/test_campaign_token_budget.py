"""The token budget guard on a campaign's page, in Chromium, against the live
simulator and a real worker (SPEC §9): the console already holds four live
tokens for the org's Salesforce user and app, so the row warns before
"Re-authorize now" sends anyone to Salesforce; the button stops on the page
until "Re-authorize anyway" is chosen; the link's page shows nothing of it.
The demo's sent mail stays open while the page polls."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from companies.access import AccessProfile
from companies.audit import Actor
from companies.models import RoleGrant
from connections.models import ConnectionChange
from connections.services.campaigns import campaign_create
from orgs import token_ledger
from orgs.models import RefreshTokenRecord
from tests.factories import UserFactory
from tests.integration.test_token_budget import setup_org

from .conftest import sign_in
from .test_accessibility import violations
from .test_campaigns import row_of
from .test_token_budget_guard import approve_at_salesforce

pytestmark = [pytest.mark.browser, pytest.mark.integration]


def test_a_campaign_row_warns_before_the_fifth_approval(browser, page, stack):
    org, username, user_id, _app = setup_org(stack, "cbudget")
    for n in range(4):  # earlier approvals whose tokens are still live
        token_ledger.refresh_token_record(
            token=f"earlier-{n}",
            client_app_id=org.client_app_id,
            salesforce_org_id=org.org_id,
            user_id=user_id,
            username=username,
            purpose=RefreshTokenRecord.Purpose.REAUTHORIZATION,
            login_url=org.login_url,
        )
    user = UserFactory(username="olga", password="demo")
    RoleGrant.objects.create(user=user, role="operator", company=org.company)
    campaign, _ = campaign_create(
        actor=Actor(user=user), access=AccessProfile(user), org_ids=[org.pk]
    )
    sign_in(page, stack, "olga")
    page.goto(f"{stack.url}/campaigns/{campaign.pk}/")
    row = row_of(page, org.alias)
    warning = f"The console already holds 4 live tokens for {username}"
    expect(row).to_contain_text(warning)
    now = row.get_by_role("button", name="Re-authorize now")
    expect(now).to_have_accessible_description(re.compile(warning))
    assert not violations(page)

    # The link's page, in a browser with no console session: none of it.
    row.get_by_role("button", name="Copy link").click()
    link = row.locator("code").inner_text()
    context = browser.new_context()
    person = context.new_page()
    person.goto(link)
    expect(person.get_by_text(org.org_id)).to_be_visible()
    expect(person.get_by_text("live tokens")).to_have_count(0)
    expect(person.get_by_text(username)).to_have_count(0)
    context.close()

    # The demo's sent mail, opened, stays open while the page polls.
    row.get_by_label("Email address").fill("it@cbudget.example")
    row.get_by_role("button", name="Send link").click()
    mail = row.locator("details")
    expect(mail).to_be_visible(timeout=20_000)
    mail.locator("summary").click()
    for _ in range(2):
        with page.expect_response(lambda r: "/live/" in r.url):
            pass
    expect(mail).to_have_attribute("open", "")
    expect(mail.locator("pre")).to_contain_text("it@cbudget.example")

    # "Re-authorize now" stops on the page with the warning; nothing started.
    now.click()
    expect(page).to_have_url(re.compile(rf"/campaigns/{campaign.pk}/$"))
    expect(page.locator(".messages")).to_contain_text(
        "Choose “Re-authorize anyway” to go on."
    )
    assert not ConnectionChange.objects.filter(org=org).exists()

    # Read and confirmed: to Salesforce, and back to a connected row.
    row.get_by_role("button", name="Re-authorize anyway").click()
    approve_at_salesforce(page, username)
    expect(page).to_have_url(re.compile(rf"/campaigns/{campaign.pk}/$"))
    expect(page.locator("[data-count=connected]")).to_have_text("1", timeout=30_000)
    expect(row).to_contain_text(f"Connected as {username}")
