"""The audit page and its CSV export: filters bound by one form (category,
dates in the console's time zone, user, company, org), scoping, the CSV's
charset and JSON columns, and the sign-in events."""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo

import pytest
from django.db import transaction
from django.test import Client

from companies.access import AccessProfile
from companies.audit import Actor, audit_record
from companies.forms import AuditFilterForm
from companies.models import AuditEvent, Company
from companies.selectors import audit_event_list
from tests.factories import (
    CompanyFactory,
    RoleGrantFactory,
    SalesforceOrgFactory,
    UserFactory,
)

pytestmark = pytest.mark.django_db

UTC = ZoneInfo("UTC")


@dataclass
class Trail:
    acme: Company
    globex: Company
    acme_org: object
    globex_org: object
    admin: object
    viewer: object

    def client(self) -> Client:
        client = Client()
        client.force_login(self.admin)
        return client


@pytest.fixture
def trail() -> Trail:
    acme = CompanyFactory(name="Acme")
    globex = CompanyFactory(name="Globex")
    admin = UserFactory(username="alice")
    RoleGrantFactory(user=admin, role="administrator", company=None)
    viewer = UserFactory(username="vera")
    RoleGrantFactory(user=viewer, role="viewer", company=acme)
    return Trail(
        acme=acme,
        globex=globex,
        acme_org=SalesforceOrgFactory(company=acme, alias="acme-prod"),
        globex_org=SalesforceOrgFactory(company=globex, alias="globex-prod"),
        admin=admin,
        viewer=viewer,
    )


def _event(
    action: str,
    summary: str,
    *,
    actor: Actor | None = None,
    company: Company | None = None,
    org: object = None,
    at: datetime | None = None,
    **kwargs: object,
) -> AuditEvent:
    with transaction.atomic():
        event = audit_record(
            actor=actor or Actor.system(),
            action=action,
            summary=summary,
            company=company,
            org=org,
            **kwargs,
        )
    if at is not None:
        # created_at is set on insert; tests move it with a queryset update
        # (the model itself refuses to rewrite an event).
        AuditEvent.objects.filter(pk=event.pk).update(created_at=at)
    return event


def _summaries(access: AccessProfile, **filters: object) -> set[str]:
    return set(
        audit_event_list(access=access, **filters).values_list("summary", flat=True)
    )


def _csv(response) -> list[list[str]]:
    body = b"".join(response.streaming_content).decode("utf-8")
    return list(csv.reader(io.StringIO(body)))


# --- category --------------------------------------------------------------


def test_category_filters_by_human_readable_kind_of_action(trail):
    _event("org.update", "EV-org", org=trail.acme_org)
    _event("connection_change.start", "EV-change", org=trail.acme_org)
    _event("company.create", "EV-company", company=trail.acme)
    _event("role.grant", "EV-role", company=trail.acme)
    _event("auth.password_signin", "EV-signin")
    _event("auth.salesforce_signin", "EV-sf-signin", org=trail.acme_org)
    _event("policy.update", "EV-policy", org=trail.acme_org)
    _event("maintenance.start", "EV-other", company=trail.acme)
    access = AccessProfile(trail.admin)
    assert _summaries(access, category="org") == {"EV-org"}
    assert _summaries(access, category="connection") == {"EV-change"}
    assert _summaries(access, category="company") == {"EV-company"}
    assert _summaries(access, category="role") == {"EV-role"}
    assert _summaries(access, category="signin") == {"EV-signin", "EV-sf-signin"}
    assert _summaries(access, category="policy") == {"EV-policy"}
    assert _summaries(access, category="other") == {"EV-other"}


def test_the_page_offers_categories_by_label_and_filters_by_them(trail):
    _event("org.update", "EV-org", org=trail.acme_org)
    _event("company.create", "EV-company", company=trail.acme)
    page = trail.client().get("/audit/?category=org").content.decode()
    for label in [
        "Org changes",
        "Connection changes",
        "Companies",
        "Roles",
        "Sign-ins",
        "Backup policies",
    ]:
        assert f">{label}</option>" in page
    assert '<option value="org" selected>Org changes</option>' in page
    assert "EV-org" in page and "EV-company" not in page


def test_the_old_action_code_filter_still_works_for_links(trail):
    _event("org.update", "EV-update", org=trail.acme_org)
    _event("org.move", "EV-move", org=trail.acme_org)
    page = trail.client().get("/audit/?action=org.update").content.decode()
    assert "EV-update" in page and "EV-move" not in page
    assert "Show every action" in page
    # A prefix, as before.
    page = trail.client().get("/audit/?action=org.").content.decode()
    assert "EV-update" in page and "EV-move" in page


# --- dates -----------------------------------------------------------------


