"""Template filters of the connection pages."""

from __future__ import annotations

from django import template

from connections.services.changes import elapsed_text

register = template.Library()


@register.filter
def elapsed(seconds: float) -> str:
    """``250`` → "4 min 10 s"."""
    return elapsed_text(seconds)
