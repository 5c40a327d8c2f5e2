"""Keeping orgs connected, on a real worker against the live simulator:
health checks for each failure kind, re-authorization, Edit organization
URL, alerts and the operator queue."""

from __future__ import annotations

import shutil
from urllib.parse import parse_qs, urlsplit

import pytest
from django.test import Client

from companies.models import AuditEvent, Incident, RoleGrant
from connections.models import PermissionCheck
from orgs.models import ConnectionStatus, SalesforceOrg, UrlVerification
from orgs.tasks import check_org_health
from tests.factories import (
    BackupPolicyFactory,
    CompanyFactory,
    ExternalClientAppFactory,
    SalesforceOrgFactory,
    UserFactory,
)
from tests.live import EMAIL_DIR, wait_for
from tests.simclient import salesforce_login

pytestmark = pytest.mark.integration


def _org(stack, name, *, company=None, org_type="production", **sim_org):
    sim = stack.sim
    created = sim.create_org(name, org_type=org_type, **sim_org)
    user_id = sim.create_user(created["org_id"], f"int@{name}.example")
    app = sim.create_app(created["org_id"], stack.url + "/oauth/callback/", name=name)
    tokens = sim.mint_tokens(app["consumer_key"], user_id)
    org = SalesforceOrgFactory(
        alias=name,
        org_id=created["org_id"],
        org_type=org_type,
        login_url=created["login_url"],
        instance_url=created["instance_url"],
        company=company or CompanyFactory(name=f"{name} Co"),
        client_app=ExternalClientAppFactory(
            consumer_key=app["consumer_key"], consumer_secret=app["consumer_secret"]
        ),
        refresh_token=tokens["refresh_token"],
        connected_as_username=f"int@{name}.example",
        status=ConnectionStatus.CONNECTED,
    )
    BackupPolicyFactory(org=org)
    return org, created, user_id, tokens["refresh_token"]


def _check(org) -> SalesforceOrg:
    before = SalesforceOrg.objects.get(pk=org.pk).last_checked_at
    check_org_health.apply_async(kwargs={"org_id": org.pk})
    return wait_for(
        lambda: (
            (o := SalesforceOrg.objects.get(pk=org.pk)).last_checked_at != before and o
        )
    )


def _client(role: str, company) -> Client:
    user = UserFactory(username=f"{role}-{company.pk}")
    RoleGrant.objects.create(user=user, role=role, company=company)
    client = Client()
    client.force_login(user)
    return client


def test_a_healthy_org_takes_two_requests(stack):
    org, *_ = _org(stack, "healthy")
    stack.sim.clear_requests()
    checked = _check(org)
    assert checked.status == ConnectionStatus.CONNECTED
    assert len(stack.sim.requests()) == 2  # one refresh, one org call


def test_revoked_tokens_need_reauthorization_without_retries(stack):
    org, created, user_id, _ = _org(stack, "revoked")
    stack.sim.post(f"/orgs/{created['org_id']}/users/{user_id}/revoke-tokens")
    stack.sim.clear_requests()
    checked = _check(org)
    assert checked.status == ConnectionStatus.NEEDS_REAUTHORIZATION
    assert "revoked or expired" in checked.status_reason
    assert len(stack.sim.requests()) == 1  # permanent: never retried


def test_enhanced_domains_switch_makes_the_org_url_changed(stack):
    org, created, *_ = _org(stack, "moving", org_type="sandbox", sandbox_name="uat")
    switched = stack.sim.post(f"/orgs/{created['org_id']}/enhanced-domains")
    checked = _check(org)
    assert checked.status == ConnectionStatus.URL_CHANGED
    assert checked.suggested_url == switched["new_url"]
    assert urlsplit(switched["new_url"]).hostname in checked.status_reason


@pytest.mark.parametrize("kind", ["error_503", "timeout"])
def test_transient_failures_retry_a_bounded_number_of_times_then_recover(stack, kind):
    org, *_ = _org(stack, f"flaky-{kind.replace('_', '')}")
    stack.sim.fault(kind=kind, path_prefix="/services/oauth2/token", latency_ms=4000)
    stack.sim.clear_requests()
    check_org_health.apply_async(kwargs={"org_id": org.pk})
    checked = wait_for(
        lambda: (o := SalesforceOrg.objects.get(pk=org.pk)).status == "failed" and o,
        timeout=90,
    )
    assert "(4 attempts)" in checked.status_reason

    def token_calls():
        return [r for r in stack.sim.requests() if r["path"].endswith("/token")]

    # The simulator logs a hung request when it finally answers.
    wait_for(lambda: len(token_calls()) >= 4, timeout=15)
    # 4 task attempts, each with the client's bounded retries (at most 3 sends).
    assert 4 <= len(token_calls()) <= 12
    stack.sim.clear_faults()
    assert _check(org).status == ConnectionStatus.CONNECTED


