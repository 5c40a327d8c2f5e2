"""Pages update by themselves while a task works (issue 10, points 6-8):
Check now, re-authorization, activation progress, pictures."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from companies.audit import Actor
from companies.models import RoleGrant
from connections import services
from tests.factories import UserFactory
from tests.integration.test_edit_connection_flow import _connected_org

from .conftest import sign_in
from .test_edit_connection import _salesforce_login

pytestmark = [pytest.mark.browser, pytest.mark.integration]


@pytest.fixture
def operator_of(transactional_db):
    def make(company):
        user = UserFactory(username="olga", password="demo")
        RoleGrant.objects.create(user=user, role="operator", company=company)
        return user

    return make


def test_check_now_shows_its_outcome_without_a_reload(page, stack, operator_of):
    org, _, _ = _connected_org(stack, name="livecheck")
    operator_of(org.company)
    sign_in(page, stack, "olga")
    page.goto(f"{stack.url}/orgs/{org.pk}/")
    navigations = []
    page.on("framenavigated", lambda frame: navigations.append(frame.url))
    # A check of a freshly connected org ends about when the redirected page
    # renders (measured: within 0.15 s), and a page rendered after it shows
    # the outcome at once: Salesforce answers slowly here so that the running
    # check is there to be seen.
    stack.sim.fault(kind="latency", latency_ms=4000, count=1)
    page.get_by_role("button", name="Check now").click()
    expect(page.get_by_text("Checking the connection with Salesforce")).to_be_visible()
    loaded = len(navigations)  # the POST and its redirect
    expect(page.get_by_text("Checked just now: Connected.")).to_be_visible(
        timeout=30_000
    )
    expect(page.get_by_text("Checking the connection with Salesforce")).to_have_count(0)
    assert len(navigations) == loaded, "the outcome came without a reload"


def test_reauthorization_shows_the_new_user_without_a_reload(page, stack, operator_of):
    org, created, _ = _connected_org(stack, name="livereauth")
    stack.sim.create_user(created["org_id"], "new.admin@livereauth.example")
    operator_of(org.company)
    sign_in(page, stack, "olga")
    page.goto(f"{stack.url}/orgs/{org.pk}/")
    page.get_by_role("button", name="Re-authorize connection").click()
    _salesforce_login(page, "new.admin@livereauth.example")
    expect(page).to_have_url(re.compile(rf"/orgs/{org.pk}/$"))
    expect(
        page.get_by_text("Now connected as new.admin@livereauth.example")
    ).to_be_visible(timeout=30_000)


def test_activation_shows_a_progress_line_against_the_window(page, stack, admin_user):
    admin = admin_user
    org, created, _ = _connected_org(stack, name="liveprogress")
    app = stack.sim.create_app(
        created["org_id"],
        stack.url + "/oauth/callback/",
        activation_delay_seconds=600,
    )
    services.connection_change_start(
        actor=Actor(user=admin),
        org=org,
        consumer_key=app["consumer_key"],
        consumer_secret=app["consumer_secret"],
    )
    sign_in(page, stack, "admin")
    page.goto(f"{stack.url}/orgs/{org.pk}/edit-connection/")
    progress = page.get_by_role("img", name=re.compile("10-minute activation window"))
    expect(progress).to_be_visible()
    expect(page.get_by_text("expires at")).to_be_visible()
    # The elapsed time is there from the first render, not after a poll.
    expect(page.get_by_text(re.compile(r"activate the new app: \d+ s"))).to_be_visible()


def test_the_dashboard_pictures_have_text_alternatives(page, stack, operator_of):
    org, _, _ = _connected_org(stack, name="livepictures")
    operator_of(org.company)
    sign_in(page, stack, "olga")
    page.goto(f"{stack.url}/")
    expect(page.get_by_role("img", name=re.compile("Orgs by status"))).to_be_visible()
    expect(
        page.get_by_role("img", name=re.compile("failures in the last 30 days"))
    ).to_be_visible()
