from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin
from django.http import HttpRequest

from vbsf.admin import AuditedModelAdmin, SecretField

from .models import ExternalClientApp


class ExternalClientAppAdminForm(forms.ModelForm):
    consumer_secret = SecretField(
        label="Consumer secret",
        help_text="Write-only. Leave blank to keep the stored secret.",
    )

    class Meta:
        model = ExternalClientApp
        fields = ["name", "consumer_key", "scopes", "is_legacy_shared"]

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean()
        if not self.instance.pk and not cleaned.get("consumer_secret"):
            self.add_error("consumer_secret", "A new app needs its consumer secret.")
        return cleaned

    def save(self, commit: bool = True) -> ExternalClientApp:
        app = super().save(commit=False)
        if secret := self.cleaned_data.get("consumer_secret"):
            app.set_consumer_secret(secret)
        if commit:
            app.save()
        return app


@admin.register(ExternalClientApp)
class ExternalClientAppAdmin(AuditedModelAdmin):
    form = ExternalClientAppAdminForm
    list_display = [
        "name",
        "key_hint",
        "consumer_secret_fingerprint",
        "is_legacy_shared",
    ]
    list_filter = ["is_legacy_shared"]
    search_fields = ["name", "consumer_key"]
    readonly_fields = ["consumer_secret_fingerprint", "created_at"]
    audit_name = "client_app"

    def has_delete_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return super().has_delete_permission(request, obj) and not (
            obj is not None and obj.orgs.exists()  # type: ignore[attr-defined]
        )
