"""Bulk actions (SPEC §9): the selection recomputed on the server, the
allowed/skipped split, one audit event, the fan-out's bounded chunks, chunks
that can run twice without counting twice, and constant query counts."""

from __future__ import annotations

import threading
from unittest import mock

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from companies.access import AccessProfile
from companies.audit import Actor
from companies.models import AuditEvent
from connections import salesforce
from connections.models import BulkAction, Campaign, PermissionCheck
from connections.services import bulk
from orgs.health import org_status_record
from orgs.models import ConnectionStatus, SalesforceOrg
from tests.factories import (
    CompanyFactory,
    RoleGrantFactory,
    SalesforceOrgFactory,
    UserFactory,
)

pytestmark = pytest.mark.django_db


def _fleet(company, count: int, **fields) -> list[int]:
    """``count`` orgs in one INSERT (factories would take a query each)."""
    template = SalesforceOrgFactory.build(company=company)
    template.client_app.save()
    start = SalesforceOrg.objects.count()
    orgs = [
        SalesforceOrg(
            company=company,
            client_app=template.client_app,
            alias=f"fleet-{company.pk}-{start + i:05d}",
            org_id=f"00D5g{company.pk:04d}{start + i:06d}AAA"[:18],
            login_url=f"https://fleet{company.pk}-{start + i}.my.salesforce.com",
            status=ConnectionStatus.CONNECTED,
            **fields,
        )
        for i in range(count)
    ]
    return [o.pk for o in SalesforceOrg.objects.bulk_create(orgs)]


@pytest.fixture
def mixed_user(world):
    """Operator in Acme, Viewer in Globex: sees both, may act on Acme only."""
    user = UserFactory(username="mixed")
    RoleGrantFactory(user=user, role="operator", company=world.acme)
    RoleGrantFactory(user=user, role="viewer", company=world.globex)
    return user


def _start(user, kind, **selection):
    access = AccessProfile(user)
    chosen = bulk.bulk_selection(access=access, **selection)
    return bulk.bulk_action_start(
        actor=Actor(user=user), access=access, kind=kind, selection=chosen
    )


def test_it_takes_the_orgs_the_user_may_act_on_and_counts_the_others_skipped(
    world, mixed_user, django_capture_on_commit_callbacks
):
    ticked = [world.acme_org.pk, world.globex_org.pk, 987654]  # last: no such org
    with (
        mock.patch("connections.tasks.bulk_action_fan_out.apply_async") as fan_out,
        django_capture_on_commit_callbacks(execute=True),
    ):
        action = _start(
            mixed_user, "check_now", org_ids=ticked, queue=False, filters=None
        )
    assert action.org_ids == [world.acme_org.pk]
    assert (action.total, action.skipped) == (1, 2)
    fan_out.assert_called_once_with(kwargs={"bulk_action_id": action.pk})
    event = AuditEvent.objects.get(action="bulk.check_now")
    assert event.after == {
        "bulk_action": action.pk,
        "orgs": 1,
        "skipped": 2,
        "filter": "",
    }
    assert "Check now on 1 org, 2 skipped" in event.summary


def test_nothing_allowed_is_refused_and_changes_nothing(world, mixed_user):
    before = (AuditEvent.objects.count(), BulkAction.objects.count())
    with pytest.raises(bulk.BulkActionError, match="may not run checks on any"):
        _start(
            mixed_user,
            "check_now",
            org_ids=[world.globex_org.pk],
            queue=False,
            filters=None,
        )
    assert (AuditEvent.objects.count(), BulkAction.objects.count()) == before


def test_select_all_matching_recomputes_the_filter_on_the_server(world):
    failing = SalesforceOrgFactory(company=world.acme, status=ConnectionStatus.FAILED)
    SalesforceOrgFactory(company=world.globex, status=ConnectionStatus.FAILED)
    client = world.client_for("operator")
    with mock.patch("connections.tasks.bulk_action_fan_out.apply_async"):
        response = client.post(
            "/orgs/bulk/",
            {
                "action": "check_now",
                "all_matching": "1",
                "filter_query": "status=failed&page=3",
                "source": "list",
                # Ticked boxes do not count once "all matching" is chosen.
                "orgs": [world.acme_org.pk],
            },
        )
    action = BulkAction.objects.get()
    # Only Acme's failed org: Globex's is not the operator's to see.
    assert action.org_ids == [failing.pk]
    assert action.filter_query == "status=failed"
    assert response["Location"] == f"/orgs/?status=failed&bulk={action.pk}"
    event = AuditEvent.objects.get(action="bulk.check_now")
    assert event.after["filter"] == "status=failed"


