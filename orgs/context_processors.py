"""The navigation's queue counter: orgs needing a person."""

from __future__ import annotations

from django.http import HttpRequest

from companies.access import Capability

from .selectors import attention_count


def attention(request: HttpRequest) -> dict[str, object]:
    profile = getattr(request, "access", None)
    if profile is None or not request.user.is_authenticated:
        return {}
    if not profile.can(Capability.RUN_CHECKS):
        return {}
    return {"queue_count": attention_count(access=profile)}
