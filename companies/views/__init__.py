"""Company and audit pages."""

from __future__ import annotations

from django.contrib import messages
from django.core.exceptions import ValidationError
from django.core.paginator import Paginator
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, StreamingHttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_http_methods

from vbsf.views import render_form

from ..access import Capability, get_object_for
from ..audit import Actor, audit_csv_rows
from ..decorators import require_capability
from ..forms import AuditFilterForm, CompanyForm, MoveOrgsForm
from ..models import AuditEvent, Company
from ..selectors import audit_event_list, company_list
from ..services import company_create, company_delete, company_update


@require_http_methods(["GET", "POST"])
@require_capability(Capability.MANAGE_COMPANIES)
def company_index(request: HttpRequest) -> HttpResponse:
    form = CompanyForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        company = company_create(
            actor=Actor.from_request(request),
            name=form.cleaned_data["name"],
            contact_emails=form.cleaned_data["contact_emails"],
        )
        messages.success(request, f"Company {company.name} created.")
        return redirect("companies:list")
    companies = company_list(access=request.access)  # type: ignore[attr-defined]
    context = {"companies": companies, "form": form}
    return render_form(request, "companies/list.html", context)


def _get_company(request: HttpRequest, pk: int) -> Company:
    return get_object_for(
        request.access,  # type: ignore[attr-defined]
        Company.objects.all(),
        capability=Capability.MANAGE_COMPANIES,
        company_field="",
        pk=pk,
    )


@require_http_methods(["GET", "POST"])
@require_capability(Capability.MANAGE_COMPANIES)
def company_detail(request: HttpRequest, pk: int) -> HttpResponse:
    company = _get_company(request, pk)
    form = CompanyForm(
        request.POST or None,
        instance=Company(
            pk=company.pk, name=company.name, contact_emails=company.contact_emails
        ),
    )
    if request.method == "POST" and form.is_valid():
        company_update(
            actor=Actor.from_request(request),
            company=company,
            name=form.cleaned_data["name"],
            contact_emails=form.cleaned_data["contact_emails"],
        )
        messages.success(request, "Company saved.")
        return redirect("companies:detail", pk=company.pk)
    context = {
        "company": company,
        "form": form,
        "move_form": MoveOrgsForm(company=company),
        "orgs": company.orgs.select_related("client_app").order_by("alias"),
    }
    return render_form(request, "companies/detail.html", context)


@require_http_methods(["POST"])
@require_capability(Capability.MANAGE_COMPANIES)
def company_remove(request: HttpRequest, pk: int) -> HttpResponse:
    company = _get_company(request, pk)
    try:
        company_delete(actor=Actor.from_request(request), company=company)
    except ValidationError as exc:
        messages.error(request, exc.messages[0])
        return redirect("companies:detail", pk=company.pk)
    messages.success(request, f"Company {company.name} deleted.")
    return redirect("companies:list")


def _audit_events(
    request: HttpRequest,
) -> tuple[AuditFilterForm, QuerySet[AuditEvent] | None]:
    """The page's filters and the events they select; no events when a
    filter is invalid (the form then says what is wrong)."""
    access = request.access  # type: ignore[attr-defined]
    form = AuditFilterForm(request.GET, companies=access.companies())
    if not form.is_valid():
        return form, None
    return form, audit_event_list(access=access, **form.selector_filters())


def _audit_page(
    request: HttpRequest,
    form: AuditFilterForm,
    events: QuerySet[AuditEvent] | None,
) -> HttpResponse:
    rows = events if events is not None else AuditEvent.objects.none()
    page = Paginator(rows, 50).get_page(request.GET.get("page"))
    return render(request, "companies/audit.html", {"form": form, "page": page})


@require_GET
@require_capability(Capability.VIEW_AUDIT)
def audit_index(request: HttpRequest) -> HttpResponse:
    form, events = _audit_events(request)
    return _audit_page(request, form, events)


@require_GET
@require_capability(Capability.VIEW_AUDIT)
def audit_export(request: HttpRequest) -> HttpResponse:
    form, events = _audit_events(request)
    if events is None:
        # The page with the filters' errors, rather than a file of events
        # that were not asked for.
        return _audit_page(request, form, None)
    # UTF-8 without a byte-order mark. The charset is declared, and programs
    # reading the export (Python's csv, SIEM imports, cut) then see "time"
    # as the first header, not "\ufefftime"; LibreOffice and Google Sheets
    # detect UTF-8 by themselves. Excel opens it right through Data > From
    # Text/CSV; only a double-click would want a BOM.
    response = StreamingHttpResponse(
        audit_csv_rows(events), content_type="text/csv; charset=utf-8"
    )
    response["Content-Disposition"] = 'attachment; filename="audit.csv"'
    return response
