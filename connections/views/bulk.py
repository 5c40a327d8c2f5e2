"""Bulk actions on the org list and the queue (SPEC §9): start one, and its
progress line, polled by htmx on the page it was started from."""

from __future__ import annotations

from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_GET, require_POST

from companies.access import Capability
from companies.audit import Actor
from companies.decorators import require_capability
from orgs.forms import BulkSelectionForm, bulk_back_url

from ..models import BulkAction
from ..services import bulk


@require_POST
@require_capability(Capability.VIEW)
def bulk_action(request: HttpRequest) -> HttpResponse:
    access = request.access  # type: ignore[attr-defined]
    form = BulkSelectionForm(
        request.POST, actions=BulkAction.Kind.choices, companies=access.companies()
    )
    if not form.is_valid():
        for error in [e for errors in form.errors.values() for e in errors]:
            messages.error(request, error)
        source = "queue" if request.POST.get("source") == "queue" else "list"
        return redirect(bulk_back_url(source))
    data = form.cleaned_data
    if not access.can(bulk.CAPABILITY[data["action"]]):
        raise PermissionDenied
    selection = bulk.bulk_selection(
        access=access, filter_query=data["filter_query"], **form.selector_args()
    )
    try:
        action = bulk.bulk_action_start(
            actor=Actor.from_request(request),
            access=access,
            kind=data["action"],
            selection=selection,
        )
    except bulk.BulkActionError as exc:
        messages.error(request, str(exc))
        return redirect(bulk_back_url(data["source"], data["filter_query"]))
    if action.campaign_id:
        messages.success(request, bulk.bulk_action_summary(action))
        return redirect("campaigns:detail", pk=action.campaign_id)
    # No flash: the page shows the action's progress line.
    return redirect(bulk_back_url(data["source"], data["filter_query"], action.pk))


@require_GET
@require_capability(Capability.VIEW)
def bulk_progress(request: HttpRequest, pk: int) -> HttpResponse:
    """The progress line of a bulk action, for the user who started it."""
    action = get_object_or_404(BulkAction, pk=pk, created_by_id=request.user.pk)
    context = {"action": action, "summary": bulk.bulk_action_summary(action)}
    response = render(request, "connections/_bulk_progress.html", context)
    if request.GET.get("polling") and request.GET.get("done") != str(action.done):
        # More orgs are done: the page's rows show their new statuses (htmx
        # refetches them).
        response["HX-Trigger"] = "bulk-progress"
    return response
