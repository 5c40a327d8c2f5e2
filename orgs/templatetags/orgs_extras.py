"""Template filters of the org pages."""

from __future__ import annotations

from typing import Any

from django import template

from orgs.selectors import fix_hint_for

register = template.Library()


@register.filter
def hint_for(org: Any, access: Any) -> str:
    """``{{ org|hint_for:access }}``: the fix hint for the reader's role."""
    return fix_hint_for(access=access, org=org)
