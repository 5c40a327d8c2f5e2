"""Sign-in pages: the console's login form and Log in with Salesforce."""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.contrib.auth import login
from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_not_required
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_POST

from companies.audit import client_ip
from companies.forms import ThrottledAuthenticationForm
from connections import salesforce

from .. import oauth_flows
from ..models import SignInAttempt
from ..services.signin import (
    BACKEND,
    MAX_SESSION_ATTEMPTS,
    SESSION_KEY,
    identity_provider_org,
    signin_begin,
    signin_consume,
    signin_expire_if_stale,
    signin_start_allowed,
)

State = SignInAttempt.State


class LoginView(auth_views.LoginView):
    """The one password sign-in: the admin site's login redirects here, so
    its Administrators go through the same throttle and audit trail."""

    template_name = "registration/login.html"
    authentication_form = ThrottledAuthenticationForm
    redirect_authenticated_user = True

    def form_invalid(self, form: Any) -> HttpResponse:
        # The form again with its errors: a 422, so Back never resubmits.
        response = super().form_invalid(form)
        response.status_code = 422
        return response

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        context = super().get_context_data(**kwargs)
        # "Log in with Salesforce" only when an org is the sign-in provider.
        context["salesforce_signin"] = identity_provider_org() is not None
        return context


def _session_attempts(request: HttpRequest) -> list[int]:
    return [int(pk) for pk in request.session.get(SESSION_KEY, [])]


@login_not_required
@require_POST
def signin_start(request: HttpRequest) -> HttpResponse:
    """Send the browser to the identity-provider org's Salesforce login.

    POST only (the login page's button, with its CSRF token): a GET from
    anywhere must not create attempts or sessions."""
    org = identity_provider_org()
    if org is None:
        raise Http404
    if not signin_start_allowed(address=client_ip(request)):
        messages.error(request, "Too many sign-ins from here. Wait a minute.")
        return redirect("login")
    try:
        attempt, url, state = signin_begin(org=org)
    except salesforce.SalesforceError:
        messages.error(request, "Log in with Salesforce is not available right now.")
        return redirect("login")
    oauth_flows.remember(request, state=state, purpose="signin", attempt=attempt.pk)
    recent = [*_session_attempts(request), attempt.pk][-MAX_SESSION_ATTEMPTS:]
    request.session[SESSION_KEY] = recent
    return HttpResponseRedirect(url)


@login_not_required
@require_GET
@never_cache
def signin_wait(request: HttpRequest, attempt_id: int) -> HttpResponse:
    """Poll the attempt; sign the browser in once the task has succeeded."""
    if attempt_id not in _session_attempts(request):
        raise Http404
    attempt = get_object_or_404(SignInAttempt, pk=attempt_id)
    if attempt.state in (State.STARTED, State.EXCHANGING):
        signin_expire_if_stale(attempt_id=attempt_id)
        attempt.refresh_from_db()
    if attempt.state == State.SUCCEEDED:
        if (user := signin_consume(attempt_id=attempt_id)) is not None:
            login(request, user, backend=BACKEND)
            return _to_dashboard(request)
        if request.user.is_authenticated and request.user.pk == attempt.user_id:
            return _to_dashboard(request)  # a second poll of the same sign-in
    context = {"attempt": attempt, "polling": attempt.state == State.EXCHANGING}
    return render(request, "connections/signin_wait.html", context)


def _to_dashboard(request: HttpRequest) -> HttpResponse:
    url = reverse("dashboard")
    if request.headers.get("HX-Request"):
        # htmx would swap a followed redirect into the page; navigate instead.
        return HttpResponse(headers={"HX-Redirect": url})
    return HttpResponseRedirect(url)