def test_an_invalid_filter_acts_on_nothing(world):
    client = world.client_for("administrator")
    response = client.post(
        "/orgs/bulk/",
        {
            "action": "check_now",
            "all_matching": "1",
            "filter_query": "status=not-a-status",
            "source": "list",
        },
        follow=True,
    )
    assert "The list&#x27;s filter is not valid; nothing was done." in (
        response.content.decode()
    )
    assert not BulkAction.objects.exists()


def test_the_whole_queue_can_be_selected(world):
    queued = SalesforceOrgFactory(
        company=world.acme, status=ConnectionStatus.NEEDS_REAUTHORIZATION
    )
    client = world.client_for("support")
    with mock.patch("connections.tasks.bulk_action_fan_out.apply_async"):
        response = client.post(
            "/orgs/bulk/",
            {"action": "check_now", "all_matching": "1", "source": "queue"},
        )
    action = BulkAction.objects.get()
    assert action.org_ids == [queued.pk]
    assert response["Location"] == f"/orgs/queue/?bulk={action.pk}"


def test_a_campaign_from_the_bulk_bar_opens_the_campaign_page(world, mixed_user):
    client = world.client_for("operator")
    client.force_login(mixed_user)
    response = client.post(
        "/orgs/bulk/",
        {
            "action": "campaign",
            "orgs": [world.acme_org.pk, world.globex_org.pk],
            "source": "list",
        },
    )
    campaign = Campaign.objects.get()
    assert response["Location"] == f"/campaigns/{campaign.pk}/"
    action = BulkAction.objects.get()
    assert (action.kind, action.campaign_id) == ("campaign", campaign.pk)
    assert (action.total, action.skipped, action.is_finished) == (1, 1, True)
    # Audited once, by the campaign itself.
    assert list(AuditEvent.objects.values_list("action", flat=True)) == [
        "campaign.create"
    ]


# --- the fan-out and its chunks -----------------------------------------------


def _action(user, kind, org_ids) -> BulkAction:
    return BulkAction.objects.create(
        kind=kind, created_by=user, org_ids=org_ids, total=len(org_ids)
    )


def test_the_fan_out_sends_at_most_the_configured_number_of_chunks(world, settings):
    settings.BULK_CONCURRENCY = 3
    ids = _fleet(world.acme, 10)
    action = _action(world.users["operator"], "check_now", ids)
    with mock.patch("connections.services.bulk.enqueue_now") as enqueue:
        assert bulk.bulk_action_fan_out(bulk_action_id=action.pk) == 3
    sent = [call.kwargs for call in enqueue.call_args_list]
    assert sent == [
        {"bulk_action_id": action.pk, "chunk": i, "chunks": 3} for i in range(3)
    ]
    covered = sorted(
        pk for i in range(3) for pk in bulk.bulk_action_chunk_orgs(action, i, 3)
    )
    assert covered == sorted(ids)


def _fake_check(outcomes: dict[int, str], calls: list[int]):
    def check(*, org_id: int) -> str:
        calls.append(org_id)
        outcome = outcomes.get(org_id, ConnectionStatus.CONNECTED)
        if outcome == "transient":
            raise salesforce.HostUnreachable("Salesforce did not answer")
        org_status_record(org_id, outcome, "" if outcome == "connected" else "x")
        return outcome

    return check


def test_a_chunk_run_twice_counts_each_org_once(world):
    ids = _fleet(world.acme, 4)
    action = _action(world.users["operator"], "check_now", ids)
    calls: list[int] = []
    check = _fake_check({ids[1]: ConnectionStatus.NEEDS_REAUTHORIZATION}, calls)
    with mock.patch("connections.services.bulk.org_health_check", check):
        assert (
            bulk.bulk_action_chunk_run(bulk_action_id=action.pk, chunk=0, chunks=1)
            == "done"
        )
        action.refresh_from_db()
        assert (action.done, action.failed, action.is_finished) == (4, 1, True)
        finished_at = action.finished_at
        # A worker lost after the work: the chunk comes again.
        bulk.bulk_action_chunk_run(bulk_action_id=action.pk, chunk=0, chunks=1)
    action.refresh_from_db()
    assert sorted(calls) == sorted(ids)  # nobody checked twice
    assert (action.done, action.failed, action.finished_at) == (4, 1, finished_at)


