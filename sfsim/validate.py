"""Input validation shared by the control API and the fixture loader.

Every helper raises :class:`BadInput` with a message fit for the control
API's ``{"error": "..."}`` body.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlsplit

from . import ids
from .models import KNOWN_SCOPES, App, PermissionSet

PERMISSION_RE = re.compile(r"^Permissions[A-Za-z0-9]+$")
MY_DOMAIN_RE = re.compile(r"^[a-z][a-z0-9]*(-[a-z0-9]+)*$")
SANDBOX_RE = re.compile(r"^[a-z][a-z0-9]{0,9}$")
HOST_RE = re.compile(
    r"^[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)+$"
)


class BadInput(ValueError):
    """Invalid control-API or fixture input (answered with HTTP 400)."""


class NotFound(LookupError):
    """An unknown org, user or app (answered with HTTP 404)."""


def obj(value: Any, what: str = "body") -> dict[str, Any]:
    if not isinstance(value, dict):
        raise BadInput(f"{what} must be a JSON object")
    return value


def string(data: dict[str, Any], key: str, *, required: bool = True) -> str | None:
    value = data.get(key)
    if value is None:
        if required:
            raise BadInput(f"'{key}' is required")
        return None
    if not isinstance(value, str) or not value.strip():
        raise BadInput(f"'{key}' must be a non-empty string")
    return value.strip()


def req_string(data: dict[str, Any], key: str) -> str:
    value = string(data, key)
    assert value is not None
    return value


def boolean(data: dict[str, Any], key: str, default: bool) -> bool:
    value = data.get(key, default)
    if not isinstance(value, bool):
        raise BadInput(f"'{key}' must be true or false")
    return value


def integer(
    data: dict[str, Any], key: str, default: int | None, *, minimum: int = 0
) -> int | None:
    value = data.get(key, default)
    if value is None:
        return None
    # bool is an int subclass; "true" as a delay is a caller bug.
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise BadInput(f"'{key}' must be an integer >= {minimum}")
    return value


def str_list(
    data: dict[str, Any], key: str, *, required: bool = True
) -> list[str] | None:
    value = data.get(key)
    if value is None:
        if required:
            raise BadInput(f"'{key}' is required")
        return None
    if not isinstance(value, list) or not all(
        isinstance(v, str) and v.strip() for v in value
    ):
        raise BadInput(f"'{key}' must be a list of non-empty strings")
    return [v.strip() for v in value]


def permissions(values: list[str]) -> set[str]:
    for name in values:
        if not PERMISSION_RE.match(name):
            raise BadInput(
                f"unknown permission field {name!r} (expected Permissions...)"
            )
    return set(values)


def sf_id(value: Any, prefix: str, what: str) -> str:
    """Validate an explicit 15/18-char ID with the given key prefix."""
    if not isinstance(value, str) or not value.startswith(prefix):
        raise BadInput(f"'{what}' must be a Salesforce ID starting with {prefix}")
    try:
        return ids.to18(value)
    except ValueError as exc:
        raise BadInput(f"'{what}': {exc}") from None


def callback_url(value: str) -> str:
    parts = urlsplit(value)
    if not parts.scheme or (parts.scheme in ("http", "https") and not parts.netloc):
        raise BadInput(f"callback URL {value!r} must be absolute")
    return value


def host_from_url(value: str) -> str:
    """Accept `https://host` or a bare host; return the lower-case host."""
    text = value.strip()
    if "://" in text:
        parts = urlsplit(text)
        if parts.scheme != "https" or parts.path not in ("", "/") or parts.port:
            raise BadInput("my_domain_url must look like https://HOST")
        text = parts.hostname or ""
    text = text.lower()
    if not HOST_RE.match(text):
        raise BadInput(f"invalid host {value!r}")
    return text


def permission_sets(raw: Any) -> list[PermissionSet]:
    """Named permission sets: ``[{"name", "label"?, "permissions": [...]}]``."""
    if raw is None:
        return []
    if not isinstance(raw, list):
        raise BadInput("'permission_sets' must be a list")
    result = []
    for item in raw:
        item = obj(item, "permission set")
        name = req_string(item, "name")
        result.append(
            PermissionSet(
                ps_id=ids.new_id(ids.PREFIX_PERMISSION_SET),
                name=name,
                label=string(item, "label", required=False) or name,
                permissions=permissions(str_list(item, "permissions") or []),
                assignment_id=ids.new_id(ids.PREFIX_PERMISSION_SET_ASSIGNMENT),
            )
        )
    return result


def app_settings(app: App, data: dict[str, Any], creating: bool) -> None:
    """Apply the app settings in `data` to `app` (scopes and callbacks are
    required when creating).  Callers pass a copy when updating, so a bad
    update leaves the real app untouched."""
    scopes = str_list(data, "scopes", required=creating)
    if scopes is not None:
        unknown = [s for s in scopes if s not in KNOWN_SCOPES]
        if unknown or not scopes:
            raise BadInput(f"unknown scopes: {', '.join(unknown) or '(none given)'}")
        app.scopes = list(dict.fromkeys(scopes))
    urls = str_list(data, "callback_urls", required=creating)
    if urls is not None:
        if not urls:
            raise BadInput("'callback_urls' must not be empty")
        app.callback_urls = [callback_url(u) for u in urls]
    for key in (
        "require_pkce",
        "rotate_refresh_tokens",
        "require_secret_web_server",
        "require_secret_refresh",
        "never_activates",
    ):
        setattr(app, key, boolean(data, key, getattr(app, key)))
    delay = integer(data, "activation_delay_seconds", app.activation_delay_seconds)
    app.activation_delay_seconds = delay or 0
    if "name" in data:
        app.name = req_string(data, "name")
