"""The delegated re-authorization link, ``/r/<token>/`` (SPEC §9): opened
with no console sign-in by the Salesforce admin of one org. These pages
show only that org, what the Salesforce user needs and the outcome: their
own minimal layout, no console navigation."""

from __future__ import annotations

from typing import Any

from django.contrib.auth.decorators import login_not_required
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import render
from django.urls import reverse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from companies.audit import client_ip

from .. import oauth_flows, selectors
from ..models import CampaignOrg, ConnectionChange
from ..permissions import BACKUP, LICENSE_HINT, REQUIRED_PERMISSIONS, RESTORE
from ..services import campaigns, delegation

SESSION_SECRET = "delegated_browser"


def browser_secret(request: HttpRequest) -> str:
    """This browser's random value ('' if none yet); the row keeps its hash."""
    secret = request.session.get(SESSION_SECRET)
    return secret if isinstance(secret, str) else ""


def browser_claim(request: HttpRequest) -> str:
    """This browser's secret, made the first time a valid link is opened
    (opening invalid links or guessing stores no session). A new secret
    comes with a new session key: a session id planted in this browser
    beforehand (fixation) does not carry the claim. The key is not changed
    again when the login starts, so a double click on "Log in with
    Salesforce" keeps the same browser."""
    secret = browser_secret(request)
    if not secret:
        request.session.cycle_key()
        secret = delegation.new_browser_secret()
        request.session[SESSION_SECRET] = secret
    return secret


def plain(
    request: HttpRequest, template: str, context: dict[str, Any], status: int = 200
) -> HttpResponse:
    # The address bar holds the token. The console-wide "same-origin"
    # Referrer-Policy already keeps it from Salesforce and any other site;
    # "no-referrer" would make the browser send "Origin: null" with the
    # form's POST, which CSRF protection rightly refuses.
    return render(request, template, context, status=status)


def invalid(request: HttpRequest) -> HttpResponse:
    return plain(request, "connections/delegated_invalid.html", {}, status=410)


def requirements() -> dict[str, Any]:
    return {
        "backup_permissions": [p for p in REQUIRED_PERMISSIONS if p.purpose == BACKUP],
        "restore_permissions": [
            p for p in REQUIRED_PERMISSIONS if p.purpose == RESTORE
        ],
        "license_hint": LICENSE_HINT,
    }


@login_not_required
@require_http_methods(["GET", "POST"])
@never_cache
def delegated_landing(request: HttpRequest, token: str) -> HttpResponse:
    """GET: the org and what the Salesforce user needs. POST ("Log in with
    Salesforce"): claim the link for this browser and go to Salesforce."""
    address = client_ip(request)
    if not delegation.link_request_allowed(address=address):
        return plain(request, "connections/delegated_throttled.html", {}, status=429)
    try:
        if request.method == "GET":
            row = delegation.delegated_link_open(
                token=token, address=address, browser_secret=browser_secret(request)
            )
            # The form posts to the page's own address: the token is in the
            # address bar only, never in the HTML.
            context = {"row": row, **requirements()}
            browser_claim(request)
            return plain(request, "connections/delegated_landing.html", context)
        row = delegation.link_row(token)
    except delegation.LinkInvalid:
        return invalid(request)
    return login_redirect(request, row.pk, browser_claim(request))


def login_redirect(request: HttpRequest, row_id: int, secret: str) -> HttpResponse:
    try:
        change, auth = delegation.delegated_login_start(
            row_id=row_id, address=client_ip(request), browser_secret=secret
        )
    except delegation.LinkInvalid:
        return invalid(request)
    except campaigns.CampaignError as exc:
        context = {"message": str(exc), **requirements()}
        return plain(request, "connections/delegated_problem.html", context, status=422)
    back = reverse("delegated:result", kwargs={"row_id": row_id})
    oauth_flows.remember(
        request, state=auth.state, purpose="delegated", change=change.pk, back=back
    )
    return HttpResponseRedirect(auth.url)


def result_context(row: CampaignOrg) -> dict[str, Any]:
    change = row.change
    working = change is not None and change.state in (
        ConnectionChange.State.EXCHANGING,
        ConnectionChange.State.AUTHORIZED,
    )
    check = (
        selectors.latest_check_since(org=row.org, since=change.authorized_at)
        if row.state == CampaignOrg.State.CONNECTED and change is not None
        else None
    )
    return {
        "row": row,
        "working": working and row.state != CampaignOrg.State.CONNECTED,
        "check": check,
        "polling": working
        or (check is None and row.state == "connected")
        or (check is not None and check.state == "running"),
        "may_retry": not working and delegation.delegated_row_retry_allowed(row),
        **requirements(),
    }


def claimed_row(request: HttpRequest, row_id: int) -> CampaignOrg | None:
    return delegation.delegated_row_for_browser(
        row_id=row_id, browser_secret=request.session.get(SESSION_SECRET) or ""
    )


@login_not_required
@require_GET
@never_cache
def delegated_result(request: HttpRequest, row_id: int) -> HttpResponse:
    """After the callback: "Connected as X" with the permission result, or
    what went wrong; polls while the task works. Only for the browser that
    claimed the link."""
    row = claimed_row(request, row_id)
    if row is None:
        return invalid(request)
    template = (
        "connections/_delegated_result.html"
        if request.headers.get("HX-Request")
        else "connections/delegated_result.html"
    )
    return plain(request, template, result_context(row))


@login_not_required
@require_POST
def delegated_retry(request: HttpRequest, row_id: int) -> HttpResponse:
    """Log in again after a failure (wrong org, declined), same browser.
    Counted with the link's requests: each retry starts a login."""
    if not delegation.link_request_allowed(address=client_ip(request)):
        return plain(request, "connections/delegated_throttled.html", {}, status=429)
    row = claimed_row(request, row_id)
    if row is None or not delegation.delegated_row_retry_allowed(row):
        return invalid(request)
    return login_redirect(request, row.pk, browser_secret(request))