def test_a_transient_failure_is_tried_again_and_recorded_on_the_last_try(world):
    ids = _fleet(world.acme, 3)
    action = _action(world.users["operator"], "check_now", ids)
    calls: list[int] = []
    check = _fake_check({ids[2]: "transient"}, calls)
    with mock.patch("connections.services.bulk.org_health_check", check):
        outcome = bulk.bulk_action_chunk_run(
            bulk_action_id=action.pk, chunk=0, chunks=1
        )
        assert outcome == "retry"
        action.refresh_from_db()
        assert (action.done, action.is_finished) == (2, False)
        outcome = bulk.bulk_action_chunk_run(
            bulk_action_id=action.pk, chunk=0, chunks=1, final=True
        )
    assert outcome == "done"
    assert calls == [*ids, ids[2]]
    action.refresh_from_db()
    assert (action.done, action.failed, action.is_finished) == (3, 1, True)
    org = SalesforceOrg.objects.get(pk=ids[2])
    assert org.status == ConnectionStatus.FAILED
    assert "did not answer" in org.status_reason


def test_orgs_checked_before_the_action_are_checked_again(world):
    ids = _fleet(world.acme, 2, last_checked_at=timezone.now())
    action = _action(world.users["operator"], "check_now", ids)
    assert bulk.bulk_action_pending(action, ids) == set(ids)


@pytest.mark.django_db(transaction=True)
def test_a_count_taken_before_an_orgs_result_never_overwrites_a_newer_one():
    """Two chunks count at once (threads, own connections): the count taken
    before the failed org's result was saved must not be written over the
    count that includes it. The first count is held between its read and
    its write while the result is saved and counted again."""
    ids = _fleet(CompanyFactory(name="Racing"), 2)
    action = BulkAction.objects.create(kind="check_now", org_ids=ids, total=2)
    org_status_record(ids[0], ConnectionStatus.CONNECTED)
    counting, newer_counted = threading.Event(), threading.Event()
    greatest = bulk.Greatest

    def held(*args, **kwargs):
        # Built between a count's read and its write: hold the first count
        # there. With the lock the newer count waits for it, so give up.
        if not counting.is_set():
            counting.set()
            newer_counted.wait(timeout=1.5)
        return greatest(*args, **kwargs)

    def stale_count() -> None:
        try:
            bulk.bulk_action_progress_update(bulk_action_id=action.pk)
        finally:
            connection.close()

    def result_and_newer_count() -> None:
        try:
            org_status_record(ids[1], ConnectionStatus.NEEDS_REAUTHORIZATION, "x")
            bulk.bulk_action_progress_update(bulk_action_id=action.pk)
            newer_counted.set()
        finally:
            connection.close()

    with mock.patch("connections.services.bulk.Greatest", held):
        older = threading.Thread(target=stale_count)
        older.start()
        assert counting.wait(timeout=10)
        newer = threading.Thread(target=result_and_newer_count)
        newer.start()
        newer.join(timeout=30)
        older.join(timeout=30)
    action.refresh_from_db()
    assert (action.done, action.failed, action.is_finished) == (2, 1, True)


