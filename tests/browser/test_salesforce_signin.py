"""Log in with Salesforce in Chromium: the console's sign-in page, the
simulator's login page, the htmx-polled wait page, then the dashboard."""

from __future__ import annotations

import re
from typing import Any

import pytest
from playwright.sync_api import expect

from connections.models import SignInAttempt
from tests.integration.test_salesforce_signin import SF_PASSWORD, identity_provider

pytestmark = [pytest.mark.browser, pytest.mark.integration]


def test_a_console_user_logs_in_with_salesforce(page: Any, stack: Any) -> None:
    idp = identity_provider(stack, name="browser")
    base = stack.url

    page.goto(f"{base}/login/")
    page.get_by_role("button", name="Log in with Salesforce", exact=True).click()

    expect(page).to_have_title(re.compile("Login"))
    page.get_by_label("Username").fill(idp.sf_username)
    page.get_by_label("Password").fill(SF_PASSWORD)
    page.get_by_role("button", name="Log In", exact=True).click()
    allow = page.get_by_role("button", name="Allow", exact=True)
    if allow.count():
        allow.click()

    page.wait_for_url(f"{base}/", timeout=30_000)
    expect(page.get_by_text(f"Signed in as {idp.user.username}")).to_be_visible()
    expect(page.get_by_role("link", name="Dashboard")).to_be_visible()
    attempt = SignInAttempt.objects.get(org=idp.org)
    assert attempt.state == SignInAttempt.State.SUCCEEDED
    assert attempt.consumed_at is not None


def test_an_unlinked_user_sees_why_and_can_go_back(page: Any, stack: Any) -> None:
    idp = identity_provider(stack, name="browserunlinked", link=False)
    base = stack.url

    page.goto(f"{base}/login/")
    page.get_by_role("button", name="Log in with Salesforce", exact=True).click()
    page.get_by_label("Username").fill(idp.sf_username)
    page.get_by_label("Password").fill(SF_PASSWORD)
    page.get_by_role("button", name="Log In", exact=True).click()
    allow = page.get_by_role("button", name="Allow", exact=True)
    if allow.count():
        allow.click()

    expect(
        page.get_by_text("This Salesforce user is not linked to a console user.")
    ).to_be_visible(timeout=30_000)
    page.get_by_role("link", name="Back to sign in").click()
    page.wait_for_url(f"{base}/login/")
    expect(page.get_by_role("button", name="Log in", exact=True)).to_be_visible()
