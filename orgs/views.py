"""Dashboard, the org list and the org page."""

from __future__ import annotations

from django.contrib import messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.paginator import Paginator
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_GET, require_http_methods

from companies.access import Capability
from companies.audit import Actor
from companies.decorators import require_capability
from companies.models import AuditEvent
from connections.selectors import (
    latest_org_check,
    permission_drift,
    previous_done_check,
)

from . import selectors
from .forms import (
    BackupPolicyForm,
    OrgFilterForm,
    OrgSettingsForm,
    OrgUrlForm,
    QueueSelectionForm,
)
from .models import BackupPolicy, ConnectionStatus
from .services import (
    ConcurrentChange,
    org_update,
    org_url_verification_start,
    orgs_check_now,
    policy_update,
)

PAGE_SIZE = 50


@require_GET
@require_capability(Capability.VIEW)
def dashboard(request: HttpRequest) -> HttpResponse:
    access = request.access  # type: ignore[attr-defined]
    counts = selectors.org_status_counts(access=access)
    context = {
        "status_counts": [
            (status, label, counts[status])
            for status, label in ConnectionStatus.choices
        ],
        "total": sum(counts.values()),
        "attention": selectors.orgs_needing_attention(access=access, limit=10),
        "legacy_count": selectors.legacy_app_org_count(access=access),
    }
    return render(request, "orgs/dashboard.html", context)


@require_GET
@require_capability(Capability.VIEW)
def org_index(request: HttpRequest) -> HttpResponse:
    access = request.access  # type: ignore[attr-defined]
    form = OrgFilterForm(request.GET or None, companies=access.companies())
    filters = form.cleaned_data if form.is_valid() else {}
    orgs = selectors.org_list(
        access=access,
        status=filters.get("status", ""),
        company_id=filters["company"].pk if filters.get("company") else None,
        search=filters.get("q", ""),
        legacy_only=bool(filters.get("legacy")),
    )
    page = Paginator(orgs, PAGE_SIZE).get_page(request.GET.get("page"))
    querystring = request.GET.copy()
    querystring.pop("page", None)
    context = {
        "form": form,
        "page": page,
        "orgs": page.object_list,
        "querystring": querystring.urlencode(),
    }
    return render(request, "orgs/list.html", context)


@require_GET
@require_capability(Capability.VIEW)
def org_detail(request: HttpRequest, pk: int) -> HttpResponse:
    access = request.access  # type: ignore[attr-defined]
    org = selectors.org_get(access=access, pk=pk)
    history = AuditEvent.objects.filter(org=org).order_by("-created_at", "-id")[:25]
    check = latest_org_check(org=org)
    previous = previous_done_check(check=check) if check else None
    last_change = (
        org.connection_changes.exclude(kind="reauthorize")
        .order_by("-created_at")
        .first()
    )
    reauthorization = (
        org.connection_changes.filter(kind="reauthorize")
        .order_by("-created_at")
        .first()
    )
    context = {
        "check": check,
        "drift": permission_drift(current=check, previous=previous) if check else [],
        "open_change": last_change if last_change and last_change.is_open else None,
        "last_change": last_change,
        "reauthorization": reauthorization,
        "url_verification": org.url_verifications.order_by(
            "-created_at", "-id"
        ).first(),
        "settings_form": OrgSettingsForm(
            initial={
                "alias": org.alias,
                "is_identity_provider": org.is_identity_provider,
                "version": org.version,
            }
        ),
        "org": org,
        "policy": getattr(org, "backup_policy", None),
        "history": history,
        "can": {
            "edit_connection": access.can(Capability.EDIT_CONNECTION, org.company_id),
            "reauthorize": access.can(Capability.REAUTHORIZE, org.company_id),
            "edit_org_url": access.can(Capability.EDIT_ORG_URL, org.company_id),
            "verify_permissions": access.can(
                Capability.VERIFY_PERMISSIONS, org.company_id
            ),
            "run_checks": access.can(Capability.RUN_CHECKS, org.company_id),
        },
    }
    return render(request, "orgs/detail.html", context)


@require_GET
@require_capability(Capability.VIEW)
def policy_index(request: HttpRequest) -> HttpResponse:
    policies = selectors.policy_list(access=request.access)  # type: ignore[attr-defined]
    page = Paginator(policies, PAGE_SIZE).get_page(request.GET.get("page"))
    return render(request, "orgs/policy_list.html", {"page": page})


