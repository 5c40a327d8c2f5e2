"""What the client's calls return: plain, frozen values."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import datetime


@dataclass(frozen=True)
class TokenSet:
    """A validated token response. Token fields are hidden from ``repr``."""

    access_token: str = field(repr=False)
    refresh_token: str | None = field(repr=False)
    instance_url: str
    identity_url: str
    org_id: str
    user_id: str
    scopes: frozenset[str]
    issued_at: datetime
    id_token: str | None = field(default=None, repr=False)
    signature: str | None = field(default=None, repr=False)


@dataclass(frozen=True)
class Identity:
    """The identity URL's answer about the connected user."""

    user_id: str
    org_id: str
    username: str
    display_name: str
    email: str
    active: bool
    user_type: str


class ActivationProbe(enum.StrEnum):
    """What :func:`~connections.salesforce.oauth.probe_activation` learned
    about new app credentials."""

    ACTIVE = "active"
    NOT_ACTIVE = "not_active"
    WRONG_SECRET = "wrong_secret"


@dataclass(frozen=True)
class AuthorizationRequest:
    """Where to send the browser, and what to keep server-side for the
    callback (state, PKCE verifier, nonce). Nothing shows in ``repr``."""

    url: str = field(repr=False)
    state: str = field(repr=False)
    code_verifier: str = field(repr=False)
    nonce: str | None = field(default=None, repr=False)


class PermissionMap(dict[str, bool]):
    """Field → granted; ``unknown_fields`` do not exist in the org."""

    unknown_fields: frozenset[str] = frozenset()
