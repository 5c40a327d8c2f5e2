"""Nobody is sent to Salesforce for an org whose URL changed: its old
address answers nothing, so the login, the activation probes and the tokens
would all fail there. Re-authorize connection, "Re-authorize now", a
delegated link and Edit Connection say so and change nothing until the URL
is fixed (Edit organization URL)."""

from __future__ import annotations

import re

import pytest
from django.core.exceptions import ValidationError
from django.test import Client

from companies.access import AccessProfile
from companies.audit import Actor
from connections import services
from connections.models import CampaignOrg, ConnectionChange
from connections.services.campaigns import campaign_create
from orgs.models import ConnectionStatus, SalesforceOrg

pytestmark = pytest.mark.django_db

NEW_URL = "https://acme-new.my.salesforce.com"
SAYS = f"Salesforce now answers acme-prod at {NEW_URL}"


@pytest.fixture
def moved(world) -> SalesforceOrg:
    SalesforceOrg.objects.filter(pk=world.acme_org.pk).update(
        status=ConnectionStatus.URL_CHANGED, suggested_url=NEW_URL
    )
    return SalesforceOrg.objects.get(pk=world.acme_org.pk)


def test_reauthorize_connection_waits_for_the_url_fix(world, moved):
    operator = world.client_for("operator")
    response = operator.post(f"/orgs/{moved.pk}/reauthorize/", follow=True)
    assert response.status_code == 200
    page = response.content.decode()
    assert SAYS in page and "Edit organization URL" in page
    assert not ConnectionChange.objects.filter(org=moved).exists()
    # Fixed: the same button goes to Salesforce.
    SalesforceOrg.objects.filter(pk=moved.pk).update(
        status=ConnectionStatus.CONNECTED, login_url=NEW_URL, suggested_url=""
    )
    again = operator.post(f"/orgs/{moved.pk}/reauthorize/")
    assert again.status_code == 302
    assert again["Location"].startswith(NEW_URL)


def test_edit_connection_waits_for_the_url_fix(world, moved):
    with pytest.raises(ValidationError) as refused:
        services.connection_change_start(
            actor=Actor(user=world.users["operator"]),
            org=moved,
            consumer_key="3MVG9" + "k" * 80,
            consumer_secret="a-secret-value",
        )
    assert SAYS in " ".join(refused.value.messages)
    assert "then change the connection" in " ".join(refused.value.messages)
    assert not ConnectionChange.objects.filter(org=moved).exists()


def test_a_campaign_row_and_its_link_wait_for_the_url_fix(world, moved):
    admin = world.users["administrator"]
    campaign, _ = campaign_create(
        actor=Actor(user=admin), access=AccessProfile(admin), org_ids=[moved.pk]
    )
    row = campaign.rows.get()
    console = world.client_for("operator")
    now = console.post(
        f"/campaigns/{campaign.pk}/rows/{row.pk}/reauthorize/", follow=True
    )
    assert SAYS in now.content.decode()
    copied = console.post(
        f"/campaigns/{campaign.pk}/rows/{row.pk}/copy-link/", HTTP_HX_REQUEST="true"
    )
    path = re.search(r"(/r/[^<\s\"]+/)", copied.content.decode()).group(1)
    person = Client()
    assert person.get(path).status_code == 200
    refused = person.post(path)
    assert refused.status_code == 422
    # The person sees what to do, nothing of the console (no URLs, no pages).
    text = refused.content.decode()
    assert "address at Salesforce changed" in text
    assert NEW_URL not in text and "Edit organization URL" not in text
    assert not ConnectionChange.objects.filter(org=moved).exists()
    assert CampaignOrg.objects.get(pk=row.pk).change_id is None


def test_authorize_again_on_a_staged_change_waits_for_the_url_fix(world):
    operator = world.users["operator"]
    change = services.connection_change_start(
        actor=Actor(user=operator),
        org=world.acme_org,
        consumer_key="3MVG9" + "k" * 80,
        consumer_secret="a-secret-value",
    )
    ConnectionChange.objects.filter(pk=change.pk).update(state="active")
    SalesforceOrg.objects.filter(pk=world.acme_org.pk).update(
        status=ConnectionStatus.URL_CHANGED, suggested_url=NEW_URL
    )
    with pytest.raises(services.ChangeError, match="Salesforce now answers"):
        services.connection_change_begin_authorization(change=change)
    change.refresh_from_db()
    assert change.authorize_started_at is None
