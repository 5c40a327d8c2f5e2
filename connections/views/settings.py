"""Console sign-in settings (SPEC §10): pick or turn off the org that signs
console users in, and unlink console users from Salesforce users."""

from __future__ import annotations

from django import forms
from django.contrib import messages
from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect
from django.views.decorators.http import require_http_methods, require_POST

from companies.access import Capability
from companies.audit import Actor
from companies.decorators import form_data, require_capability
from vbsf.forms import IdChoiceField
from vbsf.views import render_form

from ..models import SalesforceIdentityLink
from ..services.signin_settings import (
    identity_link_delete,
    identity_link_list,
    signin_provider_candidates,
    signin_provider_clear,
    signin_provider_current,
    signin_provider_set,
)


class SignInProviderForm(forms.Form):
    org = IdChoiceField(
        queryset=signin_provider_candidates(),
        label="Organization that signs users in",
        empty_label="Pick an org",
        error_messages={
            "required": "Pick an org.",
            "invalid_choice": "Pick one of the listed orgs.",
        },
    )


@require_http_methods(["GET", "POST"])
@require_capability(Capability.MANAGE_USERS)
def signin_settings(request: HttpRequest) -> HttpResponse:
    current = signin_provider_current()
    initial = {"org": current.pk} if current else {}
    form = SignInProviderForm(form_data(request), initial=initial)
    if request.method == "POST" and form.is_valid():
        org = form.cleaned_data["org"]
        try:
            signin_provider_set(actor=Actor.from_request(request), org=org)
        except ValidationError as exc:
            form.add_error("org", exc)
        else:
            messages.success(request, f"Console users log in through {org.label}.")
            return redirect("connections:signin-settings")
    context = {"form": form, "current": current, "links": identity_link_list()}
    return render_form(request, "settings/signin.html", context)


@require_POST
@require_capability(Capability.MANAGE_USERS)
def signin_settings_off(request: HttpRequest) -> HttpResponse:
    if signin_provider_clear(actor=Actor.from_request(request)):
        messages.success(request, "Log in with Salesforce is turned off.")
    return redirect("connections:signin-settings")


@require_POST
@require_capability(Capability.MANAGE_USERS)
def identity_link_unlink(request: HttpRequest, pk: int) -> HttpResponse:
    link = get_object_or_404(SalesforceIdentityLink, pk=pk)
    identity_link_delete(actor=Actor.from_request(request), link=link)
    messages.success(request, f"{link.user} is unlinked.")
    return redirect("connections:signin-settings")
