"""Sending the browser to Salesforce and the one OAuth callback."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_not_required
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import redirect, render
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_GET, require_POST

from companies.access import Capability
from companies.audit import Actor
from companies.decorators import require_capability

from .. import oauth_flows, selectors, services
from ..models import ConnectionChange


def local_path_or(request: HttpRequest, candidate: str, default: str) -> str:
    """``candidate`` if it is a path on this console, else ``default``."""
    if candidate.startswith("/") and url_has_allowed_host_and_scheme(
        candidate, allowed_hosts={request.get_host()}
    ):
        return candidate
    return default


def authorization_redirect(
    request: HttpRequest, change: ConnectionChange, back: str
) -> HttpResponse:
    """Begin the change's authorization and send the browser to Salesforce,
    with the state bound to this browser session."""
    try:
        auth = services.connection_change_begin_authorization(change=change)
    except services.ChangeError as exc:
        messages.error(request, str(exc))
        return redirect(back)
    purpose = (
        "reauthorize" if change.kind == ConnectionChange.Kind.REAUTHORIZE else "change"
    )
    oauth_flows.remember(
        request, state=auth.state, purpose=purpose, change=change.pk, back=back
    )
    return HttpResponseRedirect(auth.url)


@require_POST
@require_capability(Capability.VIEW)
def authorize(request: HttpRequest, change_id: int) -> HttpResponse:
    """Send the user to the Salesforce login for this change."""
    change = selectors.change_for_action(
        access=request.access,  # type: ignore[attr-defined]
        user=request.user,
        pk=change_id,
    )
    back = local_path_or(
        request, request.POST.get("back", ""), selectors.change_page_url(change)
    )
    return authorization_redirect(request, change, back)


# Log in with Salesforce comes back here before anyone is signed in: the
# state bound to the browser session, not a sign-in, authorises the request.
@login_not_required
@require_GET
def oauth_callback(request: HttpRequest) -> HttpResponse:
    """The one callback URL for every org. Hands the code to a task."""
    flow = oauth_flows.take(request, request.GET.get("state", ""))
    if flow is None or (
        flow.get("purpose") not in services.ANONYMOUS_PURPOSES
        and not request.user.is_authenticated
    ):
        return render(request, "connections/callback_refused.html", status=403)
    back = flow.get("back", "/")
    if not url_has_allowed_host_and_scheme(back, allowed_hosts=None):
        back = "/"
    outcome = services.oauth_callback_receive(
        flow=flow, params=request.GET, back=back, actor=Actor.from_request(request)
    )
    if outcome is None:
        raise Http404
    if outcome.message:
        (messages.info if outcome.ok else messages.error)(request, outcome.message)
    response = redirect(outcome.redirect_to)
    if outcome.no_referrer:
        response["Referrer-Policy"] = "no-referrer"
    return response
