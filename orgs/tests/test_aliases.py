"""Org aliases are unique ignoring case, in the services (a field error that
names the alias) and in the database; the org ID stays the default alias;
backup policies show their org's current alias."""

from __future__ import annotations

from unittest import mock

import pytest
from django.core.exceptions import ValidationError
from django.db import IntegrityError, connection, transaction
from django.db.migrations.executor import MigrationExecutor
from django.test import Client

from companies.audit import Actor
from companies.models import AuditEvent
from orgs.models import SalesforceOrg
from orgs.services import org_create, org_update
from tests.factories import (
    BackupPolicyFactory,
    CompanyFactory,
    RoleGrantFactory,
    SalesforceOrgFactory,
    UserFactory,
)

pytestmark = pytest.mark.django_db

NEW_ORG_ID = "00D5g0000099999EAA"


@pytest.fixture
def acme_prod() -> SalesforceOrg:
    return SalesforceOrgFactory(alias="acme-prod")


def _create(alias: str, org_id: str = NEW_ORG_ID) -> SalesforceOrg:
    return org_create(
        actor=Actor.system(),
        org_id=org_id,
        login_url="https://acme-new.my.salesforce.com",
        company=CompanyFactory(),
        alias=alias,
    )


@pytest.mark.parametrize(
    "alias", ["acme-prod", "ACME-PROD", "Acme-Prod", " acme-prod "]
)
def test_create_refuses_an_alias_taken_ignoring_case(acme_prod, alias):
    with pytest.raises(ValidationError) as caught:
        _create(alias)
    assert caught.value.message_dict == {
        "alias": [f"Another org is already called {alias.strip()}."]
    }
    assert not SalesforceOrg.objects.filter(org_id=NEW_ORG_ID).exists()
    assert not AuditEvent.objects.filter(action="org.create").exists()


@pytest.mark.parametrize("alias", ["", "   "])
def test_the_org_id_is_the_default_alias(alias):
    org = _create(alias)
    assert org.alias == NEW_ORG_ID


def test_update_refuses_an_alias_taken_ignoring_case(acme_prod):
    other = SalesforceOrgFactory(alias="acme-sandbox")
    with pytest.raises(ValidationError) as caught:
        org_update(actor=Actor.system(), org=other, alias="ACME-prod")
    assert caught.value.message_dict == {
        "alias": ["Another org is already called ACME-prod."]
    }
    other.refresh_from_db()
    assert other.alias == "acme-sandbox" and other.version == 1
    assert not AuditEvent.objects.filter(action="org.update").exists()


def test_an_org_may_change_the_case_of_its_own_alias(acme_prod):
    org = org_update(actor=Actor.system(), org=acme_prod, alias="Acme-Prod")
    assert org.alias == "Acme-Prod"


def test_clearing_the_alias_goes_back_to_the_org_id(acme_prod):
    org = org_update(actor=Actor.system(), org=acme_prod, alias="  ")
    assert org.alias == acme_prod.org_id


def test_an_alias_may_not_be_another_orgs_id(acme_prod):
    # That ID is the other org's default alias; it must stay free for it.
    other = SalesforceOrgFactory(alias="other")
    with pytest.raises(ValidationError) as caught:
        org_update(actor=Actor.system(), org=other, alias=acme_prod.org_id.lower())
    assert caught.value.message_dict == {
        "alias": [
            f"{acme_prod.org_id.lower()} is the org ID of another org; "
            "pick another alias."
        ]
    }


def test_the_database_refuses_duplicate_aliases_ignoring_case(acme_prod):
    other = SalesforceOrgFactory(alias="other")
    with pytest.raises(IntegrityError), transaction.atomic():
        SalesforceOrg.objects.filter(pk=other.pk).update(alias="ACME-PROD")
    with pytest.raises(IntegrityError), transaction.atomic():
        SalesforceOrgFactory(alias="Acme-prod")


def test_a_lost_race_for_the_alias_gives_the_same_field_error(acme_prod):
    other = SalesforceOrgFactory(alias="other")

    def rival_takes_the_alias(self, *args, **kwargs):
        # Between the service's check and its save, another request wins.
        SalesforceOrg.objects.filter(pk=acme_prod.pk).update(alias="Contested")

    with (
        mock.patch.object(SalesforceOrg, "full_clean", rival_takes_the_alias),
        pytest.raises(ValidationError) as caught,
    ):
        org_update(actor=Actor.system(), org=other, alias="contested")
    assert caught.value.message_dict == {
        "alias": ["Another org is already called contested."]
    }