def test_verify_permissions_chunks_reuse_their_running_check(world):
    ids = _fleet(world.acme, 2)
    action = _action(world.users["operator"], "verify_permissions", ids)
    runs: list[int] = []

    def run(*, check_id: int) -> str:
        runs.append(check_id)
        check = PermissionCheck.objects.get(pk=check_id)
        if check.org_id == ids[0] and len(runs) == 1:
            raise salesforce.TransientError("busy")
        PermissionCheck.objects.filter(pk=check_id).update(
            state=PermissionCheck.State.DONE,
            backup_ok=check.org_id == ids[0],
            finished_at=timezone.now(),
        )
        return "done"

    with mock.patch("connections.services.bulk.permission_check_run", run):
        first = bulk.bulk_action_chunk_run(bulk_action_id=action.pk, chunk=0, chunks=1)
        second = bulk.bulk_action_chunk_run(bulk_action_id=action.pk, chunk=0, chunks=1)
        third = bulk.bulk_action_chunk_run(bulk_action_id=action.pk, chunk=0, chunks=1)
    assert (first, second, third) == ("retry", "done", "done")
    # One check per org; the one interrupted was run again, not duplicated.
    assert PermissionCheck.objects.filter(org_id__in=ids).count() == 2
    assert len(runs) == 3
    action.refresh_from_db()
    assert (action.done, action.failed, action.is_finished) == (2, 1, True)
    assert set(PermissionCheck.objects.values_list("requested_by_id", flat=True)) == {
        world.users["operator"].pk
    }


# --- query counts: constant whatever the selection's size ----------------------


def _queries(fn) -> int:
    with CaptureQueriesContext(connection) as captured:
        fn()
    return len(captured.captured_queries)


@pytest.mark.parametrize("kind", ["check_now", "verify_permissions", "campaign"])
def test_starting_a_bulk_action_takes_the_same_queries_for_10_and_1000_orgs(
    world, kind
):
    small = CompanyFactory(name="Small")
    large = CompanyFactory(name="Large")
    _fleet(small, 10)
    _fleet(large, 1000)
    admin = world.users["administrator"]

    def start(company):
        def go():
            _start(
                admin,
                kind,
                org_ids=None,
                queue=False,
                filters={"company_id": company.pk},
            )

        return go

    with mock.patch("connections.tasks.bulk_action_fan_out.apply_async"):
        counts = (_queries(start(small)), _queries(start(large)))
    assert counts[0] == counts[1], counts
    action = BulkAction.objects.order_by("pk").last()
    assert action.total == 1000


def test_the_org_list_with_the_bulk_bar_and_its_progress_line_stay_constant(world):
    client = world.client_for("operator")
    with mock.patch("connections.tasks.bulk_action_fan_out.apply_async"):
        client.post(
            "/orgs/bulk/",
            {"action": "check_now", "orgs": [world.acme_org.pk], "source": "list"},
        )
    action = BulkAction.objects.get()
    few = _queries(lambda: client.get(f"/orgs/?bulk={action.pk}"))
    progress_few = _queries(lambda: client.get(f"/orgs/bulk/{action.pk}/"))
    _fleet(world.acme, 120)
    BulkAction.objects.filter(pk=action.pk).update(
        org_ids=list(SalesforceOrg.objects.values_list("pk", flat=True)), total=122
    )
    page = client.get(f"/orgs/?bulk={action.pk}")
    assert _queries(lambda: client.get(f"/orgs/?bulk={action.pk}")) == few
    assert _queries(lambda: client.get(f"/orgs/bulk/{action.pk}/")) == progress_few
    body = page.content.decode()
    assert "Select all 121 matching" in body
    assert f'hx-get="/orgs/bulk/{action.pk}/"' in body


# --- what each role sees --------------------------------------------------------


def test_the_bulk_bar_follows_the_users_capabilities(world):
    def page(role):
        return world.client_for(role).get("/orgs/").content.decode()

    viewer, support, operator = page("viewer"), page("support"), page("operator")
    assert 'name="orgs"' not in viewer and "Check now" not in viewer
    assert 'name="orgs"' in support and 'value="check_now">Check now' in support
    assert "Verify permissions" not in support
    assert "Start re-authorization campaign" not in support
    for action in ["Check now", "Verify permissions", "Start re-authorization"]:
        assert action in operator


