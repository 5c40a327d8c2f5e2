"""Re-authorization campaigns (SPEC §9): the list, a campaign's page with
live counts and rows, and the per-row actions."""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_POST

from companies.access import Capability
from companies.audit import Actor
from companies.decorators import require_capability
from orgs.selectors import token_budget_for, token_budgets_for
from vbsf.views import render_form

from .. import oauth_flows, selectors
from ..forms import CampaignLinkForm, CampaignSettingsForm
from ..models import Campaign, CampaignOrg
from ..services import campaigns, delegation
from .org_page import TOKEN_BUDGET_CONFIRMED


def campaign_context(
    request: HttpRequest,
    campaign: Campaign,
    *,
    bad_email: tuple[int, str, list[str]] | None = None,
    settings_form: CampaignSettingsForm | None = None,
) -> dict[str, Any]:
    """The page's counts and rows; ``bad_email`` is (row, typed, errors) of
    a "Send link" that came back with its error, ``settings_form`` the name
    and deadline form that did."""
    access = request.access  # type: ignore[attr-defined]
    page = selectors.campaign_rows_page(
        access=access, campaign=campaign, number=page_number(request)
    )
    rows = list(page.object_list)
    for row in rows:
        row.may_act = (
            not campaign.is_closed
            and not row.is_finished
            and access.can(Capability.REAUTHORIZE, row.org.company_id)
        )
        row.demo_mail = delegation.campaign_demo_mail(row) if row.may_act else ""
        row.email_value, row.email_errors = row.email, []
        if bad_email and bad_email[0] == row.pk:
            row.email_value, row.email_errors = bad_email[1], bad_email[2]
    rows_budget_warnings(rows)
    counts = selectors.campaign_counts(access=access, campaign=campaign)
    return {
        "campaign": campaign,
        "settings_form": campaign_settings_form(request, campaign, settings_form),
        "companies": selectors.campaign_companies(access=access, campaign=campaign),
        "counts": counts,
        "state_counts": [
            (value, label, counts[value]) for value, label in CampaignOrg.State.choices
        ],
        "page": page,
        "rows": rows,
    }


def campaign_settings_form(
    request: HttpRequest,
    campaign: Campaign,
    form: CampaignSettingsForm | None,
) -> CampaignSettingsForm | None:
    """The name and deadline form, for who may change an open campaign."""
    access = request.access  # type: ignore[attr-defined]
    if campaign.is_closed or not campaigns.campaign_may_change(
        access=access, campaign=campaign
    ):
        return None
    return form or CampaignSettingsForm(
        initial={"name": campaign.name, "deadline": campaign.deadline}
    )


def rows_budget_warnings(rows: list[CampaignOrg]) -> None:
    """The token budget guard (SPEC §9) of every row the user may act on, in
    one query for the page: shown before "Re-authorize now" sends anyone to
    Salesforce, and before a link is sent or copied."""
    budgets = token_budgets_for(orgs=[row.org for row in rows if row.may_act])
    for row in rows:
        budget = budgets.get(row.org_id)
        row.token_budget = budget if budget and budget.warns else None


@require_GET
@require_capability(Capability.VIEW)
def campaign_list(request: HttpRequest) -> HttpResponse:
    access = request.access  # type: ignore[attr-defined]
    campaigns_page = Paginator(selectors.campaign_list(access=access), 50).get_page(
        request.GET.get("page")
    )
    return render(
        request,
        "connections/campaign_list.html",
        {"page": campaigns_page, "may_start": access.can(Capability.REAUTHORIZE)},
    )


@require_GET
@require_capability(Capability.VIEW)
def campaign_detail(request: HttpRequest, pk: int) -> HttpResponse:
    campaign = selectors.campaign_get(access=request.access, pk=pk)  # type: ignore[attr-defined]
    return render(
        request, "connections/campaign_detail.html", campaign_context(request, campaign)
    )


@require_POST
@require_capability(Capability.REAUTHORIZE)
def campaign_settings(request: HttpRequest, pk: int) -> HttpResponse:
    """ "Change name or deadline"."""
    campaign = selectors.campaign_get(access=request.access, pk=pk)  # type: ignore[attr-defined]
    form = CampaignSettingsForm(request.POST)
    if form.is_valid():
        try:
            campaigns.campaign_update(
                actor=Actor.from_request(request),
                access=request.access,  # type: ignore[attr-defined]
                campaign=campaign,
                name=form.cleaned_data["name"],
                deadline=form.cleaned_data["deadline"],
            )
        except campaigns.CampaignError as exc:
            form.add_error(exc.field, str(exc))
        else:
            messages.success(request, "Name and deadline saved.")
            return redirect("campaigns:detail", pk=campaign.pk)
    context = campaign_context(request, campaign, settings_form=form)
    if context["settings_form"] is None:
        # A form this user does not see (not theirs to change, or the
        # campaign closed meanwhile): the reason goes at the top.
        for errors in form.errors.values():
            for error in errors:
                messages.error(request, error)
    return render_form(request, "connections/campaign_detail.html", context)


