"""Reads of companies and the audit trail, scoped to the user."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from typing import TYPE_CHECKING, Any

from django.contrib.auth import get_user_model
from django.db.models import Count, Prefetch, Q, QuerySet
from django.utils import timezone

from .models import AuditEvent, Company, Invitation, RoleGrant

if TYPE_CHECKING:
    from .access import AccessProfile


def company_list(*, access: AccessProfile) -> QuerySet[Company]:
    return access.companies().annotate(org_count=Count("orgs")).order_by("name")


@dataclass(frozen=True)
class AuditCategory:
    """A kind of action people filter the audit trail by, instead of the
    internal action codes (``org.update``) it groups by their prefixes."""

    label: str
    prefixes: tuple[str, ...]


# In the order of the audit page's select. An action no category claims
# (a new feature's, before it gets a line here) is under "Other".
AUDIT_CATEGORIES: dict[str, AuditCategory] = {
    "org": AuditCategory("Org changes", ("org.",)),
    "connection": AuditCategory(
        "Connection changes", ("connection_change.", "client_app.")
    ),
    "company": AuditCategory("Companies", ("company.",)),
    "role": AuditCategory("Roles", ("role.",)),
    "signin": AuditCategory("Sign-ins", ("auth.", "identity_link.")),
    "policy": AuditCategory("Backup policies", ("policy.",)),
    "user": AuditCategory("Users", ("user.",)),
    "notification": AuditCategory("Notifications", ("notification.",)),
    "campaign": AuditCategory("Campaigns and links", ("campaign.",)),
    "bulk": AuditCategory("Bulk actions", ("bulk.",)),
}
AUDIT_CATEGORY_OTHER = "other"


def audit_category_choices() -> list[tuple[str, str]]:
    return [(key, c.label) for key, c in AUDIT_CATEGORIES.items()] + [
        (AUDIT_CATEGORY_OTHER, "Other")
    ]


def _prefixes_q(prefixes: tuple[str, ...]) -> Q:
    q = Q()
    for prefix in prefixes:
        q |= Q(action__startswith=prefix)
    return q


def _category_q(category: str) -> Q:
    if category == AUDIT_CATEGORY_OTHER:
        claimed = tuple(p for c in AUDIT_CATEGORIES.values() for p in c.prefixes)
        return ~_prefixes_q(claimed)
    return _prefixes_q(AUDIT_CATEGORIES[category].prefixes)


def _day_start(day: date) -> datetime:
    """Midnight at the start of ``day`` in the console's time zone."""
    return timezone.make_aware(datetime.combine(day, time.min))


def audit_event_list(
    *,
    access: AccessProfile,
    category: str = "",
    action: str = "",
    actor: str = "",
    company_id: int | None = None,
    org: str = "",
    date_from: date | None = None,
    date_to: date | None = None,
) -> QuerySet[AuditEvent]:
    """The audit trail of the user's companies, newest first.

    ``category`` is a key of ``AUDIT_CATEGORIES`` (or "other"); ``action``
    an action code or its prefix, as older links carry. Dates are inclusive
    days in the console's time zone. Events without a company (sign-ins)
    are only in an Administrator's trail."""
    qs = AuditEvent.objects.all()
    ids = access.company_ids()
    if ids is not None:
        qs = qs.filter(company_id__in=ids)
    if category:
        qs = qs.filter(_category_q(category))
    if action:
        qs = qs.filter(action__startswith=action)
    if actor:
        qs = qs.filter(actor_username__iexact=actor)
    if company_id:
        qs = qs.filter(company_id=company_id)
    if org:
        # The label the event was written with, or the org's current alias.
        qs = qs.filter(
            Q(org_label__icontains=org)
            | Q(org__alias__icontains=org)
            | Q(org__org_id__istartswith=org)
        )
    if date_from is not None:
        qs = qs.filter(created_at__gte=_day_start(date_from))
    if date_to is not None:
        qs = qs.filter(created_at__lt=_day_start(date_to + timedelta(days=1)))
    return qs.order_by("-created_at", "-id")


def org_history(*, org: Any, limit: int = 25) -> QuerySet[AuditEvent]:
    """The latest audit events of one org, newest first (its page's history)."""
    return AuditEvent.objects.filter(org=org).order_by("-created_at", "-id")[:limit]


# Who a system event was, by action, on the timeline: the health checks
# write "org.status"; every other event without a user is the console's.
SYSTEM_ACTORS = {"org.status": "health check"}


@dataclass(frozen=True)
class StatusChange:
    before: str
    before_label: str
    after: str
    after_label: str


@dataclass(frozen=True)
class TimelineEntry:
    """One line of an org's timeline: an audit event, or a run of identical
    consecutive ones folded together (``count`` of them)."""

    event: AuditEvent  # the newest of the run
    count: int = 1
    first_at: datetime | None = None  # the oldest of the run
    # The run may go on beyond the events read: "×N or more".
    count_is_partial: bool = False
    status_labels: Mapping[str, str] | None = None

    @property
    def last_at(self) -> datetime:
        return self.event.created_at

    @property
    def who(self) -> str:
        """A user's name, or what acted without one."""
        event = self.event
        if event.actor_id is None and event.actor_username in ("", "system"):
            return SYSTEM_ACTORS.get(event.action, "system")
        return event.actor_username

    @property
    def status_change(self) -> StatusChange | None:
        """From which status to which, when the event changed the org's."""
        before, after = (
            side.get("status") if isinstance(side, dict) else None
            for side in (self.event.before, self.event.after)
        )
        if not before or not after or before == after:
            return None
        labels = self.status_labels or {}
        return StatusChange(
            before=before,
            before_label=labels.get(before, before),
            after=after,
            after_label=labels.get(after, after),
        )


def _same_run(a: AuditEvent, b: AuditEvent) -> bool:
    return (a.action, a.summary, a.outcome, a.actor_username) == (
        b.action,
        b.summary,
        b.outcome,
        b.actor_username,
    )


def org_timeline(
    *, org: Any, limit: int = 25, status_labels: Mapping[str, str] | None = None
) -> list[TimelineEntry]:
    """An org's history for its page, newest first: identical consecutive
    events (same action, summary, outcome and actor, as a failure repeated
    by every check) fold into one entry with their count.

    One query: it reads up to ``20 * limit`` events, enough for ``limit``
    entries unless runs are very long; a run cut off by that window says so
    (``count_is_partial``)."""
    window = 20 * limit
    events = list(
        AuditEvent.objects.filter(org=org).order_by("-created_at", "-id")[:window]
    )
    runs: list[list[AuditEvent]] = []
    for event in events:
        if runs and _same_run(runs[-1][0], event):
            runs[-1].append(event)
        else:
            runs.append([event])
    partial = len(events) == window
    return [
        TimelineEntry(
            event=run[0],
            count=len(run),
            first_at=run[-1].created_at,
            count_is_partial=partial and i == len(runs) - 1,
            status_labels=status_labels,
        )
        for i, run in enumerate(runs[:limit])
    ]


# --- people -----------------------------------------------------------------


def user_list() -> QuerySet:
    """Console users with their grants (two queries for any number)."""
    grants = RoleGrant.objects.select_related("company").order_by("company__name")
    return (
        get_user_model()
        .objects.prefetch_related(Prefetch("role_grants", queryset=grants))
        .order_by("-is_active", "username")
    )


def invitation_pending_list() -> QuerySet[Invitation]:
    return Invitation.objects.filter(
        used_at__isnull=True, revoked_at__isnull=True, expires_at__gt=timezone.now()
    ).order_by("email")
