"""The org list, org page and dashboard."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from companies.models import RoleGrant
from orgs.models import ConnectionStatus

from .factories import (
    CompanyFactory,
    ExternalClientAppFactory,
    SalesforceOrgFactory,
)


def _queries_for(client, url: str) -> int:
    with CaptureQueriesContext(connection) as ctx:
        response = client.get(url)
    assert response.status_code == 200
    return len(ctx.captured_queries)


@pytest.mark.parametrize("role", ["administrator", "operator"])
def test_org_list_query_count_is_constant(world, role):
    client = world.client_for(role)
    companies = [world.acme] + [CompanyFactory() for _ in range(4)]
    for company in companies[1:]:
        if role == "operator":
            RoleGrant.objects.create(
                user=world.users["operator"], role="operator", company=company
            )
    shared = ExternalClientAppFactory(is_legacy_shared=True)
    for i in range(8):
        SalesforceOrgFactory(company=companies[i % 5], client_app=shared)
    small = _queries_for(client, "/orgs/")
    small_filtered = _queries_for(client, "/orgs/?status=connected&q=org")
    SalesforceOrgFactory.create_batch(
        990, company=world.acme, client_app=shared, status=ConnectionStatus.FAILED
    )
    large = _queries_for(client, "/orgs/")
    large_filtered = _queries_for(client, "/orgs/?status=connected&q=org")
    assert small == large
    assert small_filtered == large_filtered
    print(f"/orgs/ queries as {role}: {large}")


def test_org_list_filters_search_and_paginates(world):
    client = world.client_for("administrator")
    SalesforceOrgFactory.create_batch(60, company=world.acme)
    SalesforceOrgFactory(
        company=world.globex,
        alias="needle",
        status=ConnectionStatus.URL_CHANGED,
        login_url="https://needle-co.my.salesforce.com",
    )
    page1 = client.get("/orgs/").content.decode()
    assert "Page 1 of 2" in page1
    assert "needle" in client.get("/orgs/?q=needle-co").content.decode()
    by_status = client.get("/orgs/?status=url_changed").content.decode()
    assert "needle" in by_status and "acme-prod" not in by_status
    by_company = client.get(f"/orgs/?company={world.globex.pk}").content.decode()
    assert "needle" in by_company and "acme-prod" not in by_company
    # A tampered filter is ignored, not a crash.
    assert client.get("/orgs/?company=abc&status=<script>").status_code == 200
    assert client.get("/orgs/?page=999").status_code == 200


def test_search_by_org_id(world):
    client = world.client_for("administrator")
    body = client.get(f"/orgs/?q={world.globex_org.org_id}").content.decode()
    assert "globex-prod" in body and "acme-prod" not in body


def test_org_page_shows_the_connection_card(world):
    org = world.acme_org
    body = world.client_for("viewer").get(f"/orgs/{org.pk}/").content.decode()
    for text in (
        org.org_id,
        org.login_url,
        org.connected_as_username,
        "Acme",
        org.client_app.key_hint,
        org.client_app.fingerprint,
    ):
        assert text in body


def test_legacy_shared_app_orgs_are_marked(world):
    shared = ExternalClientAppFactory(is_legacy_shared=True)
    SalesforceOrgFactory(company=world.acme, client_app=shared, alias="old-one")
    client = world.client_for("administrator")
    assert "move it to its own external client app" in client.get("/").content.decode()
    listed = client.get("/orgs/?legacy=on").content.decode()
    assert "old-one" in listed and "acme-prod" not in listed


def test_dashboard_counts_orgs_by_status_within_the_users_companies(world):
    SalesforceOrgFactory(
        company=world.acme, status=ConnectionStatus.FAILED, status_reason="boom"
    )
    SalesforceOrgFactory(company=world.globex, status=ConnectionStatus.FAILED)
    response = world.client_for("viewer").get("/")
    counts = dict((s, n) for s, _, n in response.context["status_counts"])
    assert counts["failed"] == 1 and counts["connected"] == 1
    assert "boom" in response.content.decode()


def test_healthz_needs_no_sign_in_and_shows_no_secrets(client, db):
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "database": "ok"}


def test_security_headers_on_every_response(world, client):
    for response in (client.get("/login/"), world.client_for("viewer").get("/orgs/")):
        assert "default-src 'self'" in response["Content-Security-Policy"]
        assert response["X-Frame-Options"] == "DENY"
        assert response["X-Content-Type-Options"] == "nosniff"
        assert response["Referrer-Policy"] == "same-origin"