def test_model_validation_reports_the_constraint(acme_prod):
    # The admin's forms validate through full_clean.
    org = SalesforceOrgFactory.build(
        alias="ACME-prod", company=acme_prod.company, client_app=None
    )
    with pytest.raises(ValidationError) as caught:
        org.full_clean()
    assert "Another org already has this alias (aliases ignore case)." in str(
        caught.value
    )


def test_the_settings_page_shows_the_alias_error(acme_prod):
    admin = UserFactory(username="alice")
    RoleGrantFactory(user=admin, role="administrator", company=None)
    other = SalesforceOrgFactory(alias="other")
    client = Client()
    client.force_login(admin)
    response = client.post(
        f"/orgs/{other.pk}/settings/",
        {"alias": "Acme-Prod", "version": other.version},
        follow=True,
    )
    assert "Another org is already called Acme-Prod." in response.content.decode()
    other.refresh_from_db()
    assert other.alias == "other"


def test_policies_show_their_orgs_current_alias(acme_prod):
    policy = BackupPolicyFactory(org=acme_prod)
    admin = UserFactory(username="alice")
    RoleGrantFactory(user=admin, role="administrator", company=None)
    client = Client()
    client.force_login(admin)
    org_update(actor=Actor.system(), org=acme_prod, alias="acme-production")
    policy.refresh_from_db()
    assert policy.name == "Backup of acme-prod"  # stored names are not rewritten
    org_link = f'<a href="{acme_prod.get_absolute_url()}"'
    listing = client.get("/policies/").content.decode()
    assert '<th scope="col">Org</th>' in listing
    assert org_link in listing and ">acme-production</a>" in listing
    edit = client.get(f"/policies/{policy.pk}/edit/").content.decode()
    assert org_link in edit and ">acme-production</a>" in edit


@pytest.mark.django_db(transaction=True)
def test_the_migration_makes_existing_aliases_fit_the_constraint():
    """GIVEN orgs from before the constraint: two aliases equal ignoring
    case, a blank one, and an alias that is another org's ID
    WHEN the migrations run
    THEN the oldest keeps its alias, the others get their org ID (audited),
    and the constraint is in place."""
    before = [("orgs", "0002_urlverification")]
    executor = MigrationExecutor(connection)
    latest = executor.loader.graph.leaf_nodes()
    executor.migrate(before)
    try:
        old = executor.loader.project_state(before).apps
        Company = old.get_model("companies", "Company")
        Org = old.get_model("orgs", "SalesforceOrg")
        company = Company.objects.create(name="Acme")
        url = "https://acme.my.salesforce.com"

        def org(alias: str, n: int):
            return Org.objects.create(
                alias=alias,
                org_id=f"00D5g00000{n:05d}AAA",
                company=company,
                login_url=url,
            )

        first = org("acme-prod", 1)
        dup = org("ACME-Prod", 2)
        blank = org("", 3)
        squatter = org("00D5g0000000004AAA", 5)  # the next org's ID, lowered below
        owner = org("00d5g0000000004aaa", 4)
        executor = MigrationExecutor(connection)
        executor.migrate(latest)
    finally:
        MigrationExecutor(connection).migrate(latest)
    aliases = dict(SalesforceOrg.objects.values_list("pk", "alias"))
    assert aliases[first.pk] == "acme-prod"
    assert aliases[dup.pk] == dup.org_id
    assert aliases[blank.pk] == blank.org_id
    assert aliases[squatter.pk] == "00D5g0000000004AAA"
    assert aliases[owner.pk] == f"{owner.org_id}-{owner.pk}"
    resets = AuditEvent.objects.filter(action="org.update").order_by("org_id")
    assert [(e.org_id, e.before, e.after) for e in resets] == [
        (dup.pk, {"alias": "ACME-Prod"}, {"alias": dup.org_id}),
        (blank.pk, {"alias": ""}, {"alias": blank.org_id}),
        (owner.pk, {"alias": "00d5g0000000004aaa"}, {"alias": aliases[owner.pk]}),
    ]
    with pytest.raises(IntegrityError), transaction.atomic():
        SalesforceOrg.objects.filter(pk=dup.pk).update(alias="ACME-PROD")
