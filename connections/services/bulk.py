"""Bulk actions on a selection of orgs (SPEC §9): "Check now", "Verify
permissions" and "Start re-authorization campaign" on the rows ticked on
``/orgs/`` or ``/orgs/queue/``, or on every org matching the list's filter.

Starting one is a constant number of queries whatever the selection's
size: the selection is one ``values_list`` read, split in memory into the
orgs the user may act on and the skipped ones, then one ``BulkAction`` row,
one audit event and, after commit, one fan-out task. The fan-out sends at
most ``VBSF_BULK_CONCURRENCY`` chunk tasks; each runs its orgs in turn
through the per-org services (health check, permission check).

Progress is counted from each org's own result since the action started
(its health check's ``last_checked_at``, its permission check's state),
never by incrementing: a chunk run twice (a worker lost, a retry) skips the
orgs that already have a result and cannot count one twice.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.core.cache import cache
from django.db import transaction
from django.db.models import Count, Exists, F, OuterRef, Q
from django.db.models.functions import Greatest
from django.utils import timezone

from companies.access import AccessProfile, Capability
from companies.audit import Actor, audit_record
from connections import salesforce
from connections.salesforce import TRANSIENT_ERRORS
from orgs.health import (
    CHECK_REQUESTED,
    CHECK_REQUESTED_TTL,
    org_health_check,
    org_health_failed,
)
from orgs.models import ConnectionStatus, SalesforceOrg
from orgs.selectors import org_selection
from vbsf.queue import enqueue_now, enqueue_on_commit

from ..models import BulkAction, PermissionCheck
from .campaigns import CampaignError, campaign_create
from .verification import permission_check_fail, permission_check_run

logger = logging.getLogger(__name__)

Kind = BulkAction.Kind

CAPABILITY = {
    Kind.CHECK_NOW: Capability.RUN_CHECKS,
    Kind.VERIFY_PERMISSIONS: Capability.VERIFY_PERMISSIONS,
    Kind.CAMPAIGN: Capability.REAUTHORIZE,
}
# What a health check found that counts as "failed" in the progress line:
# the connection does not work (permissions missing is kept by a check).
CHECK_FAILED = (
    ConnectionStatus.FAILED,
    ConnectionStatus.NEEDS_REAUTHORIZATION,
    ConnectionStatus.URL_CHANGED,
)
# A chunk writes the progress line at most this often (and when it ends).
PROGRESS_EVERY_SECONDS = 1.0
# A chunk hands over to a fresh task after this long, well inside Celery's
# soft time limit, so a chunk of a large fleet is never killed half-way.
CHUNK_BUDGET_SECONDS = 120


class BulkActionError(Exception):
    """The bulk action cannot start; the message says why."""


@dataclass(frozen=True)
class BulkSelection:
    """The orgs a user selected, as ``(pk, company_id)`` pairs of those the
    user may see, and how many selected IDs were not among them."""

    orgs: list[tuple[int, int]]
    unseen: int = 0
    filter_query: str = ""


def bulk_selection(
    *,
    access: AccessProfile,
    org_ids: list[int] | None,
    queue: bool,
    filters: dict[str, object] | None,
    filter_query: str = "",
) -> BulkSelection:
    """The selection recomputed on the server, with the user's access: the
    ticked IDs the user may see, or every org matching the filter."""
    orgs = org_selection(access=access, org_ids=org_ids, queue=queue, filters=filters)
    unseen = len(org_ids) - len(orgs) if org_ids is not None else 0
    return BulkSelection(orgs=orgs, unseen=unseen, filter_query=filter_query)


def bulk_action_split(
    *, access: AccessProfile, kind: str, selection: BulkSelection
) -> tuple[list[int], int]:
    """(org IDs the user may act on, skipped count) for this action."""
    capability = CAPABILITY[Kind(kind)]
    allowed = [pk for pk, company in selection.orgs if access.can(capability, company)]
    return allowed, selection.unseen + len(selection.orgs) - len(allowed)


@transaction.atomic
def bulk_action_start(
    *,
    actor: Actor,
    access: AccessProfile,
    kind: str,
    selection: BulkSelection,
) -> BulkAction:
    """Start a bulk action on the orgs of ``selection`` the user may act on;
    the others are counted as skipped. Audited once, with the count, the
    skipped count and the filter. A campaign is created at once (no
    Salesforce call); checks run in tasks.

    Raises ``BulkActionError`` when the user may act on none of them.
    """
    kind = Kind(kind)
    user = actor.user if actor.user and actor.user.is_authenticated else None
    if not selection.orgs and not selection.unseen:
        raise BulkActionError("No org matches the selection; nothing was done.")
    if kind == Kind.CAMPAIGN:
        return _campaign_start(actor, access, selection, user)
    org_ids, skipped = bulk_action_split(access=access, kind=kind, selection=selection)
    if not org_ids:
        raise BulkActionError(_none_allowed(kind, skipped))
    action = BulkAction.objects.create(
        kind=kind,
        created_by=user,
        filter_query=selection.filter_query[:500],
        org_ids=org_ids,
        total=len(org_ids),
        skipped=skipped,
    )
    audit_record(
        actor=actor,
        action=f"bulk.{kind}",
        summary=f"{kind.label} on {len(org_ids)} org{_s(len(org_ids))}"
        + (f", {skipped} skipped" if skipped else ""),
        after={
            "bulk_action": action.pk,
            "orgs": len(org_ids),
            "skipped": skipped,
            "filter": action.filter_query,
        },
    )
    enqueue_on_commit("connections.tasks.bulk_action_fan_out", bulk_action_id=action.pk)
    return action


def _campaign_start(
    actor: Actor, access: AccessProfile, selection: BulkSelection, user: object
) -> BulkAction:
    try:
        campaign, skipped = campaign_create(
            actor=actor,
            access=access,
            org_ids=[pk for pk, _ in selection.orgs],
            filter_query=selection.filter_query,
        )
    except CampaignError as exc:
        raise BulkActionError(str(exc)) from None
    skipped += selection.unseen
    total = len(selection.orgs) + selection.unseen - skipped
    # campaign_create audits the campaign (count, skipped, filter): once.
    return BulkAction.objects.create(
        kind=Kind.CAMPAIGN,
        created_by=user,
        filter_query=selection.filter_query[:500],
        total=total,
        skipped=skipped,
        done=total,
        finished_at=timezone.now(),
        campaign=campaign,
    )


def _none_allowed(kind: str, skipped: int) -> str:
    what = {
        Kind.CHECK_NOW: "run checks on",
        Kind.VERIFY_PERMISSIONS: "verify the permissions of",
    }[Kind(kind)]
    return (
        f"You may not {what} any of the {skipped} selected org{_s(skipped)}; "
        "nothing was done."
    )


def _s(count: int) -> str:
    return "" if count == 1 else "s"


# --- the fan-out and its chunks (in Celery tasks) ----------------------------


def bulk_action_chunks(action: BulkAction) -> int:
    return max(1, min(settings.BULK_CONCURRENCY, action.total))


def bulk_action_fan_out(*, bulk_action_id: int) -> int:
    """Send the chunk tasks (at most ``VBSF_BULK_CONCURRENCY``); returns
    their number. Sending them again is harmless: chunks are idempotent."""
    action = BulkAction.objects.get(pk=bulk_action_id)
    if action.is_finished:
        return 0
    if action.kind == Kind.CHECK_NOW:
        # The list and queue show these orgs as "checking" until their
        # check records an outcome (one cache write for all of them).
        requested = action.created_at.timestamp()
        cache.set_many(
            {CHECK_REQUESTED.format(pk): requested for pk in action.org_ids},
            CHECK_REQUESTED_TTL,
        )
    chunks = bulk_action_chunks(action)
    for chunk in range(chunks):
        enqueue_now(
            "connections.tasks.bulk_action_chunk",
            bulk_action_id=action.pk,
            chunk=chunk,
            chunks=chunks,
        )
    return chunks


def bulk_action_chunk_orgs(action: BulkAction, chunk: int, chunks: int) -> list[int]:
    return list(action.org_ids[chunk::chunks])


def bulk_action_chunk_run(
    *,
    bulk_action_id: int,
    chunk: int,
    chunks: int,
    final: bool = False,
    attempts: int = 1,
) -> str:
    """Run one chunk's orgs in turn, skipping those with a result since the
    action started. Returns "done", "retry" (some orgs met a transient
    failure: run the chunk again later) or "continue" (out of time: run it
    again now). On the ``final`` run a transient failure is recorded as
    the org's failed check, so the action always finishes."""
    action = BulkAction.objects.get(pk=bulk_action_id)
    org_ids = bulk_action_chunk_orgs(action, chunk, chunks)
    pending = bulk_action_pending(action, org_ids)
    started = last_progress = time.monotonic()
    later = 0
    outcome = "done"
    for org_id in (pk for pk in org_ids if pk in pending):
        if time.monotonic() - started > CHUNK_BUDGET_SECONDS:
            outcome = "continue"
            break
        try:
            _run_one(action, org_id, final=final, attempts=attempts)
        except Exception:
            # Transient (Salesforce did not answer) or unexpected: the org
            # keeps no result, so the chunk's next run tries it again.
            logger.warning(
                "bulk action %s: org %s will be tried again",
                action.pk,
                org_id,
                exc_info=True,
            )
            later += 1
        if time.monotonic() - last_progress >= PROGRESS_EVERY_SECONDS:
            bulk_action_progress_update(bulk_action_id=action.pk)
            last_progress = time.monotonic()
    bulk_action_progress_update(bulk_action_id=action.pk)
    if outcome == "done" and later:
        return "retry"
    return outcome


