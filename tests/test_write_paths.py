"""Every path that stores a Salesforce URL uses the one URL check; no
refusal of the URL guard becomes a 500; every get_absolute_url resolves
(issue 11, point 6)."""

from __future__ import annotations

import pytest
from django.apps import apps
from django.urls import NoReverseMatch

from orgs.models import SalesforceOrg
from tests.factories import (
    BackupPolicyFactory,
    CompanyFactory,
    SalesforceOrgFactory,
)

pytestmark = pytest.mark.django_db

FOREIGN = [
    "https://canary.example",
    "http://127.0.0.1:1/",
    "https://evil.my.salesforce.com.example.org",
]


@pytest.mark.parametrize("field", ["login_url", "instance_url", "suggested_url"])
@pytest.mark.parametrize("url", FOREIGN)
def test_the_admin_refuses_an_org_url_that_is_not_salesforce(world, field, url):
    org = world.acme_org
    client = world.client_for("administrator")
    page = client.get(f"/admin/orgs/salesforceorg/{org.pk}/change/")
    assert page.status_code == 200
    form = page.context["adminform"].form
    data = {k: v for k, v in form.initial.items() if v is not None}
    data |= {
        "company": org.company_id,
        "client_app": org.client_app_id,
        "granted_scopes": "[]",
        field: url,
    }
    response = client.post(f"/admin/orgs/salesforceorg/{org.pk}/change/", data)
    assert response.status_code == 200  # the admin form again, with its error
    assert "errornote" in response.content.decode()
    assert getattr(SalesforceOrg.objects.get(pk=org.pk), field) != url


def test_reauthorizing_an_org_with_a_foreign_url_is_refused_not_a_500(world):
    org = world.acme_org
    # Stored before the check covered every path (or by hand in the database).
    SalesforceOrg.objects.filter(pk=org.pk).update(login_url="https://canary.example")
    response = world.client_for("operator").post(
        f"/orgs/{org.pk}/reauthorize/", follow=True
    )
    assert response.status_code == 200
    assert "is not a Salesforce address" in response.content.decode()


def test_every_get_absolute_url_resolves():
    company = CompanyFactory()
    org = SalesforceOrgFactory(company=company)
    objects = {
        "companies.Company": company,
        "orgs.SalesforceOrg": org,
        "orgs.BackupPolicy": BackupPolicyFactory(org=org),
    }
    checked = 0
    for model in apps.get_models():
        if "get_absolute_url" not in vars(model):
            continue
        obj = objects.get(model._meta.label)
        assert obj is not None, f"add an instance of {model._meta.label} here"
        try:
            url = obj.get_absolute_url()
        except NoReverseMatch as exc:
            pytest.fail(f"{model._meta.label}.get_absolute_url: {exc}")
        assert url.startswith("/")
        checked += 1
    assert checked == len(objects)


# --- anonymous requests create nothing durable (point 7) ---------------------


@pytest.fixture
def provider(db):
    return SalesforceOrgFactory(is_identity_provider=True)


def test_an_anonymous_get_of_the_salesforce_sign_in_creates_nothing(client, provider):
    from companies.models import ConsoleSession as Session
    from connections.models import SignInAttempt

    response = client.get("/login/salesforce/")
    assert response.status_code == 405
    assert not SignInAttempt.objects.exists()
    assert not Session.objects.exists()


def test_sign_in_starts_from_one_address_are_bounded(client, provider):
    from connections.models import SignInAttempt

    for _ in range(15):
        client.post("/login/salesforce/")
    assert SignInAttempt.objects.count() == 10


def test_callback_text_of_an_anonymous_flow_is_never_stored(client, provider):
    from companies.models import AuditEvent
    from connections.models import SignInAttempt

    start = client.post("/login/salesforce/")
    state = dict(
        part.split("=", 1) for part in start["Location"].split("?", 1)[1].split("&")
    )["state"]
    canary = "attacker-text-5b1e"
    client.get(
        "/oauth/callback/",
        {"state": state, "error": "server_error", "error_description": canary},
    )
    attempt = SignInAttempt.objects.get()
    assert attempt.state == SignInAttempt.State.REFUSED
    assert canary not in attempt.message
    for event in AuditEvent.objects.all():
        assert canary not in f"{event.summary}{event.before}{event.after}"


# --- smaller holes (point 9) -------------------------------------------------


@pytest.mark.parametrize(
    "name", ["acme", "ACME", "Ａｃｍｅ", "Ac\u200bme", "Acme\u2060"]
)
def test_a_company_name_that_only_looks_different_is_refused(world, name):
    from companies.models import Company

    before = Company.objects.count()
    response = world.client_for("administrator").post("/companies/", {"name": name})
    assert response.status_code == 422
    assert "already exists" in response.content.decode()
    assert Company.objects.count() == before


def test_forms_may_only_send_the_browser_to_the_console_or_salesforce(world):
    response = world.client_for("viewer").get("/")
    policy = response["Content-Security-Policy"]
    form_action = next(p for p in policy.split("; ") if p.startswith("form-action"))
    assert form_action.split()[1:3] == ["'self'", "https://*.salesforce.com"]
    assert "https:" not in form_action.split()


@pytest.mark.parametrize(
    "current",
    [
        "https://evil.example/orgs/1/",
        "//evil.example/orgs/1/",
        "javascript:alert(1)",
        "https://evil.example",
    ],
)
def test_a_foreign_hx_current_url_never_reaches_the_back_field(world, current):
    from connections.models import ConnectionChange

    org = world.acme_org
    change = ConnectionChange.objects.create(
        kind="edit",
        org=org,
        client_app=org.client_app,
        login_url=org.login_url,
        state=ConnectionChange.State.ACTIVE,
    )
    response = world.client_for("administrator").get(
        f"/connections/changes/{change.pk}/status/",
        HTTP_HX_REQUEST="true",
        HTTP_HX_CURRENT_URL=current,
    )
    page = response.content.decode()
    assert 'name="back"' in page
    assert "evil.example" not in page and "javascript" not in page
