"""The simulator's WSGI app: host routing, fault injection and the request log.

Every Salesforce host is served under ``/h/<host>/``: ``login.salesforce.com``
and ``test.salesforce.com`` serve OAuth and identity; each org's current My
Domain host serves OAuth, identity *and* REST.  Any other host, including an
org's host from before an enhanced-domains switch, answers like an
unreachable host: ``404 sfsim: unknown host <host>``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from flask import Flask, Response, redirect, request
from werkzeug.exceptions import HTTPException, MethodNotAllowed
from werkzeug.routing import Map, Rule

from . import control, identity, oauth, rest, setup_page, tokens
from .faults import DEFAULT_TIMEOUT_MS, fault_response, not_found_page
from .fixture import load as load_fixture
from .state import SimState
from .web import Ctx, text_response

log = logging.getLogger("sfsim")

ROUTES = Map(
    [
        Rule(
            "/services/oauth2/authorize", endpoint="authorize", methods=["GET", "POST"]
        ),
        Rule("/services/oauth2/token", endpoint="token", methods=["POST"]),
        Rule("/services/oauth2/revoke", endpoint="revoke", methods=["GET", "POST"]),
        Rule("/services/oauth2/introspect", endpoint="introspect", methods=["POST"]),
        Rule("/services/oauth2/userinfo", endpoint="userinfo", methods=["GET", "POST"]),
        Rule(
            "/.well-known/openid-configuration", endpoint="discovery", methods=["GET"]
        ),
        Rule("/id/keys", endpoint="keys", methods=["GET"]),
        Rule("/id/<org_id>/<user_id>", endpoint="identity", methods=["GET", "POST"]),
        Rule("/services/data/", endpoint="versions", methods=["GET"]),
        Rule("/services/data/v<version>/", endpoint="resources", methods=["GET"]),
        Rule("/services/data/v<version>/query/", endpoint="query", methods=["GET"]),
        Rule("/services/data/v<version>/limits/", endpoint="limits", methods=["GET"]),
        Rule(
            "/services/data/v<version>/sobjects/<sobject_name>/<record_id>",
            endpoint="sobject",
            methods=["GET"],
        ),
        Rule("/services/data/<path:rest>", endpoint="rest_not_found"),
    ],
    strict_slashes=False,
    merge_slashes=False,
)
HANDLERS: dict[str, Callable[..., Response]] = {
    "authorize": oauth.authorize,
    "token": tokens.token,
    "revoke": tokens.revoke,
    "introspect": tokens.introspect,
    "userinfo": identity.userinfo,
    "discovery": identity.discovery,
    "keys": identity.keys,
    "identity": identity.identity,
    "versions": rest.versions,
    "resources": rest.resources,
    "query": rest.query,
    "limits": rest.limits,
    "sobject": rest.sobject,
    "rest_not_found": rest.not_found,
}


def _route(ctx: Ctx) -> Response:
    adapter = ROUTES.bind("sfsim", "/")
    try:
        endpoint, args = adapter.match(ctx.path, method=request.method)
    except MethodNotAllowed:
        return text_response("Method Not Allowed", 405, "text/plain;charset=UTF-8")
    except HTTPException:
        return not_found_page()
    return HANDLERS[endpoint](ctx, **args)


def _unknown_host(host: str) -> Response:
    """What an unresolvable or retired host answers (no redirects, §6.2)."""
    return text_response(f"sfsim: unknown host {host}", 404, "text/plain;charset=UTF-8")


def _serve_host(
    state: SimState, host: str, path: str
) -> tuple[Response, Ctx | None, str]:
    with state.lock:
        found = state.host_kind(host)
        if found is None:
            latency, fault = state.config.latency_ms, None
        else:
            latency, fault = state.take_faults(host, path)
    # Sleep without the lock so concurrent slow requests overlap.
    if latency:
        time.sleep(latency / 1000)
    if found is None:
        return _unknown_host(host), None, ""
    if fault is not None:
        if fault.kind == "timeout":
            time.sleep((fault.latency_ms or DEFAULT_TIMEOUT_MS) / 1000)
        return fault_response(fault, path), None, fault.kind
    with state.lock:
        found = state.host_kind(host)  # the org may have moved while we slept
        if found is None:
            return _unknown_host(host), None, ""
        ctx = Ctx(state=state, host=host, kind=found[0], org=found[1], path=path)
    return _route(ctx), ctx, ""


def create_app(
    state: SimState | None = None, fixture: str | Path | dict[str, Any] | None = None
) -> Flask:
    """Build the simulator app around `state` (new if None), seeded by `fixture`."""
    state = state if state is not None else SimState()
    if fixture is not None:
        load_fixture(state, fixture)
    app = Flask("sfsim")
    app.json.sort_keys = False  # type: ignore[attr-defined]
    app.extensions["sfsim_state"] = state

    def serve(host: str, subpath: str = "") -> Response:
        host = host.lower()
        path = "/" + subpath
        started = time.monotonic()
        resp, ctx, fault_kind = _serve_host(state, host, path)
        if (
            ctx is not None
            and ctx.org is not None
            and path.startswith("/services/data")
        ):
            org = ctx.org
            resp.headers["Sforce-Limit-Info"] = (
                f"api-usage={org.api_usage}/{org.api_limit}"
            )
        entry: dict[str, Any] = {
            "method": request.method,
            "host": host,
            "path": path,  # never the query string: it may hold codes or tokens
            "status": resp.status_code,
            "time": round(state.now(), 3),
            "duration_ms": round((time.monotonic() - started) * 1000, 1),
        }
        if path == "/services/oauth2/token":
            entry["grant_type"] = request.form.get("grant_type", "")
        if fault_kind:
            entry["fault"] = fault_kind
        state.log_request(entry)
        return resp

    methods = ["GET", "POST", "PUT", "PATCH", "DELETE"]
    app.add_url_rule("/h/<host>/", "sf_root", serve, methods=methods)
    app.add_url_rule("/h/<host>/<path:subpath>", "sf_host", serve, methods=methods)
    app.register_blueprint(
        control.blueprint(state, lambda data: load_fixture(state, data))
    )
    app.register_blueprint(setup_page.blueprint(state))
    app.add_url_rule("/", "index", lambda: redirect("/_sim/setup"))

    @app.after_request
    def _log(resp: Response) -> Response:
        # Path only: query strings can carry tokens (?oauth_token=) and codes.
        log.info("%s %s %s", request.method, request.path, resp.status_code)
        return resp

    return app
