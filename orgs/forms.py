"""Forms for the org pages: list filters."""

from __future__ import annotations

from django import forms

from companies.models import Company

from .models import ConnectionStatus


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
    company = forms.ModelChoiceField(
        required=False,
        queryset=Company.objects.none(),
        empty_label="All companies",
        label="Company",
    )
    legacy = forms.BooleanField(required=False, label="Shared app only")

    def __init__(self, *args: object, companies: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.fields["company"].queryset = companies
