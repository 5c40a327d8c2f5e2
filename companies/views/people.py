"""Users (SPEC §10): the list, invitations, roles, deactivation, and the
invitee's set-password page."""

from __future__ import annotations

from django.conf import settings
from django.contrib import messages
from django.contrib.auth import get_user_model
from django.contrib.auth.decorators import login_not_required
from django.contrib.auth.models import User as UserModel
from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from vbsf.views import render_form

from ..access import Capability
from ..audit import Actor, client_ip
from ..decorators import form_data, require_capability
from ..forms import InvitationAcceptForm, InviteForm, RolesForm
from ..models import Company, Invitation
from ..people import (
    Roles,
    invitation_accept,
    invitation_for_token,
    invitation_link_failed,
    invitation_revoke,
    invitation_throttled,
    roles_of,
    user_deactivate,
    user_reactivate,
    user_roles_set,
    users_invite,
)
from ..selectors import invitation_pending_list, user_list


def _user(pk: int) -> UserModel:
    return get_object_or_404(get_user_model(), pk=pk)


@require_GET
@require_capability(Capability.MANAGE_USERS)
def user_index(request: HttpRequest) -> HttpResponse:
    invitations = list(invitation_pending_list())
    context = {
        "users": user_list(),
        "invitations": invitations,
        # The list refreshes itself until every email is out (or refused).
        "invitations_sending": any(i.mail_state == "sending" for i in invitations),
    }
    return render(request, "companies/users.html", context)


@require_http_methods(["GET", "POST"])
@require_capability(Capability.MANAGE_USERS)
def user_invite(request: HttpRequest) -> HttpResponse:
    form = InviteForm(
        form_data(request), companies=Company.objects.all(), initial_roles=Roles()
    )
    if request.method == "POST" and form.is_valid():
        try:
            invitation = users_invite(
                actor=Actor.from_request(request),
                email=form.cleaned_data["email"],
                roles=form.roles(),
            )
        except ValidationError as exc:
            form.add_error("email", exc)
        else:
            messages.success(
                request,
                f"Invitation for {invitation.email} saved; Open invitations "
                "below says when the email is sent.",
            )
            return redirect("users:list")
    context = {"form": form, "invitation_hours": settings.INVITATION_HOURS}
    return render_form(request, "companies/users_invite.html", context)


@require_http_methods(["GET", "POST"])
@require_capability(Capability.MANAGE_USERS)
def user_detail(request: HttpRequest, pk: int) -> HttpResponse:
    person = _user(pk)
    form = RolesForm(
        form_data(request),
        companies=Company.objects.all(),
        initial_roles=roles_of(person),
    )
    if request.method == "POST" and form.is_valid():
        try:
            changed = user_roles_set(
                actor=Actor.from_request(request), user=person, roles=form.roles()
            )
        except ValidationError as exc:
            form.add_error(None, exc)
        else:
            text = "Roles saved." if changed else "The roles were already so."
            messages.success(request, text)
            return redirect("users:detail", pk=person.pk)
    context = {"person": person, "form": form}
    return render_form(request, "companies/users_detail.html", context)


@require_POST
@require_capability(Capability.MANAGE_USERS)
def user_deactivate_view(request: HttpRequest, pk: int) -> HttpResponse:
    person = _user(pk)
    try:
        ended = user_deactivate(actor=Actor.from_request(request), user=person)
    except ValidationError as exc:
        messages.error(request, exc.messages[0])
    else:
        messages.success(
            request,
            f"{person.get_username()} is deactivated; {ended} session(s) ended.",
        )
    return redirect("users:detail", pk=person.pk)


@require_POST
@require_capability(Capability.MANAGE_USERS)
def user_reactivate_view(request: HttpRequest, pk: int) -> HttpResponse:
    person = _user(pk)
    user_reactivate(actor=Actor.from_request(request), user=person)
    messages.success(request, f"{person.get_username()} is active again.")
    return redirect("users:detail", pk=person.pk)


@require_POST
@require_capability(Capability.MANAGE_USERS)
def invitation_revoke_view(request: HttpRequest, pk: int) -> HttpResponse:
    invitation = get_object_or_404(Invitation, pk=pk)
    if invitation_revoke(actor=Actor.from_request(request), invitation=invitation):
        messages.success(request, f"The invitation of {invitation.email} is revoked.")
    else:
        messages.error(
            request,
            f"The invitation of {invitation.email} was already used or revoked.",
        )
    return redirect("users:list")


def _invitation_or_refusal(
    request: HttpRequest, token: str
) -> tuple[Invitation | None, HttpResponse | None]:
    """The open invitation, or the page that refuses: throttled (429) or
    unknown, used, revoked, expired (404), which count against the address."""
    address = client_ip(request)
    if (lockout := invitation_throttled(address)) is not None:
        context = {"wait": lockout.wait}
        return None, render(
            request, "companies/invite_invalid.html", context, status=429
        )
    invitation = invitation_for_token(token)
    if invitation is None:
        invitation_link_failed(address)
        return None, render(request, "companies/invite_invalid.html", {}, status=404)
    return invitation, None


@login_not_required
@never_cache
@require_http_methods(["GET", "POST"])
def invitation_accept_view(request: HttpRequest, token: str) -> HttpResponse:
    invitation, refusal = _invitation_or_refusal(request, token)
    if refusal is not None:
        return refusal
    invitee = get_user_model()(username=invitation.email, email=invitation.email)
    form = InvitationAcceptForm(invitee, form_data(request))
    if request.method == "POST" and form.is_valid():
        try:
            invitation_accept(
                invitation=invitation,
                password=form.cleaned_data["new_password1"],
                ip_address=client_ip(request),
            )
        except ValidationError as exc:
            form.add_error(None, exc)
        else:
            messages.success(request, "Your password is set. Log in with it.")
            return redirect("login")
    context = {"form": form, "invitation": invitation}
    return render_form(request, "companies/invite_accept.html", context)
