"""Input validation shared by the control API and the fixture loader.

Every helper raises :class:`BadInput` with a message fit for the control
API's ``{"error": "..."}`` body.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import urlsplit

from . import ids

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
