"""Seed the simulator from a JSON fixture (``--fixture`` / ``create_app``).

Format (see README and ``fixtures/example.json``)::

    {"config"?: {...},
     "orgs": [{"org_id", "name", "my_domain", "org_type", "sandbox_name"?,
               "legacy"?, "my_domain_url"?,
               "users": [{"user_id", "username", "password", "permissions",
                          "license", "active", ...}],
               "apps": [{"name", "consumer_key", "consumer_secret", "scopes",
                         "callback_urls", "require_pkce",
                         "rotate_refresh_tokens", "activation_delay_seconds"}],
               "refresh_tokens": [{"token", "consumer_key", "user_id",
                                   "scopes"?}]}]}

Refresh tokens are loaded last because an app is usable by users of any org.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

from . import validate as v
from .state import SimState


def read(source: str | Path | dict[str, Any]) -> dict[str, Any]:
    """Accept a path or an already parsed fixture."""
    if isinstance(source, dict):
        return source
    with open(source, encoding="utf-8") as fh:
        data = json.load(fh)
    return v.obj(data, "fixture")


def _apply(state: SimState, data: dict[str, Any]) -> dict[str, int]:
    data = v.obj(data, "fixture")
    if "config" in data:
        apply_config(state, v.obj(data["config"], "config"))
    orgs = data.get("orgs", [])
    if not isinstance(orgs, list):
        raise v.BadInput("'orgs' must be a list")
    pending_tokens: list[tuple[str, dict[str, Any]]] = []
    counts = {"orgs": 0, "users": 0, "apps": 0, "refresh_tokens": 0}
    for raw in orgs:
        raw = v.obj(raw, "org")
        org_fields = {
            k: raw[k] for k in raw if k not in ("users", "apps", "refresh_tokens")
        }
        org = state.create_org(org_fields)
        counts["orgs"] += 1
        for user in raw.get("users", []):
            state.create_user(org.org_id, user)
            counts["users"] += 1
        for app in raw.get("apps", []):
            state.create_app(org.org_id, app)
            counts["apps"] += 1
        for token in raw.get("refresh_tokens", []):
            pending_tokens.append((org.org_id, v.obj(token, "refresh token")))
    for org_id, token in pending_tokens:
        value = v.req_string(token, "token")
        if value in state.refresh_tokens:
            raise v.BadInput("duplicate refresh token in fixture")
        app = state.app(v.req_string(token, "consumer_key"))
        user = state.user(v.req_string(token, "user_id"), org_id)
        scopes = v.str_list(token, "scopes", required=False)
        granted = [s for s in (scopes or app.scopes) if s in app.allowed_scopes()]
        state.add_refresh_token(app, user, granted, token=value)
        state.approvals.add((user.user_id, app.consumer_key))
        counts["refresh_tokens"] += 1
    return counts


def load(state: SimState, source: str | Path | dict[str, Any]) -> dict[str, int]:
    """Validate the fixture on a scratch state first, then apply it for real.

    Raises BadInput/NotFound without touching `state` if the fixture is bad.
    """
    data = read(source)
    scratch = SimState()
    # Reuse existing IDs/hosts in the dry run so conflicts are detected too.
    scratch.orgs, scratch.hosts = dict(state.orgs), dict(state.hosts)
    scratch.users, scratch.usernames = dict(state.users), dict(state.usernames)
    scratch.apps = dict(state.apps)
    # Copies, so that the dry run's approval-limit revocations stay in it.
    scratch.refresh_tokens = {
        k: dataclasses.replace(rt) for k, rt in state.refresh_tokens.items()
    }
    scratch.grants = {k: list(values) for k, values in state.grants.items()}
    try:
        _apply(scratch, json.loads(json.dumps(data)))
    except v.NotFound as exc:
        raise v.BadInput(str(exc)) from None
    with state.lock:
        return _apply(state, data)


def apply_config(state: SimState, data: dict[str, Any]) -> dict[str, Any]:
    """Update the global simulator settings (``POST /_sim/config``).

    Everything is validated before anything changes.
    """
    data = v.obj(data)
    with state.lock:
        current = state.config.as_json()
        unknown = set(data) - set(current)
        if unknown:
            raise v.BadInput(f"unknown config keys: {', '.join(sorted(unknown))}")
        updated: dict[str, Any] = {}
        for key, value in current.items():
            if isinstance(value, bool):
                updated[key] = v.boolean(data, key, value)
            else:
                minimum = 0 if key == "latency_ms" else 1
                updated[key] = v.integer(data, key, value, minimum=minimum)
        for key, value in updated.items():
            setattr(state.config, key, value)
        return state.config.as_json()
