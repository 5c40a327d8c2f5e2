"""Notifications (SPEC §10): per company, email recipients and a webhook,
"Send test", and the delivery log."""

from __future__ import annotations

from django.contrib import messages
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from vbsf import encryption
from vbsf.views import render_form

from ..access import Capability, get_object_for
from ..audit import Actor
from ..decorators import form_data, require_capability
from ..forms import NotificationsForm
from ..models import Company, NotificationChannel
from ..notifications import (
    delivery_log,
    notification_settings_save,
    notification_test_send,
    webhook_secret_rotate,
)
from ..selectors import company_list

# The new webhook secret waits here (encrypted) for the one page that shows it.
SECRET_ONCE = "notifications.secret_once"


def _company(request: HttpRequest, pk: int) -> Company:
    return get_object_for(
        request.access,  # type: ignore[attr-defined]
        Company.objects.all(),
        capability=Capability.MANAGE_COMPANIES,
        company_field="",
        pk=pk,
    )


def _secret_once(request: HttpRequest, company: Company) -> str | None:
    """The secret made by the last POST for this company, once (another
    company's page, opened in between, leaves it waiting)."""
    stored = request.session.get(SECRET_ONCE)
    if not stored or stored.get("company") != company.pk:
        return None
    del request.session[SECRET_ONCE]
    return encryption.decrypt(stored["secret"])


def _keep_secret_once(request: HttpRequest, company: Company, secret: str) -> None:
    request.session[SECRET_ONCE] = {
        "company": company.pk,
        "secret": encryption.encrypt(secret),
    }


@require_GET
@require_capability(Capability.MANAGE_COMPANIES)
def notification_index(request: HttpRequest) -> HttpResponse:
    companies = company_list(access=request.access)  # type: ignore[attr-defined]
    if len(companies) == 1:
        return redirect("notifications:company", pk=companies[0].pk)
    return render(request, "settings/notifications.html", {"companies": companies})


@never_cache
@require_http_methods(["GET", "POST"])
@require_capability(Capability.MANAGE_COMPANIES)
def notification_company(request: HttpRequest, pk: int) -> HttpResponse:
    company = _company(request, pk)
    channel = NotificationChannel.objects.filter(company=company).first()
    form = NotificationsForm(form_data(request), company=company, channel=channel)
    if request.method == "POST" and form.is_valid():
        secret = notification_settings_save(
            actor=Actor.from_request(request),
            company=company,
            contact_emails=form.cleaned_data["contact_emails"],
            webhook_url=form.cleaned_data["webhook_url"],
            webhook_enabled=form.cleaned_data["webhook_enabled"],
            webhook_remove=form.cleaned_data.get("webhook_remove", False),
        )
        if secret:
            _keep_secret_once(request, company, secret)
        messages.success(request, "Notifications saved.")
        return redirect("notifications:company", pk=company.pk)
    context = {
        "company": company,
        "form": form,
        "channel": channel,
        "secret_once": _secret_once(request, company),
        "log": delivery_log(company=company),
    }
    return render_form(request, "settings/notifications_company.html", context)


@require_GET
@require_capability(Capability.MANAGE_COMPANIES)
def notification_log(request: HttpRequest, pk: int) -> HttpResponse:
    company = _company(request, pk)
    context = {"company": company, "log": delivery_log(company=company)}
    return render(request, "settings/_delivery_log.html", context)


@require_POST
@require_capability(Capability.MANAGE_COMPANIES)
def notification_test(request: HttpRequest, pk: int) -> HttpResponse:
    company = _company(request, pk)
    sent = notification_test_send(actor=Actor.from_request(request), company=company)
    if sent:
        messages.success(request, "Test sent. The delivery log shows how it went.")
    else:
        messages.error(request, "Add email recipients or a webhook first.")
    return redirect("notifications:company", pk=company.pk)


@require_POST
@require_capability(Capability.MANAGE_COMPANIES)
def notification_rotate_secret(request: HttpRequest, pk: int) -> HttpResponse:
    company = _company(request, pk)
    if not NotificationChannel.objects.filter(company=company).exists():
        messages.error(request, "Add a webhook first.")
        return redirect("notifications:company", pk=company.pk)
    secret = webhook_secret_rotate(actor=Actor.from_request(request), company=company)
    _keep_secret_once(request, company, secret)
    messages.success(request, "New webhook secret made. The old one no longer signs.")
    return redirect("notifications:company", pk=company.pk)
