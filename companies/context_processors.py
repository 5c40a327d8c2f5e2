from __future__ import annotations

from django.conf import settings
from django.http import HttpRequest

from .access import Capability


def access(request: HttpRequest) -> dict[str, object]:
    profile = getattr(request, "access", None)
    if profile is None or not request.user.is_authenticated:
        return {}
    nav = {
        "companies": profile.can(Capability.MANAGE_COMPANIES),
        "audit": profile.can(Capability.VIEW_AUDIT),
        "admin": settings.ADMIN_ENABLED
        and profile.is_administrator
        and request.user.is_staff,
        "queue": profile.can(Capability.RUN_CHECKS),
        # Users, Notifications and Console sign-in: Administrators only.
        "people": profile.is_administrator,
    }
    match = getattr(request, "resolver_match", None)
    nav["section"] = (match.namespace or match.url_name or "") if match else ""
    nav["page"] = (match.url_name or "") if match else ""
    return {"access": profile, "nav": nav}
