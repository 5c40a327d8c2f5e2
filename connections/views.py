"""The Edit Connection / Add organization wizard, OAuth callback, progress.

Views only authorise, bind forms, call one service and redirect; nothing
here waits on Salesforce: remote work runs in Celery tasks and the pages
poll for progress.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from django.contrib import messages
from django.contrib.auth.decorators import login_not_required
from django.core.exceptions import PermissionDenied, ValidationError
from django.db.models import QuerySet
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_GET, require_POST
from formtools.wizard.views import SessionWizardView

from companies.access import Capability
from companies.audit import Actor
from companies.decorators import require_capability
from companies.models import Company
from orgs.models import SalesforceOrg
from orgs.selectors import org_get
from orgs.services import ConcurrentChange, orgs_move

from . import oauth_flows, selectors, services
from .forms import (
    AppStepForm,
    CompanyStepForm,
    CredentialsForm,
    ExistingAppForm,
    NewOrgCredentialsForm,
    PermissionsStepForm,
    SummaryStepForm,
)
from .models import ConnectionChange, ExternalClientApp, PermissionCheck

STEP_TITLES = [
    ("app", "Client app"),
    ("permissions", "Permissions"),
    ("company", "Company"),
    ("summary", "Summary"),
]


class ConnectionWizard(SessionWizardView):
    """Edit Connection (``org`` set) or Add organization (``org`` None)."""

    form_list = [
        ("app", AppStepForm),
        ("permissions", PermissionsStepForm),
        ("company", CompanyStepForm),
        ("summary", SummaryStepForm),
    ]
    org: SalesforceOrg | None = None

    def dispatch(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        access = request.access  # type: ignore[attr-defined]
        if not access.can(Capability.EDIT_CONNECTION):
            raise PermissionDenied
        if pk := kwargs.get("pk"):
            self.org = org_get(access=access, pk=pk)
            if not access.can(Capability.EDIT_CONNECTION, self.org.company_id):
                raise PermissionDenied
        return super().dispatch(request, *args, **kwargs)

    def get_prefix(self, request: HttpRequest, *args: Any, **kwargs: Any) -> str:
        return f"connection_wizard_{kwargs.get('pk') or 'add'}"

    def get_template_names(self) -> list[str]:
        return [f"connections/wizard_{self.steps.current}.html"]

    def get_form_kwargs(self, step: str | None = None) -> dict[str, Any]:
        return {"wizard": self}

    # -- state the steps share -------------------------------------------

    def open_change(self) -> ConnectionChange | None:
        if not hasattr(self, "_change"):
            self._change = selectors.open_change_for(
                org=self.org, user=self.request.user
            )
        return self._change

    def latest_check(self) -> PermissionCheck | None:
        change = self.open_change()
        if self.keeps_app():
            return selectors.latest_org_check(org=self.org)
        if change is None:
            return None
        return change.permission_checks.order_by("-created_at", "-id").first()

    def keeps_app(self) -> bool:
        data = (
            self.get_cleaned_data_for_step("app")
            if self.steps.current != "app"
            else None
        )
        return bool(data and data.get("choice") == "keep")

    def manageable_companies(self) -> QuerySet[Company]:
        return self.request.access.companies_with(Capability.EDIT_CONNECTION)  # type: ignore[attr-defined]

    # -- special actions that are not steps (kept out of wizard storage) --

    def post(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        actor = Actor.from_request(request)
        if "save_credentials" in request.POST:
            return self._save_credentials(request, actor)
        if "use_existing_app" in request.POST:
            return self._use_existing_app(request, actor)
        if "verify_permissions" in request.POST:
            return self._verify_permissions(actor)
        if "cancel_change" in request.POST:
            if change := self.open_change():
                services.connection_change_cancel(actor=actor, change=change)
                messages.info(
                    request, "The staged change was cancelled; nothing changed."
                )
            return redirect(self._url())
        return super().post(request, *args, **kwargs)

    def _credentials_form(self, data: Any = None) -> CredentialsForm:
        form_class = NewOrgCredentialsForm if self.org is None else CredentialsForm
        return form_class(data, prefix="credentials")

    def _save_credentials(self, request: HttpRequest, actor: Actor) -> HttpResponse:
        form = self._credentials_form(request.POST)
        if form.is_valid():
            try:
                services.connection_change_start(
                    actor=actor,
                    kind=ConnectionChange.Kind.EDIT
                    if self.org
                    else ConnectionChange.Kind.ADD,
                    org=self.org,
                    login_url=form.cleaned_data.get("login_url", ""),
                    org_type=form.cleaned_data.get("org_type", ""),
                    consumer_key=form.cleaned_data["consumer_key"],
                    consumer_secret=form.cleaned_data["consumer_secret"],
                    app_name=form.cleaned_data.get("app_name", ""),
                )
            except ValidationError as exc:
                for field, errors in exc.message_dict.items():
                    form.add_error(field if field in form.fields else None, errors)
            else:
                messages.success(
                    request,
                    "Saved. Salesforce can take up to 10 minutes to activate a new app; "
                    "this page shows when it is ready.",
                )
                return redirect(self._url())
        return self.render(self.get_form(), credentials_form=form)

    def _use_existing_app(self, request: HttpRequest, actor: Actor) -> HttpResponse:
        form = ExistingAppForm(request.POST, apps=self._existing_apps())
        if form.is_valid():
            try:
                services.connection_change_start(
                    actor=actor,
                    org=self.org,
                    existing_app=form.cleaned_data["existing_app"],
                )
            except ValidationError as exc:
                messages.error(request, " ".join(exc.messages))
            return redirect(self._url())
        return self.render(self.get_form(), existing_form=form)

    def _verify_permissions(self, actor: Actor) -> HttpResponse:
        try:
            if self.keeps_app():
                services.permission_check_start(actor=actor, org=self.org)
            elif change := self.open_change():
                services.permission_check_start(actor=actor, change=change)
            else:
                raise services.ChangeError("Authorize the new app first.")
        except services.ChangeError as exc:
            messages.error(self.request, str(exc))
        return self.render(self.get_form())

    def _existing_apps(self) -> QuerySet[ExternalClientApp]:
        # Apps not in use by another org (legacy shared apps excluded: moving
        # off them is the point).
        qs = ExternalClientApp.objects.filter(is_legacy_shared=False, orgs__isnull=True)
        return qs.order_by("name")

    def _url(self) -> str:
        if self.org is not None:
            return reverse("orgs:edit-connection", args=[self.org.pk])
        return reverse("orgs:add")

    # -- rendering ---------------------------------------------------------

    def get_context_data(self, form: Any, **kwargs: Any) -> dict[str, Any]:
        context = super().get_context_data(form=form, **kwargs)
        change = self.open_change()
        check = self.latest_check() if self.steps.current != "app" else None
        context.update(
            {
                "org": self.org,
                "change": change,
                "check": check,
                "step_titles": STEP_TITLES,
                "callback_url": services.callback_url(),
                "needs_openid": bool(self.org and self.org.is_identity_provider),
                "credentials_form": kwargs.get("credentials_form")
                or self._credentials_form(),
                "existing_form": kwargs.get("existing_form")
                or ExistingAppForm(apps=self._existing_apps()),
                "keeps_app": self.keeps_app(),
                "page_title": f"Edit Connection: {self.org.label}"
                if self.org
                else "Add organization",
            }
        )
        if self.steps.current == "summary":
            context["summary_rows"] = self._summary_rows()
        if change is not None and self.steps.current == "app":
            form.initial.setdefault("change", change.pk)
            form.fields["change"].initial = change.pk
        if check is not None and self.steps.current == "permissions":
            form.fields["check"].initial = check.pk
        return context

    def _summary_rows(self) -> list[tuple[str, str, str]]:
        org, change = self.org, self.open_change()
        company = (self.get_cleaned_data_for_step("company") or {}).get("company")
        keep = self.keeps_app()
        app = org.client_app if org else None
        rows = [
            (
                "Company",
                org.company.name if org else "—",
                company.name if company else "—",
            ),
        ]
        if keep:
            rows.append(
                (
                    "Client app",
                    f"{app.name} (key {app.key_hint})" if app else "—",
                    "unchanged",
                )
            )
        elif change is not None:
            new_app = change.client_app
            rows += [
                (
                    "Client app",
                    f"{app.name} (key {app.key_hint})" if app else "—",
                    f"{new_app.name} (key {new_app.key_hint})",
                ),
                (
                    "Consumer secret",
                    f"fingerprint {app.fingerprint}" if app else "—",
                    f"fingerprint {new_app.fingerprint}",
                ),
                (
                    "Connected as",
                    org.connected_as_username if org else "—",
                    change.new_username,
                ),
                (
                    "Refresh token",
                    f"fingerprint {org.refresh_token_fingerprint}"
                    if org and org.refresh_token_fingerprint
                    else "—",
                    f"fingerprint {change.new_refresh_token_fingerprint}",
                ),
                (
                    "Instance URL",
                    org.instance_url if org else "—",
                    change.new_instance_url,
                ),
                ("Org ID", org.org_id if org else "—", change.new_org_id),
            ]
        return rows

    def done(
        self, form_list: Any, form_dict: dict[str, Any], **kwargs: Any
    ) -> HttpResponse:
        actor = Actor.from_request(self.request)
        app_data = form_dict["app"].cleaned_data
        company = form_dict["company"].cleaned_data["company"]
        try:
            if app_data["choice"] == "keep":
                org = self._finish_keeping_app(actor, company, app_data.get("version"))
            else:
                change = self.open_change()
                check = self.latest_check()
                org = services.connection_change_apply(
                    actor=actor,
                    change=change,
                    company=company,
                    permission_check=check,
                    alias=form_dict["company"].cleaned_data.get("alias", ""),
                )
        except ConcurrentChange as exc:
            messages.error(self.request, str(exc))
            return redirect(self.org.get_absolute_url() if self.org else "orgs:list")
        except (services.ChangeError, ValidationError) as exc:
            messages.error(self.request, " ".join(getattr(exc, "messages", [str(exc)])))
            return redirect(self._url())
        messages.success(
            self.request, f"{org.label} is connected with the new settings."
        )
        return redirect(org.get_absolute_url())

    def _finish_keeping_app(
        self, actor: Actor, company: Company, version: int | None
    ) -> SalesforceOrg:
        assert self.org is not None
        current = SalesforceOrg.objects.get(pk=self.org.pk)
        if version is not None and current.version != version:
            raise ConcurrentChange(ConcurrentChange.message)
        if company.pk != current.company_id:
            orgs_move(actor=actor, orgs=[current], to_company=company)
        return current

    def get_form_initial(self, step: str) -> dict[str, Any]:
        if step == "app" and self.org is not None:
            return {"version": self.org.version}
        if step == "company" and self.org is not None:
            return {"company": self.org.company_id}
        return {}


@require_POST
@require_capability(Capability.VIEW)
def authorize(request: HttpRequest, change_id: int) -> HttpResponse:
    """Send the user to the Salesforce login for this change."""
    access = request.access  # type: ignore[attr-defined]
    change = selectors.change_get(
        access=access, user=request.user, pk=change_id, capability=Capability.VIEW
    )
    needed = (
        Capability.REAUTHORIZE
        if change.kind == ConnectionChange.Kind.REAUTHORIZE
        else Capability.EDIT_CONNECTION
    )
    company_id = change.org.company_id if change.org_id else None
    if not access.can(needed, company_id):
        raise PermissionDenied
    back = (
        reverse("orgs:edit-connection", args=[change.org_id])
        if change.org_id
        else reverse("orgs:add")
    )
    requested = request.POST.get("back", "")
    if requested.startswith("/") and url_has_allowed_host_and_scheme(
        requested, allowed_hosts={request.get_host()}
    ):
        back = requested
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


# Log in with Salesforce comes back here before anyone is signed in: the
# state bound to the browser session, not a sign-in, authorises the request.
@login_not_required
@require_GET
def oauth_callback(request: HttpRequest) -> HttpResponse:
    """The one callback URL for every org. Hands the code to a task."""
    flow = oauth_flows.take(request, request.GET.get("state", ""))
    if flow is None or (
        flow.get("purpose") != "signin" and not request.user.is_authenticated
    ):
        return render(
            request,
            "connections/callback_refused.html",
            status=403,
        )
    back = flow.get("back", "/")
    if not url_has_allowed_host_and_scheme(back, allowed_hosts=None):
        back = "/"
    purpose = flow.get("purpose")
    if purpose == "change":
        return _change_callback(request, flow, back)
    if purpose == "reauthorize":
        from .reauthorization import reauthorize_callback

        return reauthorize_callback(request, flow, back)
    if purpose == "signin":
        from .signin import signin_callback

        return signin_callback(request, flow)
    raise Http404


def _change_callback(
    request: HttpRequest, flow: dict[str, Any], back: str
) -> HttpResponse:
    change_id = int(flow["change"])
    if error := request.GET.get("error"):
        message = services.connection_change_authorization_failed(
            change_id=change_id,
            error=error,
            description=request.GET.get("error_description", "")[:300],
        )
        messages.error(request, message)
        return redirect(back)
    code = request.GET.get("code", "")
    if not code:
        messages.error(
            request, "Salesforce sent no authorization code. Authorize again."
        )
        return redirect(back)
    try:
        services.connection_change_receive_code(change_id=change_id, code=code)
    except services.ChangeError as exc:
        messages.error(request, str(exc))
        return redirect(back)
    messages.info(request, "Signed in at Salesforce; completing the connection…")
    return redirect(back)


@require_GET
@require_capability(Capability.VIEW)
def change_status(request: HttpRequest, change_id: int) -> HttpResponse:
    """The live progress of a change (polled by htmx)."""
    change = selectors.change_get(
        access=request.access,  # type: ignore[attr-defined]
        user=request.user,
        pk=change_id,
        capability=Capability.VIEW,
    )
    context = _status_context(change)
    # The partial replaces part of another page (wizard, policy, org page):
    # "Authorize at Salesforce" must come back to that page, not here.
    current = urlsplit(request.headers.get("HX-Current-URL", ""))
    if current.path.startswith("/") and current.netloc in ("", request.get_host()):
        context["back"] = current.path
    return render(request, "connections/_change_status.html", context)


def _status_context(change: ConnectionChange) -> dict[str, Any]:
    elapsed = (
        (timezone.now() - change.activation_started_at).total_seconds()
        if change.activation_started_at
        else 0
    )
    return {
        "change": change,
        "elapsed": services.elapsed_text(elapsed),
        "polling": change.state
        in (
            ConnectionChange.State.AWAITING_ACTIVATION,
            ConnectionChange.State.EXCHANGING,
        ),
    }


@require_GET
@require_capability(Capability.VIEW)
def check_status(request: HttpRequest, check_id: int) -> HttpResponse:
    check = selectors.check_get(
        access=request.access,
        user=request.user,
        pk=check_id,  # type: ignore[attr-defined]
    )
    previous = selectors.previous_done_check(check=check) if check.org_id else None
    return render(
        request,
        "connections/_permission_check.html",
        {
            "check": check,
            "drift": selectors.permission_drift(current=check, previous=previous),
            "polling": check.state == PermissionCheck.State.RUNNING,
        },
    )


@require_POST
@require_capability(Capability.VERIFY_PERMISSIONS)
def org_verify_permissions(request: HttpRequest, pk: int) -> HttpResponse:
    access = request.access  # type: ignore[attr-defined]
    org = org_get(access=access, pk=pk)
    if not access.can(Capability.VERIFY_PERMISSIONS, org.company_id):
        raise PermissionDenied
    services.permission_check_start(actor=Actor.from_request(request), org=org)
    messages.info(request, "Verifying permissions at Salesforce…")
    return redirect(org.get_absolute_url())