def _run_one(action: BulkAction, org_id: int, *, final: bool, attempts: int) -> None:
    """One org through its per-org service. On the chunk's last try a
    failure is recorded as the org's outcome instead of raised, so the
    action finishes: a transient one as Salesforce's, anything else (a bug,
    the database) in words that reveal nothing of it."""
    if action.kind == Kind.CHECK_NOW:
        try:
            org_health_check(org_id=org_id)
        except Exception as exc:
            if not final:
                raise
            org_health_failed(org_id=org_id, exc=_shown(exc), attempts=attempts)
        return
    check = (
        PermissionCheck.objects.filter(
            org_id=org_id,
            created_at__gte=action.created_at,
            state=PermissionCheck.State.RUNNING,
        )
        .order_by("pk")
        .first()
    )
    if check is None:
        check = PermissionCheck.objects.create(
            org_id=org_id, requested_by_id=action.created_by_id
        )
    try:
        permission_check_run(check_id=check.pk)
    except Exception as exc:
        if not final:
            raise
        permission_check_fail(check_id=check.pk, exc=_shown(exc))


def _shown(exc: Exception) -> Exception:
    if isinstance(exc, TRANSIENT_ERRORS):
        return exc
    return salesforce.SalesforceError("The check could not run; try it again.")


def _results_since(action: BulkAction) -> tuple[Q, Q]:
    """(has a result since the action started, that result failed) as
    filters on orgs: the org's own record, so counting is idempotent."""
    since = action.created_at
    if action.kind == Kind.CHECK_NOW:
        done = Q(last_checked_at__gte=since)
        return done, done & Q(status__in=CHECK_FAILED)
    finished = PermissionCheck.objects.filter(
        org_id=OuterRef("pk"), created_at__gte=since
    ).exclude(state=PermissionCheck.State.RUNNING)
    failed = finished.filter(Q(state=PermissionCheck.State.FAILED) | Q(backup_ok=False))
    return Q(Exists(finished)), Q(Exists(failed))


