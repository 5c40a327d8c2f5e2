"""The JSON control API under ``/_sim/`` for tests, benches and demos.

Bad input answers ``400 {"error": "..."}``; unknown orgs, users or apps
``404 {"error": "..."}``.  Nothing here echoes a refresh or access token
except ``POST /_sim/tokens`` (which mints them) and nothing echoes a consumer
secret except creating an app and rotating its secret.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from flask import Blueprint, Response, jsonify, request

from . import fixture
from .models import App, Org, User
from .oauth import granted_scopes
from .state import BadInput, NotFound, SimState
from .tokens import issue
from .validate import boolean, host_from_url, obj, req_string, str_list
from .validate import string as opt_string


def org_json(state: SimState, org: Org, *, detail: bool = False) -> dict[str, Any]:
    data: dict[str, Any] = {
        "org_id": org.org_id,
        "name": org.name,
        "my_domain": org.my_domain,
        "org_type": org.org_type,
        "sandbox_name": org.sandbox_name,
        "login_url": org.url,
        "instance_url": org.url,
        "identity_host": org.identity_host,
        "previous_urls": [f"https://{h}" for h in org.previous_hosts],
        "legacy": org.legacy,
        "active": org.active,
        "api_usage": org.api_usage,
        "api_limit": org.api_limit,
    }
    if detail:
        data["users"] = [
            user_json(u) for u in state.users.values() if u.org_id == org.org_id
        ]
        data["apps"] = [
            app_json(state, a) for a in state.apps.values() if a.org_id == org.org_id
        ]
    return data


def orgs_listing(state: SimState) -> list[dict[str, Any]]:
    """Every org with its users and apps, grouped in one pass (1,000s of orgs)."""
    listing = {org_id: org_json(state, org) for org_id, org in state.orgs.items()}
    for item in listing.values():
        item["users"], item["apps"] = [], []
    for user in state.users.values():
        listing[user.org_id]["users"].append(user_json(user))
    for app in state.apps.values():
        listing[app.org_id]["apps"].append(app_json(state, app))
    return list(listing.values())


def user_json(user: User) -> dict[str, Any]:
    return {
        "user_id": user.user_id,
        "org_id": user.org_id,
        "username": user.username,
        "license": user.license,
        "profile": user.profile_name,
        "active": user.active,
        "permissions": sorted(user.effective_permissions()),
    }


def app_json(state: SimState, app: App) -> dict[str, Any]:
    return {
        "consumer_key": app.consumer_key,
        "name": app.name,
        "org_id": app.org_id,
        "scopes": app.scopes,
        "callback_urls": app.callback_urls,
        "require_pkce": app.require_pkce,
        "rotate_refresh_tokens": app.rotate_refresh_tokens,
        "require_secret_web_server": app.require_secret_web_server,
        "require_secret_refresh": app.require_secret_refresh,
        "activation_delay_seconds": app.activation_delay_seconds,
        "active": state.app_is_active(app),
        "active_from": app.active_from,
        "never_activates": app.never_activates,
        "blocked": app.blocked,
    }


def _body() -> dict[str, Any]:
    if not request.get_data():
        return {}
    data = request.get_json(silent=True)
    if data is None:
        raise BadInput("the body must be JSON")
    return obj(data)


def blueprint(
    state: SimState, load_fixture: Callable[[Any], dict[str, int]]
) -> Blueprint:
    """All ``/_sim/`` routes, bound to `state`."""
    bp = Blueprint("sfsim_control", __name__, url_prefix="/_sim")

    @bp.errorhandler(BadInput)
    def _bad(exc: BadInput) -> tuple[Response, int]:
        return jsonify(error=str(exc)), 400

    @bp.errorhandler(NotFound)
    def _missing(exc: NotFound) -> tuple[Response, int]:
        return jsonify(error=str(exc.args[0] if exc.args else exc)), 404

    @bp.get("/health")
    def health() -> Response:
        return jsonify(ok=True)

    @bp.route("/clock", methods=["GET", "POST"])
    def clock() -> Response:
        if request.method == "POST":
            data = _body()
            seconds = data.get("advance_seconds")
            if (
                isinstance(seconds, bool)
                or not isinstance(seconds, (int, float))
                or seconds < 0
            ):
                raise BadInput("'advance_seconds' must be a number >= 0")
            state.advance(float(seconds))
        return jsonify(now=state.now(), offset_seconds=state.clock_offset)

    @bp.route("/config", methods=["GET", "POST"])
    def config() -> Response:
        if request.method == "POST":
            return jsonify(fixture.apply_config(state, _body()))
        return jsonify(state.config.as_json())

    @bp.post("/reset")
    def reset() -> Response:
        state.reset()
        return jsonify(ok=True)

    @bp.post("/fixture")
    def load() -> Response:
        return jsonify(loaded=load_fixture(_body()))

    @bp.route("/orgs", methods=["GET", "POST"])
    def orgs() -> Response:
        with state.lock:
            if request.method == "POST":
                return jsonify(org_json(state, state.create_org(_body())))
            return jsonify(orgs=orgs_listing(state))

    @bp.route("/orgs/<org_id>", methods=["GET", "POST"])
    def one_org(org_id: str) -> Response:
        with state.lock:
            if request.method == "POST":
                org = state.update_org(org_id, _body())
            else:
                org = state.org(org_id)
            return jsonify(org_json(state, org, detail=True))

    @bp.route("/orgs/<org_id>/users", methods=["GET", "POST"])
    def users(org_id: str) -> Response:
        with state.lock:
            if request.method == "POST":
                return jsonify(user_json(state.create_user(org_id, _body())))
            org = state.org(org_id)
            return jsonify(
                users=[
                    user_json(u) for u in state.users.values() if u.org_id == org.org_id
                ]
            )

    @bp.post("/orgs/<org_id>/users/<user_id>")
    def update_user(org_id: str, user_id: str) -> Response:
        return jsonify(user_json(state.update_user(org_id, user_id, _body())))

    @bp.post("/orgs/<org_id>/users/<user_id>/revoke-tokens")
    def revoke_tokens(org_id: str, user_id: str) -> Response:
        with state.lock:
            user = state.user(user_id, state.org(org_id).org_id)
            return jsonify(revoked=state.revoke_user_tokens(user))

    @bp.post("/orgs/<org_id>/apps")
    def create_app(org_id: str) -> Response:
        with state.lock:
            app = state.create_app(org_id, _body())
            data = app_json(state, app)
            data["consumer_secret"] = app.consumer_secret
            return jsonify(data)

    @bp.post("/orgs/<org_id>/enhanced-domains")
    def enhanced_domains(org_id: str) -> Response:
        data = _body()
        new_url = opt_string(data, "new_url", required=False)
        new_host = host_from_url(new_url) if new_url else None
        old_url, url = state.switch_domain(
            org_id, new_host, boolean(data, "revoke_tokens", False)
        )
        return jsonify(old_url=old_url, new_url=url)

    @bp.get("/apps")
    def apps() -> Response:
        with state.lock:
            return jsonify(apps=[app_json(state, a) for a in state.apps.values()])

    @bp.post("/apps/<consumer_key>")
    def update_app(consumer_key: str) -> Response:
        with state.lock:
            return jsonify(app_json(state, state.update_app(consumer_key, _body())))

    @bp.post("/apps/<consumer_key>/rotate-secret")
    def rotate_secret(consumer_key: str) -> Response:
        with state.lock:
            app = state.rotate_secret(consumer_key)
            data = app_json(state, app)
            data["consumer_secret"] = app.consumer_secret
            return jsonify(data)

    @bp.post("/apps/<consumer_key>/block")
    def block(consumer_key: str) -> Response:
        with state.lock:
            return jsonify(app_json(state, state.set_blocked(consumer_key, True)))

    @bp.post("/apps/<consumer_key>/unblock")
    def unblock(consumer_key: str) -> Response:
        with state.lock:
            return jsonify(app_json(state, state.set_blocked(consumer_key, False)))

    @bp.post("/tokens")
    def mint() -> Response:
        data = _body()
        with state.lock:
            app = state.app(req_string(data, "consumer_key"))
            user = state.user(req_string(data, "user_id"))
            scopes = granted_scopes(app, str_list(data, "scopes", required=False) or [])
            if scopes is None:
                raise BadInput("unknown scope requested")
            if not scopes:
                raise BadInput("none of the requested scopes is allowed by the app")
            org = state.orgs[user.org_id]
            state.approvals.add((user.user_id, app.consumer_key))
            return jsonify(issue(state, app, user, scopes, org.identity_host))

    @bp.get("/refresh-tokens")
    def refresh_tokens() -> Response:
        user_id = request.args.get("user_id")
        key = request.args.get("consumer_key")
        with state.lock:
            selected = [
                rt
                for rt in state.refresh_tokens.values()
                if (not user_id or rt.user_id[:15] == user_id[:15])
                and (not key or rt.consumer_key == key)
            ]
            revoked = sum(1 for rt in selected if rt.revoked)
            return jsonify(active=len(selected) - revoked, revoked=revoked)

    @bp.post("/check-token")
    def check_token() -> Response:
        data = _body()
        with state.lock:
            if data.get("refresh_token") is not None:
                rt = state.refresh_tokens.get(req_string(data, "refresh_token"))
                return jsonify(active=rt is not None and not rt.revoked)
            if data.get("access_token") is not None:
                token = req_string(data, "access_token")
                at = state.access_tokens.get(token)
                live = at is not None and not at.revoked
                live = (
                    live
                    and state.now() - at.last_used
                    <= state.config.session_timeout_seconds
                )
                return jsonify(active=bool(live))
        raise BadInput("give 'refresh_token' or 'access_token'")

    @bp.route("/requests", methods=["GET", "DELETE"])
    def requests_log() -> Response:
        with state.lock:
            if request.method == "DELETE":
                state.requests.clear()
                return jsonify(ok=True)
            host = request.args.get("host")
            prefix = request.args.get("path_prefix")
            entries = [
                e
                for e in state.requests
                if (not host or e["host"] == host)
                and (not prefix or e["path"].startswith(prefix))
            ]
            return jsonify(requests=entries, count=len(entries))

    @bp.route("/faults", methods=["GET", "POST", "DELETE"])
    def faults() -> Response:
        with state.lock:
            if request.method == "POST":
                return jsonify(fault_id=state.faults.add(_body()).fault_id)
            if request.method == "DELETE":
                state.faults.clear()
                return jsonify(ok=True)
            return jsonify(faults=[f.as_json() for f in state.faults])

    @bp.delete("/faults/<fault_id>")
    def delete_fault(fault_id: str) -> Response:
        with state.lock:
            if not state.faults.remove(fault_id):
                raise NotFound(f"unknown fault {fault_id!r}")
            return jsonify(ok=True)

    return bp
