"""The Edit Connection / Add organization wizard (formtools).

The four steps are the wizard's forms; the actions that are not steps
(save credentials, use an existing app, verify permissions, cancel) are
small handlers in ``WIZARD_ACTIONS``, each binding one form and calling one
service. Nothing here waits on Salesforce: remote work runs in Celery tasks
and the pages poll for progress.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.contrib import messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.urls import reverse
from django.utils import formats
from formtools.wizard.views import NamedUrlWizardView, WizardView

from companies.access import Capability
from companies.audit import Actor
from companies.models import Company
from orgs.models import SalesforceOrg
from orgs.selectors import org_get
from orgs.services import ConcurrentChange

from .. import selectors, services
from ..forms import (
    AppStepForm,
    CompanyStepForm,
    CredentialsForm,
    ExistingAppForm,
    NewOrgCredentialsForm,
    PermissionsStepForm,
    SecretRetryForm,
    SummaryStepForm,
)
from ..models import ConnectionChange, ExternalClientApp, PermissionCheck
from ..wizard_storage import PREFIX

STEP_TITLES = [
    ("app", "Client app"),
    ("permissions", "Permissions"),
    ("company", "Company"),
    ("summary", "Summary"),
]


class ConnectionWizard(NamedUrlWizardView):
    """Edit Connection (``org`` set) or Add organization (``org`` None).

    Each step has its URL and every POST answers with a redirect, so Back
    and reload never resubmit; the steps' data lives in ``WizardState``
    (the org's, not the browser tab's).
    """

    storage_name = "connections.wizard_storage.WizardStateStorage"
    done_step_name = "done"

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
            self.org = org_get(
                access=access, pk=pk, capability=Capability.EDIT_CONNECTION
            )
        return super().dispatch(request, *args, **kwargs)

    def get_prefix(self, request: HttpRequest, *args: Any, **kwargs: Any) -> str:
        return f"{PREFIX}{kwargs.get('pk') or 'add'}"

    def get_step_url(self, step: str) -> str:
        args = [self.org.pk, step] if self.org else [step]
        return reverse(self.url_name, args=args)

    def get(self, *args: Any, **kwargs: Any) -> HttpResponse:
        # Finish happens on the POST of the summary, never on a GET.
        if kwargs.get("step") == self.done_step_name:
            return redirect(self.get_step_url(self.steps.last))
        if "version" not in self.storage.extra_data and self.org is not None:
            # The version every Finish of this run is checked against.
            self.storage.extra_data = {"version": self.org.version}
        return super().get(*args, **kwargs)

    def render_done(self, form: Any, **kwargs: Any) -> HttpResponse:
        # NamedUrlWizardView would redirect to a "done" GET that applies the
        # change; the POST of the summary applies it instead.
        return WizardView.render_done(self, form, **kwargs)

    def render(self, form: Any = None, **kwargs: Any) -> HttpResponse:
        response = super().render(form, **kwargs)
        if self.request.method == "POST":
            # Bad input: the form with its errors, as a 4xx (nothing changed).
            response.status_code = 422
        return response

    def render_revalidation_failure(
        self, failed_step: str, form: Any, **kwargs: Any
    ) -> HttpResponse:
        self.storage.current_step = failed_step
        messages.error(self.request, REVALIDATION_NOTICE)
        return redirect(self.get_step_url(failed_step))

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
        return selectors.latest_change_check(change=change)

    def keeps_app(self) -> bool:
        data = (
            self.get_cleaned_data_for_step("app")
            if self.steps.current != "app"
            else None
        )
        return bool(data and data.get("choice") == "keep")

    def manageable_companies(self) -> QuerySet[Company]:
        return self.request.access.companies_with(Capability.EDIT_CONNECTION)  # type: ignore[attr-defined]

    # -- actions that are not steps (kept out of wizard storage) -----------

    def post(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if finished := self.finished_meanwhile():
            messages.info(request, finished)
            return redirect(self.org.get_absolute_url() if self.org else "orgs:list")
        for name, action in WIZARD_ACTIONS.items():
            if name in request.POST:
                return action(self, request)
        return super().post(request, *args, **kwargs)

    def finished_meanwhile(self) -> str:
        """Who finished this wizard since the page was rendered, if anyone."""
        state = self.storage.state
        posted = self.request.POST.get("wizard_run", "")
        if not posted.isdigit() or int(posted) == state.run or not state.finished_at:
            return ""
        who = state.finished_by.get_username() if state.finished_by else "someone"
        when = formats.date_format(state.finished_at, "DATETIME_FORMAT")
        return f"{who} already finished this on {when}; nothing was applied again."

    def credentials_form(self, data: Any = None) -> CredentialsForm:
        form_class = NewOrgCredentialsForm if self.org is None else CredentialsForm
        return form_class(data, prefix="credentials")

    def existing_apps(self) -> QuerySet[ExternalClientApp]:
        # Apps this org used before and no org uses now: not failed
        # attempts, not other orgs' apps, not the shared connected app.
        if self.org is None:
            return ExternalClientApp.objects.none()
        return (
            ExternalClientApp.objects.filter(
                is_legacy_shared=False,
                orgs__isnull=True,
                changes__org=self.org,
                changes__state=ConnectionChange.State.APPLIED,
            )
            .distinct()
            .order_by("name", "pk")
        )

    def page_url(self) -> str:
        return self.get_step_url(self.steps.current)

    # -- rendering ---------------------------------------------------------

    def get_context_data(self, form: Any, **kwargs: Any) -> dict[str, Any]:
        context = super().get_context_data(form=form, **kwargs)
        change = self.open_change()
        check = self.latest_check() if self.steps.current != "app" else None
        context.update(
            {
                "wizard_run": self.storage.state.run,
                "org": self.org,
                "change": change,
                "check": check,
                "step_titles": STEP_TITLES,
                "callback_url": services.callback_url(),
                "needs_openid": bool(self.org and self.org.is_identity_provider),
                "credentials_form": kwargs.get("credentials_form")
                or self.credentials_form(),
                "retry_form": kwargs.get("retry_form")
                or SecretRetryForm(prefix="retry"),
                "may_authorize": True,
                "next_primary": self.steps.current != "app"
                or bool(change and change.state == ConnectionChange.State.AUTHORIZED),
                "existing_form": kwargs.get("existing_form")
                or ExistingAppForm(apps=self.existing_apps()),
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
                org = services.connection_keep_finish(
                    actor=actor,
                    org=self.org,
                    company=company,
                    expected_version=self.expected_version(app_data),
                )
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
            return redirect(self.page_url())
        services.wizard_finished(state=self.storage.state, user=self.request.user)
        messages.success(
            self.request, f"{org.label} is connected with the new settings."
        )
        return redirect(org.get_absolute_url())

    def expected_version(self, app_data: dict[str, Any]) -> int | None:
        """The org version this run started from: the hidden field, or the
        one recorded when the run began (so a Finish without the field is
        still checked)."""
        if app_data.get("version") is not None:
            return app_data["version"]
        return self.storage.extra_data.get("version")

    def get_form_initial(self, step: str) -> dict[str, Any]:
        if step == "app" and self.org is not None:
            # The version this run started from, not the current one: a tab
            # opened after someone else's Finish must not look up to date.
            return {"version": self.storage.extra_data.get("version", self.org.version)}
        if step == "company" and self.org is not None:
            return {"company": self.org.company_id}
        return {}


# --- the wizard's actions ---------------------------------------------------

WizardAction = Callable[[ConnectionWizard, HttpRequest], HttpResponse]


def save_credentials(wizard: ConnectionWizard, request: HttpRequest) -> HttpResponse:
    form = wizard.credentials_form(request.POST)
    if form.is_valid():
        kind = ConnectionChange.Kind.EDIT if wizard.org else ConnectionChange.Kind.ADD
        try:
            services.connection_change_start(
                actor=Actor.from_request(request),
                kind=kind,
                org=wizard.org,
                **form.service_args(),
            )
        except ValidationError as exc:
            form.add_service_errors(exc)
        else:
            messages.success(request, ACTIVATION_NOTICE)
            return redirect(wizard.page_url())
    return wizard.render(wizard.get_form(), credentials_form=form)


def use_existing_app(wizard: ConnectionWizard, request: HttpRequest) -> HttpResponse:
    form = ExistingAppForm(request.POST, apps=wizard.existing_apps())
    if not form.is_valid():
        return wizard.render(wizard.get_form(), existing_form=form)
    try:
        services.connection_change_start(
            actor=Actor.from_request(request),
            org=wizard.org,
            existing_app=form.cleaned_data["existing_app"],
        )
    except ValidationError as exc:
        messages.error(request, " ".join(exc.messages))
    return redirect(wizard.page_url())


def verify_permissions(wizard: ConnectionWizard, request: HttpRequest) -> HttpResponse:
    actor = Actor.from_request(request)
    try:
        if wizard.keeps_app():
            services.permission_check_start(actor=actor, org=wizard.org)
        elif change := wizard.open_change():
            services.permission_check_start(actor=actor, change=change)
        else:
            raise services.ChangeError("Authorize the new app first.")
    except services.ChangeError as exc:
        messages.error(request, str(exc))
    # POST, redirect, GET: the step page shows the check running.
    return redirect(wizard.page_url())


def retry_secret(wizard: ConnectionWizard, request: HttpRequest) -> HttpResponse:
    change = wizard.open_change()
    form = SecretRetryForm(request.POST, prefix="retry")
    if change is None or change.failure_code != "wrong_secret":
        return redirect(wizard.page_url())
    if not form.is_valid():
        return wizard.render(wizard.get_form(), retry_form=form)
    try:
        services.connection_change_retry_secret(
            actor=Actor.from_request(request),
            change=change,
            consumer_secret=form.cleaned_data["consumer_secret"],
        )
    except ValidationError as exc:
        form.add_error(None, exc.messages)
        return wizard.render(wizard.get_form(), retry_form=form)
    messages.success(request, ACTIVATION_NOTICE)
    return redirect(wizard.page_url())


def cancel_change(wizard: ConnectionWizard, request: HttpRequest) -> HttpResponse:
    if change := wizard.open_change():
        services.connection_change_cancel(
            actor=Actor.from_request(request), change=change
        )
        messages.info(request, "The staged change was cancelled; nothing changed.")
    return redirect(wizard.page_url())


REVALIDATION_NOTICE = (
    "The connection changed since this step was completed (a change was "
    "cancelled, or someone else worked on it): check this step again."
)

ACTIVATION_NOTICE = (
    "Saved. Salesforce can take up to 10 minutes to activate a new app; this "
    "page shows when it is ready."
)

WIZARD_ACTIONS: dict[str, WizardAction] = {
    "save_credentials": save_credentials,
    "retry_secret": retry_secret,
    "use_existing_app": use_existing_app,
    "verify_permissions": verify_permissions,
    "cancel_change": cancel_change,
}

edit_connection = ConnectionWizard.as_view(url_name="orgs:edit-connection-step")
add_organization = ConnectionWizard.as_view(url_name="orgs:add-step")
