"""The token budget guard in Chromium (SPEC §9): an Administrator
re-authorizes the same org as the same Salesforce user while Salesforce
refuses revokes, so the replaced tokens stay alive. The org page counts
them, and before the fifth approval it warns, before the button sends
anyone to Salesforce."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import Page, expect

from connections.models import ConnectionChange
from orgs.models import RefreshTokenRecord
from tests.integration.test_token_budget import setup_org
from tests.live import wait_for

from .conftest import sign_in
from .test_accessibility import violations

pytestmark = [pytest.mark.browser, pytest.mark.integration]

WARNING = re.compile(
    r"The console already holds 4 live tokens for integration@guard\.example "
    r"with this app\. Salesforce keeps five: this approval makes five, and the "
    r"next will revoke the oldest"
)


def approve_at_salesforce(page: Page, username: str) -> None:
    expect(page).to_have_title(re.compile("Login"))
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill("sf-password")
    page.get_by_role("button", name="Log In").click()
    if page.get_by_role("button", name="Allow").count():
        page.get_by_role("button", name="Allow").click()


def reauthorize(
    page: Page,
    stack,
    org,
    username: str,
    applied: int,
    button: str = "Re-authorize connection",
) -> None:
    page.get_by_role("button", name=button).click()
    approve_at_salesforce(page, username)
    expect(page.get_by_role("heading", name=org.alias)).to_be_visible()
    wait_for(
        lambda: (
            ConnectionChange.objects.filter(
                org=org, kind="reauthorize", state="applied"
            ).count()
            == applied
        ),
        timeout=30,
    )
    page.goto(f"{stack.url}/orgs/{org.pk}/")


def test_the_guard_warns_on_the_fifth_approval(page, stack, admin_user):
    org, username, _user_id, _app = setup_org(stack, "guard")
    stack.sim.fault(kind="error_503", path_prefix="/services/oauth2/revoke")
    sign_in(page, stack, "admin")
    page.goto(f"{stack.url}/orgs/{org.pk}/")
    budget = page.locator(".token-budget")
    alert = budget.get_by_role("alert")

    for approval in range(1, 5):
        reauthorize(page, stack, org, username, applied=approval)
        expect(budget).to_contain_text(
            f"Live tokens for {username} with this app: {approval} of 5"
        )
        if approval < 4:
            expect(alert).to_have_count(0)

    # Four live tokens: the fifth approval is warned about on the page that
    # holds the button, before it sends anyone to Salesforce.
    expect(alert).to_have_text(WARNING)
    assert (
        budget.bounding_box()["y"]
        < (
            page.get_by_role("button", name="Re-authorize connection").bounding_box()[
                "y"
            ]
        )
    )
    live = RefreshTokenRecord.objects.filter(revoked_at__isnull=True).count()
    assert live == 4
    assert violations(page) == []  # axe-core: the warning reads well

    # The button that would have sent the user to Salesforce stops first.
    page.get_by_role("button", name="Re-authorize connection").click()
    expect(page).to_have_title(re.compile(org.alias))
    expect(page.locator(".messages .warning")).to_contain_text(WARNING)
    assert ConnectionChange.objects.filter(org=org).count() == 4
    reauthorize(page, stack, org, username, applied=5, button="Re-authorize anyway")
    expect(budget).to_contain_text(f"Live tokens for {username} with this app: 5 of 5")
    expect(alert).to_contain_text("holds 5 live tokens")
