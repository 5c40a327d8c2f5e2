"""Fault injection: which requests to slow down or break, and how they answer.

A fault matches a request by optional host and path prefix, fires at most
`count` times (unlimited when absent) and then disappears.  Latency faults
add up and let the request through; the first matching terminal fault
replaces the answer.  ``instance_url_change`` is consumed by the token
endpoint itself, only on successful refreshes.
"""

from __future__ import annotations

import itertools
from typing import Any

from flask import Response

from . import validate as v
from .models import Fault
from .web import oauth_error, rest_error, text_response

TERMINAL_KINDS = ("error_503", "error_500", "timeout", "request_limit", "html_error")
FAULT_KINDS = ("latency", *TERMINAL_KINDS, "instance_url_change")
DEFAULT_TIMEOUT_MS = 30_000


class FaultBook:
    """The active faults.  Callers hold the simulator's lock."""

    def __init__(self) -> None:
        self.items: list[Fault] = []
        self._seq = itertools.count(1)

    def add(self, data: dict[str, Any]) -> Fault:
        data = v.obj(data)
        kind = v.req_string(data, "kind")
        if kind not in FAULT_KINDS:
            raise v.BadInput(f"'kind' must be one of {', '.join(FAULT_KINDS)}")
        host = v.string(data, "host", required=False)
        prefix = v.string(data, "path_prefix", required=False)
        if prefix is not None and not prefix.startswith("/"):
            raise v.BadInput("'path_prefix' must start with /")
        latency = v.integer(data, "latency_ms", None)
        if kind == "latency" and latency is None:
            raise v.BadInput("a latency fault needs 'latency_ms'")
        new_url = v.string(data, "new_instance_url", required=False)
        fault = Fault(
            fault_id=f"f{next(self._seq)}",
            kind=kind,
            host=host.lower() if host else None,
            path_prefix=prefix,
            remaining=v.integer(data, "count", None, minimum=1),
            latency_ms=latency,
            new_instance_url="https://" + v.host_from_url(new_url) if new_url else None,
            status=v.integer(data, "status", None, minimum=100),
        )
        self.items.append(fault)
        return fault

    def clear(self) -> None:
        self.items.clear()

    def remove(self, fault_id: str) -> bool:
        before = len(self.items)
        self.items = [f for f in self.items if f.fault_id != fault_id]
        return len(self.items) != before

    def __iter__(self):  # type: ignore[no-untyped-def]
        return iter(list(self.items))

    def _fire(self, fault: Fault) -> None:
        fault.hits += 1
        if fault.remaining is not None:
            fault.remaining -= 1
            if fault.remaining <= 0:
                self.items.remove(fault)

    def _matching(self, host: str, path: str, kinds: tuple[str, ...]) -> list[Fault]:
        return [
            f
            for f in self.items
            if f.kind in kinds
            and (f.host is None or f.host == host)
            and (f.path_prefix is None or path.startswith(f.path_prefix))
        ]

    def take(self, host: str, path: str) -> tuple[int, Fault | None]:
        """Fire the faults for one request: (extra latency ms, terminal fault)."""
        latency = 0
        for fault in self._matching(host, path, ("latency",)):
            latency += fault.latency_ms or 0
            self._fire(fault)
        terminal = self._matching(host, path, TERMINAL_KINDS)
        if terminal:
            self._fire(terminal[0])
            return latency, terminal[0]
        return latency, None

    def take_instance_url_change(self, host: str, path: str) -> Fault | None:
        found = self._matching(host, path, ("instance_url_change",))
        if found:
            self._fire(found[0])
            return found[0]
        return None


def _html_page(title: str, text: str, status: int) -> Response:
    body = (
        f"<!DOCTYPE html><html><head><title>{title}</title></head><body>"
        f"<h1>{title}</h1><p>{text}</p></body></html>"
    )
    return text_response(body, status)


def not_found_page() -> Response:
    return _html_page(
        "URL No Longer Exists", "The page you requested was not found.", 404
    )


def fault_response(fault: Fault, path: str) -> Response:
    """What a fired terminal fault answers, in the shape of the path's API."""
    is_rest = path.startswith("/services/data")
    if fault.kind == "request_limit":
        if path == "/services/oauth2/token":
            return oauth_error("rate_limit_exceeded", "Number of logins exceeded")
        return rest_error(
            "REQUEST_LIMIT_EXCEEDED", "TotalRequests Limit exceeded.", 403
        )
    if fault.kind == "error_503":
        if is_rest:
            return rest_error(
                "SERVER_UNAVAILABLE", "Server temporarily unavailable", 503
            )
        return _html_page(
            "Service Unavailable", "The server is temporarily unavailable.", 503
        )
    if fault.kind == "error_500":
        message = (
            "An unexpected error occurred. Please include this ErrorId if you "
            "contact support: 1873423456-12345 (-1234567890)"
        )
        if is_rest:
            return rest_error("UNKNOWN_EXCEPTION", message, 500)
        return _html_page("Internal Server Error", message, 500)
    if fault.kind == "html_error":
        # A maintenance page where the client expects JSON.
        return _html_page(
            "Maintenance",
            "Salesforce is down for maintenance. Please try again later.",
            fault.status or 500,
        )
    # timeout: the request already hung; whoever still listens gets a 504.
    return text_response("sfsim: simulated timeout", 504, "text/plain;charset=UTF-8")
