"""Live progress partials, polled by htmx while a task works."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils import timezone
from django.views.decorators.http import require_GET

from companies.access import Capability
from companies.decorators import require_capability

from .. import selectors, services
from ..models import ConnectionChange, PermissionCheck

POLLING_STATES = (
    ConnectionChange.State.AWAITING_ACTIVATION,
    ConnectionChange.State.EXCHANGING,
)


@require_GET
@require_capability(Capability.VIEW)
def change_status(request: HttpRequest, change_id: int) -> HttpResponse:
    """The live progress of a change (polled by htmx)."""
    change = selectors.change_get(
        access=request.access,  # type: ignore[attr-defined]
        user=request.user,
        pk=change_id,
        capability=Capability.VIEW,
    )
    context = change_status_context(change)
    context["may_authorize"] = selectors.may_act_on_change(
        access=request.access,  # type: ignore[attr-defined]
        change=change,
    )
    # The partial replaces part of another page (wizard, policy, org page):
    # "Authorize at Salesforce" must come back to that page, not here.
    current = urlsplit(request.headers.get("HX-Current-URL", ""))
    if current.path.startswith("/") and current.netloc in ("", request.get_host()):
        context["back"] = current.path
    return render(request, "connections/_change_status.html", context)


def change_status_context(change: ConnectionChange) -> dict[str, Any]:
    started = change.activation_started_at
    elapsed = (timezone.now() - started).total_seconds() if started else 0
    return {
        "change": change,
        "elapsed": services.elapsed_text(elapsed),
        "polling": change.state in POLLING_STATES,
    }


@require_GET
@require_capability(Capability.VIEW)
def check_status(request: HttpRequest, check_id: int) -> HttpResponse:
    check = selectors.check_get(
        access=request.access,  # type: ignore[attr-defined]
        user=request.user,
        pk=check_id,
    )
    previous = selectors.previous_done_check(check=check) if check.org_id else None
    context = {
        "check": check,
        "drift": selectors.permission_drift(current=check, previous=previous),
        "polling": check.state == PermissionCheck.State.RUNNING,
    }
    return render(request, "connections/_permission_check.html", context)
