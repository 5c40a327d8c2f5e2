"""Request context and response helpers shared by the Salesforce endpoints.

The helpers produce the exact shapes real Salesforce uses (reference §4):
OAuth errors as a flat JSON object, REST errors as an array envelope, and
identity errors as bare text.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlencode

from flask import Response, request

from .models import Org

if TYPE_CHECKING:  # state imports faults, which imports this module
    from .state import SimState

JSON_TYPE = "application/json;charset=UTF-8"
HTML_TYPE = "text/html;charset=UTF-8"
NO_STORE = "no-cache,must-revalidate,max-age=0,no-store,private"


@dataclass
class Ctx:
    """Which Salesforce host a request reached, and the org it belongs to."""

    state: SimState
    host: str
    kind: str  # "login", "test" or "mydomain"
    org: Org | None
    path: str  # path on the Salesforce host, e.g. "/services/oauth2/token"

    @property
    def base_url(self) -> str:
        return f"https://{self.host}"


def json_response(data: Any, status: int = 200, *, no_store: bool = False) -> Response:
    resp = Response(json.dumps(data, separators=(",", ":")), status)
    resp.headers["Content-Type"] = JSON_TYPE
    if no_store:
        resp.headers["Cache-Control"] = NO_STORE
        resp.headers["Pragma"] = "no-cache"
    return resp


def oauth_error(error: str, description: str, status: int = 400) -> Response:
    """Token-endpoint style error: ``{"error": ..., "error_description": ...}``."""
    return json_response(
        {"error": error, "error_description": description}, status, no_store=True
    )


def rest_error(code: str, message: str, status: int) -> Response:
    """REST API envelope: an array of ``{message, errorCode}``."""
    return json_response([{"message": message, "errorCode": code}], status)


def text_response(body: str, status: int, content_type: str = HTML_TYPE) -> Response:
    resp = Response(body, status)
    resp.headers["Content-Type"] = content_type
    return resp


def bad_oauth_token() -> Response:
    """userinfo / identity URL with a bad token: 403 and bare text."""
    return text_response("Bad_OAuth_Token", 403, "text/plain;charset=UTF-8")


def callback_redirect(redirect_uri: str, params: dict[str, str | None]) -> Response:
    """302 to the registered callback with URL-encoded query parameters."""
    query = urlencode({k: v for k, v in params.items() if v is not None})
    sep = "&" if "?" in redirect_uri else "?"
    resp = Response("", 302)
    resp.headers["Location"] = f"{redirect_uri}{sep}{query}"
    resp.headers["Cache-Control"] = NO_STORE
    return resp


def bearer_token() -> str | None:
    """Token from ``Authorization: Bearer`` (or the legacy ``OAuth`` prefix)."""
    header = request.headers.get("Authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() in ("bearer", "oauth") and value.strip():
        return value.strip()
    return None


def client_credentials() -> tuple[str, str | None]:
    """(client_id, client_secret) from HTTP Basic or the form body.

    Basic credentials are form-urlencoded before base64 (RFC 6749 §2.3.1).
    """
    header = request.headers.get("Authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "basic" and value:
        try:
            decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
        except (ValueError, UnicodeDecodeError):
            return "", None
        client_id, sep, secret = decoded.partition(":")
        return unquote(client_id), unquote(secret) if sep else None
    secret = request.form.get("client_secret")
    return request.form.get("client_id", ""), secret if secret else None
