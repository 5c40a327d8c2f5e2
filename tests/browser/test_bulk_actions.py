"""Bulk actions in Chromium (SPEC §9): tick rows, "Select all N matching"
across pages, run "Check now" and watch the progress line complete without
a reload."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from companies.models import RoleGrant
from connections.models import BulkAction
from orgs.health import orgs_check_now
from orgs.models import ConnectionStatus, SalesforceOrg
from tests.factories import (
    CompanyFactory,
    ExternalClientAppFactory,
    SalesforceOrgFactory,
    UserFactory,
)

from .conftest import sign_in
from .test_accessibility import violations

pytestmark = [pytest.mark.browser, pytest.mark.integration]

FLEET = 55  # more than one page of 50


def _fleet(stack, company) -> SalesforceOrg:
    """One org connected at the simulator and FLEET - 1 without a stored
    token (their check needs no Salesforce call: they need
    re-authorization), all in one company."""
    created = stack.sim.create_org("bulk-live")
    user_id = stack.sim.create_user(created["org_id"], "int@bulk-live.example")
    app = stack.sim.create_app(
        created["org_id"], stack.url + "/oauth/callback/", name="bulk-live"
    )
    tokens = stack.sim.mint_tokens(app["consumer_key"], user_id)
    live = SalesforceOrgFactory(
        alias="aaa-bulk-live",
        org_id=created["org_id"],
        login_url=created["login_url"],
        instance_url=created["instance_url"],
        company=company,
        client_app=ExternalClientAppFactory(
            consumer_key=app["consumer_key"], consumer_secret=app["consumer_secret"]
        ),
        refresh_token=tokens["refresh_token"],
        status=ConnectionStatus.FAILED,
        status_reason="Salesforce did not answer",
    )
    for i in range(FLEET - 1):
        SalesforceOrgFactory(alias=f"bulk-{i:03d}", company=company)
    return live


def test_select_all_matching_and_check_now_complete_without_a_reload(page, stack):
    company = CompanyFactory(name="Bulk Fleet")
    CompanyFactory(name="Elsewhere")
    live = _fleet(stack, company)
    user = UserFactory(username="olga", password="demo")
    RoleGrant.objects.create(user=user, role="operator", company=company)
    sign_in(page, stack, "olga")
    page.goto(f"{stack.url}/orgs/?company={company.pk}")

    bar = page.locator("[data-bulk-bar]")
    select_all = page.get_by_label(f"Select all {FLEET} matching")
    expect(select_all).to_be_hidden()
    page.get_by_label("Select aaa-bulk-live").check()
    expect(bar.get_by_text("1 selected")).to_be_visible()
    page.get_by_label("Select all orgs on this page").check()
    expect(bar.get_by_text("50 selected")).to_be_visible()
    # Every row of the page is ticked: the whole filter is offered.
    select_all.check()
    expect(bar.get_by_text(f"All {FLEET} matching orgs are selected")).to_be_visible()
    assert not violations(page)

    page.get_by_role("button", name="Check now").click()
    expect(page).to_have_url(re.compile(rf"company={company.pk}&bulk=\d+$"))
    navigations: list[str] = []
    page.on("framenavigated", lambda frame: navigations.append(frame.url))
    progress = page.locator("#bulk-progress")
    expect(progress).to_contain_text(
        re.compile(rf"(Checking \d+ of {FLEET} orgs|Checked {FLEET} orgs)")
    )
    expect(progress).to_contain_text(
        f"Checked {FLEET} orgs · {FLEET - 1} failed", timeout=120_000
    )
    assert navigations == [], "the progress line completed without a reload"
    # The rows refreshed themselves once the action finished.
    row = page.get_by_role("row").filter(has_text="aaa-bulk-live")
    expect(row.get_by_text("Connected", exact=True)).to_be_visible()
    expect(page.locator("#org-rows > tr")).to_have_count(50)  # no row lost
    assert not violations(page)  # the bar and the finished progress line

    action = BulkAction.objects.get()
    assert (action.total, action.done, action.skipped) == (FLEET, FLEET, 0)
    assert action.filter_query == f"company={company.pk}"
    assert SalesforceOrg.objects.get(pk=live.pk).status == ConnectionStatus.CONNECTED


def test_a_checking_row_refreshes_itself_in_place(page, stack):
    """A row whose check runs polls itself: it stays in the list and shows the
    outcome (it once inherited the rows' hx-select and polled itself away)."""
    company = CompanyFactory(name="Row Fleet")
    live = _fleet(stack, company)
    user = UserFactory(username="olga", password="demo")
    RoleGrant.objects.create(user=user, role="operator", company=company)
    sign_in(page, stack, "olga")
    # One slow Salesforce answer (within the read timeout): the row polls
    # (every 3 s) while its check runs.
    stack.sim.fault(kind="latency", latency_ms=8000, count=1)
    orgs_check_now(org_ids=[live.pk])
    page.goto(f"{stack.url}/orgs/?company={company.pk}")
    row = page.get_by_role("row").filter(has_text="aaa-bulk-live")
    expect(row.get_by_text("checking…")).to_be_visible()
    expect(row.get_by_text("Connected", exact=True)).to_be_visible(timeout=30_000)
    expect(row.get_by_text("checking…")).to_have_count(0)
    # Every other row of the page is still there too.
    expect(page.locator("#org-rows > tr")).to_have_count(50)
