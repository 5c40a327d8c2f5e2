"""Dashboard, the org list and the org page."""

from __future__ import annotations

from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET

from companies.access import Capability
from companies.decorators import require_capability
from companies.models import AuditEvent
from connections.selectors import (
    latest_org_check,
    permission_drift,
    previous_done_check,
)

from . import selectors
from .forms import OrgFilterForm
from .models import ConnectionStatus

PAGE_SIZE = 50


@require_GET
@require_capability(Capability.VIEW)
def dashboard(request: HttpRequest) -> HttpResponse:
    access = request.access  # type: ignore[attr-defined]
    counts = selectors.org_status_counts(access=access)
    context = {
        "status_counts": [
            (status, label, counts[status])
            for status, label in ConnectionStatus.choices
        ],
        "total": sum(counts.values()),
        "attention": selectors.orgs_needing_attention(access=access, limit=10),
        "legacy_count": selectors.legacy_app_org_count(access=access),
    }
    return render(request, "orgs/dashboard.html", context)


@require_GET
@require_capability(Capability.VIEW)
def org_index(request: HttpRequest) -> HttpResponse:
    access = request.access  # type: ignore[attr-defined]
    form = OrgFilterForm(request.GET or None, companies=access.companies())
    filters = form.cleaned_data if form.is_valid() else {}
    orgs = selectors.org_list(
        access=access,
        status=filters.get("status", ""),
        company_id=filters["company"].pk if filters.get("company") else None,
        search=filters.get("q", ""),
        legacy_only=bool(filters.get("legacy")),
    )
    page = Paginator(orgs, PAGE_SIZE).get_page(request.GET.get("page"))
    querystring = request.GET.copy()
    querystring.pop("page", None)
    context = {
        "form": form,
        "page": page,
        "orgs": page.object_list,
        "querystring": querystring.urlencode(),
    }
    return render(request, "orgs/list.html", context)


@require_GET
@require_capability(Capability.VIEW)
def org_detail(request: HttpRequest, pk: int) -> HttpResponse:
    access = request.access  # type: ignore[attr-defined]
    org = selectors.org_get(access=access, pk=pk)
    history = AuditEvent.objects.filter(org=org).order_by("-created_at", "-id")[:25]
    check = latest_org_check(org=org)
    previous = previous_done_check(check=check) if check else None
    last_change = (
        org.connection_changes.exclude(kind="reauthorize")
        .order_by("-created_at")
        .first()
    )
    context = {
        "check": check,
        "drift": permission_drift(current=check, previous=previous) if check else [],
        "open_change": last_change if last_change and last_change.is_open else None,
        "last_change": last_change,
        "org": org,
        "policy": getattr(org, "backup_policy", None),
        "history": history,
        "can": {
            "edit_connection": access.can(Capability.EDIT_CONNECTION, org.company_id),
            "reauthorize": access.can(Capability.REAUTHORIZE, org.company_id),
            "edit_org_url": access.can(Capability.EDIT_ORG_URL, org.company_id),
            "verify_permissions": access.can(
                Capability.VERIFY_PERMISSIONS, org.company_id
            ),
        },
    }
    return render(request, "orgs/detail.html", context)


@require_GET
@require_capability(Capability.VIEW)
def policy_index(request: HttpRequest) -> HttpResponse:
    policies = selectors.policy_list(access=request.access)  # type: ignore[attr-defined]
    page = Paginator(policies, PAGE_SIZE).get_page(request.GET.get("page"))
    return render(request, "orgs/policy_list.html", {"page": page})