def test_operator_reauthorizes_as_another_salesforce_user(stack):
    org, created, _, old_token = _org(stack, "reauth")
    SalesforceOrg.objects.filter(pk=org.pk).update(
        status=ConnectionStatus.NEEDS_REAUTHORIZATION, status_reason="revoked"
    )
    stack.sim.create_user(created["org_id"], "other@reauth.example")
    client = _client("operator", org.company)
    response = client.post(f"/orgs/{org.pk}/reauthorize/")
    assert response.status_code == 302
    authorize = urlsplit(response["Location"])
    assert parse_qs(authorize.query)["prompt"] == ["login"]
    assert parse_qs(authorize.query)["code_challenge_method"] == ["S256"]
    callback = salesforce_login(
        response["Location"], "other@reauth.example", "sf-password"
    )
    assert (
        client.get(urlsplit(callback).path + "?" + urlsplit(callback).query).status_code
        == 302
    )
    org = wait_for(
        lambda: (o := SalesforceOrg.objects.get(pk=org.pk)).status == "connected" and o
    )
    assert org.connected_as_username == "other@reauth.example"
    assert AuditEvent.objects.filter(org=org, action="org.reauthorize").count() == 1
    wait_for(lambda: not stack.sim.token_active(old_token))
    wait_for(lambda: PermissionCheck.objects.filter(org=org, state="done").exists())
    page = client.get(f"/orgs/{org.pk}/").content.decode()
    assert "Now connected as other@reauth.example" in page
    assert "before: int@reauth.example" in page


def test_reauthorizing_into_another_org_changes_nothing(stack):
    org, _created, _, old_token = _org(stack, "mine")
    other = stack.sim.create_org("theirs")
    stack.sim.create_user(other["org_id"], "x@theirs.example")
    client = _client("operator", org.company)
    response = client.post(f"/orgs/{org.pk}/reauthorize/")
    callback = salesforce_login(response["Location"], "x@theirs.example", "sf-password")
    client.get(urlsplit(callback).path + "?" + urlsplit(callback).query)
    wait_for(
        lambda: org.connection_changes.filter(failure_code="org_mismatch").exists()
    )
    page = client.get(f"/orgs/{org.pk}/").content.decode()
    assert other["org_id"] in page and "different Salesforce org" in page
    fresh = SalesforceOrg.objects.get(pk=org.pk)
    assert fresh.get_refresh_token() == old_token
    assert stack.sim.token_active(old_token)


def test_support_applies_the_new_url_after_an_enhanced_domains_switch(stack):
    org, created, *_ = _org(stack, "acmeuat", org_type="sandbox", sandbox_name="uat")
    switched = stack.sim.post(f"/orgs/{created['org_id']}/enhanced-domains")
    _check(org)
    client = _client("support", org.company)
    page = client.get(f"/orgs/{org.pk}/edit-url/").content.decode()
    assert switched["new_url"] in page  # the suggestion is prefilled
    response = client.post(
        f"/orgs/{org.pk}/edit-url/", {"new_url": switched["new_url"]}
    )
    assert response.status_code == 302
    verification = wait_for(
        lambda: UrlVerification.objects.filter(org=org).exclude(state="running").first()
    )
    assert verification.state == "succeeded", verification.message
    org = SalesforceOrg.objects.get(pk=org.pk)
    assert org.login_url == switched["new_url"]
    assert org.status == ConnectionStatus.CONNECTED
    assert org.backup_policy.org_url == switched["new_url"]
    assert AuditEvent.objects.filter(org=org, action="org.url_change").count() == 1


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("https://other-org.my.salesforce.com", "is not this org's address"),
        ("https://nobody-home.my.salesforce.com", "is not this org's address"),
    ],
)
def test_wrong_urls_are_refused_after_checking_and_change_nothing(stack, url, message):
    org, *_ = _org(stack, "steady")
    if "other-org" in url:
        other = stack.sim.create_org("other-org")
        stack.sim.create_user(other["org_id"], "y@other.example")
    client = _client("support", org.company)
    client.post(f"/orgs/{org.pk}/edit-url/", {"new_url": url})
    verification = wait_for(
        lambda: UrlVerification.objects.filter(org=org).exclude(state="running").first()
    )
    assert verification.state == "failed"
    assert message in verification.message
    fresh = SalesforceOrg.objects.get(pk=org.pk)
    assert fresh.login_url == org.login_url and fresh.version == org.version
    assert not AuditEvent.objects.filter(action="org.url_change").exists()
    # The org's secrets never went to the candidate host (issue 11, point 8):
    # it was proven not to be the org's before anything was sent there.
    host = url.removeprefix("https://")
    assert not [r for r in stack.sim.requests() if r.get("host") == host]


