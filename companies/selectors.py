"""Reads of companies and the audit trail, scoped to the user."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from django.db.models import Count, Q, QuerySet

from .models import AuditEvent, Company

if TYPE_CHECKING:
    from .access import AccessProfile


def company_list(*, access: AccessProfile) -> QuerySet[Company]:
    return access.companies().annotate(org_count=Count("orgs")).order_by("name")


def audit_event_list(
    *,
    access: AccessProfile,
    action: str = "",
    actor: str = "",
    company_id: int | None = None,
    org: str = "",
) -> QuerySet[AuditEvent]:
    qs = AuditEvent.objects.all()
    ids = access.company_ids()
    if ids is not None:
        qs = qs.filter(company_id__in=ids)
    if action:
        qs = qs.filter(action__startswith=action)
    if actor:
        qs = qs.filter(actor_username__iexact=actor)
    if company_id:
        qs = qs.filter(company_id=company_id)
    if org:
        qs = qs.filter(Q(org_label__icontains=org) | Q(org__org_id__istartswith=org))
    return qs.order_by("-created_at", "-id")


def org_history(*, org: Any, limit: int = 25) -> QuerySet[AuditEvent]:
    """The latest audit events of one org, newest first (its page's history)."""
    return AuditEvent.objects.filter(org=org).order_by("-created_at", "-id")[:limit]
