"""Forms for the org pages: list filters, the bulk selection, settings."""

from __future__ import annotations

from django import forms
from django.http import QueryDict
from django.urls import reverse

from companies.models import Company
from vbsf.forms import IdChoiceField, parse_id

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


# Ticked rows come from one page (50 rows); a longer list is not a page's.
MAX_TICKED = 500
SELECTION_SOURCES = [("list", "Salesforce orgs"), ("queue", "Queue")]


class OrgIdListField(forms.Field):
    """Ticked org IDs (the ``orgs`` checkboxes); anything else is refused
    before the database is asked."""

    widget = forms.MultipleHiddenInput

    def to_python(self, value: object) -> list[int]:
        if value in self.empty_values:
            return []
        values = value if isinstance(value, list | tuple) else [value]
        ids = [parse_id(str(v)) for v in values]
        if any(pk is None for pk in ids):
            raise forms.ValidationError(
                "The selection holds something that is not an org."
            )
        return list(dict.fromkeys(ids))  # type: ignore[arg-type]


class BulkSelectionForm(forms.Form):
    """The one selection of the org list and the queue: rows ticked one by
    one, or every org matching the list's filter across pages ("Select all
    N matching"), and the bulk action to run on them."""

    action = forms.ChoiceField(
        choices=[],
        error_messages={
            "required": "Choose an action.",
            "invalid_choice": "Choose one of the actions offered.",
        },
    )
    orgs = OrgIdListField(required=False)
    all_matching = forms.BooleanField(required=False)
    filter_query = forms.CharField(required=False, max_length=500)
    source = forms.ChoiceField(choices=SELECTION_SOURCES, initial="list")

    def __init__(
        self,
        *args: object,
        actions: list[tuple[str, str]],
        companies: object,
        **kwargs: object,
    ) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.fields["action"].choices = actions
        self.companies = companies

    def clean_filter_query(self) -> str:
        # The list's own parameters only; the page and the progress line's
        # action are not part of the filter.
        query = QueryDict(self.cleaned_data["filter_query"], mutable=True)
        for name in ("page", "bulk"):
            query.pop(name, None)
        return query.urlencode()

    def clean(self) -> dict[str, object]:
        data = super().clean()
        if "orgs" not in data or "filter_query" not in data:
            return data
        if data.get("all_matching"):
            data["orgs"] = None
            if data.get("source") == "list":
                query = QueryDict(data["filter_query"])
                filters = OrgFilterForm(query or None, companies=self.companies)
                if query and not filters.is_valid():
                    raise forms.ValidationError(
                        "The list's filter is not valid; nothing was done."
                    )
                data["filters"] = filters.selector_filters()
        elif not data["orgs"]:
            raise forms.ValidationError("Select at least one org.")
        elif len(data["orgs"]) > MAX_TICKED:
            raise forms.ValidationError(
                f"Tick at most {MAX_TICKED} orgs, or use “Select all matching”."
            )
        else:
            data["filter_query"] = ""  # ticked rows: the filter did not choose
        return data

    def selector_args(self) -> dict[str, object]:
        """The selection as ``selectors.org_selection`` arguments."""
        data = self.cleaned_data
        return {
            "org_ids": data["orgs"],
            "queue": data["source"] == "queue",
            "filters": data.get("filters"),
        }


def bulk_back_url(
    source: str, filter_query: str = "", bulk_id: int | None = None
) -> str:
    """The page a bulk action was started from, with its filter and the
    action's progress line."""
    query = QueryDict(filter_query if source == "list" else "", mutable=True)
    if bulk_id is not None:
        query["bulk"] = str(bulk_id)
    url = reverse("orgs:queue" if source == "queue" else "orgs:list")
    return f"{url}?{query.urlencode()}" if query else url
