"""The Django admin site: Administrators only, secrets write-only.

Auditing of admin saves lives in ``companies.admin`` (it needs the audit
trail, which the ground floor does not import)."""

from __future__ import annotations

from functools import update_wrapper
from typing import Any

from django import forms
from django.contrib import admin
from django.contrib.auth import REDIRECT_FIELD_NAME
from django.contrib.auth.decorators import login_not_required
from django.contrib.auth.views import redirect_to_login
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.urls import reverse
from django.utils.decorators import method_decorator
from django.views.decorators.cache import never_cache


class ConsoleAdminSite(admin.AdminSite):
    site_header = "Salesforce connection console: admin"
    site_title = "Console admin"

    def has_permission(self, request: HttpRequest) -> bool:
        return bool(
            request.user.is_active and request.user.is_staff
        ) and _is_console_admin(request)

    @method_decorator(never_cache)
    @login_not_required
    def login(self, request: HttpRequest, extra_context: Any = None) -> HttpResponse:
        # ONE throttled password sign-in for the console and this site: the
        # admin's own login page (Django's LoginView with its unthrottled,
        # unaudited AdminAuthenticationForm) is replaced by a redirect to the
        # console's /login/, whose form throttles and audits every attempt.
        # A redirect rather than the console's form here: this ground-floor
        # module cannot import that form (companies), and one page means one
        # place to keep right. A POST is not tried, only redirected; /login/
        # checks ``next`` before following it, and after signing in a user
        # who is not an Administrator gets this site's 403.
        next_url = request.GET.get(REDIRECT_FIELD_NAME) or reverse(
            "admin:index", current_app=self.name
        )
        return redirect_to_login(next_url)

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


class ReadOnlyConsoleAdmin(ConsoleAdminPermissions):
    """Administrators may look, nobody may add, change or delete: records
    the console writes itself (the audit trail, sign-in attempts)."""

    def has_add_permission(self, request: HttpRequest, *args: Any) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False
