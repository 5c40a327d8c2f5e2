"""The days after setup, in Chromium against the live simulator and a real
worker: Operators re-authorize, Support fixes URLs, Viewers only look."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from companies.models import RoleGrant
from orgs.models import ConnectionStatus, SalesforceOrg
from tests.factories import UserFactory
from tests.integration.test_keep_connected import _org

from .conftest import sign_in

pytestmark = [pytest.mark.browser, pytest.mark.integration]


def _user(username: str, role: str, company) -> None:
    user = UserFactory(username=username, password="demo")
    RoleGrant.objects.create(user=user, role=role, company=company)


def test_operator_reauthorizes_a_failed_org_as_another_salesforce_user(page, stack):
    org, created, user_id, _ = _org(stack, "opsorg")
    stack.sim.post(f"/orgs/{created['org_id']}/users/{user_id}/revoke-tokens")
    SalesforceOrg.objects.filter(pk=org.pk).update(
        status=ConnectionStatus.NEEDS_REAUTHORIZATION,
        status_reason="The refresh token was revoked or expired at Salesforce.",
    )
    stack.sim.create_user(created["org_id"], "fresh.admin@opsorg.example")
    _user("operator", "operator", org.company)

    sign_in(page, stack, "operator")
    page.get_by_role("link", name=re.compile("^Queue")).click()
    expect(page.get_by_text("The refresh token was revoked")).to_be_visible()
    page.get_by_role("button", name="Re-authorize").click()
    expect(page).to_have_title(re.compile("Login"))
    page.get_by_label("Username").fill("fresh.admin@opsorg.example")
    page.get_by_label("Password").fill("sf-password")
    page.get_by_role("button", name="Log In").click()
    if page.get_by_role("button", name="Allow").count():
        page.get_by_role("button", name="Allow").click()
    expect(page.get_by_role("heading", name="opsorg")).to_be_visible()
    page.wait_for_timeout(500)
    for _ in range(30):
        if SalesforceOrg.objects.get(pk=org.pk).status == "connected":
            break
        page.wait_for_timeout(500)
    page.reload()
    expect(page.locator(".status-line .badge.connected")).to_be_visible()
    expect(
        page.get_by_text("Now connected as fresh.admin@opsorg.example")
    ).to_be_visible()
    assert SalesforceOrg.objects.get(pk=org.pk).connected_as_username == (
        "fresh.admin@opsorg.example"
    )


def test_support_fixes_the_org_url_after_an_enhanced_domains_switch(page, stack):
    org, created, *_ = _org(stack, "globex", org_type="sandbox", sandbox_name="uat")
    switched = stack.sim.post(f"/orgs/{created['org_id']}/enhanced-domains")
    _user("support", "support", org.company)
    from orgs.tasks import check_org_health
    from tests.live import wait_for

    check_org_health.apply_async(kwargs={"org_id": org.pk})
    wait_for(lambda: SalesforceOrg.objects.get(pk=org.pk).status == "url_changed")

    sign_in(page, stack, "support")
    page.goto(f"{stack.url}/orgs/{org.pk}/")
    expect(page.locator(".status-line .badge.url_changed")).to_be_visible()
    page.get_by_role("link", name="Apply suggested URL").click()
    expect(page.get_by_label("Organization URL")).to_have_value(switched["new_url"])
    page.get_by_role("button", name="Apply").click()
    expect(page.get_by_text(f"now uses {switched['new_url']}")).to_be_visible(
        timeout=30_000
    )
    org = SalesforceOrg.objects.get(pk=org.pk)
    assert org.login_url == switched["new_url"]
    assert org.status == ConnectionStatus.CONNECTED


def test_viewer_sees_neither_button_and_gets_403(page, stack):
    org, *_ = _org(stack, "lookonly")
    _user("viewer", "viewer", org.company)
    sign_in(page, stack, "viewer")
    page.goto(f"{stack.url}/orgs/{org.pk}/")
    expect(page.get_by_role("heading", name="lookonly")).to_be_visible()
    for name in ("Re-authorize connection", "Edit organization URL", "Edit Connection"):
        assert page.get_by_role("button", name=name).count() == 0
        assert page.get_by_role("link", name=name).count() == 0
    assert page.goto(f"{stack.url}/orgs/{org.pk}/edit-url/").status == 403
    expect(page.get_by_role("heading", name="You cannot do that")).to_be_visible()
    page.goto(f"{stack.url}/orgs/{org.pk}/")
    status = page.evaluate(
        """async (url) => {
            // The logout form carries a valid CSRF token: a refusal is the role's.
            const token = document.querySelector("input[name=csrfmiddlewaretoken]").value;
            const body = new URLSearchParams({csrfmiddlewaretoken: token});
            const r = await fetch(url, {method: "POST", body: body});
            return r.status;
        }""",
        f"{stack.url}/orgs/{org.pk}/reauthorize/",
    )
    assert status == 403
