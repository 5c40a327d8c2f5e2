"""Reads of orgs, always scoped to what the user may see."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from typing import TYPE_CHECKING

from django.db.models import Count, Q, QuerySet
from django.db.models.functions import TruncDate
from django.utils import timezone

from companies.access import (
    ROLE_CAPABILITIES,
    ROLE_ORDER,
    Capability,
    get_object_for,
)
from companies.models import AuditEvent, Role

from .health import FAILING
from .models import (
    NEEDS_ATTENTION,
    BackupPolicy,
    ConnectionStatus,
    RefreshTokenRecord,
    SalesforceOrg,
)
from .token_ledger import SALESFORCE_TOKEN_LIMIT, TOKEN_BUDGET_WARN_AT

if TYPE_CHECKING:
    from companies.access import AccessProfile


def org_list(
    *,
    access: AccessProfile,
    status: str = "",
    company_id: int | None = None,
    search: str = "",
    legacy_only: bool = False,
) -> QuerySet[SalesforceOrg]:
    """Orgs for the list page: one query for the rows, whatever their number."""
    qs = access.scope(SalesforceOrg.objects.all()).select_related(
        "company", "client_app"
    )
    if status:
        qs = qs.filter(status=status)
    if company_id:
        qs = qs.filter(company_id=company_id)
    if legacy_only:
        qs = qs.filter(client_app__is_legacy_shared=True)
    if search := search.strip():
        qs = qs.filter(
            Q(alias__icontains=search)
            | Q(org_id__istartswith=search)
            | Q(login_url__icontains=search)
            | Q(instance_url__icontains=search)
        )
    return qs.order_by("alias", "org_id")


def org_selection(
    *,
    access: AccessProfile,
    org_ids: list[int] | None = None,
    queue: bool = False,
    filters: dict[str, object] | None = None,
) -> list[tuple[int, int]]:
    """``(pk, company_id)`` of the orgs a bulk action was asked for, among
    those the user may see: the ticked ``org_ids``, or every org matching
    the list's ``filters`` (or the whole queue) across pages. One
    ``values_list`` query; no row is rendered."""
    if org_ids is not None:
        qs = access.scope(SalesforceOrg.objects.filter(pk__in=org_ids))
    elif queue:
        qs = queue_orgs(access=access)
    else:
        qs = org_list(access=access, **(filters or {}))  # type: ignore[arg-type]
    return list(qs.order_by("pk").values_list("pk", "company_id"))


def org_get(
    *, access: AccessProfile, pk: int, capability: Capability = Capability.VIEW
) -> SalesforceOrg:
    """One org the user may act on: 404 for other companies' orgs (they do
    not exist for the user), 403 when the role does not allow the action."""
    return get_object_for(
        access,
        SalesforceOrg.objects.select_related("company", "client_app"),
        capability=capability,
        pk=pk,
    )


def policy_get(
    *, access: AccessProfile, pk: int, capability: Capability = Capability.VIEW
) -> BackupPolicy:
    return get_object_for(
        access,
        policy_list(access=access),
        capability=capability,
        company_field="org__company",
        pk=pk,
    )


def latest_url_verification(*, org: SalesforceOrg) -> object:
    return org.url_verifications.order_by("-created_at", "-id").first()


def queue_orgs(*, access: AccessProfile) -> QuerySet[SalesforceOrg]:
    """The operator queue: orgs needing a person where the user may act."""
    return orgs_needing_attention(access=access).filter(
        access.company_q(Capability.RUN_CHECKS)
    )


def attention_count(*, access: AccessProfile) -> int:
    return queue_orgs(access=access).count()


def org_status_counts(*, access: AccessProfile) -> dict[str, int]:
    rows = (
        access.scope(SalesforceOrg.objects.all())
        .values("status")
        .annotate(n=Count("id"))
        .order_by()
    )
    counts = {status: 0 for status in ConnectionStatus.values}
    for row in rows:
        counts[row["status"]] = row["n"]
    return counts


def orgs_needing_attention(
    *, access: AccessProfile, limit: int | None = None
) -> QuerySet[SalesforceOrg]:
    qs = (
        access.scope(SalesforceOrg.objects.filter(status__in=NEEDS_ATTENTION))
        .select_related("company", "client_app")
        .order_by("status_changed_at", "pk")
    )
    return qs[:limit] if limit else qs


def legacy_app_org_count(*, access: AccessProfile) -> int:
    return (
        access.scope(SalesforceOrg.objects.filter(client_app__is_legacy_shared=True))
        .order_by()
        .count()
    )


def policy_list(*, access: AccessProfile) -> QuerySet[BackupPolicy]:
    return access.scope(
        BackupPolicy.objects.select_related("org", "org__company", "client_app"),
        company_field="org__company",
    ).order_by("name")


def failures_per_day(
    *, access: AccessProfile, days: int = 30, today: date | None = None
) -> list[tuple[date, int]]:
    """Orgs entering a failing status per day over the last ``days`` days
    (today included), oldest first, zeros included: one grouped query over
    the health checks' ``org.status`` events, whatever their number."""
    today = today or timezone.localdate()
    start = today - timedelta(days=days - 1)
    since = datetime.combine(start, time.min, tzinfo=timezone.get_current_timezone())
    events = AuditEvent.objects.filter(
        action="org.status", created_at__gte=since, after__status__in=FAILING
    )
    rows = (
        access.scope(events)
        .annotate(day=TruncDate("created_at"))
        .values("day")
        .annotate(n=Count("id"))
        .order_by("day")
    )
    by_day = {row["day"]: row["n"] for row in rows}
    return [
        (day, by_day.get(day, 0))
        for day in (start + timedelta(days=i) for i in range(days))
    ]