def test_date_range_includes_both_days(trail):
    access = AccessProfile(trail.admin)
    _event("org.update", "EV-before", at=datetime(2026, 2, 28, 23, 59, 59, tzinfo=UTC))
    _event("org.update", "EV-first", at=datetime(2026, 3, 1, 0, 0, tzinfo=UTC))
    _event("org.update", "EV-last", at=datetime(2026, 3, 31, 23, 59, 59, tzinfo=UTC))
    _event("org.update", "EV-after", at=datetime(2026, 4, 1, 0, 0, tzinfo=UTC))
    page = (
        trail.client()
        .get("/audit/?date_from=2026-03-01&date_to=2026-03-31")
        .content.decode()
    )
    assert "EV-first" in page and "EV-last" in page
    assert ">EV-before<" not in page and ">EV-after<" not in page
    form = AuditFilterForm(
        {"date_from": "2026-03-31", "date_to": "2026-03-31"},
        companies=Company.objects.all(),
    )
    assert form.is_valid()
    assert _summaries(access, **form.selector_filters()) == {"EV-last"}
    form = AuditFilterForm({"date_from": "2026-04-01"}, companies=Company.objects.all())
    assert form.is_valid()
    assert _summaries(access, **form.selector_filters()) == {"EV-after"}


def test_dates_are_days_in_the_consoles_time_zone(trail, settings):
    access = AccessProfile(trail.admin)
    # 23:30 UTC on 10 March is already 11 March in Auckland (UTC+13).
    _event("org.update", "EV-late", at=datetime(2026, 3, 10, 23, 30, tzinfo=UTC))
    day = {"date_from": "2026-03-11", "date_to": "2026-03-11"}
    form = AuditFilterForm(day, companies=Company.objects.all())
    assert form.is_valid()
    assert _summaries(access, **form.selector_filters()) == set()
    settings.TIME_ZONE = "Pacific/Auckland"
    assert _summaries(access, **form.selector_filters()) == {"EV-late"}
    page = (
        trail.client()
        .get("/audit/?date_from=2026-03-11&date_to=2026-03-11")
        .content.decode()
    )
    assert "EV-late" in page and "Pacific/Auckland" in page


# --- user, company, org ----------------------------------------------------


def test_user_filter_matches_the_username_ignoring_case(trail):
    _event("company.create", "EV-by-alice", actor=Actor(user=trail.admin))
    _event("company.create", "EV-by-system")
    page = trail.client().get("/audit/?actor=ALICE").content.decode()
    assert "EV-by-alice" in page and "EV-by-system" not in page


def test_company_filter(trail):
    _event("company.update", "EV-acme", company=trail.acme)
    _event("company.update", "EV-globex", company=trail.globex)
    page = trail.client().get(f"/audit/?company={trail.globex.pk}").content.decode()
    assert "EV-globex" in page and "EV-acme" not in page


def test_org_filter_by_alias_at_the_time_current_alias_or_org_id(trail):
    _event("org.update", "EV-acme", org=trail.acme_org)
    _event("org.update", "EV-globex", org=trail.globex_org)
    access = AccessProfile(trail.admin)
    assert _summaries(access, org="acme-pr") == {"EV-acme"}
    assert _summaries(access, org=trail.globex_org.org_id[:15]) == {"EV-globex"}
    # Renamed since: the event keeps its label, the org is found by both.
    type(trail.acme_org).objects.filter(pk=trail.acme_org.pk).update(alias="renamed")
    assert _summaries(access, org="renamed") == {"EV-acme"}
    assert _summaries(access, org="acme-prod") == {"EV-acme"}
    page = trail.client().get("/audit/?org=renamed").content.decode()
    assert "EV-acme" in page and "EV-globex" not in page


def test_filters_combine(trail):
    _event("org.update", "EV-hit", org=trail.acme_org, actor=Actor(user=trail.admin))
    _event("org.update", "EV-other-user", org=trail.acme_org)
    _event("company.update", "EV-other-kind", company=trail.acme)
    query = f"?category=org&actor=alice&company={trail.acme.pk}&org=acme"
    page = trail.client().get("/audit/" + query).content.decode()
    assert "EV-hit" in page
    assert "EV-other-user" not in page and "EV-other-kind" not in page


