"""Org IDs: 15 characters are extended, 18 are checked, others refused."""

from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError

from companies.audit import Actor
from companies.models import AuditEvent
from orgs.models import SalesforceOrg
from orgs.services import org_create
from tests.factories import CompanyFactory


@pytest.mark.django_db
def test_a_15_character_org_id_is_stored_in_its_18_character_form():
    org = org_create(
        actor=Actor.system(),
        org_id="00D36000000arML",
        login_url="https://Acme.My.Salesforce.com/",
        company=CompanyFactory(),
    )
    assert org.org_id == "00D36000000arMLEAY"
    assert org.login_url == "https://acme.my.salesforce.com"
    assert org.alias == org.org_id
    assert org.backup_policy.org_url == org.login_url
    assert AuditEvent.objects.filter(action="org.create", org=org).count() == 1


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("org_id", "message"),
    [
        ("00D36000000arMLEAA", "checksum does not match"),
        ("00D36000000arM", "15 or 18 characters"),
        ("00D36000000arML-AY", "only letters and digits"),
        ("00536000000IigRAAS", "starts with 00D"),
        ("", "15 or 18 characters"),
    ],
)
def test_malformed_org_ids_get_a_clear_message_and_change_nothing(org_id, message):
    with pytest.raises(ValidationError) as caught:
        org_create(
            actor=Actor.system(),
            org_id=org_id,
            login_url="https://acme.my.salesforce.com",
            company=CompanyFactory(),
        )
    assert message in str(caught.value)
    assert not SalesforceOrg.objects.exists()
    assert not AuditEvent.objects.filter(action="org.create").exists()


@pytest.mark.django_db
def test_a_duplicate_org_is_refused():
    company = CompanyFactory()
    org_create(
        actor=Actor.system(),
        org_id="00D36000000arML",
        login_url="https://acme.my.salesforce.com",
        company=company,
    )
    with pytest.raises(ValidationError, match="already registered"):
        org_create(
            actor=Actor.system(),
            org_id="00D36000000arMLEAY",
            login_url="https://acme.my.salesforce.com",
            company=company,
        )