# What fixing an org in each status takes; the hint is for those who can.
FIX_CAPABILITY = {
    ConnectionStatus.NEEDS_REAUTHORIZATION: Capability.REAUTHORIZE,
    ConnectionStatus.URL_CHANGED: Capability.EDIT_ORG_URL,
    ConnectionStatus.PERMISSIONS_MISSING: Capability.VERIFY_PERMISSIONS,
    ConnectionStatus.FAILED: Capability.RUN_CHECKS,
}


def fix_hint_for(*, access: AccessProfile, org: SalesforceOrg) -> str:
    """The org's fix hint in words for the reader: what to do when their
    role can do it, whom to ask when it cannot."""
    hint = org.fix_hint
    capability = FIX_CAPABILITY.get(org.status)
    if not hint or capability is None or access.can(capability, org.company_id):
        return hint
    roles = " or ".join(
        Role(role).label
        for role in ROLE_ORDER
        if capability in ROLE_CAPABILITIES[role] and role != Role.ADMINISTRATOR
    )
    who = f"an {roles} or Administrator" if roles else "an Administrator"
    return f"Ask {who} of {org.company.name} to fix it: {hint[0].lower()}{hint[1:]}"


# --- token budget guard (SPEC §9) -------------------------------------------


@dataclass(frozen=True)
class TokenBudget:
    """The console's live refresh tokens for one Salesforce user and app,
    and which orgs would lose their connection at one more approval."""

    user: str
    live: int
    losing: list[str] = field(default_factory=list)
    limit: int = SALESFORCE_TOKEN_LIMIT

    @property
    def warns(self) -> bool:
        return self.live >= TOKEN_BUDGET_WARN_AT

    @property
    def warning(self) -> str:
        if not self.warns:
            return ""
        text = (
            f"The console already holds {self.live} live tokens for {self.user} "
            "with this app. Salesforce keeps five: "
        )
        # At four the approval about to happen is the fifth, which Salesforce
        # keeps; the one after it revokes the oldest.
        if self.live < self.limit:
            text += "this approval makes five, and the next will revoke the oldest"
            then = " then"
        else:
            text += "approving again will revoke the oldest"
            then = ""
        if self.losing:
            names = ", ".join(self.losing)
            return f"{text}, and {names} would lose the connection{then}."
        return f"{text}."


