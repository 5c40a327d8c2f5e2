"""Status changes on record (``org.status``) and the org page's timeline."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from companies.audit import Actor, audit_record
from companies.models import AuditEvent
from companies.selectors import org_timeline
from connections import salesforce
from orgs.health import org_health_failed, org_status_record
from orgs.models import ConnectionStatus

LABELS = dict(ConnectionStatus.choices)
REVOKED = "The refresh token was revoked or expired at Salesforce."


def _status_events(org):
    return AuditEvent.objects.filter(action="org.status", org=org)


def _record(org, action: str, summary: str, *, actor=None, outcome="success", **kw):
    with transaction.atomic():
        return audit_record(
            actor=actor or Actor.system(),
            action=action,
            summary=summary,
            org=org,
            outcome=outcome,
            **kw,
        )


# --- org.status events -------------------------------------------------------


def test_a_status_change_writes_exactly_one_org_status_event(world):
    org = world.acme_org
    old, new = org_status_record(
        org.pk, ConnectionStatus.NEEDS_REAUTHORIZATION, REVOKED
    )
    assert (old, new) == ("connected", "needs_reauthorization")
    event = _status_events(org).get()
    assert event.summary == (
        "Needs re-authorization: the refresh token was revoked or expired at "
        "Salesforce."
    )
    assert event.before == {"status": "connected", "status_reason": ""}
    assert event.after == {"status": "needs_reauthorization", "status_reason": REVOKED}
    assert event.actor is None and event.actor_username == "system"
    assert event.company == world.acme and event.org_label == "acme-prod"


def test_a_check_that_changes_nothing_writes_no_event(world):
    org = world.acme_org
    org_status_record(org.pk, ConnectionStatus.CONNECTED, "")  # the fast path
    org_status_record(org.pk, ConnectionStatus.CONNECTED, "", suggested_url="")
    assert not _status_events(org).exists()
    org_status_record(org.pk, ConnectionStatus.FAILED, "Salesforce did not answer.")
    # Same status, another reason: the reason is updated, no status change.
    org_status_record(org.pk, ConnectionStatus.FAILED, "Still no answer.")
    org.refresh_from_db()
    assert org.status_reason == "Still no answer."
    assert _status_events(org).count() == 1


def test_permissions_missing_survives_a_good_check_without_an_event(world):
    org = world.acme_org
    org_status_record(org.pk, ConnectionStatus.PERMISSIONS_MISSING, "Missing X.")
    org_status_record(
        org.pk,
        ConnectionStatus.CONNECTED,
        "",
        suggested_url="",
        keep_permissions_missing=True,
    )
    assert [e.after["status"] for e in _status_events(org)] == ["permissions_missing"]


def test_recovery_and_exhausted_retries_read_plainly(world):
    org = world.acme_org
    org_health_failed(org_id=org.pk, exc=salesforce.HostUnreachable(), attempts=3)
    org_status_record(org.pk, ConnectionStatus.CONNECTED, "")
    summaries = list(_status_events(org).order_by("id").values_list("summary"))
    assert summaries == [
        ("Failed: Salesforce did not answer at the org's URL. (3 attempts)",),
        ("Connected: the connection works.",),
    ]


def test_a_failed_change_writes_no_event(world):
    org = world.acme_org
    with pytest.raises(RuntimeError), transaction.atomic():
        org_status_record(org.pk, ConnectionStatus.FAILED, "boom")
        raise RuntimeError("the check's transaction rolls back")
    assert not _status_events(org).exists()


# --- the timeline -------------------------------------------------------------


def test_three_identical_failures_fold_into_one_entry(world):
    org = world.acme_org
    _record(
        org,
        "org.create",
        "Added org acme-prod",
        actor=Actor(world.users["administrator"]),
    )
    for _ in range(3):
        _record(
            org,
            "connection_change.fail",
            "Connection change failed: wrong secret",
            outcome="failure",
        )
    entries = org_timeline(org=org)
    assert [(e.event.action, e.count) for e in entries] == [
        ("connection_change.fail", 3),
        ("org.create", 1),
    ]
    folded = entries[0]
    assert folded.first_at <= folded.last_at and not folded.count_is_partial
    assert folded.who == "system" and entries[1].who == "alice"


def test_only_consecutive_identical_events_fold(world):
    org = world.acme_org
    for summary in ["Failed: A", "Failed: A", "Failed: B", "Failed: A"]:
        _record(org, "connection_change.fail", summary, outcome="failure")
    entries = org_timeline(org=org)
    assert [(e.event.summary, e.count) for e in entries] == [
        ("Failed: A", 1),
        ("Failed: B", 1),
        ("Failed: A", 2),
    ]


def test_status_changes_say_from_what_to_what_and_who(world):
    org = world.acme_org
    org_status_record(org.pk, ConnectionStatus.NEEDS_REAUTHORIZATION, REVOKED)
    _record(
        org,
        "org.reauthorize",
        "Re-authorized acme-prod as int@acme.com",
        actor=Actor(world.users["operator"]),
        before={"status": "needs_reauthorization"},
        after={"status": "connected"},
    )
    reauthorized, health = org_timeline(org=org, status_labels=LABELS)
    assert reauthorized.who == "olga"
    assert reauthorized.status_change.before_label == "Needs re-authorization"
    assert reauthorized.status_change.after_label == "Connected"
    assert health.who == "health check"
    assert (health.status_change.before, health.status_change.after) == (
        "connected",
        "needs_reauthorization",
    )


def test_the_timeline_is_one_query_and_keeps_its_limit(
    world, django_assert_num_queries
):
    org = world.acme_org
    for i in range(40):
        _record(org, "org.update", f"Updated org acme-prod ({i})")
    with django_assert_num_queries(1):
        entries = org_timeline(org=org, limit=25)
    assert len(entries) == 25 and entries[0].event.summary.endswith("(39)")


def test_a_run_longer_than_the_window_says_or_more(world):
    org = world.acme_org
    for _ in range(25):
        _record(org, "connection_change.fail", "Failed: A", outcome="failure")
    (entry,) = org_timeline(org=org, limit=1)  # reads 20 events
    assert entry.count == 20 and entry.count_is_partial


# --- the org page --------------------------------------------------------------


def test_the_org_page_draws_the_timeline(world):
    org = world.acme_org
    org_status_record(org.pk, ConnectionStatus.FAILED, "Salesforce did not answer.")
    for _ in range(3):
        _record(
            org,
            "connection_change.fail",
            "Connection change failed: X",
            outcome="failure",
        )
    body = world.client_for("viewer").get(f"/orgs/{org.pk}/").content.decode()
    timeline = body[body.index('id="history-title"') :]
    assert '<ol class="timeline history-timeline">' in timeline
    assert "×3, last at" in timeline and "(failed)" in timeline
    assert '<strong class="who">health check</strong>' in timeline
    assert (
        'from <span class="badge connected">Connected</span> to '
        '<span class="badge failed">Failed</span>'
    ) in timeline
    assert "Failed: Salesforce did not answer." in timeline


def test_an_org_without_events_keeps_its_wording(world):
    body = world.client_for("viewer").get(f"/orgs/{world.acme_org.pk}/")
    assert "No changes recorded yet." in body.content.decode()


def _page_queries(client, url: str) -> int:
    with CaptureQueriesContext(connection) as ctx:
        assert client.get(url).status_code == 200
    return len(ctx.captured_queries)


def test_the_org_page_queries_stay_constant_from_10_to_200_events(world):
    org, client = world.acme_org, world.client_for("viewer")
    url = f"/orgs/{org.pk}/"

    def add(n: int) -> None:
        events = AuditEvent.objects.bulk_create(
            AuditEvent(
                action="org.status",
                org=org,
                company=org.company,
                actor_username="system",
                summary=f"Failed: {i % 3}",
                before={"status": "connected"},
                after={"status": "failed"},
            )
            for i in range(n)
        )
        AuditEvent.objects.filter(pk__in=[e.pk for e in events]).update(
            created_at=timezone.now() - timedelta(hours=1)
        )

    add(10)
    small = _page_queries(client, url)
    add(190)
    large = _page_queries(client, url)
    assert small == large
    print(f"org page queries: {large}")
