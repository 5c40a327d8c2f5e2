"""Forms for the org pages: list filters."""

from __future__ import annotations

from django import forms

from companies.models import Company
from vbsf.forms import IdChoiceField

from .models import BackupPolicy, ConnectionStatus


class OrgFilterForm(forms.Form):
    q = forms.CharField(
        required=False,
        max_length=100,
        label="Search",
        widget=forms.TextInput(
            attrs={"placeholder": "Search alias, org ID or URL", "type": "search"}
        ),
    )
    status = forms.ChoiceField(
        required=False,
        choices=[("", "All statuses"), *ConnectionStatus.choices],
        label="Status",
    )
    company = IdChoiceField(
        required=False,
        queryset=Company.objects.none(),
        empty_label="All companies",
        label="Company",
    )
    legacy = forms.BooleanField(required=False, label="Shared app only")

    def __init__(self, *args: object, companies: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.fields["company"].queryset = companies

    def selector_filters(self) -> dict[str, object]:
        """The valid filters as ``org_list`` arguments; none when invalid."""
        data = self.cleaned_data if self.is_valid() else {}
        return {
            "status": data.get("status", ""),
            "company_id": data["company"].pk if data.get("company") else None,
            "search": data.get("q", ""),
            "legacy_only": bool(data.get("legacy")),
        }


class BackupPolicyForm(forms.ModelForm):
    class Meta:
        model = BackupPolicy
        fields = ["name", "schedule", "enabled", "include_files", "retention_days"]
        labels = {"include_files": "Back up files and attachments"}

    def clean_retention_days(self) -> int:
        days = self.cleaned_data["retention_days"]
        if not 1 <= days <= 3650:
            raise forms.ValidationError("Keep backups between 1 and 3650 days.")
        return days


class OrgSettingsForm(forms.Form):
    alias = forms.CharField(label="Alias", max_length=80, required=False)
    is_identity_provider = forms.BooleanField(
        label="Console sign-in provider",
        required=False,
        help_text="Console users log in with Salesforce through this org's app "
        "(its app must keep the openid scope).",
    )
    version = forms.IntegerField(widget=forms.HiddenInput, min_value=0, max_value=2**31)

    @staticmethod
    def initial_for(org: object) -> dict[str, object]:
        return {
            "alias": org.alias,  # type: ignore[attr-defined]
            "is_identity_provider": org.is_identity_provider,  # type: ignore[attr-defined]
            "version": org.version,  # type: ignore[attr-defined]
        }

    def service_args(self) -> dict[str, object]:
        return {
            "alias": self.cleaned_data["alias"],
            "is_identity_provider": self.cleaned_data["is_identity_provider"],
            "expected_version": self.cleaned_data["version"],
        }


class OrgUrlForm(forms.Form):
    new_url = forms.CharField(
        label="Organization URL",
        max_length=255,
        help_text="The org's My Domain URL, as Salesforce Setup → My Domain shows it.",
        widget=forms.TextInput(attrs={"inputmode": "url", "spellcheck": "false"}),
    )


class QueueSelectionForm(forms.Form):
    orgs = forms.TypedMultipleChoiceField(
        coerce=int,
        choices=[],
        required=True,
        error_messages={"required": "Select at least one org."},
    )

    def __init__(self, *args: object, org_ids: list[int], **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.fields["orgs"].choices = [(pk, pk) for pk in org_ids]
        self.fields["orgs"].error_messages["invalid_choice"] = (
            "Some selected orgs are not in your queue any more."
        )