def test_url_inputs_that_are_not_salesforce_are_refused_without_a_request(stack):
    from tests.url_corpus import REJECTED_URLS

    org, *_ = _org(stack, "guarded")
    client = _client("support", org.company)
    stack.sim.clear_requests()
    for url in REJECTED_URLS:
        response = client.post(f"/orgs/{org.pk}/edit-url/", {"new_url": url})
        assert response.status_code == 422, url
        assert "errorlist" in response.content.decode(), url
    assert not UrlVerification.objects.exists()
    # Nothing was sent anywhere for them (other tests' retries may still
    # reach the simulator's own orgs, so look at the hosts).
    sent_to = {r["host"] for r in stack.sim.requests()}
    assert not {h for h in sent_to if not h.endswith(".salesforce.com")}
    assert org.login_url.removeprefix("https://") not in sent_to


def test_one_alert_per_incident_and_one_on_recovery(stack):
    shutil.rmtree(EMAIL_DIR, ignore_errors=True)
    company = CompanyFactory(name="Alerted Co", contact_emails="ops@alerted.example")
    first, c1, u1, _ = _org(stack, "alert-one", company=company)
    second, c2, u2, _ = _org(stack, "alert-two", company=company)
    for created, user in ((c1, u1), (c2, u2)):
        stack.sim.post(f"/orgs/{created['org_id']}/users/{user}/revoke-tokens")
    _check(first)
    _check(second)
    _check(first)  # checked again while failing: no new email
    wait_for(
        lambda: Incident.objects.filter(
            company=company, opened_notified_at__isnull=False
        ).exists()
    )
    import time

    time.sleep(2)
    mails = sorted(EMAIL_DIR.glob("*.log"))
    bodies = [m.read_text() for m in mails]
    opened = [b for b in bodies if "need attention" in b]
    assert len(opened) == 1, bodies
    assert "alert-one" in opened[0] or "alert-two" in opened[0]
    SalesforceOrg.objects.filter(company=company).update(
        status="connected", status_reason=""
    )
    from orgs.alerts import alerts_evaluate

    assert alerts_evaluate(company_id=company.pk) == "closed"
    assert alerts_evaluate(company_id=company.pk) == "quiet"


def test_operator_queue_lists_orgs_and_checks_selected_ones_again(stack):
    company = CompanyFactory(name="Queue Co")
    failing, *_ = _org(stack, "queued", company=company)
    SalesforceOrg.objects.filter(pk=failing.pk).update(
        status=ConnectionStatus.FAILED, status_reason="Salesforce did not answer"
    )
    other_company_org, *_ = _org(stack, "not-mine")
    SalesforceOrg.objects.filter(pk=other_company_org.pk).update(status="failed")
    client = _client("operator", company)
    page = client.get("/orgs/queue/").content.decode()
    assert "queued" in page and "not-mine" not in page
    assert "Salesforce did not answer" in page
    # An org of another company cannot be smuggled into the bulk action.
    bulk = {"action": "check_now", "source": "queue"}
    response = client.post(
        "/orgs/bulk/", {**bulk, "orgs": [other_company_org.pk]}, follow=True
    )
    assert "You may not run checks on any of the 1 selected org" in (
        response.content.decode()
    )
    client.post("/orgs/bulk/", {**bulk, "orgs": [failing.pk]})
    wait_for(lambda: SalesforceOrg.objects.get(pk=failing.pk).status == "connected")
    assert SalesforceOrg.objects.get(pk=other_company_org.pk).status == "failed"
