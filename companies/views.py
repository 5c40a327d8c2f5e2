"""Sign-in, companies, audit and health pages."""

from __future__ import annotations

import csv
from typing import Any

from django.contrib import messages
from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_not_required
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.paginator import Paginator
from django.db import connection
from django.http import HttpRequest, HttpResponse, JsonResponse, StreamingHttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_http_methods

from vbsf.forms import parse_id

from .access import Capability
from .audit import Actor
from .decorators import require_capability
from .forms import CompanyForm, MoveOrgsForm, ThrottledAuthenticationForm
from .models import Company
from .selectors import audit_event_list, company_list
from .services import company_create, company_delete, company_update


class LoginView(auth_views.LoginView):
    template_name = "registration/login.html"
    authentication_form = ThrottledAuthenticationForm
    redirect_authenticated_user = True

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        from connections.signin import identity_provider_org

        context = super().get_context_data(**kwargs)
        # "Log in with Salesforce" only when an org is the sign-in provider.
        context["salesforce_signin"] = identity_provider_org() is not None
        return context


def _require(
    request: HttpRequest, capability: Capability, company_id: int | None = None
) -> None:
    if not request.access.can(capability, company_id):  # type: ignore[attr-defined]
        raise PermissionDenied


@login_not_required
@require_GET
@never_cache
def healthz(request: HttpRequest) -> JsonResponse:
    """Liveness: the process answers and the database is reachable."""
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        database = "ok"
    except Exception:  # any database failure means "not healthy"
        database = "unavailable"
    status = 200 if database == "ok" else 503
    return JsonResponse(
        {"status": "ok" if status == 200 else "degraded", "database": database},
        status=status,
    )


@require_http_methods(["GET", "POST"])
@require_capability(Capability.MANAGE_COMPANIES)
def company_index(request: HttpRequest) -> HttpResponse:
    _require(request, Capability.MANAGE_COMPANIES)
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
    company = get_object_or_404(request.access.companies(), pk=pk)  # type: ignore[attr-defined]
    _require(request, Capability.MANAGE_COMPANIES, company.pk)
    return company


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
def company_move_orgs(request: HttpRequest, pk: int) -> HttpResponse:
    from orgs.services import orgs_move

    company = _get_company(request, pk)
    form = MoveOrgsForm(request.POST, company=company)
    if not form.is_valid():
        for errors in form.errors.values():
            for error in errors:
                messages.error(request, error)
        return redirect("companies:detail", pk=company.pk)
    moved = orgs_move(
        actor=Actor.from_request(request),
        orgs=list(form.cleaned_data["orgs"]),
        to_company=form.cleaned_data["to_company"],
    )
    messages.success(
        request, f"Moved {moved} org(s) to {form.cleaned_data['to_company']}."
    )
    return redirect("companies:detail", pk=company.pk)


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
    _require(request, Capability.VIEW_AUDIT)
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


class _Echo:
    def write(self, value: str) -> str:
        return value


def _csv_safe(value: object) -> str:
    # Spreadsheet formula injection: a cell that starts with one of these
    # would be evaluated by Excel or LibreOffice.
    text = "" if value is None else str(value)
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


@require_GET
@require_capability(Capability.VIEW_AUDIT)
def audit_export(request: HttpRequest) -> StreamingHttpResponse:
    _require(request, Capability.VIEW_AUDIT)
    events = audit_event_list(access=request.access, **_audit_filters(request))  # type: ignore[attr-defined]
    writer = csv.writer(_Echo())
    header = [
        "time",
        "user",
        "address",
        "company",
        "org",
        "action",
        "outcome",
        "summary",
        "before",
        "after",
    ]

    def rows():  # type: ignore[no-untyped-def]
        yield writer.writerow(header)
        for e in events.iterator(chunk_size=1000):
            yield writer.writerow(
                [
                    _csv_safe(v)
                    for v in (
                        e.created_at.isoformat(),
                        e.actor_username,
                        e.ip_address,
                        e.company_name,
                        e.org_label,
                        e.action,
                        e.outcome,
                        e.summary,
                        e.before,
                        e.after,
                    )
                ]
            )

    response = StreamingHttpResponse(rows(), content_type="text/csv")
    response["Content-Disposition"] = 'attachment; filename="audit.csv"'
    return response
