"""Reads of connection changes, permission checks and campaigns."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from django.core.exceptions import PermissionDenied
from django.core.paginator import Page, Paginator
from django.db.models import Count, Q, QuerySet
from django.http import Http404
from django.shortcuts import get_object_or_404
from django.urls import reverse

from companies.access import Capability, get_object_for

from .models import Campaign, CampaignOrg, ConnectionChange, PermissionCheck

if TYPE_CHECKING:
    from companies.access import AccessProfile
    from orgs.models import SalesforceOrg


def open_change_for(
    *, org: SalesforceOrg | None, user: Any, kind: str | None = None
) -> ConnectionChange | None:
    qs = ConnectionChange.objects.select_related("client_app").filter(
        state__in=[
            *ConnectionChange.OPEN_STATES,
            ConnectionChange.State.FAILED,
            ConnectionChange.State.EXPIRED,
        ]
    )
    qs = (
        qs.filter(org=org)
        if org is not None
        else qs.filter(org__isnull=True, created_by=user)
    )
    if kind:
        qs = qs.filter(kind=kind)
    else:
        qs = qs.exclude(kind=ConnectionChange.Kind.REAUTHORIZE)
    return qs.order_by("-created_at").first()


def change_get(
    *, access: AccessProfile, user: Any, pk: int, capability: Capability
) -> ConnectionChange:
    """A change the user may act on, else 404."""
    change = get_object_or_404(
        ConnectionChange.objects.select_related("org", "client_app"), pk=pk
    )
    if change.org_id is None:
        allowed = change.created_by_id == user.pk and access.can(capability)
    else:
        allowed = access.can(capability, change.org.company_id)
    if not allowed:
        raise Http404
    return change


def capability_for(change: ConnectionChange) -> Capability:
    """What acting on a change needs: Re-authorize for a re-authorization,
    Edit Connection for any other change."""
    if change.kind == ConnectionChange.Kind.REAUTHORIZE:
        return Capability.REAUTHORIZE
    return Capability.EDIT_CONNECTION


def may_act_on_change(*, access: AccessProfile, change: ConnectionChange) -> bool:
    company_id = change.org.company_id if change.org_id else None
    return access.can(capability_for(change), company_id)


def change_for_action(*, access: AccessProfile, user: Any, pk: int) -> ConnectionChange:
    """A change the user may see (else 404) and act on (else 403): a
    re-authorization needs Re-authorize, any other change Edit Connection."""
    change = change_get(access=access, user=user, pk=pk, capability=Capability.VIEW)
    if not may_act_on_change(access=access, change=change):
        raise PermissionDenied
    return change


def change_page_url(change: ConnectionChange) -> str:
    """Where a change is worked on: its org's wizard, or Add organization."""
    if change.org_id:
        return reverse("orgs:edit-connection", args=[change.org_id])
    return reverse("orgs:add")


def latest_change_check(*, change: ConnectionChange | None) -> PermissionCheck | None:
    if change is None:
        return None
    return change.permission_checks.order_by("-created_at", "-id").first()


def org_page_changes(
    *, org: SalesforceOrg
) -> tuple[ConnectionChange | None, ConnectionChange | None]:
    """The org's latest Edit Connection change and latest re-authorization."""
    changes = org.connection_changes.order_by("-created_at")
    return (
        changes.exclude(kind=ConnectionChange.Kind.REAUTHORIZE).first(),
        changes.filter(kind=ConnectionChange.Kind.REAUTHORIZE).first(),
    )


def check_get(*, access: AccessProfile, user: Any, pk: int) -> PermissionCheck:
    check = get_object_or_404(
        PermissionCheck.objects.select_related("org", "change"), pk=pk
    )
    company_id = check.org.company_id if check.org_id else None
    if company_id is None and check.change is not None and check.change.org_id:
        company_id = check.change.org.company_id
    if company_id is None:
        allowed = check.change is not None and check.change.created_by_id == user.pk
    else:
        allowed = access.can(Capability.VIEW, company_id)
    if not allowed:
        raise Http404
    return check


def latest_org_check(*, org: SalesforceOrg) -> PermissionCheck | None:
    return (
        PermissionCheck.objects.filter(org=org).order_by("-created_at", "-id").first()
    )


def previous_done_check(*, check: PermissionCheck) -> PermissionCheck | None:
    return (
        PermissionCheck.objects.filter(
            org_id=check.org_id, state=PermissionCheck.State.DONE, pk__lt=check.pk
        )
        .order_by("-pk")
        .first()
    )