@require_http_methods(["GET", "POST"])
@require_capability(Capability.EDIT_CONNECTION)
def policy_edit(request: HttpRequest, pk: int) -> HttpResponse:
    """Edit a backup policy; its connection section stages a client-app
    change through the same service as Edit Connection."""
    from connections.forms import CredentialsForm
    from connections.selectors import open_change_for
    from connections.services import (
        ChangeError,
        connection_change_apply,
        connection_change_start,
        permission_check_start,
    )

    access = request.access  # type: ignore[attr-defined]
    policy = get_object_or_404(selectors.policy_list(access=access), pk=pk)
    org = policy.org
    if not access.can(Capability.EDIT_CONNECTION, org.company_id):
        raise PermissionDenied
    actor = Actor.from_request(request)
    form = BackupPolicyForm(instance=policy)
    credentials = CredentialsForm(prefix="credentials")
    change = open_change_for(org=org, user=request.user)
    if request.method == "POST":
        try:
            if "save_policy" in request.POST:
                form = BackupPolicyForm(
                    request.POST, instance=BackupPolicy.objects.get(pk=policy.pk)
                )
                if form.is_valid():
                    policy_update(actor=actor, policy=policy, data=form.cleaned_data)
                    messages.success(request, "Backup policy saved.")
                    return redirect("policies:edit", pk=policy.pk)
            elif "save_credentials" in request.POST:
                credentials = CredentialsForm(request.POST, prefix="credentials")
                if credentials.is_valid():
                    connection_change_start(
                        actor=actor,
                        org=org,
                        consumer_key=credentials.cleaned_data["consumer_key"],
                        consumer_secret=credentials.cleaned_data["consumer_secret"],
                        app_name=credentials.cleaned_data.get("app_name", ""),
                    )
                    messages.success(
                        request,
                        "Saved; waiting for Salesforce to activate the new app.",
                    )
                    return redirect("policies:edit", pk=policy.pk)
            elif "verify_permissions" in request.POST and change is not None:
                permission_check_start(actor=actor, change=change)
                return redirect("policies:edit", pk=policy.pk)
            elif "apply_change" in request.POST and change is not None:
                check = change.permission_checks.order_by("-created_at", "-id").first()
                if check is None or not check.backup_ok:
                    raise ChangeError(
                        "Verify permissions first: backup permissions must all be granted."
                    )
                connection_change_apply(
                    actor=actor,
                    change=change,
                    company=org.company,
                    permission_check=check,
                )
                messages.success(request, f"{org.label} now uses the new client app.")
                return redirect("policies:edit", pk=policy.pk)
        except ValidationError as exc:
            for field, errors in exc.message_dict.items():
                credentials.add_error(
                    field if field in credentials.fields else None, errors
                )
        except (ChangeError, ConcurrentChange) as exc:
            messages.error(request, str(exc))
            return redirect("policies:edit", pk=policy.pk)
    check = (
        change.permission_checks.order_by("-created_at", "-id").first()
        if change
        else None
    )
    context = {
        "policy": policy,
        "org": org,
        "form": form,
        "credentials_form": credentials,
        "change": change,
        "check": check,
    }
    return render(request, "orgs/policy_edit.html", context)


@require_http_methods(["POST"])
@require_capability(Capability.EDIT_CONNECTION)
def org_settings(request: HttpRequest, pk: int) -> HttpResponse:
    access = request.access  # type: ignore[attr-defined]
    org = selectors.org_get(access=access, pk=pk)
    if not access.can(Capability.EDIT_CONNECTION, org.company_id):
        raise PermissionDenied
    form = OrgSettingsForm(request.POST)
    if not form.is_valid():
        messages.error(request, "The settings form was not valid; nothing changed.")
        return redirect(org.get_absolute_url())
    try:
        org_update(
            actor=Actor.from_request(request),
            org=org,
            alias=form.cleaned_data["alias"],
            is_identity_provider=form.cleaned_data["is_identity_provider"],
            expected_version=form.cleaned_data["version"],
        )
    except ConcurrentChange as exc:
        messages.error(request, str(exc))
    except ValidationError as exc:
        messages.error(request, " ".join(exc.messages))
    else:
        messages.success(request, "Organization settings saved.")
    return redirect(org.get_absolute_url())


