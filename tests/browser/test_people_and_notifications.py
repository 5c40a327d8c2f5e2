"""People and notifications (SPEC §10) in Chromium, with a real worker: an
Administrator invites a user who sets a password, changes roles and
deactivates; sets recipients and a webhook, sees its secret once and sends
a test; picks the sign-in org and unlinks a user. Operators, Support and
Viewers see none of it."""

from __future__ import annotations

import hashlib
import hmac
import json
import re

import pytest
from axe_playwright_python.sync_playwright import Axe
from playwright.sync_api import expect

from companies.audit import Actor
from companies.models import AuditEvent, RoleGrant
from companies.notifications import notification_settings_save
from companies.people import Roles, users_invite
from connections.models import SalesforceIdentityLink
from orgs.models import SalesforceOrg
from tests.factories import CompanyFactory, SalesforceOrgFactory, UserFactory
from tests.live import mailed
from tests.webhook_receiver import webhook_receiver

from .conftest import sign_in

pytestmark = [pytest.mark.browser, pytest.mark.integration]

PAGES = {
    "Users": "/users/",
    "Notifications": "/settings/notifications/",
    "Console sign-in": "/settings/sign-in/",
}
PASSWORD = "violet-harbour-lantern-93"


def _nav_links(page) -> set[str]:
    nav = page.get_by_role("navigation", name="Main")
    return {t.strip() for t in nav.get_by_role("link").all_inner_texts()}


@pytest.mark.parametrize("role", ["operator", "support", "viewer"])
def test_other_roles_neither_see_nor_open_the_pages(page, stack, role):
    company = CompanyFactory(name="Acme")
    user = UserFactory(username=role, password="demo")
    RoleGrant.objects.create(user=user, role=role, company=company)
    sign_in(page, stack, role)
    assert not set(PAGES) & _nav_links(page)
    for path in PAGES.values():
        assert page.goto(stack.url + path).status == 403
    assert page.goto(stack.url + "/users/invite/").status == 403


def test_administrator_invites_a_user_who_sets_a_password(
    browser, page, stack, admin_user
):
    CompanyFactory(name="Acme")
    sign_in(page, stack, "admin")
    assert set(PAGES) <= _nav_links(page)
    page.get_by_role("link", name="Users").click()
    expect(page.get_by_role("heading", name="Users", exact=True)).to_be_visible()
    page.get_by_role("link", name="Invite user").click()
    page.get_by_label("Email").fill("nina@acme.example")
    page.get_by_label("Role in Acme").select_option(label="Operator")
    page.get_by_role("button", name="Send invitation").click()
    expect(page.get_by_text("Invitation for nina@acme.example saved")).to_be_visible()
    invited = page.locator("#invitations tr").filter(has_text="nina@acme.example")
    # The worker mails it; the list says so without a reload.
    expect(invited).to_have_attribute("data-mail", "sent")
    expect(invited).to_contain_text("Sent ")
    link = mailed("nina@acme.example", r"http\S+/invite/\S+/")

    invitee = browser.new_context().new_page()
    invitee.goto(link)
    expect(invitee.get_by_role("heading", name="Set your password")).to_be_visible()
    invitee.get_by_label("New password", exact=True).fill("short")
    invitee.get_by_label("New password confirmation").fill("short")
    invitee.get_by_role("button", name="Set password").click()
    expect(invitee.get_by_text("This password is too short")).to_be_visible()
    invitee.get_by_label("New password", exact=True).fill(PASSWORD)
    invitee.get_by_label("New password confirmation").fill(PASSWORD)
    invitee.get_by_role("button", name="Set password").click()
    expect(invitee.get_by_text("Your password is set")).to_be_visible()
    sign_in(invitee, stack, "nina@acme.example", PASSWORD)
    expect(invitee.locator("header .who")).to_contain_text("Operator")
    # The link was for once.
    again = invitee.context.new_page()
    assert again.goto(link).status == 404

    # The Administrator makes her a Viewer, then deactivates her.
    page.goto(stack.url + "/users/")
    page.get_by_role("link", name="nina@acme.example").click()
    page.get_by_label("Role in Acme").select_option(label="Viewer")
    page.get_by_role("button", name="Save roles").click()
    expect(page.get_by_text("Roles saved.")).to_be_visible()
    invitee.reload()
    expect(invitee.locator("header .who")).to_contain_text("Viewer")
    page.get_by_role("button", name="Deactivate").click()
    expect(page.get_by_text("is deactivated; 1 session(s) ended")).to_be_visible()
    invitee.reload()
    expect(invitee).to_have_url(re.compile("/login/"))
    page.goto(stack.url + "/users/")
    expect(
        page.get_by_role("row", name=re.compile("nina@acme.example"))
    ).to_contain_text("Deactivated")
    actions = set(AuditEvent.objects.values_list("action", flat=True))
    assert {
        "user.invite",
        "user.invite_accept",
        "user.roles",
        "user.deactivate",
    } <= actions