def permission_drift(
    *, current: PermissionCheck, previous: PermissionCheck | None
) -> list[dict[str, Any]]:
    """What changed since the previous check: granted ↔ missing."""
    if previous is None or current.state != PermissionCheck.State.DONE:
        return []
    before = {r["key"]: r["granted"] for r in previous.results}
    return [
        {"label": r["label"], "now_granted": r["granted"]}
        for r in current.results
        if r["key"] in before and before[r["key"]] != r["granted"]
    ]


# --- campaigns ---------------------------------------------------------------

CAMPAIGN_ROWS_PER_PAGE = 50
# A row belongs to its org's company of now: an org moved to another company
# takes its rows along (the row's own company is the one at creation).
ROW_COMPANY = "org__company"


def campaigns_visible(*, access: AccessProfile) -> QuerySet[Campaign]:
    """Campaigns with at least one company the user can see, or a row whose
    org moved into one since."""
    ids = access.company_ids()
    campaigns = Campaign.objects.select_related("created_by")
    if ids is None:
        return campaigns
    companies = Campaign.companies.through.objects.filter(company_id__in=ids)
    moved_in = CampaignOrg.objects.filter(org__company_id__in=ids)
    return campaigns.filter(
        Q(pk__in=companies.values("campaign_id"))
        | Q(pk__in=moved_in.values("campaign_id"))
    )


def campaign_list(*, access: AccessProfile) -> QuerySet[Campaign]:
    """Each campaign with its row counts (of the user's companies), in the
    same query."""
    rows = access.scope(CampaignOrg.objects.all(), ROW_COMPANY)
    finished = Q(rows__state__in=CampaignOrg.FINISHED_STATES)
    scoped = Q(rows__in=rows)
    return (
        campaigns_visible(access=access)
        .annotate(
            total=Count("rows", filter=scoped),
            connected=Count(
                "rows", filter=scoped & Q(rows__state=CampaignOrg.State.CONNECTED)
            ),
            finished=Count("rows", filter=scoped & finished),
        )
        .order_by("-created_at", "-pk")
    )


def campaign_get(*, access: AccessProfile, pk: int) -> Campaign:
    return get_object_or_404(campaigns_visible(access=access), pk=pk)


def campaign_companies(*, access: AccessProfile, campaign: Campaign) -> list[str]:
    """Names of the campaign's companies the user can see."""
    return list(
        access.scope(campaign.companies.all(), "")
        .order_by("name")
        .values_list("name", flat=True)
    )


def campaign_rows(
    *, access: AccessProfile, campaign: Campaign
) -> QuerySet[CampaignOrg]:
    """The rows of the campaign in the user's companies."""
    return access.scope(
        CampaignOrg.objects.filter(campaign=campaign).select_related(
            "org__company", "link_created_by"
        ),
        ROW_COMPANY,
    ).order_by("pk")


def campaign_counts(*, access: AccessProfile, campaign: Campaign) -> dict[str, int]:
    """Rows per state and in total, by one aggregate query."""
    states = CampaignOrg.State
    rows = access.scope(CampaignOrg.objects.filter(campaign=campaign), ROW_COMPANY)
    counts = rows.aggregate(
        total=Count("pk"),
        **{state.value: Count("pk", filter=Q(state=state)) for state in states},
    )
    return {key: value or 0 for key, value in counts.items()}


def campaign_rows_page(
    *, access: AccessProfile, campaign: Campaign, number: Any
) -> Page:
    paginator = Paginator(
        campaign_rows(access=access, campaign=campaign), CAMPAIGN_ROWS_PER_PAGE
    )
    return paginator.get_page(number)


def campaign_row_for_action(
    *, access: AccessProfile, campaign_id: int, pk: int
) -> CampaignOrg:
    """A row the user may act on: 404 outside their companies, 403 without
    Re-authorize in the row's company."""
    return get_object_for(
        access,
        CampaignOrg.objects.filter(campaign_id=campaign_id).select_related(
            "campaign", "org__company"
        ),
        capability=Capability.REAUTHORIZE,
        company_field=ROW_COMPANY,
        pk=pk,
    )


def latest_check_since(*, org: SalesforceOrg, since: Any) -> PermissionCheck | None:
    """The org's first permission check started at or after ``since`` (the
    one a re-authorization started), for the link's result page."""
    if since is None:
        return None
    return (
        PermissionCheck.objects.filter(org=org, created_at__gte=since)
        .order_by("created_at", "pk")
        .first()
    )
