"""View decorators for role checks."""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any

from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse, QueryDict

from .access import Capability


def require_capability(
    capability: Capability,
) -> Callable[[Callable[..., HttpResponse]], Callable[..., HttpResponse]]:
    """403 unless the user holds the capability in at least one company.

    Views still check the capability for the object's own company.
    """

    def decorator(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
        @wraps(view)
        def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
            if not request.access.can(capability):  # type: ignore[attr-defined]
                raise PermissionDenied
            return view(request, *args, **kwargs)

        return wrapper

    return decorator


def form_data(request: HttpRequest) -> QueryDict | None:
    """The data to bind a form to: the POST, even an empty one (``request.POST
    or None`` would leave a form with only unchecked boxes unbound)."""
    return request.POST if request.method == "POST" else None