def test_administrator_sets_up_a_webhook_and_sends_a_test(page, stack, admin_user):
    company = CompanyFactory(name="Acme", contact_emails="")
    with webhook_receiver() as receiver:
        sign_in(page, stack, "admin")
        page.get_by_role("link", name="Notifications").click()
        expect(
            page.get_by_role("heading", name="Notifications of Acme")
        ).to_be_visible()
        page.get_by_label("Email recipients").fill("ops@acme.example")
        page.get_by_label("Webhook URL").fill("http://hooks.acme.example/x")
        page.get_by_role("button", name="Save").click()
        expect(page.get_by_text("Only https:// addresses are allowed.")).to_be_visible()
        page.get_by_label("Webhook URL").fill(receiver.url)
        page.get_by_label("Send to the webhook").check()
        page.get_by_role("button", name="Save").click()
        expect(page.get_by_text("Notifications saved.")).to_be_visible()
        secret = page.locator("#webhook-secret").inner_text()
        assert secret.startswith("whsec_")
        page.reload()
        expect(page.get_by_text("Notifications saved.")).to_have_count(0)
        assert secret not in page.content()

        page.get_by_role("button", name="Send test").click()
        log = page.locator("#delivery-log")
        expect(log.get_by_role("row", name=re.compile("Webhook"))).to_contain_text(
            "Sent", timeout=20_000
        )
        expect(log.get_by_role("row", name=re.compile("Email"))).to_contain_text("Sent")
        (request,) = receiver.requests
    digest = hmac.new(secret.encode(), request.body, hashlib.sha256).hexdigest()
    assert request.headers["X-Console-Signature"] == f"sha256={digest}"
    assert json.loads(request.body)["company"]["id"] == company.pk


def test_administrator_picks_the_sign_in_org_and_unlinks_a_user(
    page, stack, admin_user
):
    org = SalesforceOrgFactory(alias="idp-org")
    bob = UserFactory(username="bob")
    SalesforceIdentityLink.objects.create(
        user=bob,
        org=org,
        salesforce_user_id="005000000000001AAA",
        salesforce_username="bob@idp.example",
    )
    sign_in(page, stack, "admin")
    page.get_by_role("link", name="Console sign-in").click()
    expect(page.get_by_role("heading", name="Console sign-in")).to_be_visible()
    expect(page.get_by_text("Off: console users sign in")).to_be_visible()
    page.get_by_label("Organization that signs users in").select_option(label="idp-org")
    page.get_by_role("button", name="Use for sign-in").click()
    expect(page.get_by_text("Console users log in through idp-org.")).to_be_visible()
    assert SalesforceOrg.objects.get(pk=org.pk).is_identity_provider
    # The sign-in page now offers Log in with Salesforce.
    other = page.context.browser.new_context().new_page()
    other.goto(stack.url + "/login/")
    expect(other.get_by_role("button", name="Log in with Salesforce")).to_be_visible()

    expect(page.get_by_role("cell", name="bob@idp.example", exact=True)).to_be_visible()
    page.get_by_role("button", name="Unlink bob").click()
    expect(page.get_by_text("No console user is linked")).to_be_visible()
    page.get_by_role("button", name="Turn off").click()
    expect(page.get_by_text("Log in with Salesforce is turned off.")).to_be_visible()
    other.reload()
    expect(other.get_by_role("button", name="Log in with Salesforce")).to_have_count(0)


def test_the_pages_are_free_of_serious_accessibility_violations(
    browser, page, stack, admin_user
):
    company = CompanyFactory(name="Acme")
    CompanyFactory(name="Globex")
    SalesforceOrgFactory(alias="idp-org", company=company)
    notification_settings_save(
        actor=Actor.system(),
        company=company,
        contact_emails="ops@acme.example",
        webhook_url="https://hooks.acme.example/x",
        webhook_enabled=True,
    )
    users_invite(actor=Actor.system(), email="zed@acme.example", roles=Roles(True))
    link = mailed("zed@acme.example", r"http\S+/invite/\S+/")
    axe = Axe()

    def serious(p) -> list[str]:
        found = axe.run(p).response["violations"]
        return [v["id"] for v in found if v["impact"] in ("serious", "critical")]

    sign_in(page, stack, "admin")
    problems = {}
    for path in [
        "/users/",
        "/users/invite/",
        f"/users/{admin_user.pk}/",
        "/settings/notifications/",
        f"/settings/notifications/{company.pk}/",
        "/settings/sign-in/",
    ]:
        page.goto(stack.url + path)
        problems[path] = serious(page)
    page.goto(stack.url + "/users/invite/")
    page.get_by_role("button", name="Send invitation").click()  # 422, errors
    problems["invite errors"] = serious(page)
    anonymous = browser.new_context().new_page()
    anonymous.goto(link)
    problems["set password"] = serious(anonymous)
    anonymous.goto(stack.url + "/invite/not-a-token/")
    problems["invalid link"] = serious(anonymous)
    assert not {k: v for k, v in problems.items() if v}, problems
