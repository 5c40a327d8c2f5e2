"""The simulator's in-memory world: orgs, users, apps, codes, tokens, faults.

One re-entrant lock guards everything.  Request handlers take it around the
whole read-check-write of a request (so, e.g., a code cannot be redeemed twice
by racing requests) and release it before any injected sleep, so a thousand
concurrent slow requests do not serialise on it.
"""

from __future__ import annotations

import dataclasses
import itertools
import secrets
import threading
import time
from collections import deque
from typing import Any

from . import ids
from . import validate as v
from .faults import FaultBook
from .models import (
    DEFAULT_PERMISSIONS,
    DEFAULT_PROFILE,
    EDITIONS,
    LICENSES,
    LOGIN_HOST,
    ORG_TYPES,
    TEST_HOST,
    AccessToken,
    App,
    AuthCode,
    Config,
    Fault,
    LoginTicket,
    Org,
    PermissionSet,
    RefreshToken,
    SetupNotice,
    User,
    enhanced_host,
    legacy_host,
)

SETUP_NOTICES_KEPT = 200
MAX_APPROVALS = 5  # refresh tokens per user per app; the 6th revokes the oldest
REQUEST_LOG_SIZE = 50_000
PRUNE_ACCESS_TOKENS_AT = 20_000

BadInput = v.BadInput
NotFound = v.NotFound


def canonical_id(sf_id: str) -> str:
    """The key records are stored under: the 18-character form of the first
    15 characters, so that lookups match the way :func:`ids.same_id` does
    without scanning every record ("" when it is no ID at all)."""
    try:
        return ids.to18(sf_id[:15])
    except (ValueError, TypeError):
        return ""