@require_GET
@require_capability(Capability.VIEW)
@never_cache
def campaign_live(request: HttpRequest, pk: int) -> HttpResponse:
    """Counts and rows, polled by htmx while the campaign is open."""
    campaign = selectors.campaign_get(access=request.access, pk=pk)  # type: ignore[attr-defined]
    return render(
        request, "connections/_campaign_live.html", campaign_context(request, campaign)
    )


def row_for_action(request: HttpRequest, pk: int, row_pk: int) -> CampaignOrg:
    return selectors.campaign_row_for_action(
        access=request.access,  # type: ignore[attr-defined]
        campaign_id=pk,
        pk=row_pk,
    )


def page_number(request: HttpRequest) -> str:
    """The rows page a GET shows or a row action came from."""
    number = request.GET.get("page") or request.POST.get("page") or "1"
    return number if number.isdigit() and len(number) < 7 else "1"


def page_url(request: HttpRequest, row: CampaignOrg) -> str:
    """The campaign page (of rows) the action came from."""
    url = reverse("campaigns:detail", kwargs={"pk": row.campaign_id})
    number = page_number(request)
    return url if number == "1" else f"{url}?page={number}"


def back_to(request: HttpRequest, row: CampaignOrg) -> HttpResponse:
    """Back to the campaign page the action came from. An htmx request
    (Copy link) is told to load it as a page: a redirect would be followed
    inside the XHR and the whole page swapped into the row."""
    url = page_url(request, row)
    if request.headers.get("HX-Request"):
        return HttpResponse(headers={"HX-Redirect": url})
    return redirect(url)


@require_POST
@require_capability(Capability.REAUTHORIZE)
def campaign_row_reauthorize(
    request: HttpRequest, pk: int, row_pk: int
) -> HttpResponse:
    """ "Re-authorize now": the console user logs in himself, through the
    same flow as the org page's Re-authorize connection."""
    row = row_for_action(request, pk, row_pk)
    # The same stop as the org page's Re-authorize connection: past four live
    # tokens, nobody goes to Salesforce without the warning read first.
    budget = token_budget_for(org=row.org, reauthorizing=True)
    if budget and budget.warns and not request.POST.get(TOKEN_BUDGET_CONFIRMED):
        messages.warning(
            request,
            f"{row.org.label}: {budget.warning} Choose “Re-authorize anyway” to go on.",
        )
        return back_to(request, row)
    try:
        change, auth = delegation.campaign_row_reauthorize_start(
            actor=Actor.from_request(request), row=row
        )
    except campaigns.CampaignError as exc:
        messages.error(request, str(exc))
        return back_to(request, row)
    oauth_flows.remember(
        request,
        state=auth.state,
        purpose="reauthorize",
        change=change.pk,
        back=page_url(request, row),
    )
    return HttpResponseRedirect(auth.url)


@require_POST
@require_capability(Capability.REAUTHORIZE)
def campaign_row_send_link(request: HttpRequest, pk: int, row_pk: int) -> HttpResponse:
    row = row_for_action(request, pk, row_pk)
    form = CampaignLinkForm(request.POST, prefix=f"row{row.pk}")
    if not form.is_valid():
        typed = request.POST.get(f"row{row.pk}-email", "")[:254]
        context = campaign_context(
            request, row.campaign, bad_email=(row.pk, typed, form.errors["email"])
        )
        return render_form(request, "connections/campaign_detail.html", context)
    try:
        delegation.campaign_row_link_send(
            actor=Actor.from_request(request), row=row, email=form.cleaned_data["email"]
        )
    except campaigns.CampaignError as exc:
        messages.error(request, str(exc))
        return back_to(request, row)
    messages.success(
        request, f"Link for {row.org.label} sent to {form.cleaned_data['email']}."
    )
    return back_to(request, row)


@require_POST
@require_capability(Capability.REAUTHORIZE)
@never_cache
def campaign_row_copy_link(request: HttpRequest, pk: int, row_pk: int) -> HttpResponse:
    """ "Copy link": answers the link once (an htmx fragment, or a small page
    without JavaScript); it is never in the campaign page's HTML."""
    row = row_for_action(request, pk, row_pk)
    try:
        url = delegation.campaign_row_link_copy(
            actor=Actor.from_request(request), row=row
        )
    except campaigns.CampaignError as exc:
        messages.error(request, str(exc))
        return back_to(request, row)
    template = (
        "connections/_campaign_link.html"
        if request.headers.get("HX-Request")
        else "connections/campaign_link.html"
    )
    return render(request, template, {"row": row, "url": url})


@require_POST
@require_capability(Capability.REAUTHORIZE)
def campaign_row_skip(request: HttpRequest, pk: int, row_pk: int) -> HttpResponse:
    row = row_for_action(request, pk, row_pk)
    try:
        campaigns.campaign_row_skip(actor=Actor.from_request(request), row=row)
    except campaigns.CampaignError as exc:
        messages.error(request, str(exc))
    return back_to(request, row)
