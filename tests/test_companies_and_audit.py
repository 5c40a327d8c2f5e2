"""Companies: create, rename, move orgs, delete; each change audited once."""

from __future__ import annotations

import csv
import io

import pytest
from django.core.exceptions import ValidationError

from companies.audit import Actor, audit_record
from companies.models import AuditEvent, Company
from orgs.models import SalesforceOrg

from .factories import SalesforceOrgFactory


def test_admin_creates_a_company_with_one_audit_event(world):
    client = world.client_for("administrator")
    response = client.post("/companies/", {"name": "Initech", "contact_emails": ""})
    assert response.status_code == 302
    company = Company.objects.get(name="Initech")
    events = AuditEvent.objects.filter(action="company.create", company=company)
    assert events.count() == 1
    event = events.get()
    assert event.actor_username == "alice"
    assert event.ip_address == "127.0.0.1"
    assert event.after == {"name": "Initech", "contact_emails": ""}


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"name": "Acme"}, "already exists"),
        ({"name": "x" * 101}, "at most 100 characters"),
        ({"name": ""}, "This field is required"),
        ({"name": "Ok Co", "contact_emails": "not-an-email"}, "is not an email"),
    ],
)
def test_bad_company_input_gets_a_clear_message_and_changes_nothing(
    world, data, message
):
    before = (Company.objects.count(), AuditEvent.objects.count())
    response = world.client_for("administrator").post("/companies/", data)
    assert response.status_code == 422  # the form again, with its errors
    assert message in response.content.decode()
    assert (Company.objects.count(), AuditEvent.objects.count()) == before


def test_rename_is_audited_with_before_and_after(world):
    client = world.client_for("administrator")
    client.post(
        f"/companies/{world.acme.pk}/", {"name": "Acme Inc", "contact_emails": ""}
    )
    world.acme.refresh_from_db()
    assert world.acme.name == "Acme Inc"
    event = AuditEvent.objects.get(action="company.update")
    assert event.before["name"] == "Acme" and event.after["name"] == "Acme Inc"


def test_a_company_with_orgs_cannot_be_deleted(world):
    response = world.client_for("administrator").post(
        f"/companies/{world.acme.pk}/delete/", follow=True
    )
    assert "Move them to another company first" in response.content.decode()
    assert Company.objects.filter(pk=world.acme.pk).exists()
    assert not AuditEvent.objects.filter(action="company.delete").exists()


def test_moving_orgs_then_deleting_the_empty_company(world):
    client = world.client_for("administrator")
    extra = SalesforceOrgFactory(company=world.acme)
    response = client.post(
        f"/companies/{world.acme.pk}/move-orgs/",
        {"to_company": world.globex.pk, "orgs": [world.acme_org.pk, extra.pk]},
    )
    assert response.status_code == 302
    assert SalesforceOrg.objects.filter(company=world.globex).count() == 3
    assert AuditEvent.objects.filter(action="org.move").count() == 2
    moved = SalesforceOrg.objects.get(pk=world.acme_org.pk)
    assert moved.version == 2  # moving bumps the optimistic-lock version
    client.post(f"/companies/{world.acme.pk}/delete/")
    assert not Company.objects.filter(pk=world.acme.pk).exists()
    event = AuditEvent.objects.get(action="company.delete")
    assert event.company_name == "Acme" and event.before == {"name": "Acme"}


def test_a_tampered_company_id_in_the_move_form_changes_nothing(world):
    client = world.client_for("administrator")
    for tampered in ("999999", "abc", str(world.acme.pk)):
        response = client.post(
            f"/companies/{world.acme.pk}/move-orgs/",
            {"to_company": tampered, "orgs": [world.acme_org.pk]},
            follow=True,
        )
        assert "Pick one of the listed companies" in response.content.decode()
    # An org of another company cannot be smuggled into the move.
    response = client.post(
        f"/companies/{world.acme.pk}/move-orgs/",
        {"to_company": world.globex.pk, "orgs": [world.globex_org.pk]},
        follow=True,
    )
    assert "Pick orgs of this company only" in response.content.decode()
    world.acme_org.refresh_from_db()
    assert world.acme_org.company_id == world.acme.pk
    assert not AuditEvent.objects.filter(action="org.move").exists()


def test_audit_events_are_append_only(world):
    from django.db import transaction

    with transaction.atomic():
        event = audit_record(actor=Actor.system(), action="test.event")
    event.summary = "rewritten"
    with pytest.raises(ValidationError):
        event.save()
    with pytest.raises(ValidationError):
        event.delete()
    assert AuditEvent.objects.get(pk=event.pk).summary == ""


@pytest.mark.django_db(transaction=True)
def test_audit_record_refuses_to_run_outside_a_transaction():
    with pytest.raises(RuntimeError):
        audit_record(actor=Actor.system(), action="test.event")


def test_audit_page_filters_and_csv_export(world):
    client = world.client_for("administrator")
    client.post("/companies/", {"name": '=HYPERLINK("evil")'})
    client.post("/companies/", {"name": "Plain Co"})
    page = client.get("/audit/?action=company.create").content.decode()
    assert "Plain Co" in page
    response = client.get("/audit/export.csv?action=company.create")
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    rows = list(csv.reader(io.StringIO(b"".join(response.streaming_content).decode())))
    assert rows[0][:3] == ["time", "user", "address"]
    summaries = [r[7] for r in rows[1:]]
    assert "Created company Plain Co" in summaries
    # No cell starts with a formula character.
    assert all(not cell.startswith(("=", "+", "@")) for row in rows for cell in row)


def test_audit_events_are_scoped_to_the_users_companies(world):
    from django.db import transaction

    from companies.access import AccessProfile
    from companies.selectors import audit_event_list

    with transaction.atomic():
        audit_record(actor=Actor.system(), action="x.acme", company=world.acme)
        audit_record(actor=Actor.system(), action="x.globex", company=world.globex)
    viewer = AccessProfile(world.users["viewer"])
    admin = AccessProfile(world.users["administrator"])
    assert set(
        audit_event_list(access=viewer, action="x.").values_list("action", flat=True)
    ) == {"x.acme"}
    assert set(
        audit_event_list(access=admin, action="x.").values_list("action", flat=True)
    ) == {"x.acme", "x.globex"}
    # The audit pages themselves are for Administrators only.
    assert world.client_for("viewer").get("/audit/").status_code == 403
