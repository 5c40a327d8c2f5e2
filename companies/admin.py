from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.contrib.auth import get_user_model
from django.contrib.auth.admin import GroupAdmin, UserAdmin
from django.contrib.auth.models import Group
from django.db.models import Model
from django.http import HttpRequest

from vbsf.admin import ConsoleAdminPermissions, ReadOnlyConsoleAdmin

from .audit import Actor, audit_record
from .models import AuditEvent, Company, RoleGrant


def audit_snapshot(obj: Model) -> dict[str, Any]:
    data: dict[str, Any] = {}
    for field in obj._meta.concrete_fields:
        name = field.attname
        if name.endswith("_encrypted"):
            continue  # fingerprints stand for secrets in the audit trail
        value = getattr(obj, name)
        data[name] = (
            value if isinstance(value, (int, float, bool, type(None))) else str(value)
        )
    return data


class AuditedModelAdmin(ConsoleAdminPermissions, admin.ModelAdmin):
    """Every admin save or delete writes one audit event, in its transaction."""

    audit_name = ""

    def get_actions(self, request: HttpRequest) -> dict[str, Any]:
        actions = super().get_actions(request)
        actions.pop("delete_selected", None)  # deletes go through delete_model
        return actions

    def _audit(
        self, request: HttpRequest, obj: Model, verb: str, before: dict[str, Any]
    ) -> None:
        org = (
            obj
            if obj._meta.label == "orgs.SalesforceOrg"
            else getattr(obj, "org", None)
        )
        company = (
            getattr(obj, "company", None)
            if obj._meta.label != "companies.Company"
            else obj
        )
        audit_record(
            actor=Actor.from_request(request),
            action=f"{self.audit_name or obj._meta.model_name}.{verb}",
            org=org
            if org is not None and getattr(org, "pk", None) and verb != "delete"
            else None,
            company=company
            if company is not None and getattr(company, "pk", None)
            else None,
            summary=f"Admin {verb}: {obj._meta.verbose_name} {obj}",
            before=before,
            after=audit_snapshot(obj) if verb != "delete" else {},
        )

    def save_model(
        self, request: HttpRequest, obj: Model, form: Any, change: bool
    ) -> None:
        before = audit_snapshot(type(obj).objects.get(pk=obj.pk)) if change else {}
        if hasattr(obj, "version") and change:
            obj.version += 1
        super().save_model(request, obj, form, change)
        self._audit(request, obj, "update" if change else "create", before)

    def delete_model(self, request: HttpRequest, obj: Model) -> None:
        self._audit(request, obj, "delete", audit_snapshot(obj))
        super().delete_model(request, obj)


@admin.register(Company)
class CompanyAdmin(AuditedModelAdmin):
    list_display = ["name", "contact_emails", "created_at"]
    search_fields = ["name"]
    audit_name = "company"


@admin.register(RoleGrant)
class RoleGrantAdmin(AuditedModelAdmin):
    list_display = ["user", "role", "company"]
    list_filter = ["role", "company"]
    list_select_related = ["user", "company"]
    audit_name = "role"


@admin.register(AuditEvent)
class AuditEventAdmin(ReadOnlyConsoleAdmin, admin.ModelAdmin):
    """Read-only: the audit trail cannot be edited or deleted."""

    list_display = [
        "created_at",
        "actor_username",
        "ip_address",
        "company_name",
        "org_label",
        "action",
        "outcome",
    ]
    list_filter = ["action", "outcome"]
    search_fields = ["actor_username", "org_label", "summary"]


# Console users and groups follow the same rule: Administrators only.
admin.site.unregister(get_user_model())
admin.site.unregister(Group)


@admin.register(get_user_model())
class ConsoleUserAdmin(ConsoleAdminPermissions, UserAdmin):
    pass


@admin.register(Group)
class ConsoleGroupAdmin(ConsoleAdminPermissions, GroupAdmin):
    pass
