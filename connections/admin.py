from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin
from django.http import HttpRequest

from companies.admin import AuditedModelAdmin
from vbsf.admin import ReadOnlyConsoleAdmin, SecretField

from .models import ExternalClientApp, SalesforceIdentityLink, SignInAttempt
from .salesforce.urls import InvalidSalesforceId, to_18


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


class SalesforceIdentityLinkAdminForm(forms.ModelForm):
    class Meta:
        model = SalesforceIdentityLink
        fields = ["user", "org", "salesforce_user_id", "salesforce_username"]
        help_texts = {
            "org": "The console's sign-in org (see the org's settings).",
            "salesforce_user_id": "The Salesforce user's ID (005…), 15 or 18 "
            "characters, as shown in Salesforce Setup.",
        }

    def clean_salesforce_user_id(self) -> str:
        value = (self.cleaned_data.get("salesforce_user_id") or "").strip()
        try:
            user_id = to_18(value)
        except InvalidSalesforceId as exc:
            raise forms.ValidationError(str(exc), code="invalid_user_id") from None
        if not user_id.startswith("005"):
            raise forms.ValidationError(
                "A Salesforce user ID starts with 005.", code="invalid_user_id"
            )
        # Stored in the 18-character form sign-in looks up.
        return user_id


@admin.register(SalesforceIdentityLink)
class SalesforceIdentityLinkAdmin(AuditedModelAdmin):
    """Administrators link console users to Salesforce users (SPEC §6)."""

    form = SalesforceIdentityLinkAdminForm
    list_display = ["user", "org", "salesforce_user_id", "salesforce_username"]
    list_filter = ["org"]
    list_select_related = ["user", "org"]
    search_fields = ["user__username", "salesforce_user_id", "salesforce_username"]
    readonly_fields = ["created_at"]
    audit_name = "identity_link"


@admin.register(SignInAttempt)
class SignInAttemptAdmin(ReadOnlyConsoleAdmin, admin.ModelAdmin):
    """Read-only history of "Log in with Salesforce"; the code, verifier and
    nonce are never shown."""

    list_display = ["created_at", "org", "state", "user", "consumed_at"]
    list_filter = ["state"]
    list_select_related = ["org", "user"]
    fields = ["created_at", "org", "state", "user", "message", "consumed_at"]
    readonly_fields = fields
