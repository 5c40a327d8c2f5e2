from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin
from django.http import HttpRequest

from companies.admin import AuditedModelAdmin
from vbsf import encryption
from vbsf.admin import ReadOnlyConsoleAdmin, SecretField

from . import token_ledger
from .models import BackupPolicy, RefreshTokenRecord, SalesforceOrg
from .tokens import org_refresh_token_store


class SalesforceOrgAdminForm(forms.ModelForm):
    refresh_token = SecretField(
        label="Refresh token",
        help_text="Write-only. Leave blank to keep the stored token.",
    )

    class Meta:
        model = SalesforceOrg
        fields = [
            "alias",
            "org_id",
            "org_type",
            "login_url",
            "instance_url",
            "company",
            "client_app",
            "connected_as_username",
            "connected_as_user_id",
            "granted_scopes",
            "status",
            "status_reason",
            "suggested_url",
            "is_identity_provider",
        ]

    def save(self, commit: bool = True) -> SalesforceOrg:
        org = super().save(commit=False)
        self.replaced_token = ""
        if token := self.cleaned_data.get("refresh_token"):
            replaced = org_refresh_token_store(org=org, token=token)
            self.replaced_token = encryption.decrypt(replaced) if replaced else ""
        if commit:
            org.save()
        return org

    def ledger_record(self, org: SalesforceOrg) -> None:
        """A token typed here counts against Salesforce's five like any
        other; the one it replaced is revoked (SPEC §9)."""
        if token := self.cleaned_data.get("refresh_token"):
            token_ledger.refresh_token_record(
                token=token,
                client_app_id=org.client_app_id,
                salesforce_org_id=org.org_id,
                user_id=org.connected_as_user_id,
                username=org.connected_as_username,
                purpose=RefreshTokenRecord.Purpose.EXISTING,
                login_url=org.login_url,
                org=org,
            )
        if self.replaced_token:
            before = self.initial
            token_ledger.refresh_token_record(
                token=self.replaced_token,
                client_app_id=before.get("client_app"),
                salesforce_org_id=before.get("org_id") or org.org_id,
                user_id=before.get("connected_as_user_id") or "",
                purpose=RefreshTokenRecord.Purpose.EXISTING,
                login_url=before.get("login_url") or org.login_url,
                org=org,
                revoke_reason=RefreshTokenRecord.RevokeReason.REPLACED,
            )


@admin.register(SalesforceOrg)
class SalesforceOrgAdmin(AuditedModelAdmin):
    form = SalesforceOrgAdminForm
    list_display = [
        "alias",
        "org_id",
        "company",
        "status",
        "client_app",
        "connected_as_username",
        "last_checked_at",
    ]
    list_filter = ["status", "org_type", "company"]
    list_select_related = ["company", "client_app"]
    search_fields = ["alias", "org_id", "login_url"]
    readonly_fields = [
        "refresh_token_fingerprint",
        "version",
        "created_at",
        "updated_at",
    ]
    audit_name = "org"

    def save_model(
        self, request: HttpRequest, obj: SalesforceOrg, form: Any, change: bool
    ) -> None:
        super().save_model(request, obj, form, change)
        form.ledger_record(obj)


@admin.register(BackupPolicy)
class BackupPolicyAdmin(AuditedModelAdmin):
    list_display = ["name", "org", "schedule", "enabled"]
    list_select_related = ["org"]
    audit_name = "policy"


@admin.register(RefreshTokenRecord)
class RefreshTokenRecordAdmin(ReadOnlyConsoleAdmin, admin.ModelAdmin):
    """The token ledger (SPEC §9), read-only: the console writes it; a token
    held for its revoke is never shown."""

    list_display = [
        "obtained_at",
        "salesforce_username",
        "client_app",
        "fingerprint",
        "purpose",
        "org",
        "revoked_at",
        "revoke_reason",
        "revoke_attempts",
    ]
    list_filter = ["purpose", "revoke_reason"]
    list_select_related = ["org", "client_app"]
    search_fields = ["salesforce_username", "salesforce_user_id", "fingerprint"]
    fields = [
        "org",
        "client_app",
        "salesforce_org_id",
        "salesforce_user_id",
        "salesforce_username",
        "fingerprint",
        "purpose",
        "login_url",
        "obtained_at",
        "approved_at",
        "revoke_reason",
        "revoke_requested_at",
        "revoke_attempts",
        "last_error",
        "revoked_at",
        "lost_connection_of",
    ]
    readonly_fields = fields
