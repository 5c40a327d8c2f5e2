"""Company and audit pages."""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.core.exceptions import ValidationError
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse, StreamingHttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_http_methods

from vbsf.forms import parse_id

from .access import Capability, get_object_for
from .audit import Actor, audit_csv_rows
from .decorators import require_capability
from .forms import CompanyForm, MoveOrgsForm
from .models import Company
from .selectors import audit_event_list, company_list
from .services import company_create, company_delete, company_update


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
    return render(
        request, "companies/list.html", {"companies": companies, "form": form}
    )


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
    return render(request, "companies/detail.html", context)


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


def _clean(value: str, limit: int) -> str:
    # Control characters (NUL above all) never match and PostgreSQL refuses
    # them in queries: drop them instead of failing.
    return "".join(ch for ch in value if ch.isprintable()).strip()[:limit]


def _audit_filters(request: HttpRequest) -> dict[str, Any]:
    company = request.GET.get("company", "")
    return {
        "action": _clean(request.GET.get("action", ""), 64),
        "actor": _clean(request.GET.get("actor", ""), 150),
        "company_id": parse_id(company),
        "org": _clean(request.GET.get("org", ""), 80),
    }


@require_GET
@require_capability(Capability.VIEW_AUDIT)
def audit_index(request: HttpRequest) -> HttpResponse:
    filters = _audit_filters(request)
    events = audit_event_list(access=request.access, **filters)  # type: ignore[attr-defined]
    page = Paginator(events, 50).get_page(request.GET.get("page"))
    context = {
        "page": page,
        "filters": filters,
        "companies": request.access.companies(),  # type: ignore[attr-defined]
        "querystring": request.GET.copy(),
    }
    return render(request, "companies/audit.html", context)


@require_GET
@require_capability(Capability.VIEW_AUDIT)
def audit_export(request: HttpRequest) -> StreamingHttpResponse:
    events = audit_event_list(access=request.access, **_audit_filters(request))  # type: ignore[attr-defined]
    response = StreamingHttpResponse(audit_csv_rows(events), content_type="text/csv")
    response["Content-Disposition"] = 'attachment; filename="audit.csv"'
    return response