# --- bad input -------------------------------------------------------------


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("category=bogus", "Pick one of the listed kinds of action."),
        ("company=abc", "Pick one of the listed companies."),
        ("company=-5", "Pick one of the listed companies."),
        ("company=99999999999999999999999", "Pick one of the listed companies."),
        ("date_from=2026-13-01", "Enter a date as YYYY-MM-DD"),
        ("date_to=yesterday", "Enter a date as YYYY-MM-DD"),
        ("date_from=1000-01-01", "Pick a date between 2000-01-01 and 2099-12-31."),
        ("date_to=9999-12-31", "Pick a date between 2000-01-01 and 2099-12-31."),
        (
            "date_from=2026-03-02&date_to=2026-03-01",
            "The end date is before the start date.",
        ),
        ("actor=" + "x" * 200, "at most 150 characters"),
        ("org=%00", "Null characters are not allowed."),
        ("org=%E2%80%AEevil", "Remove the control or invisible characters."),
        ("action=%ff%fe", "An action code has lowercase letters"),
        ("action=org.update%27%20OR%201%3D1", "An action code has lowercase letters"),
    ],
)
def test_bad_filters_say_what_is_wrong_and_show_no_events(trail, query, message):
    _event("org.update", "SHOULD-NOT-SHOW", org=trail.acme_org)
    client = trail.client()
    response = client.get("/audit/?" + query)
    assert response.status_code == 200
    page = response.content.decode()
    assert message in page
    assert "SHOULD-NOT-SHOW" not in page
    assert "Correct the filters to see events." in page
    assert "Export CSV" not in page
    # The export refuses the same way: the page with the message, no file.
    response = client.get("/audit/export.csv?" + query)
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/html")
    assert message in response.content.decode()


def test_a_viewer_only_sees_events_of_their_companies(trail):
    _event("org.update", "EV-acme", org=trail.acme_org)
    _event("org.update", "EV-globex", org=trail.globex_org)
    _event("auth.password_signin", "EV-signin")
    viewer = AccessProfile(trail.viewer)
    assert _summaries(viewer) == {"EV-acme"}
    assert _summaries(viewer, category="org") == {"EV-acme"}
    assert _summaries(viewer, company_id=trail.globex.pk) == set()
    assert _summaries(AccessProfile(trail.admin)) == {
        "EV-acme",
        "EV-globex",
        "EV-signin",
    }
    # The form offers, and accepts, only the viewer's companies.
    form = AuditFilterForm({"company": trail.globex.pk}, companies=viewer.companies())
    assert not form.is_valid()
    assert "Pick one of the listed companies." in form.errors["company"]
    # The pages themselves are for Administrators.
    client = Client()
    client.force_login(trail.viewer)
    assert client.get("/audit/").status_code == 403
    assert client.get("/audit/export.csv").status_code == 403


# --- CSV -------------------------------------------------------------------


def test_csv_is_utf8_with_json_before_and_after(trail):
    _event(
        "company.update",
        "Renamed Müller GmbH",
        company=trail.acme,
        before={"name": "Müller", "contact_emails": "", "count": 2},
        after={"name": "Müller GmbH", "contact_emails": "a@example.com"},
    )
    response = trail.client().get("/audit/export.csv")
    assert response.status_code == 200
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    assert response["Content-Disposition"] == 'attachment; filename="audit.csv"'
    rows = _csv(response)
    header, row = rows[0], rows[1]
    assert header[0] == "time"  # no byte-order mark in front
    assert header[8:] == ["before", "after"]
    assert row[7] == "Renamed Müller GmbH"
    assert json.loads(row[8]) == {"name": "Müller", "contact_emails": "", "count": 2}
    assert json.loads(row[9]) == {
        "name": "Müller GmbH",
        "contact_emails": "a@example.com",
    }
    # Sorted keys, real JSON (double quotes), non-ASCII as itself.
    assert row[8] == '{"contact_emails": "", "count": 2, "name": "Müller"}'
    assert row[0].endswith("+00:00")


def test_csv_neutralises_formula_cells(trail):
    _event("company.create", '=HYPERLINK("http://evil.example")', company=trail.acme)
    _event("company.create", "+1", actor=Actor(user=trail.admin, ip_address=None))
    _event("company.create", "@SUM(A1)", company=trail.acme)
    rows = _csv(trail.client().get("/audit/export.csv?category=company"))
    summaries = {r[7] for r in rows[1:]}
    assert summaries == {
        '\'=HYPERLINK("http://evil.example")',
        "'+1",
        "'@SUM(A1)",
    }
    for row in rows:
        for cell in row:
            assert not cell.startswith(("=", "+", "-", "@", "\t", "\r"))


def test_csv_applies_the_pages_filters(trail):
    _event("org.update", "EV-org", org=trail.acme_org)
    _event("company.update", "EV-acme", company=trail.acme)
    _event("company.update", "EV-globex", company=trail.globex)
    _event("company.update", "EV-old", at=datetime(2025, 1, 1, tzinfo=UTC))
    client = trail.client()
    rows = _csv(
        client.get(f"/audit/export.csv?category=company&company={trail.acme.pk}")
    )
    assert [r[7] for r in rows[1:]] == ["EV-acme"]
    rows = _csv(client.get("/audit/export.csv?date_to=2025-12-31"))
    assert [r[7] for r in rows[1:]] == ["EV-old"]
    page = client.get("/audit/?category=company&page=1").content.decode()
    # The page's export link carries its filters (without the page number).
    assert 'href="/audit/export.csv?category=company"' in page