def bulk_action_pending(action: BulkAction, org_ids: Iterable[int]) -> set[int]:
    """Those of ``org_ids`` (still there) without a result since the action
    started: one query."""
    done, _ = _results_since(action)
    return set(
        SalesforceOrg.objects.filter(pk__in=list(org_ids))
        .exclude(done)
        .values_list("pk", flat=True)
    )


def bulk_action_progress_update(*, bulk_action_id: int) -> BulkAction:
    """Count the action's progress from its orgs' results (one aggregate)
    and record it; the first count with nothing pending sets
    ``finished_at``. Safe to call any number of times, from any chunk."""
    with transaction.atomic():
        # Counts are taken and written under the action's row lock, so they
        # are written in the order they were taken: without it a chunk's
        # count read before another org's result was saved could be written
        # after the newer one and undo it (the failed org of a finished
        # action counted as not failed, seen on a loaded machine).
        action = BulkAction.objects.select_for_update().get(pk=bulk_action_id)
        if action.kind == Kind.CAMPAIGN:
            return action
        done, failed = _results_since(action)
        counts = SalesforceOrg.objects.filter(pk__in=action.org_ids).aggregate(
            pending=Count("pk", filter=~done),
            failed=Count("pk", filter=failed),
        )
        # Orgs deleted meanwhile need nothing more: they count as done.
        finished = action.total - counts["pending"]
        rows = BulkAction.objects.filter(pk=action.pk)
        # The larger count wins, so the line never goes back.
        rows.update(done=Greatest(F("done"), finished), failed=counts["failed"])
        if counts["pending"] == 0:
            rows.filter(finished_at__isnull=True).update(finished_at=timezone.now())
    cache.set(PROGRESS_AT.format(action.pk), time.time(), STALLED_AFTER_SECONDS * 2)
    action.refresh_from_db()
    return action


