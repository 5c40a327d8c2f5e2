from django.contrib import admin
from django.http import HttpRequest

from vbsf.admin import AuditedModelAdmin

from .models import AuditEvent, Company, RoleGrant


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
class AuditEventAdmin(admin.ModelAdmin):
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

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False
