"""Console sign-in settings (SPEC §10): pick or turn off the org that signs
console users in; unlink console users from Salesforce users; audited."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from companies.models import AuditEvent
from connections.models import SalesforceIdentityLink
from orgs.models import SalesforceOrg
from tests.factories import RoleGrantFactory, SalesforceOrgFactory, UserFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def admin_client():
    user = UserFactory(username="alice", is_staff=True)
    RoleGrantFactory(user=user, role="administrator", company=None)
    client = Client()
    client.force_login(user)
    return client


def test_picking_an_org_replaces_the_previous_provider(admin_client):
    old = SalesforceOrgFactory(alias="old-idp", is_identity_provider=True)
    new = SalesforceOrgFactory(alias="new-idp")
    versions = (old.version, new.version)
    response = admin_client.post("/settings/sign-in/", {"org": new.pk})
    assert response.status_code == 302
    old.refresh_from_db()
    new.refresh_from_db()
    assert (old.is_identity_provider, new.is_identity_provider) == (False, True)
    # The wizard of either org must learn that openid is (no longer) needed.
    assert (old.version, new.version) == (versions[0] + 1, versions[1] + 1)
    event = AuditEvent.objects.get(action="auth.signin_provider_set")
    assert (event.before, event.after) == (
        {"provider": "old-idp"},
        {"provider": "new-idp"},
    )
    page = admin_client.get("/settings/sign-in/").content.decode()
    assert "through <a" in page and "new-idp" in page


def test_an_org_without_a_client_app_cannot_sign_users_in(admin_client):
    org = SalesforceOrgFactory(client_app=None)
    response = admin_client.post("/settings/sign-in/", {"org": org.pk})
    assert response.status_code == 422
    assert "Pick one of the listed orgs" in response.content.decode()
    response = admin_client.post("/settings/sign-in/", {"org": "x"})
    assert response.status_code == 422
    assert not SalesforceOrg.objects.filter(is_identity_provider=True).exists()
    assert not AuditEvent.objects.exists()


def test_turning_it_off(admin_client):
    SalesforceOrgFactory(alias="idp", is_identity_provider=True)
    response = admin_client.post("/settings/sign-in/off/")
    assert response.status_code == 302
    assert not SalesforceOrg.objects.filter(is_identity_provider=True).exists()
    assert AuditEvent.objects.get(action="auth.signin_provider_clear").before == {
        "provider": "idp"
    }
    # Off already: nothing to record.
    admin_client.post("/settings/sign-in/off/")
    assert (
        AuditEvent.objects.filter(action__startswith="auth.signin_provider").count()
        == 1
    )


def test_linked_users_are_listed_and_unlinked(admin_client):
    org = SalesforceOrgFactory(alias="idp", is_identity_provider=True)
    bob = UserFactory(username="bob")
    link = SalesforceIdentityLink.objects.create(
        user=bob,
        org=org,
        salesforce_user_id="005000000000001AAA",
        salesforce_username="bob@acme.example",
    )
    page = admin_client.get("/settings/sign-in/").content.decode()
    assert "bob@acme.example" in page and "Unlink bob" in page
    response = admin_client.post(f"/settings/sign-in/links/{link.pk}/unlink/")
    assert response.status_code == 302
    assert not SalesforceIdentityLink.objects.exists()
    event = AuditEvent.objects.get(action="identity_link.delete")
    assert event.before["salesforce_username"] == "bob@acme.example"
    assert event.org_id == org.pk
    assert (
        admin_client.post(f"/settings/sign-in/links/{link.pk}/unlink/").status_code
        == 404
    )


def test_the_page_queries_do_not_grow_with_links(admin_client):
    org = SalesforceOrgFactory(alias="idp", is_identity_provider=True)

    def count() -> int:
        with CaptureQueriesContext(connection) as queries:
            assert admin_client.get("/settings/sign-in/").status_code == 200
        return len(queries)

    few = count()
    for n in range(10):
        SalesforceIdentityLink.objects.create(
            user=UserFactory(), org=org, salesforce_user_id=f"00500000000{n:04d}AAA"
        )
        SalesforceOrgFactory()
    assert count() == few


def test_the_page_is_named_as_in_the_spec(admin_client):
    """SPEC §10 calls it "Console sign-in": the page and its menu link."""
    page = admin_client.get("/settings/sign-in/").content.decode()
    assert "<h1>Console sign-in</h1>" in page
    assert 'aria-current="page">Console sign-in</a>' in page