# --- sign-ins --------------------------------------------------------------


def _signin_events() -> list[AuditEvent]:
    return list(
        AuditEvent.objects.filter(action__startswith="auth.").order_by(
            "created_at", "pk"
        )
    )


def test_a_successful_sign_in_is_audited_with_the_address(trail):
    trail.admin.set_password("right-password-1")
    trail.admin.save()
    response = Client(REMOTE_ADDR="203.0.113.7").post(
        "/login/", {"username": "alice", "password": "right-password-1"}
    )
    assert response.status_code == 302
    [event] = _signin_events()
    assert event.action == "auth.password_signin"
    assert event.outcome == "success"
    assert event.actor == trail.admin and event.actor_username == "alice"
    assert event.ip_address == "203.0.113.7"
    assert event.company is None
    assert event.after == {"method": "password", "username": "alice"}


def test_a_failed_sign_in_records_the_username_never_the_password(trail):
    response = Client(REMOTE_ADDR="203.0.113.8").post(
        "/login/", {"username": "alice", "password": "hunter2-secret"}
    )
    assert response.status_code == 422  # the form again
    [event] = _signin_events()
    assert event.action == "auth.password_signin"
    assert event.outcome == "failure"
    assert event.actor is None and event.actor_username == "alice"
    assert event.ip_address == "203.0.113.8"
    assert event.summary == "Failed sign-in as alice"
    assert event.after == {"method": "password", "username": "alice"}
    stored = json.dumps(
        [
            event.actor_username,
            event.summary,
            event.before,
            event.after,
            event.org_label,
            event.company_name,
        ]
    )
    assert "hunter2" not in stored


def test_an_unknown_username_is_recorded_as_typed(trail):
    Client().post("/login/", {"username": "mallory", "password": "x"})
    [event] = _signin_events()
    assert event.outcome == "failure" and event.actor_username == "mallory"


def test_a_form_missing_its_password_is_not_a_sign_in_attempt(trail):
    response = Client().post("/login/", {"username": "alice", "password": ""})
    assert response.status_code == 422  # the form again
    assert _signin_events() == []


def test_the_lockout_refusal_is_audited(trail, settings):
    settings.LOGIN_MAX_FAILURES = 2
    trail.admin.set_password("right-password-2")
    trail.admin.save()
    client = Client(REMOTE_ADDR="198.51.100.9")
    for _ in range(2):
        client.post("/login/", {"username": "alice", "password": "wrong"})
    response = client.post(
        "/login/", {"username": "alice", "password": "right-password-2"}
    )
    assert "Too many failed sign-in attempts" in response.content.decode()
    events = _signin_events()
    assert [(e.action, e.outcome) for e in events] == [
        ("auth.password_signin", "failure"),
        ("auth.password_signin", "failure"),
        ("auth.signin_lockout", "failure"),
    ]
    lockout = events[-1]
    assert lockout.actor_username == "alice"
    assert lockout.ip_address == "198.51.100.9"
    assert lockout.after["locked"] == ["username", "address"]
    assert "right-password-2" not in json.dumps(lockout.after)


def test_sign_in_events_are_under_sign_ins_on_the_page(trail):
    Client().post("/login/", {"username": "mallory", "password": "x"})
    page = trail.client().get("/audit/?category=signin").content.decode()
    assert "Failed sign-in as mallory" in page


def test_behind_a_proxy_the_forwarded_address_is_recorded(trail, settings):
    settings.TRUST_X_FORWARDED_FOR = True
    settings.TRUSTED_PROXY_HOPS = 2  # a proxy chain of two: 192.0.2.44 is the client
    Client(REMOTE_ADDR="10.0.0.2", HTTP_X_FORWARDED_FOR="192.0.2.44, 10.0.0.2").post(
        "/login/", {"username": "alice", "password": "wrong"}
    )
    [event] = _signin_events()
    assert event.ip_address == "192.0.2.44"


def test_a_forged_forwarded_address_does_not_break_the_sign_in(trail, settings):
    settings.TRUST_X_FORWARDED_FOR = True
    response = Client(HTTP_X_FORWARDED_FOR="not-an-address").post(
        "/login/", {"username": "alice", "password": "wrong"}
    )
    assert response.status_code == 422  # the form again
    [event] = _signin_events()
    # An invalid forwarded value is ignored: the peer address is recorded.
    assert event.ip_address == "127.0.0.1" and event.outcome == "failure"