@require_http_methods(["POST"])
@require_capability(Capability.REAUTHORIZE)
def org_reauthorize(request: HttpRequest, pk: int) -> HttpResponse:
    """Re-authorize connection: straight to the Salesforce login."""
    from connections import oauth_flows
    from connections.reauthorization import reauthorization_start
    from connections.services import ChangeError

    access = request.access  # type: ignore[attr-defined]
    org = selectors.org_get(access=access, pk=pk)
    if not access.can(Capability.REAUTHORIZE, org.company_id):
        raise PermissionDenied
    try:
        change, auth = reauthorization_start(actor=Actor.from_request(request), org=org)
    except ChangeError as exc:
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


@require_http_methods(["GET", "POST"])
@require_capability(Capability.EDIT_ORG_URL)
def org_edit_url(request: HttpRequest, pk: int) -> HttpResponse:
    """Edit organization URL: checked by a task before it is saved."""
    access = request.access  # type: ignore[attr-defined]
    org = selectors.org_get(access=access, pk=pk)
    if not access.can(Capability.EDIT_ORG_URL, org.company_id):
        raise PermissionDenied
    form = OrgUrlForm(
        request.POST or None, initial={"new_url": org.suggested_url or org.login_url}
    )
    if request.method == "POST" and form.is_valid():
        try:
            org_url_verification_start(
                actor=Actor.from_request(request),
                org=org,
                new_url=form.cleaned_data["new_url"],
            )
        except ValidationError as exc:
            form.add_error("new_url", exc.message_dict.get("new_url", exc.messages))
        else:
            messages.info(request, "Checking the new URL with Salesforce…")
            return redirect("orgs:edit-url", pk=org.pk)
    latest = org.url_verifications.order_by("-created_at", "-id").first()
    return render(
        request,
        "orgs/edit_url.html",
        {"org": org, "form": form, "verification": latest},
    )


@require_GET
@require_capability(Capability.VIEW)
def url_verification_status(
    request: HttpRequest, pk: int, verification_id: int
) -> HttpResponse:
    org = selectors.org_get(access=request.access, pk=pk)  # type: ignore[attr-defined]
    verification = get_object_or_404(org.url_verifications, pk=verification_id)
    return render(
        request,
        "orgs/_url_verification.html",
        {"org": org, "verification": verification},
    )


@require_http_methods(["POST"])
@require_capability(Capability.RUN_CHECKS)
def org_check_now(request: HttpRequest, pk: int) -> HttpResponse:
    access = request.access  # type: ignore[attr-defined]
    org = selectors.org_get(access=access, pk=pk)
    if not access.can(Capability.RUN_CHECKS, org.company_id):
        raise PermissionDenied
    orgs_check_now(org_ids=[org.pk])
    messages.info(request, "Checking the connection with Salesforce…")
    return redirect(org.get_absolute_url())


@require_http_methods(["GET", "POST"])
@require_capability(Capability.RUN_CHECKS)
def operator_queue(request: HttpRequest) -> HttpResponse:
    """Orgs that need a person, oldest first, each with its fixing button."""
    access = request.access  # type: ignore[attr-defined]
    orgs = selectors.orgs_needing_attention(access=access).filter(
        access.company_q(Capability.RUN_CHECKS)
    )
    if request.method == "POST":
        form = QueueSelectionForm(request.POST, org_ids=[o.pk for o in orgs])
        if form.is_valid():
            count = orgs_check_now(org_ids=form.cleaned_data["orgs"])
            messages.success(
                request, f"Checking {count} org{'s' if count != 1 else ''} again."
            )
        else:
            for error in form.errors.get("orgs", []):
                messages.error(request, error)
        return redirect("orgs:queue")
    page = Paginator(orgs, PAGE_SIZE).get_page(request.GET.get("page"))
    context = {
        "page": page,
        "can_reauthorize": access.can(Capability.REAUTHORIZE),
        "can_edit_url": access.can(Capability.EDIT_ORG_URL),
        "can_verify": access.can(Capability.VERIFY_PERMISSIONS),
    }
    return render(request, "orgs/queue.html", context)
