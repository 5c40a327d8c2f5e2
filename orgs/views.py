"""Dashboard, the org list, the operator queue and the org actions that need
no connection: settings, Edit organization URL, Check now, moves, policies.

Each view authorises (through ``selectors.org_get`` and friends), binds its
form, calls one service and redirects.
"""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.core.exceptions import ValidationError
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_GET, require_http_methods

from companies.access import Capability, get_object_for
from companies.audit import Actor
from companies.decorators import require_capability
from companies.forms import MoveOrgsForm
from companies.models import Company
from vbsf.forms import parse_id
from vbsf.views import render_form

from . import pictures, selectors
from .forms import OrgFilterForm, OrgSettingsForm, OrgUrlForm
from .health import orgs_check_now, orgs_checking
from .models import ConnectionStatus
from .services import ConcurrentChange, org_update, orgs_move
from .url_change import org_url_change_start

PAGE_SIZE = 50


@require_GET
@require_capability(Capability.VIEW)
def dashboard(request: HttpRequest) -> HttpResponse:
    access = request.access  # type: ignore[attr-defined]
    counts = selectors.org_status_counts(access=access)
    status_counts = [
        (status, label, counts[status]) for status, label in ConnectionStatus.choices
    ]
    failures = selectors.failures_per_day(access=access)  # the last 30 days
    context = {
        "status_counts": status_counts,
        "total": sum(counts.values()),
        "status_bar": pictures.status_bar(status_counts),
        "failure_line": pictures.failure_line(failures),
        "attention": selectors.orgs_needing_attention(access=access, limit=10),
        "legacy_count": selectors.legacy_app_org_count(access=access),
    }
    return render(request, "orgs/dashboard.html", context)


@require_GET
@require_capability(Capability.VIEW)
def org_index(request: HttpRequest) -> HttpResponse:
    access = request.access  # type: ignore[attr-defined]
    form = OrgFilterForm(request.GET or None, companies=access.companies())
    orgs = selectors.org_list(access=access, **form.selector_filters())
    page = Paginator(orgs, PAGE_SIZE).get_page(request.GET.get("page"))
    querystring = request.GET.copy()
    querystring.pop("page", None)
    querystring.pop("bulk", None)  # the progress line is not a filter
    context = bulk_context(request) | {
        "form": form,
        "page": page,
        "orgs": page.object_list,
        "checking": orgs_checking(list(page.object_list)),
        "querystring": querystring.urlencode(),
    }
    return render(request, "orgs/list.html", context)


def bulk_context(request: HttpRequest) -> dict[str, Any]:
    """The bulk bar's actions and the progress line of the bulk action just
    started from this page."""
    access = request.access  # type: ignore[attr-defined]
    return bulk_actions(access) | {"bulk_id": parse_id(request.GET.get("bulk"))}


def bulk_actions(access: Any) -> dict[str, bool]:
    """The bulk actions the user may take somewhere; no checkboxes without
    one (a Viewer)."""
    actions = {
        "can_run_checks": access.can(Capability.RUN_CHECKS),
        "can_verify": access.can(Capability.VERIFY_PERMISSIONS),
        "can_reauthorize": access.can(Capability.REAUTHORIZE),
    }
    return actions | {"bulk_enabled": any(actions.values())}


@require_GET
@require_capability(Capability.VIEW)
def policy_index(request: HttpRequest) -> HttpResponse:
    policies = selectors.policy_list(access=request.access)  # type: ignore[attr-defined]
    page = Paginator(policies, PAGE_SIZE).get_page(request.GET.get("page"))
    return render(request, "orgs/policy_list.html", {"page": page})


@require_http_methods(["POST"])
@require_capability(Capability.EDIT_CONNECTION)
def org_settings(request: HttpRequest, pk: int) -> HttpResponse:
    org = selectors.org_get(
        access=request.access,  # type: ignore[attr-defined]
        pk=pk,
        capability=Capability.EDIT_CONNECTION,
    )
    form = OrgSettingsForm(request.POST)
    if not form.is_valid():
        messages.error(request, "The settings form was not valid; nothing changed.")
        return redirect(org.get_absolute_url())
    try:
        org_update(actor=Actor.from_request(request), org=org, **form.service_args())
    except (ConcurrentChange, ValidationError) as exc:
        messages.error(request, " ".join(getattr(exc, "messages", [str(exc)])))
    else:
        messages.success(request, "Organization settings saved.")
    return redirect(org.get_absolute_url())


