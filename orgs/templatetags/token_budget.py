"""The token budget guard where someone is about to be sent to Salesforce
(SPEC §9): pages whose views do not compute it (the Edit Connection wizard)
render it with ``{% token_budget_warning org client_app_id %}``."""

from __future__ import annotations

from typing import Any

from django import template

from orgs.models import SalesforceOrg
from orgs.selectors import token_budget_for

register = template.Library()


@register.inclusion_tag("orgs/_token_budget.html")
def token_budget_warning(
    org: SalesforceOrg | None, client_app_id: int | None = None
) -> dict[str, Any]:
    """Only when it warns: below four live tokens there is nothing to say."""
    budget = token_budget_for(org=org, client_app_id=client_app_id) if org else None
    return {"token_budget": budget if budget and budget.warns else None}
