"""OAuth ``state`` bound to the browser session (SPEC §4.2).

A state is created for one purpose (an org's change, a re-authorization or
a console sign-in), kept in the session, and popped on the callback: a
forged, foreign, replayed or expired state finds nothing and is refused.
"""

from __future__ import annotations

import time
from typing import Any

from django.http import HttpRequest

SESSION_KEY = "oauth_flows"
LIFETIME_SECONDS = 15 * 60  # Salesforce codes live 15 minutes at most
MAX_OPEN_FLOWS = 5


def remember(request: HttpRequest, *, state: str, **data: Any) -> None:
    flows: dict[str, dict[str, Any]] = request.session.get(SESSION_KEY, {})
    now = time.time()
    flows = {s: f for s, f in flows.items() if f.get("expires", 0) > now}
    while len(flows) >= MAX_OPEN_FLOWS:
        flows.pop(min(flows, key=lambda s: flows[s]["expires"]))
    flows[state] = {**data, "expires": now + LIFETIME_SECONDS}
    request.session[SESSION_KEY] = flows


def take(request: HttpRequest, state: str) -> dict[str, Any] | None:
    """Pop the flow for this state; None when unknown, used or expired."""
    if not state or len(state) > 200:
        return None
    flows: dict[str, dict[str, Any]] = request.session.get(SESSION_KEY, {})
    flow = flows.pop(state, None)
    request.session[SESSION_KEY] = flows
    if flow is None or flow.get("expires", 0) < time.time():
        return None
    return flow
