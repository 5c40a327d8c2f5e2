"""Journeys that forgive mistakes (issue 10, points 1-5), in Chromium
against the live simulator and a real worker."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from companies.audit import Actor
from companies.models import RoleGrant
from connections import services
from connections.models import ConnectionChange, ExternalClientApp
from tests.factories import UserFactory
from tests.integration.test_edit_connection_flow import _connected_org
from tests.live import wait_for

from .conftest import sign_in

pytestmark = [pytest.mark.browser, pytest.mark.integration]


def open_wizard(page, stack, org) -> None:
    page.goto(f"{stack.url}/orgs/{org.pk}/")
    page.get_by_role("link", name="Edit Connection").click()
    expect(page.get_by_role("heading", name="1 Client app")).to_be_visible()


def save_credentials(page, key: str, secret: str) -> None:
    page.get_by_label("Consumer key").fill(key)
    page.get_by_label("Consumer secret").fill(secret)
    page.get_by_role("button", name="Save and check with Salesforce").click()


def test_a_mistyped_secret_is_corrected_with_the_same_key(page, stack, admin_user):
    org, created, _ = _connected_org(stack, name="typo")
    app = stack.sim.create_app(created["org_id"], stack.url + "/oauth/callback/")
    sign_in(page, stack, "admin")
    open_wizard(page, stack, org)

    save_credentials(page, app["consumer_key"], "not-the-secret-1")
    expect(page.get_by_text("rejected the consumer secret")).to_be_visible(
        timeout=30_000
    )
    # Only the secret is asked again; the key is kept.
    page.reload()
    expect(page.get_by_label("Consumer key")).to_have_count(0)
    page.get_by_label("Consumer secret").fill(app["consumer_secret"])
    page.get_by_role("button", name="Save and check with Salesforce").click()
    expect(page.get_by_text("The new app is active.")).to_be_visible(timeout=30_000)
    assert (
        ExternalClientApp.objects.filter(consumer_key=app["consumer_key"]).count() == 1
    )


def test_a_cancelled_key_can_be_staged_again(page, stack, admin_user):
    org, created, _ = _connected_org(stack, name="cancel")
    app = stack.sim.create_app(
        created["org_id"], stack.url + "/oauth/callback/", activation_delay_seconds=60
    )
    sign_in(page, stack, "admin")
    open_wizard(page, stack, org)
    save_credentials(page, app["consumer_key"], app["consumer_secret"])
    expect(page.get_by_text("Waiting for Salesforce")).to_be_visible()
    page.get_by_role("button", name="Cancel this change").click()
    expect(page.get_by_text("cancelled; nothing changed")).to_be_visible()

    save_credentials(page, app["consumer_key"], app["consumer_secret"])
    expect(page.get_by_text("Waiting for Salesforce")).to_be_visible()
    expect(page.get_by_text("belongs to the app")).to_have_count(0)
    states = list(
        ConnectionChange.objects.filter(org=org).values_list("state", flat=True)
    )
    assert sorted(states) == ["awaiting_activation", "rolled_back"]


def test_back_after_every_step_never_resubmits(page, stack, admin_user):
    org, _, _ = _connected_org(stack, name="backnav")
    dialogs: list[str] = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    sign_in(page, stack, "admin")
    open_wizard(page, stack, org)
    page.get_by_label("Keep the current app").check()
    page.get_by_role("button", name="Next").click()
    expect(page.get_by_role("heading", name="2 Permissions")).to_be_visible()
    assert page.url.endswith("/edit-connection/permissions/")

    page.go_back()
    expect(page.get_by_role("heading", name="1 Client app")).to_be_visible()
    page.go_forward()
    expect(page.get_by_role("heading", name="2 Permissions")).to_be_visible()
    page.get_by_role("button", name="Verify permissions").click()
    # Verify redirects to the step (POST, redirect, GET), which shows the
    # check's result when it is in.
    assert page.url.endswith("/edit-connection/permissions/")
    expect(page.get_by_role("heading", name=re.compile("^Backup"))).to_be_visible(
        timeout=30_000
    )
    page.reload()  # a plain GET: nothing to resubmit
    expect(page.get_by_role("heading", name="2 Permissions")).to_be_visible()
    assert not dialogs
    assert ConnectionChange.objects.filter(org=org).count() == 0


def test_two_tabs_share_the_wizard_and_finish_applies_once(page, stack, admin_user):
    org, _, _ = _connected_org(stack, name="twotabs")
    sign_in(page, stack, "admin")
    open_wizard(page, stack, org)
    page.get_by_label("Keep the current app").check()
    page.get_by_role("button", name="Next").click()
    page.get_by_role("button", name="Verify permissions").click()
    wait_for(lambda: org.permission_checks.filter(state="done").exists(), timeout=30)
    page.reload()
    page.get_by_role("button", name="Next").click()
    expect(page.get_by_role("heading", name="3 Company")).to_be_visible()
    page.get_by_role("button", name="Next").click()
    expect(page.get_by_role("heading", name="Summary")).to_be_visible()

    # A second tab (or reopening the wizard) shows the same step.
    other = page.context.new_page()
    other.goto(f"{stack.url}/orgs/{org.pk}/edit-connection/")
    expect(other.get_by_role("heading", name="Summary")).to_be_visible()

    page.get_by_role("button", name="Finish").click()
    expect(page.get_by_text("is connected with the new settings")).to_be_visible()
    other.get_by_role("button", name="Finish").click()
    expect(other.get_by_text("admin already finished this")).to_be_visible()


def test_an_operator_is_not_offered_to_authorize_an_admins_change(
    page, stack, admin_user
):
    org, created, _ = _connected_org(stack, name="opview")
    operator = UserFactory(username="olga", password="demo")
    RoleGrant.objects.create(user=operator, role="operator", company=org.company)
    app = stack.sim.create_app(created["org_id"], stack.url + "/oauth/callback/")
    change = services.connection_change_start(
        actor=Actor(user=admin_user),
        org=org,
        consumer_key=app["consumer_key"],
        consumer_secret=app["consumer_secret"],
    )
    wait_for(lambda: ConnectionChange.objects.get(pk=change.pk).state == "active")
    sign_in(page, stack, "olga")
    page.goto(f"{stack.url}/orgs/{org.pk}/")
    expect(page.get_by_text("Staged connection change")).to_be_visible()
    expect(page.get_by_text("admin started this change")).to_be_visible()
    expect(page.get_by_role("button", name="Authorize at Salesforce")).to_have_count(0)
    expect(page.get_by_role("link", name="Edit Connection")).to_have_count(0)