class SimState:
    """All simulator state.  Public methods lock; handlers may lock around them."""

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.reset()

    def reset(self) -> None:
        with self.lock:
            self.clock_offset = 0.0
            self.config = Config()
            self.orgs: dict[str, Org] = {}
            self.hosts: dict[str, str] = {}  # current My Domain host -> org_id
            self.users: dict[str, User] = {}
            self.usernames: dict[str, str] = {}  # lower-case username -> user_id
            self.apps: dict[str, App] = {}
            self.codes: dict[str, AuthCode] = {}
            self.tickets: dict[str, LoginTicket] = {}
            self.refresh_tokens: dict[str, RefreshToken] = {}
            self.access_tokens: dict[str, AccessToken] = {}
            self.approvals: set[tuple[str, str]] = set()  # (user_id, consumer_key)
            # (user_id, consumer_key) -> its refresh tokens' values, oldest
            # first: the five-approvals rule looks there, not at every token.
            self.grants: dict[tuple[str, str], list[str]] = {}
            self.faults = FaultBook()
            self.requests: deque[dict[str, Any]] = deque(maxlen=REQUEST_LOG_SIZE)
            self.setup_notices: dict[str, SetupNotice] = {}  # id -> notice
            self._seq = itertools.count(1)
            self._prune_at = PRUNE_ACCESS_TOKENS_AT

    # -- clock -------------------------------------------------------------

    def now(self) -> float:
        """Seconds since the epoch on the simulated clock."""
        return time.time() + self.clock_offset

    def advance(self, seconds: float) -> None:
        with self.lock:
            self.clock_offset += seconds

    # -- lookups -----------------------------------------------------------

    def org(self, org_id: str) -> Org:
        org = self.orgs.get(canonical_id(org_id))
        if org is None:
            raise NotFound(f"unknown org {org_id!r}")
        return org

    def user(self, user_id: str, org_id: str | None = None) -> User:
        user = self.users.get(canonical_id(user_id))
        if user is None or (
            org_id is not None and not ids.same_id(user.org_id, org_id)
        ):
            raise NotFound(f"unknown user {user_id!r}")
        return user

    def app(self, consumer_key: str) -> App:
        try:
            return self.apps[consumer_key]
        except KeyError:
            raise NotFound("unknown consumer key") from None

    def host_kind(self, host: str) -> tuple[str, Org | None] | None:
        """('login'|'test'|'mydomain', org) for a served host, else None."""
        if host == LOGIN_HOST:
            return "login", None
        if host == TEST_HOST:
            return "test", None
        org_id = self.hosts.get(host)
        if org_id is None:
            return None
        return "mydomain", self.orgs[org_id]

    def app_is_active(self, app: App) -> bool:
        """New or changed apps answer invalid_client_id until propagated."""
        return not app.never_activates and self.now() >= app.active_from

    # -- orgs --------------------------------------------------------------

    def create_org(self, data: dict[str, Any]) -> Org:
        data = v.obj(data)
        name = v.req_string(data, "name")
        my_domain = v.req_string(data, "my_domain").lower()
        if not v.MY_DOMAIN_RE.match(my_domain) or len(my_domain) > 40:
            raise BadInput("'my_domain' must be lower-case letters, digits and hyphens")
        org_type = v.string(data, "org_type", required=False) or "production"
        if org_type not in ORG_TYPES:
            raise BadInput(f"'org_type' must be one of {', '.join(ORG_TYPES)}")
        # "" and null both mean "no sandbox name" (seeders write either).
        if data.get("sandbox_name") == "":
            data = {k: val for k, val in data.items() if k != "sandbox_name"}
        sandbox_name = v.string(data, "sandbox_name", required=False)
        if org_type == "sandbox":
            sandbox_name = (sandbox_name or "").lower()
            if not v.SANDBOX_RE.match(sandbox_name):
                raise BadInput(
                    "a sandbox needs 'sandbox_name' (letters/digits, max 10)"
                )
        elif sandbox_name is not None:
            raise BadInput("'sandbox_name' is only for org_type sandbox")
        legacy = v.boolean(data, "legacy", False)
        with self.lock:
            if data.get("org_id") is not None:
                org_id = v.sf_id(data["org_id"], ids.PREFIX_ORG, "org_id")
                if org_id in self.orgs:
                    raise BadInput("an org with this org_id already exists")
            else:
                org_id = ids.new_id(ids.PREFIX_ORG)
            if data.get("my_domain_url") is not None:
                host = v.host_from_url(str(data["my_domain_url"]))
            elif legacy:
                host = legacy_host(my_domain, org_type, sandbox_name, org_id)
            else:
                host = enhanced_host(my_domain, org_type, sandbox_name)
            if host in self.hosts or host in (LOGIN_HOST, TEST_HOST):
                raise BadInput(f"host {host} is already in use")
            org = Org(
                org_id=org_id,
                name=name,
                my_domain=my_domain,
                org_type=org_type,
                sandbox_name=sandbox_name,
                host=host,
                legacy=legacy or data.get("my_domain_url") is not None,
                created_at=self.now(),
                edition=v.string(data, "edition", required=False) or EDITIONS[org_type],
                api_limit=self.config.api_daily_limit,
            )
            self.orgs[org_id] = org
            self.hosts[host] = org_id
            return org

    def update_org(self, org_id: str, data: dict[str, Any]) -> Org:
        data = v.obj(data)
        with self.lock:
            org = self.org(org_id)
            was_active = org.active
            org.active = v.boolean(data, "active", org.active)
            if was_active and not org.active:
                # A locked, closed or suspended org ends its sessions; a
                # refresh then answers `inactive_org`.
                for at in self.access_tokens.values():
                    if at.org_id == org.org_id:
                        at.revoked = True
            org.api_usage = v.integer(data, "api_usage", org.api_usage) or 0
            org.api_limit = v.integer(data, "api_limit", org.api_limit) or 0
            unavailable = v.str_list(
                data, "unavailable_permission_fields", required=False
            )
            if unavailable is not None:
                org.unavailable_permission_fields = v.permissions(unavailable)
            if "name" in data:
                org.name = v.req_string(data, "name")
            return org

    def switch_domain(
        self, org_id: str, new_host: str | None = None, revoke_tokens: bool = False
    ) -> tuple[str, str]:
        """Move an org to a new My Domain host (enhanced domains or a rename).

        The old host stops serving at once: non-enhanced redirections ended in
        Spring '26 (reference §6.2).  Refresh tokens survive unless
        `revoke_tokens` (Salesforce documents that a My Domain change may reset
        connections); the next token response carries the new instance_url.
        """
        with self.lock:
            org = self.org(org_id)
            old = org.host
            if new_host is None:
                # Production (and already-enhanced orgs) keep their host under
                # enhanced domains, so model the switch as a My Domain rename:
                # acme -> acme-2 -> acme-3 ...
                base = org.my_domain.rsplit("-", 1)[0] if org.renames else org.my_domain
                name = org.my_domain
                new_host = enhanced_host(name, org.org_type, org.sandbox_name)
                while new_host == old or new_host in self.hosts:
                    org.renames += 1
                    name = f"{base}-{org.renames + 1}"
                    new_host = enhanced_host(name, org.org_type, org.sandbox_name)
                org.my_domain = name
            elif new_host == old or new_host in self.hosts:
                raise BadInput(f"host {new_host} is already in use")
            del self.hosts[old]
            self.hosts[new_host] = org.org_id
            org.previous_hosts.append(old)
            org.host = new_host
            org.legacy = False
            if revoke_tokens:
                for rt in list(self.refresh_tokens.values()):
                    if rt.org_id == org.org_id:
                        self.revoke_refresh(rt, "my domain change")
                for at in self.access_tokens.values():
                    if at.org_id == org.org_id:
                        at.revoked = True
            return f"https://{old}", org.url

    # -- users -------------------------------------------------------------

    def _note_permissions(self, org: Org, user: User) -> None:
        org.extra_permission_fields |= user.effective_permissions()

    def create_user(self, org_id: str, data: dict[str, Any]) -> User:
        data = v.obj(data)
        username = v.req_string(data, "username")
        if "@" not in username or " " in username:
            raise BadInput("'username' must look like an email address")
        password = v.req_string(data, "password")
        license_ = v.string(data, "license", required=False) or "Salesforce"
        if license_ not in LICENSES:
            raise BadInput(f"'license' must be one of {', '.join(LICENSES)}")
        perms = v.str_list(data, "permissions", required=False)
        permissions = v.permissions(perms if perms is not None else DEFAULT_PERMISSIONS)
        with self.lock:
            org = self.org(org_id)
            if username.lower() in self.usernames:
                # Usernames are unique across all of Salesforce, not per org.
                raise BadInput("username already exists")
            if data.get("user_id") is not None:
                user_id = v.sf_id(data["user_id"], ids.PREFIX_USER, "user_id")
                if user_id in self.users:
                    raise BadInput("a user with this user_id already exists")
            else:
                user_id = ids.new_id(ids.PREFIX_USER)
            profile_id = ids.new_id(ids.PREFIX_PROFILE)
            local = username.split("@", 1)[0]
            user = User(
                user_id=user_id,
                org_id=org.org_id,
                username=username,
                password=password,
                first_name=v.string(data, "first_name", required=False)
                or local[:1].upper() + local[1:],
                last_name=v.string(data, "last_name", required=False) or "User",
                email=v.string(data, "email", required=False) or username,
                license=license_,
                active=v.boolean(data, "active", True),
                profile_name=v.string(data, "profile", required=False)
                or DEFAULT_PROFILE[license_],
                profile_id=profile_id,
                profile_ps=PermissionSet(
                    ps_id=ids.new_id(ids.PREFIX_PERMISSION_SET),
                    name="X" + profile_id,
                    label=ids.to15(profile_id) + "_128_09_04_12_1",
                    permissions=permissions,
                    assignment_id=ids.new_id(ids.PREFIX_PERMISSION_SET_ASSIGNMENT),
                ),
                permission_sets=v.permission_sets(data.get("permission_sets")),
                created_at=self.now(),
                modified_at=self.now(),
            )
            self.users[user_id] = user
            self.usernames[username.lower()] = user_id
            self._note_permissions(org, user)
            return user

    def update_user(self, org_id: str, user_id: str, data: dict[str, Any]) -> User:
        data = v.obj(data)
        with self.lock:
            org = self.org(org_id)
            user = self.user(user_id, org.org_id)
            if "permissions" in data:
                perms = v.str_list(data, "permissions") or []
                user.profile_ps.permissions = v.permissions(perms)
            if "permission_sets" in data:
                user.permission_sets = v.permission_sets(data["permission_sets"])
            if "license" in data:
                license_ = v.req_string(data, "license")
                if license_ not in LICENSES:
                    raise BadInput(f"'license' must be one of {', '.join(LICENSES)}")
                user.license = license_
            for key in ("password", "profile", "first_name", "last_name", "email"):
                if key in data:
                    attr = "profile_name" if key == "profile" else key
                    setattr(user, attr, v.req_string(data, key))
            was_active = user.active
            user.active = v.boolean(data, "active", user.active)
            if was_active and not user.active:
                # Deactivation ends the user's sessions at once; refresh tokens
                # then answer `inactive_user` (see README, "Not modelled").
                for at in self.access_tokens.values():
                    if at.user_id == user.user_id:
                        at.revoked = True
            user.modified_at = self.now()
            self._note_permissions(org, user)
            return user

    def find_login_user(self, username: str) -> User | None:
        user_id = self.usernames.get(username.strip().lower())
        return self.users.get(user_id) if user_id else None

    # -- apps --------------------------------------------------------------

    def create_app(self, org_id: str, data: dict[str, Any]) -> App:
        data = v.obj(data)
        with self.lock:
            org = self.org(org_id)
            key = (
                v.string(data, "consumer_key", required=False) or ids.new_consumer_key()
            )
            if key in self.apps:
                raise BadInput("consumer_key already exists")
            if any(c.isspace() for c in key) or len(key) > 255:
                raise BadInput("'consumer_key' must not contain spaces")
            secret = (
                v.string(data, "consumer_secret", required=False)
                or ids.new_consumer_secret()
            )
            app = App(
                consumer_key=key,
                consumer_secret=secret,
                name=v.req_string(data, "name"),
                org_id=org.org_id,
                scopes=[],
                callback_urls=[],
                require_pkce=False,
                rotate_refresh_tokens=False,
                require_secret_web_server=True,
                require_secret_refresh=True,
                activation_delay_seconds=0,
                active_from=0.0,
                created_at=self.now(),
            )
            v.app_settings(app, data, creating=True)
            app.active_from = self.now() + app.activation_delay_seconds
            self.apps[key] = app
            return app

    def update_app(self, consumer_key: str, data: dict[str, Any]) -> App:
        data = v.obj(data)
        with self.lock:
            app = dataclasses.replace(self.app(consumer_key))
            v.app_settings(app, data, creating=False)
            # A changed app propagates like a new one (up to 10 minutes).
            app.active_from = self.now() + app.activation_delay_seconds
            self.apps[consumer_key] = app
            return app

    def rotate_secret(self, consumer_key: str) -> App:
        with self.lock:
            app = self.app(consumer_key)
            app.consumer_secret = ids.new_consumer_secret()
            app.active_from = self.now() + app.activation_delay_seconds
            return app

    def set_blocked(self, consumer_key: str, blocked: bool) -> App:
        with self.lock:
            app = self.app(consumer_key)
            app.blocked = blocked
            if blocked:
                # Blocking ends the app's sessions at once, as at Salesforce:
                # a console that keeps access tokens notices at its next call.
                for at in self.access_tokens.values():
                    if at.consumer_key == consumer_key:
                        at.revoked = True
            return app

    # -- codes, tickets, tokens --------------------------------------------

    def next_seq(self) -> int:
        return next(self._seq)

    def add_refresh_token(
        self, app: App, user: User, scopes: list[str], token: str | None = None
    ) -> RefreshToken:
        """Store a new approval, revoking the oldest beyond five per user+app."""
        with self.lock:
            grant = self.grants.setdefault((user.user_id, app.consumer_key), [])
            tokens = (self.refresh_tokens[value] for value in grant)
            live = sorted(
                (rt for rt in tokens if not rt.revoked), key=lambda rt: rt.seq
            )
            for old in live[: max(0, len(live) - MAX_APPROVALS + 1)]:
                self.revoke_refresh(old, "approval limit")
            rt = RefreshToken(
                token=token or ids.new_refresh_token(),
                consumer_key=app.consumer_key,
                user_id=user.user_id,
                org_id=user.org_id,
                scopes=list(scopes),
                created_at=self.now(),
                seq=self.next_seq(),
            )
            self.refresh_tokens[rt.token] = rt
            # Revoked ones stay in refresh_tokens (they answer invalid_grant)
            # but leave the grant's list, so it stays at most five long.
            grant[:] = [
                value for value in grant if not self.refresh_tokens[value].revoked
            ]
            grant.append(rt.token)
            return rt

    def revoke_refresh(self, rt: RefreshToken, reason: str) -> None:
        """Revoke a refresh token and every access token minted from it."""
        with self.lock:
            rt.revoked = True
            rt.revoked_reason = reason
            for at in self.access_tokens.values():
                if at.refresh_token == rt.token:
                    at.revoked = True

    def revoke_user_tokens(self, user: User) -> int:
        with self.lock:
            count = 0
            for rt in self.refresh_tokens.values():
                if rt.user_id == user.user_id and not rt.revoked:
                    self.revoke_refresh(rt, "revoked by admin")
                    count += 1
            for at in self.access_tokens.values():
                if at.user_id == user.user_id:
                    at.revoked = True
            self.approvals = {a for a in self.approvals if a[0] != user.user_id}
            return count

    def add_access_token(self, access: AccessToken) -> None:
        """Store an access token, pruning dead ones now and then.

        Health checks of a thousand orgs mint tokens all day; dropping revoked
        and idle-expired ones keeps a long demo's memory flat.
        """
        with self.lock:
            self.access_tokens[access.token] = access
            if len(self.access_tokens) < self._prune_at:
                return
            timeout = self.config.session_timeout_seconds
            now = self.now()
            self.access_tokens = {
                key: at
                for key, at in self.access_tokens.items()
                if not at.revoked and now - at.last_used <= timeout
            }
            self._prune_at = max(PRUNE_ACCESS_TOKENS_AT, 2 * len(self.access_tokens))

    def live_access_token(self, token: str) -> AccessToken | None:
        """The access token if valid now; using it extends the idle timeout."""
        with self.lock:
            at = self.access_tokens.get(token)
            if at is None or at.revoked:
                return None
            now = self.now()
            if now - at.last_used > self.config.session_timeout_seconds:
                return None
            user = self.users.get(at.user_id)
            if user is None or not user.active:
                return None
            at.last_used = now
            return at

    # -- Setup page notices ---------------------------------------------------

    def add_notice(self, notice: SetupNotice) -> str:
        """Keep a form's outcome for the page the browser is redirected to.

        The id is random, so a notice (and a new app's secret in it) cannot be
        fetched by guessing; only the last few hundred are kept.
        """
        with self.lock:
            notice_id = secrets.token_urlsafe(16)
            self.setup_notices[notice_id] = notice
            while len(self.setup_notices) > SETUP_NOTICES_KEPT:
                del self.setup_notices[next(iter(self.setup_notices))]
            return notice_id

    def notice(self, notice_id: str) -> SetupNotice | None:
        with self.lock:
            return self.setup_notices.get(notice_id)

    # -- faults and request log --------------------------------------------

    def take_faults(self, host: str, path: str) -> tuple[int, Fault | None]:
        """Consume the faults for one request: (total latency ms, terminal fault)."""
        with self.lock:
            extra, terminal = self.faults.take(host, path)
            return self.config.latency_ms + extra, terminal

    def take_instance_url_fault(self, host: str, path: str) -> Fault | None:
        with self.lock:
            return self.faults.take_instance_url_change(host, path)

    def log_request(self, entry: dict[str, Any]) -> None:
        with self.lock:
            self.requests.append(entry)
