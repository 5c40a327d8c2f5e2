"""Forms of the Edit Connection wizard and the policy connection section.

Secrets are never part of a wizard step: the credentials form is handled
outside formtools' storage so a consumer secret never lands in the session.
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.conf import settings
from django.core.exceptions import ValidationError

from companies.models import Company
from orgs.models import OrgType
from vbsf.forms import IdChoiceField

from .models import ConnectionChange, ExternalClientApp, PermissionCheck


class CredentialsForm(forms.Form):
    """New external client app credentials (step 1, outside the wizard)."""

    consumer_key = forms.CharField(
        label="Consumer key",
        max_length=255,
        widget=forms.TextInput(attrs={"autocomplete": "off", "spellcheck": "false"}),
    )
    consumer_secret = forms.CharField(
        label="Consumer secret",
        max_length=255,
        strip=True,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "off"}),
        help_text="Never shown again.",
    )
    app_name = forms.CharField(
        label="App name",
        max_length=80,
        required=False,
        help_text="How the console labels this app (optional).",
    )

    def service_args(self) -> dict[str, Any]:
        """The cleaned data as ``connection_change_start`` arguments."""
        data = self.cleaned_data
        return {
            "consumer_key": data["consumer_key"],
            "consumer_secret": data["consumer_secret"],
            "app_name": data.get("app_name", ""),
            "login_url": data.get("login_url", ""),
            "org_type": data.get("org_type", ""),
        }

    def add_service_errors(self, exc: ValidationError) -> None:
        """Show a service's refusal on the fields it names."""
        for field, errors in exc.message_dict.items():
            self.add_error(field if field in self.fields else None, errors)


class SecretRetryForm(forms.Form):
    """Salesforce rejected the secret: the key is kept, the secret asked again."""

    consumer_secret = CredentialsForm.base_fields["consumer_secret"]


class NewOrgCredentialsForm(CredentialsForm):
    login_url = forms.CharField(
        label="Organization URL",
        max_length=255,
        help_text="The org's My Domain URL, e.g. https://acme.my.salesforce.com",
    )
    org_type = forms.ChoiceField(label="Org type", choices=OrgType.choices)
    field_order = [
        "login_url",
        "org_type",
        "consumer_key",
        "consumer_secret",
        "app_name",
    ]


class ExistingAppField(IdChoiceField):
    def label_from_instance(self, obj: Any) -> str:
        # Apps are often named alike: the key's tail and the date tell them apart.
        return f"{obj.name} (key {obj.key_hint}, added {obj.created_at:%d %b %Y})"


class ExistingAppForm(forms.Form):
    existing_app = ExistingAppField(
        label="External client app",
        queryset=ExternalClientApp.objects.none(),
        error_messages={"invalid_choice": "Pick one of the listed apps."},
    )

    def __init__(self, *args: Any, apps: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["existing_app"].queryset = apps


class AppStepForm(forms.Form):
    """Step 1: keep the current app, or go on with an authorized change."""

    choice = forms.ChoiceField(
        choices=[
            ("keep", "Keep the current app"),
            ("new", "Use a new external client app"),
            ("existing", "Use an app this org used before"),
        ],
        # The radios stand above the choice's fields; they belong to the
        # step's form (Next) wherever they stand on the page.
        widget=forms.RadioSelect(attrs={"form": "app-step"}),
        initial="new",
    )
    change = forms.IntegerField(
        required=False, widget=forms.HiddenInput, min_value=1, max_value=2**63 - 1
    )
    version = forms.IntegerField(
        required=False, widget=forms.HiddenInput, min_value=0, max_value=2**31
    )

    def __init__(self, *args: Any, wizard: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.wizard = wizard
        if wizard.org is None:
            self.fields["choice"].choices = [("new", "Use a new external client app")]
        elif not wizard.existing_apps().exists():
            self.fields["choice"].choices = self.fields["choice"].choices[:2]

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        if data.get("choice") == "keep":
            if self.wizard.org is None:
                raise ValidationError("A new org needs its external client app.")
            return data
        change = self.wizard.open_change()
        if change is None or data.get("change") != change.pk:
            raise ValidationError(
                "Enter the new app's consumer key and secret and authorize at "
                "Salesforce before you continue."
            )
        if change.state != ConnectionChange.State.AUTHORIZED:
            raise ValidationError(
                "Authorize the new app at Salesforce before you continue."
            )
        return data


class PermissionsStepForm(forms.Form):
    """Step 2: a finished permission check whose backup permissions pass."""

    check = forms.IntegerField(
        required=False, widget=forms.HiddenInput, min_value=1, max_value=2**63 - 1
    )

    def __init__(self, *args: Any, wizard: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.wizard = wizard

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        check = self.wizard.latest_check()
        if check is None or data.get("check") != check.pk:
            raise ValidationError("Click “Verify permissions” before you continue.")
        if check.state == PermissionCheck.State.RUNNING:
            raise ValidationError("The permission check is still running.")
        if check.state == PermissionCheck.State.FAILED:
            raise ValidationError(f"The permission check failed: {check.error}")
        if not check.backup_ok:
            if check.integration_license:
                raise ValidationError(
                    "The connected user has a Salesforce Integration license, which "
                    "cannot run backups. Authorize as a user with a full license."
                )
            labels = ", ".join(str(r["label"]) for r in check.missing_backup)
            raise ValidationError(
                f"Backup permissions are missing: {labels}. Grant them in Salesforce "
                "and verify again."
            )
        return data


class CompanyStepForm(forms.Form):
    company = IdChoiceField(
        label="Company",
        queryset=Company.objects.none(),
        empty_label=None,
        error_messages={"invalid_choice": "Pick one of the companies you manage."},
    )
    alias = forms.CharField(
        label="Alias",
        max_length=80,
        required=False,
        help_text="Defaults to the org ID.",
    )

    def __init__(self, *args: Any, wizard: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["company"].queryset = wizard.manageable_companies()
        if wizard.org is not None:
            del self.fields["alias"]


class SummaryStepForm(forms.Form):
    def __init__(self, *args: Any, wizard: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)


class CampaignLinkForm(forms.Form):
    """ "Send link": the address of the person who logs in to Salesforce."""

    email = forms.EmailField(
        label="Email address",
        max_length=254,
        widget=forms.EmailInput(attrs={"autocomplete": "off"}),
    )


class CampaignSettingsForm(forms.Form):
    """A campaign's name and deadline (SPEC §9), in the console's time zone."""

    name = forms.CharField(label="Name", max_length=120)
    deadline = forms.DateTimeField(
        label=f"Deadline ({settings.TIME_ZONE})",
        input_formats=["%Y-%m-%dT%H:%M", "%Y-%m-%d %H:%M"],
        widget=forms.DateTimeInput(
            attrs={"type": "datetime-local"}, format="%Y-%m-%dT%H:%M"
        ),
        help_text="Links stop working then; at most 90 days from now. Rows that "
        "already expired stay expired.",
    )
