from django.contrib import admin
from django.contrib.auth import get_user_model
from django.contrib.auth.admin import GroupAdmin, UserAdmin
from django.contrib.auth.models import Group
from django.http import HttpRequest

from vbsf.admin import AuditedModelAdmin, ConsoleAdminPermissions

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
class AuditEventAdmin(ConsoleAdminPermissions, admin.ModelAdmin):
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


# Console users and groups follow the same rule: Administrators only.
admin.site.unregister(get_user_model())
admin.site.unregister(Group)


@admin.register(get_user_model())
class ConsoleUserAdmin(ConsoleAdminPermissions, UserAdmin):
    pass


@admin.register(Group)
class ConsoleGroupAdmin(ConsoleAdminPermissions, GroupAdmin):
    pass
