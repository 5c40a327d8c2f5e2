"""An org's tokens: the refresh lock, access tokens, and the one writer of
the stored refresh token.

Like paperless-ngx's ``refresh_account_oauth_token``, refreshing a token and
saving what Salesforce sent back happen in one place: every path that stores
a new or rotated refresh token (Finish, re-authorization, a refresh that
rotates) calls :func:`org_refresh_token_store`.

Access tokens from a refresh are kept, encrypted, in the cache under the org
and its refresh token's fingerprint, for ``ACCESS_TOKEN_CACHE_SECONDS``
(under Salesforce's shortest session timeout by default), so a health check
of a healthy org is one REST call. Storing or dropping a refresh token drops
the kept access token; a kept token Salesforce refuses is dropped by the
caller, who refreshes once.
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from django.conf import settings
from django.core.cache import cache
from django.db import transaction

from connections import salesforce
from vbsf import encryption

from .models import SalesforceOrg
from .token_ledger import refresh_token_dead, refresh_token_rotated


def refresh_lock_ttl() -> int:
    # As long as one refresh can take with its retries: a worker killed
    # mid-refresh leaves the lock behind for no longer than that.
    per_attempt = settings.SALESFORCE_CONNECT_TIMEOUT + settings.SALESFORCE_READ_TIMEOUT
    return int(per_attempt * (1 + settings.SALESFORCE_MAX_RETRIES)) + 5


@contextmanager
def org_refresh_lock(org_id: int) -> Iterator[None]:
    """One refresh of an org at a time, across workers.

    A cache key, not a database row lock: the org row stays free for web
    requests while a worker waits on Salesforce.
    """
    key = f"vbsf:org-refresh:{org_id}"
    owner = secrets.token_hex(8)
    ttl = refresh_lock_ttl()
    deadline = time.monotonic() + ttl
    while not cache.add(key, owner, timeout=ttl):
        if time.monotonic() > deadline:
            raise salesforce.TransientError(
                "Another refresh of this org is still running."
            )
        time.sleep(0.05)
    try:
        yield
    finally:
        if cache.get(key) == owner:
            cache.delete(key)


def org_refresh_token_store(
    *, org: SalesforceOrg, token: str | None, replacing: str | None = None
) -> str | None:
    """Store ``token`` (encrypted, with its fingerprint) as the org's
    refresh token. The one writer: every other path calls it.

    Without ``replacing`` the caller holds the org row locked in its
    transaction (Finish, re-authorization) and saves the org itself.

    With ``replacing`` (a fingerprint: Salesforce rotated the token during a
    refresh), the token is stored only if the org still holds the token that
    was refreshed; if Finish or a re-authorization replaced it meanwhile,
    their token wins and ``None`` is returned.

    Returns the encrypted token that was replaced, for revocation.
    """
    # The access tokens of the replaced connection are not reused.
    org_access_token_forget(org_id=org.pk, fingerprint=org.refresh_token_fingerprint)
    if replacing is None:
        return org.set_refresh_token(token)
    with transaction.atomic():
        current = SalesforceOrg.objects.select_for_update().get(pk=org.pk)
        if current.refresh_token_fingerprint != replacing:
            return None
        replaced = current.set_refresh_token(token)
        current.save(
            update_fields=[
                "refresh_token_encrypted",
                "refresh_token_fingerprint",
                "updated_at",
            ]
        )
    return replaced


@dataclass(frozen=True)
class CachedAccessToken:
    """An access token kept from an earlier refresh. Hidden from ``repr``."""

    access_token: str = field(repr=False)
    instance_url: str


def access_token_cache_key(org_id: int, fingerprint: str) -> str:
    # Keyed by the refresh token's fingerprint too: after a re-authorization
    # or Finish the old connection's access token is never picked up.
    return f"vbsf:org-access-token:{org_id}:{fingerprint}"


def org_cached_access_token(org: SalesforceOrg) -> CachedAccessToken | None:
    """The org's kept access token for its current refresh token, if any.

    One cache read; no request to Salesforce. The token may still have died
    at Salesforce (revoked, session ended): callers refresh on
    ``SessionInvalid`` and call :func:`org_access_token_forget`.
    """
    if not org.refresh_token_fingerprint:
        return None
    return _kept(
        cache.get(access_token_cache_key(org.pk, org.refresh_token_fingerprint))
    )


def orgs_cached_access_tokens(
    orgs: list[SalesforceOrg],
) -> dict[int, CachedAccessToken]:
    """:func:`org_cached_access_token` for many orgs in one cache read."""
    keys = {
        access_token_cache_key(org.pk, org.refresh_token_fingerprint): org.pk
        for org in orgs
        if org.refresh_token_fingerprint
    }
    found = {}
    for key, stored in cache.get_many(list(keys)).items():
        if (kept := _kept(stored)) is not None:
            found[keys[key]] = kept
    return found


def _kept(stored: object) -> CachedAccessToken | None:
    if not isinstance(stored, str):
        return None
    try:
        value = json.loads(encryption.decrypt(stored))
        return CachedAccessToken(value["a"], value["i"])
    except (encryption.SecretUnavailable, ValueError, KeyError, TypeError):
        # A rotated-out encryption key or a damaged entry: refresh instead.
        return None


def org_access_token_keep(
    *, org_id: int, fingerprint: str, tokens: salesforce.TokenSet
) -> None:
    """Keep a fresh access token, encrypted, for less than a session lasts."""
    ttl = settings.ACCESS_TOKEN_CACHE_SECONDS
    if ttl <= 0 or not fingerprint:
        return
    value = json.dumps({"a": tokens.access_token, "i": tokens.instance_url})
    cache.set(
        access_token_cache_key(org_id, fingerprint), encryption.encrypt(value), ttl
    )


def org_access_token_forget(*, org_id: int, fingerprint: str) -> None:
    """Drop the kept access token (rejected by Salesforce, or its refresh
    token replaced or revoked)."""
    if fingerprint:
        cache.delete(access_token_cache_key(org_id, fingerprint))


def org_access_token(
    *,
    org_id: int,
    login_url: str | None = None,
    org: SalesforceOrg | None = None,
) -> salesforce.TokenSet:
    """Refresh the org's access token with its stored app and refresh token,
    and keep the new access token for :func:`org_cached_access_token`.

    Refreshes of one org are serialised; a rotated refresh token is saved
    through :func:`org_refresh_token_store`.
    """
    with org_refresh_lock(org_id):
        stored_now = SalesforceOrg.objects.filter(pk=org_id).values_list(
            "refresh_token_fingerprint", flat=True
        )
        if org is None or org.refresh_token_fingerprint != stored_now.first():
            # Loaded before the lock: a refresh that rotated, a Finish or a
            # re-authorization may have replaced the token since.
            org = SalesforceOrg.objects.select_related("client_app").get(pk=org_id)
        if org.client_app is None:
            raise salesforce.InvalidGrant("This org has no client app.")
        refreshed = org.refresh_token_fingerprint
        try:
            tokens = salesforce.refresh(
                login_url=login_url or org.login_url,
                client_id=org.client_app.consumer_key,
                client_secret=org.client_app.get_consumer_secret(),
                refresh_token=org.get_refresh_token(),
                expected_org_id=org.org_id,
            )
        except salesforce.InvalidGrant as exc:
            # Revoked in Setup, or evicted by an approval the console did not
            # make: the ledger stops counting it.
            refresh_token_dead(org=org, fingerprint=refreshed, answer=exc.description)
            raise
        kept_for = refreshed
        if tokens.refresh_token:
            stored = org_refresh_token_store(
                org=org, token=tokens.refresh_token, replacing=refreshed
            )
            # Lost to a Finish or re-authorization: that token owns the org.
            kept_for = (
                encryption.fingerprint(tokens.refresh_token)
                if stored is not None
                else ""
            )
            # The ledger: the parent died, the rotated token keeps its age
            # (or is revoked, when a newer connection won).
            refresh_token_rotated(
                org=org,
                parent_fingerprint=refreshed,
                token=tokens.refresh_token,
                stored=stored is not None,
            )
        org_access_token_keep(org_id=org_id, fingerprint=kept_for, tokens=tokens)
    return tokens
