"""The whole Edit Connection wizard and Add organization in Chromium, as
``admin``, against the live simulator and a real worker."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from companies.models import AuditEvent
from orgs.models import SalesforceOrg
from tests.factories import CompanyFactory
from tests.integration.test_edit_connection_flow import _connected_org
from tests.live import wait_for

from .conftest import sign_in

pytestmark = [pytest.mark.browser, pytest.mark.integration]


def _salesforce_login(page, username: str) -> None:
    expect(page).to_have_title(re.compile("Login"))
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill("sf-password")
    page.get_by_role("button", name="Log In").click()
    allow = page.get_by_role("button", name="Allow")
    if allow.count():
        allow.click()


def test_admin_walks_the_whole_edit_connection_wizard(page, stack, admin_user):
    sim = stack.sim
    org, created, old_token = _connected_org(stack, name="wizard")
    sim.create_user(created["org_id"], "new.user@wizard.example")
    new_app = sim.create_app(
        created["org_id"],
        stack.url + "/oauth/callback/",
        name="wizard-new",
        activation_delay_seconds=3,
    )
    target = CompanyFactory(name="Target Co")
    sim.clear_requests()

    sign_in(page, stack, "admin")
    page.goto(f"{stack.url}/orgs/{org.pk}/")
    page.get_by_role("link", name="Edit Connection").click()
    expect(page.get_by_text(stack.url + "/oauth/callback/")).to_be_visible()
    page.get_by_label("Consumer key").fill(new_app["consumer_key"])
    page.get_by_label("Consumer secret").fill(new_app["consumer_secret"])
    page.get_by_role("button", name="Save and check with Salesforce").click()
    expect(
        page.get_by_text("Waiting for Salesforce to activate the new app")
    ).to_be_visible()
    expect(page.get_by_text("The new app is active.")).to_be_visible(timeout=40_000)
    probes = [r for r in sim.requests() if r["path"].endswith("/oauth2/token")]

    page.get_by_role("button", name="Authorize at Salesforce").click()
    _salesforce_login(page, "new.user@wizard.example")
    expect(page.get_by_text("Authorized as new.user@wizard.example")).to_be_visible(
        timeout=30_000
    )
    page.get_by_role("button", name="Next").click()

    expect(page.get_by_role("heading", name="2 Permissions")).to_be_visible()
    page.get_by_role("button", name="Verify permissions").click()
    expect(page.get_by_text("all granted").first).to_be_visible(timeout=30_000)
    page.get_by_role("button", name="Next").click()

    page.get_by_label("Company").select_option(label="Target Co")
    page.get_by_role("button", name="Next").click()
    expect(page.get_by_role("heading", name="Summary")).to_be_visible()
    summary = page.locator("table.data").inner_text()
    assert new_app["consumer_secret"] not in page.content()
    assert "fingerprint" in summary and "Target Co" in summary
    page.get_by_role("button", name="Finish").click()

    expect(page.locator(".badge.connected").first).to_be_visible()
    org = SalesforceOrg.objects.get(pk=org.pk)
    assert org.client_app.consumer_key == new_app["consumer_key"]
    assert org.connected_as_username == "new.user@wizard.example"
    assert org.company == target
    assert AuditEvent.objects.filter(org=org, action="org.edit_connection").count() == 1
    wait_for(lambda: not sim.token_active(old_token))
    assert 1 <= len(probes) <= 6


def test_admin_adds_an_organization(page, stack, admin_user):
    sim = stack.sim
    created = sim.create_org("newco")
    sim.create_user(created["org_id"], "backup@newco.example")
    app = sim.create_app(
        created["org_id"], stack.url + "/oauth/callback/", name="newco-eca"
    )
    CompanyFactory(name="NewCo Holdings")

    sign_in(page, stack, "admin")
    page.goto(f"{stack.url}/orgs/")
    page.get_by_role("link", name="Add organization").click()
    page.get_by_label("Organization URL").fill(created["login_url"])
    page.get_by_label("Consumer key").fill(app["consumer_key"])
    page.get_by_label("Consumer secret").fill(app["consumer_secret"])
    page.get_by_role("button", name="Save and check with Salesforce").click()
    page.get_by_role("button", name="Authorize at Salesforce").click(timeout=40_000)
    _salesforce_login(page, "backup@newco.example")
    expect(page.get_by_text("Authorized as backup@newco.example")).to_be_visible(
        timeout=30_000
    )
    page.get_by_role("button", name="Next").click()
    page.get_by_role("button", name="Verify permissions").click()
    expect(page.get_by_text("all granted").first).to_be_visible(timeout=30_000)
    page.get_by_role("button", name="Next").click()
    page.get_by_label("Company").select_option(label="NewCo Holdings")
    page.get_by_label("Alias").fill("newco-prod")
    page.get_by_role("button", name="Next").click()
    page.get_by_role("button", name="Finish").click()
    expect(page.get_by_role("heading", name="newco-prod")).to_be_visible()
    org = SalesforceOrg.objects.get(org_id=created["org_id"])
    assert org.status == "connected" and org.company.name == "NewCo Holdings"
    assert org.connected_as_username == "backup@newco.example"