BUDGET_COLUMNS = (
    "revoked_at",
    "salesforce_org_id",
    "salesforce_user_id",
    "client_app_id",
    "fingerprint",
    "org_id",
    "org__alias",
    "org__org_id",
    "org__refresh_token_fingerprint",
)


def token_budget_for(
    *,
    org: SalesforceOrg,
    client_app_id: int | None = None,
    reauthorizing: bool = False,
) -> TokenBudget | None:
    """The token budget of the org's connected-as user with ``client_app_id``
    (default: the org's app), before anyone is sent to Salesforce: Re-authorize
    connection, Authorize at Salesforce, campaigns and delegated links.

    ``reauthorizing``: the approval replaces this org's own token, so the org
    is not named among those that would lose theirs. None when the org has
    no connected-as user or app. One query.
    """
    app_id = client_app_id or org.client_app_id
    if not org.connected_as_user_id or app_id is None:
        return None
    rows = RefreshTokenRecord.objects.filter(
        Q(revoked_at__isnull=True) | known_org_tokens([org]),
        salesforce_org_id=org.org_id,
        salesforce_user_id=org.connected_as_user_id,
        client_app_id=app_id,
    )
    ordered = rows.order_by("approved_at", "pk").values_list(*BUDGET_COLUMNS)
    return token_budget_from(org, app_id, list(ordered), reauthorizing=reauthorizing)


def token_budgets_for(
    *, orgs: Iterable[SalesforceOrg], reauthorizing: bool = True
) -> dict[int, TokenBudget]:
    """:func:`token_budget_for` of many orgs with their own apps, in one
    query (a campaign's rows). Orgs without a connected-as user or app are
    left out."""
    orgs = [o for o in orgs if o.connected_as_user_id and o.client_app_id]
    rows = RefreshTokenRecord.objects.filter(
        Q(revoked_at__isnull=True) | known_org_tokens(orgs),
        salesforce_user_id__in={o.connected_as_user_id for o in orgs},
        client_app_id__in={o.client_app_id for o in orgs},
    )
    grouped: dict[tuple[str, str, int], list[tuple]] = {}
    for row in rows.order_by("approved_at", "pk").values_list(*BUDGET_COLUMNS):
        grouped.setdefault(row[1:4], []).append(row)
    return {
        org.pk: token_budget_from(
            org,
            org.client_app_id,
            grouped.get((org.org_id, org.connected_as_user_id, org.client_app_id), []),
            reauthorizing=reauthorizing,
        )
        for org in orgs
    }


def known_org_tokens(orgs: Iterable[SalesforceOrg]) -> Q:
    """The records of the orgs' stored tokens, live or not."""
    known = Q(pk__in=[])
    for org in orgs:
        if org.refresh_token_fingerprint:
            known |= Q(org_id=org.pk, fingerprint=org.refresh_token_fingerprint)
    return known


def token_budget_from(
    org: SalesforceOrg, app_id: int | None, rows: list[tuple], *, reauthorizing: bool
) -> TokenBudget:
    """The budget from the records of one user and app, oldest first: the
    live ones, and the org's own token's even when revoked."""
    # (the org whose connection the token is, or None; its label)
    tokens: list[tuple[int | None, str]] = [
        (org_pk, alias or org_id) if org_pk and fingerprint == stored else (None, "")
        for revoked_at, *_, fingerprint, org_pk, alias, org_id, stored in rows
        if revoked_at is None
    ]
    known = any(r[5] == org.pk and r[4] == org.refresh_token_fingerprint for r in rows)
    # An org connected before the ledger existed (or by a fixture) holds a
    # token the ledger never saw: it counts, as the oldest.
    if org.refresh_token_fingerprint and app_id == org.client_app_id and not known:
        tokens.insert(0, (org.pk, org.label))
    revoked_next = tokens[: max(1, len(tokens) + 1 - SALESFORCE_TOKEN_LIMIT)]
    losing = [
        label
        for holder, label in revoked_next
        if holder is not None and not (reauthorizing and holder == org.pk)
    ]
    return TokenBudget(
        user=org.connected_as_username or org.connected_as_user_id,
        live=len(tokens),
        losing=list(dict.fromkeys(losing)),
    )
