"""The Django admin: Administrators only, secrets write-only, audited."""

from __future__ import annotations

from functools import update_wrapper
from typing import Any

from django import forms
from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.db.models import Model
from django.http import HttpRequest

from companies.audit import Actor, audit_record


class ConsoleAdminSite(admin.AdminSite):
    site_header = "Salesforce connection console: admin"
    site_title = "Console admin"

    def has_permission(self, request: HttpRequest) -> bool:
        return bool(
            request.user.is_active and request.user.is_staff
        ) and _is_console_admin(request)

    def admin_view(self, view: Any, cacheable: bool = False) -> Any:
        inner = super().admin_view(view, cacheable)

        def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> Any:
            # A signed-in user without the right gets 403, not a login form.
            if request.user.is_authenticated and not self.has_permission(request):
                raise PermissionDenied
            return inner(request, *args, **kwargs)

        return update_wrapper(wrapper, view)


class SecretField(forms.CharField):
    """A write-only secret: never rendered back, blank keeps the stored one."""

    widget = forms.PasswordInput(render_value=False)

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("required", False)
        kwargs.setdefault("strip", True)
        kwargs.setdefault("max_length", 4096)
        super().__init__(**kwargs)


def _snapshot(obj: Model) -> dict[str, Any]:
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


def _is_console_admin(request: HttpRequest) -> bool:
    access = getattr(request, "access", None)
    return bool(access is not None and access.is_administrator)


class ConsoleAdminPermissions:
    """Model permissions follow the console's roles: Administrators only."""

    def has_module_permission(self, request: HttpRequest) -> bool:
        return _is_console_admin(request)

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return _is_console_admin(request)

    def has_add_permission(self, request: HttpRequest, *args: Any) -> bool:
        return _is_console_admin(request)

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return _is_console_admin(request)

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return _is_console_admin(request)


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
            after=_snapshot(obj) if verb != "delete" else {},
        )

    def save_model(
        self, request: HttpRequest, obj: Model, form: Any, change: bool
    ) -> None:
        before = _snapshot(type(obj).objects.get(pk=obj.pk)) if change else {}
        if hasattr(obj, "version") and change:
            obj.version += 1
        super().save_model(request, obj, form, change)
        self._audit(request, obj, "update" if change else "create", before)

    def delete_model(self, request: HttpRequest, obj: Model) -> None:
        self._audit(request, obj, "delete", _snapshot(obj))
        super().delete_model(request, obj)
