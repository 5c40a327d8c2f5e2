"""The org page and the org actions that need its connection: re-authorize,
verify permissions, and the backup policy page's connection section."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.contrib import messages
from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_http_methods

from companies.access import Capability
from companies.audit import Actor
from companies.decorators import require_capability
from companies.selectors import org_timeline
from orgs.forms import BackupPolicyForm, OrgSettingsForm
from orgs.health import org_check_progress
from orgs.models import BackupPolicy, ConnectionStatus, SalesforceOrg
from orgs.selectors import (
    latest_url_verification,
    org_get,
    policy_get,
    token_budget_for,
)
from orgs.services import ConcurrentChange, policy_update
from vbsf.views import render_form

from .. import oauth_flows, selectors, services
from ..forms import CredentialsForm
from ..models import ConnectionChange, PermissionCheck

# Re-authorize connection's field saying the token budget warning was read.
TOKEN_BUDGET_CONFIRMED = "token_budget_confirmed"

ORG_CAPABILITIES = {
    "edit_connection": Capability.EDIT_CONNECTION,
    "reauthorize": Capability.REAUTHORIZE,
    "edit_org_url": Capability.EDIT_ORG_URL,
    "verify_permissions": Capability.VERIFY_PERMISSIONS,
    "run_checks": Capability.RUN_CHECKS,
}


def org_page_context(access: Any, org: SalesforceOrg) -> dict[str, Any]:
    check = selectors.latest_org_check(org=org)
    previous = selectors.previous_done_check(check=check) if check else None
    last_change, reauthorization = selectors.org_page_changes(org=org)
    verification = latest_url_verification(org=org)
    open_change = last_change if last_change and last_change.is_open else None
    return {
        "live": org_live_state(org, check, open_change, reauthorization, verification),
        "org": org,
        "check": check,
        "drift": selectors.permission_drift(current=check, previous=previous)
        if check
        else [],
        "open_change": open_change,
        "last_change": last_change,
        "reauthorization": reauthorization,
        "url_verification": verification,
        "settings_form": OrgSettingsForm(initial=OrgSettingsForm.initial_for(org)),
        "policy": getattr(org, "backup_policy", None),
        "history": org_timeline(org=org, status_labels=dict(ConnectionStatus.choices)),
        "can": {
            name: access.can(capability, org.company_id)
            for name, capability in ORG_CAPABILITIES.items()
        },
    }


WORKING_STATES = (
    ConnectionChange.State.AWAITING_ACTIVATION,
    ConnectionChange.State.EXCHANGING,
)


def org_live_state(
    org: SalesforceOrg,
    check: Any,
    open_change: ConnectionChange | None,
    reauthorization: ConnectionChange | None,
    verification: Any,
) -> dict[str, bool]:
    """What a task is doing on the org now: the page polls only then."""
    progress = org_check_progress(org)
    running = (
        progress == "checking"
        or (check is not None and check.state == PermissionCheck.State.RUNNING)
        or (open_change is not None and open_change.state in WORKING_STATES)
        # A re-authorization is authorized only until its apply task runs.
        or (
            reauthorization is not None
            and reauthorization.state
            in (*WORKING_STATES, ConnectionChange.State.AUTHORIZED)
        )
        or (verification is not None and verification.state == "running")
    )
    return {
        "running": running,
        "checking": progress == "checking",
        "checked_now": progress == "checked",
    }


@require_GET
@require_capability(Capability.VIEW)
def org_live(request: HttpRequest, pk: int) -> HttpResponse:
    """The org page's live part (status, connection, work in progress),
    polled by htmx while a task works on the org."""
    access = request.access  # type: ignore[attr-defined]
    org = org_get(access=access, pk=pk)
    return render(request, "orgs/_org_live.html", org_page_context(access, org))


@require_GET
@require_capability(Capability.VIEW)
def org_detail(request: HttpRequest, pk: int) -> HttpResponse:
    access = request.access  # type: ignore[attr-defined]
    org = org_get(access=access, pk=pk)
    context = org_page_context(access, org)
    # Before anyone is sent to Salesforce with Re-authorize connection (SPEC
    # §9); the org's own token is replaced then, so it is not named.
    context["token_budget"] = token_budget_for(org=org, reauthorizing=True)
    return render(request, "orgs/detail.html", context)


@require_http_methods(["POST"])
@require_capability(Capability.REAUTHORIZE)
def org_reauthorize(request: HttpRequest, pk: int) -> HttpResponse:
    """Re-authorize connection: straight to the Salesforce login."""
    org = org_get(
        access=request.access,  # type: ignore[attr-defined]
        pk=pk,
        capability=Capability.REAUTHORIZE,
    )
    # The token budget guard (SPEC §9): from any page, nobody goes to
    # Salesforce past four live tokens without reading the warning first.
    budget = token_budget_for(org=org, reauthorizing=True)
    if budget and budget.warns and not request.POST.get(TOKEN_BUDGET_CONFIRMED):
        messages.warning(
            request, f"{budget.warning} Choose “Re-authorize anyway” to go on."
        )
        return redirect(org.get_absolute_url())
    try:
        change, auth = services.reauthorization_start(
            actor=Actor.from_request(request), org=org
        )
    except services.ChangeError as exc:
        messages.error(request, str(exc))
        return redirect(org.get_absolute_url())
    oauth_flows.remember(
        request,
        state=auth.state,
        purpose="reauthorize",
        change=change.pk,
        back=org.get_absolute_url(),
    )
    return HttpResponseRedirect(auth.url)


@require_http_methods(["POST"])
@require_capability(Capability.VERIFY_PERMISSIONS)
def org_verify_permissions(request: HttpRequest, pk: int) -> HttpResponse:
    org = org_get(
        access=request.access,  # type: ignore[attr-defined]
        pk=pk,
        capability=Capability.VERIFY_PERMISSIONS,
    )
    # No flash: the org page shows the running check, then its outcome.
    services.permission_check_start(actor=Actor.from_request(request), org=org)
    return redirect(org.get_absolute_url())


# --- the backup policy page -------------------------------------------------

PolicyAction = Callable[
    [HttpRequest, BackupPolicy, dict[str, Any]], HttpResponse | None
]


@require_http_methods(["GET", "POST"])
@require_capability(Capability.EDIT_CONNECTION)
def policy_edit(request: HttpRequest, pk: int) -> HttpResponse:
    """Edit a backup policy; its connection section stages a client-app
    change through the same services as Edit Connection."""
    access = request.access  # type: ignore[attr-defined]
    policy = policy_get(access=access, pk=pk, capability=Capability.EDIT_CONNECTION)
    context = policy_page_context(request, policy)
    action = next(
        (POLICY_ACTIONS[k] for k in POLICY_ACTIONS if k in request.POST), None
    )
    if request.method == "POST" and action is not None:
        try:
            if (response := action(request, policy, context)) is not None:
                return response
        except (services.ChangeError, ConcurrentChange) as exc:
            messages.error(request, str(exc))
            return redirect("policies:edit", pk=policy.pk)
    return render_form(request, "orgs/policy_edit.html", context)


def policy_page_context(request: HttpRequest, policy: BackupPolicy) -> dict[str, Any]:
    change = selectors.open_change_for(org=policy.org, user=request.user)
    return {
        "policy": policy,
        "org": policy.org,
        "form": BackupPolicyForm(instance=policy),
        "credentials_form": CredentialsForm(prefix="credentials"),
        "change": change,
        "check": selectors.latest_change_check(change=change),
    }


def save_policy(
    request: HttpRequest, policy: BackupPolicy, context: dict[str, Any]
) -> HttpResponse | None:
    form = BackupPolicyForm(
        request.POST, instance=BackupPolicy.objects.get(pk=policy.pk)
    )
    context["form"] = form
    if not form.is_valid():
        return None
    policy_update(
        actor=Actor.from_request(request), policy=policy, data=form.cleaned_data
    )
    messages.success(request, "Backup policy saved.")
    return redirect("policies:edit", pk=policy.pk)


def save_credentials(
    request: HttpRequest, policy: BackupPolicy, context: dict[str, Any]
) -> HttpResponse | None:
    form = CredentialsForm(request.POST, prefix="credentials")
    context["credentials_form"] = form
    if not form.is_valid():
        return None
    try:
        services.connection_change_start(
            actor=Actor.from_request(request), org=policy.org, **form.service_args()
        )
    except ValidationError as exc:
        form.add_service_errors(exc)
        return None
    messages.success(request, "Saved; waiting for Salesforce to activate the new app.")
    return redirect("policies:edit", pk=policy.pk)


def verify_change_permissions(
    request: HttpRequest, policy: BackupPolicy, context: dict[str, Any]
) -> HttpResponse | None:
    if context["change"] is None:
        return None
    services.permission_check_start(
        actor=Actor.from_request(request), change=context["change"]
    )
    return redirect("policies:edit", pk=policy.pk)


def apply_change(
    request: HttpRequest, policy: BackupPolicy, context: dict[str, Any]
) -> HttpResponse | None:
    change, check = context["change"], context["check"]
    if change is None:
        return None
    if check is None or not check.backup_ok:
        raise services.ChangeError(
            "Verify permissions first: backup permissions must all be granted."
        )
    services.connection_change_apply(
        actor=Actor.from_request(request),
        change=change,
        company=policy.org.company,
        permission_check=check,
    )
    messages.success(request, f"{policy.org.label} now uses the new client app.")
    return redirect("policies:edit", pk=policy.pk)


POLICY_ACTIONS: dict[str, PolicyAction] = {
    "save_policy": save_policy,
    "save_credentials": save_credentials,
    "verify_permissions": verify_change_permissions,
    "apply_change": apply_change,
}