# --- beat's safety net -----------------------------------------------------------

# When each action last counted its progress (in the shared cache).
PROGRESS_AT = "vbsf:bulk-progress-at:{}"
# A running chunk counts at least once a second, or hands over to a fresh
# task within CHUNK_BUDGET_SECONDS; silence this long means its tasks were
# lost (a broker outage before the fan-out was sent, a purged queue).
STALLED_AFTER_SECONDS = 300
RESUME_WITHIN = timedelta(days=1)


def bulk_actions_resume() -> list[int]:
    """Beat: send the fan-out again for unfinished actions that stopped
    counting; their chunks skip the orgs already done. Returns their IDs."""
    now = timezone.now()
    quiet_since = now - timedelta(seconds=STALLED_AFTER_SECONDS)
    resumed = []
    candidates = (
        BulkAction.objects.filter(
            finished_at__isnull=True,
            created_at__gte=now - RESUME_WITHIN,
            created_at__lte=quiet_since,
        )
        .exclude(kind=Kind.CAMPAIGN)
        .values_list("pk", flat=True)
    )
    for pk in candidates:
        last = cache.get(PROGRESS_AT.format(pk))
        if last is not None and last > quiet_since.timestamp():
            continue
        if bulk_action_progress_update(bulk_action_id=pk).is_finished:
            continue
        enqueue_now("connections.tasks.bulk_action_fan_out", bulk_action_id=pk)
        resumed.append(pk)
    return resumed


# --- words --------------------------------------------------------------------

VERBS = {
    Kind.CHECK_NOW: ("Checking", "Checked"),
    Kind.VERIFY_PERMISSIONS: (
        "Verifying the permissions of",
        "Verified the permissions of",
    ),
}


def bulk_action_summary(action: BulkAction) -> str:
    """The progress line in words: "Checking 340 of 1,000 orgs · 12 failed ·
    5 skipped: you may not act on them"."""
    if action.kind == Kind.CAMPAIGN:
        name = action.campaign.name if action.campaign else "campaign"
        parts = [
            f"Started the re-authorization campaign “{name}” for "
            f"{action.total:,} org{_s(action.total)}"
        ]
        why = "you may not re-authorize them, or they have no client app"
    else:
        running, finished = VERBS[Kind(action.kind)]
        if action.is_finished:
            parts = [f"{finished} {action.total:,} org{_s(action.total)}"]
        else:
            parts = [f"{running} {action.done:,} of {action.total:,} orgs"]
        if action.failed:
            parts.append(f"{action.failed:,} failed")
        why = "you may not act on them"
    if action.skipped:
        parts.append(f"{action.skipped:,} skipped: {why}")
    return " · ".join(parts)