@require_http_methods(["GET", "POST"])
@require_capability(Capability.EDIT_ORG_URL)
def org_edit_url(request: HttpRequest, pk: int) -> HttpResponse:
    """Edit organization URL: checked by a task before it is saved."""
    access = request.access  # type: ignore[attr-defined]
    org = selectors.org_get(access=access, pk=pk, capability=Capability.EDIT_ORG_URL)
    initial = {"new_url": org.suggested_url or org.login_url}
    form = OrgUrlForm(request.POST or None, initial=initial)
    if request.method == "POST" and form.is_valid():
        try:
            org_url_change_start(
                actor=Actor.from_request(request),
                org=org,
                new_url=form.cleaned_data["new_url"],
            )
        except ValidationError as exc:
            form.add_error("new_url", exc.message_dict.get("new_url", exc.messages))
        else:
            messages.info(request, "Checking the new URL with Salesforce…")
            return redirect("orgs:edit-url", pk=org.pk)
    verification = selectors.latest_url_verification(org=org)
    context = {"org": org, "form": form, "verification": verification}
    return render_form(request, "orgs/edit_url.html", context)


@require_GET
@require_capability(Capability.VIEW)
def url_verification_status(
    request: HttpRequest, pk: int, verification_id: int
) -> HttpResponse:
    org = selectors.org_get(access=request.access, pk=pk)  # type: ignore[attr-defined]
    verification = get_object_or_404(org.url_verifications, pk=verification_id)
    context = {"org": org, "verification": verification}
    response = render(request, "orgs/_url_verification.html", context)
    if request.headers.get("HX-Request") and verification.state == "succeeded":
        # The whole page shows the org's new URL, not only this box.
        response["HX-Refresh"] = "true"
    return response


@require_http_methods(["POST"])
@require_capability(Capability.RUN_CHECKS)
def org_check_now(request: HttpRequest, pk: int) -> HttpResponse:
    org = selectors.org_get(
        access=request.access,  # type: ignore[attr-defined]
        pk=pk,
        capability=Capability.RUN_CHECKS,
    )
    # No flash: the org page shows the running check, then its outcome.
    orgs_check_now(org_ids=[org.pk])
    return redirect(org.get_absolute_url())


@require_GET
@require_capability(Capability.RUN_CHECKS)
def operator_queue(request: HttpRequest) -> HttpResponse:
    """Orgs that need a person, oldest first, each with its fixing button;
    the bulk bar acts on ticked rows or on the whole queue."""
    access = request.access  # type: ignore[attr-defined]
    orgs = selectors.queue_orgs(access=access)
    page = Paginator(orgs, PAGE_SIZE).get_page(request.GET.get("page"))
    context = (
        queue_capabilities(access)
        | bulk_context(request)
        | {
            "page": page,
            "checking": orgs_checking(list(page.object_list)),
        }
    )
    return render(request, "orgs/queue.html", context)


def queue_capabilities(access: Any) -> dict[str, bool]:
    return bulk_actions(access) | {
        "can_edit_url": access.can(Capability.EDIT_ORG_URL),
    }


@require_GET
@require_capability(Capability.VIEW)
def org_row(request: HttpRequest, pk: int) -> HttpResponse:
    """One row of the org list or the queue, polled while its check runs."""
    access = request.access  # type: ignore[attr-defined]
    org = selectors.org_get(access=access, pk=pk)
    queue = request.GET.get("kind") == "queue"
    context = queue_capabilities(access) | {
        "org": org,
        "checking": orgs_checking([org]),
    }
    template = "orgs/_queue_row.html" if queue else "orgs/_list_row.html"
    return render(request, template, context)


@require_http_methods(["POST"])
@require_capability(Capability.MANAGE_COMPANIES)
def company_orgs_move(request: HttpRequest, pk: int) -> HttpResponse:
    """Move orgs of a company to another one (from the company page)."""
    company = get_object_for(
        request.access,  # type: ignore[attr-defined]
        Company.objects.all(),
        capability=Capability.MANAGE_COMPANIES,
        company_field="",
        pk=pk,
    )
    form = MoveOrgsForm(request.POST, company=company)
    if not form.is_valid():
        for error in form.error_list():
            messages.error(request, error)
        return redirect("companies:detail", pk=company.pk)
    to_company = form.cleaned_data["to_company"]
    moved = orgs_move(
        actor=Actor.from_request(request),
        orgs=list(form.cleaned_data["orgs"]),
        to_company=to_company,
    )
    messages.success(request, f"Moved {moved} org(s) to {to_company}.")
    return redirect("companies:detail", pk=company.pk)