def test_the_progress_line_says_what_was_done_and_what_was_skipped(world):
    action = BulkAction.objects.create(
        kind="check_now",
        created_by=world.users["operator"],
        org_ids=[world.acme_org.pk],
        total=1000,
        done=340,
        failed=12,
        skipped=5,
    )
    client = world.client_for("operator")
    body = client.get(f"/orgs/bulk/{action.pk}/").content.decode()
    assert (
        "Checking 340 of 1,000 orgs · 12 failed · 5 skipped: you may not act on them"
        in body
    )
    assert "every 1s" in body and "polling=1&amp;done=340" in body
    # Polled with nothing new done: the page's rows are not refetched.
    response = client.get(f"/orgs/bulk/{action.pk}/?polling=1&done=340")
    assert "HX-Trigger" not in response
    BulkAction.objects.filter(pk=action.pk).update(
        done=1000, finished_at=timezone.now()
    )
    response = client.get(f"/orgs/bulk/{action.pk}/?polling=1&done=340")
    body = response.content.decode()
    assert "Checked 1,000 orgs · 12 failed" in body and "every 1s" not in body
    assert response["HX-Trigger"] == "bulk-progress"


def test_an_unexpected_error_on_the_last_try_is_the_orgs_outcome_in_plain_words(
    world,
):
    ids = _fleet(world.acme, 2)
    action = _action(world.users["operator"], "check_now", ids)
    calls: list[int] = []
    fake = _fake_check({}, calls)

    def check(*, org_id: int) -> str:
        if org_id == ids[0]:
            raise KeyError("internal detail")
        return fake(org_id=org_id)

    with mock.patch("connections.services.bulk.org_health_check", check):
        assert (
            bulk.bulk_action_chunk_run(bulk_action_id=action.pk, chunk=0, chunks=1)
            == "retry"
        )
        bulk.bulk_action_chunk_run(
            bulk_action_id=action.pk, chunk=0, chunks=1, final=True, attempts=4
        )
    action.refresh_from_db()
    assert (action.done, action.failed, action.is_finished) == (2, 1, True)
    org = SalesforceOrg.objects.get(pk=ids[0])
    assert org.status_reason == "The check could not run; try it again. (4 attempts)"


def test_the_chunk_task_retries_later_and_hands_over_when_out_of_time(world):
    from celery.exceptions import Retry

    from connections import tasks

    action = _action(world.users["operator"], "check_now", [world.acme_org.pk])
    kwargs = {"bulk_action_id": action.pk, "chunk": 0, "chunks": 1}
    with (
        mock.patch.object(bulk, "bulk_action_chunk_run", return_value="retry"),
        pytest.raises(Retry),
    ):
        tasks.bulk_action_chunk.apply(kwargs=kwargs, throw=True)
    with (
        mock.patch.object(bulk, "bulk_action_chunk_run", return_value="continue"),
        mock.patch.object(tasks.bulk_action_chunk, "apply_async") as again,
    ):
        tasks.bulk_action_chunk.apply(kwargs=kwargs, throw=True)
    again.assert_called_once_with(kwargs=kwargs)


def test_a_filter_matching_nothing_says_so(world):
    response = world.client_for("operator").post(
        "/orgs/bulk/",
        {
            "action": "verify_permissions",
            "all_matching": "1",
            "filter_query": "q=no-such-org",
            "source": "list",
        },
        follow=True,
    )
    assert "No org matches the selection; nothing was done." in (
        response.content.decode()
    )
    assert response.redirect_chain[-1][0] == "/orgs/?q=no-such-org"
    assert not BulkAction.objects.exists()


def test_beat_resumes_an_action_that_stopped_counting_and_only_that(world):
    from datetime import timedelta

    from django.core.cache import cache

    ids = _fleet(world.acme, 2)
    user = world.users["operator"]
    lost = _action(user, "check_now", ids)
    running = _action(user, "check_now", ids)
    fresh = _action(user, "check_now", ids)
    long_ago = timezone.now() - timedelta(minutes=10)
    BulkAction.objects.filter(pk__in=[lost.pk, running.pk]).update(created_at=long_ago)
    cache.set(bulk.PROGRESS_AT.format(running.pk), timezone.now().timestamp())
    with mock.patch("connections.services.bulk.enqueue_now") as enqueue:
        assert bulk.bulk_actions_resume() == [lost.pk]
    enqueue.assert_called_once_with(
        "connections.tasks.bulk_action_fan_out", bulk_action_id=lost.pk
    )
    # Counting just now, it is not resent at the next beat.
    with mock.patch("connections.services.bulk.enqueue_now") as enqueue:
        assert bulk.bulk_actions_resume() == []
    assert fresh.pk not in [c.kwargs["bulk_action_id"] for c in enqueue.mock_calls]
