"""The ledger of refresh tokens the console obtained (SPEC §9, token budget
guard), and the queue of the revokes it owes.

Salesforce keeps at most five refresh tokens per user and app and silently
revokes the oldest approval at the sixth. Every path that gets a refresh
token from Salesforce records it here (code exchanges of a change or a
re-authorization, sign-ins, rotation on refresh), and every revoke marks it.
Recording is idempotent on a keyed hash of the token, so a task run twice
records once, and callers record in the transaction that keeps the token.

A token owed a revoke that nothing else holds (an org mix-up, a sign-in, an
exchange that lost its change, a rotation that lost its org) is kept here,
encrypted, until the revoke task of ``connections`` succeeds; beat resends
what was lost. Replaced and abandoned tokens a ConnectionChange holds are
revoked by the change's own task, which then marks the record.
"""

from __future__ import annotations

import hashlib
import hmac
from datetime import datetime

from django.db import transaction
from django.db.models import QuerySet
from django.utils import timezone

from companies.audit import Actor, audit_record
from vbsf import encryption
from vbsf.queue import PRIORITY_BACKGROUND, enqueue_on_commit

from .models import RefreshTokenRecord, SalesforceOrg

Purpose = RefreshTokenRecord.Purpose
Reason = RefreshTokenRecord.RevokeReason

# Salesforce's limit per user and app (reference: "five approvals").
SALESFORCE_TOKEN_LIMIT = 5
# The guard warns before the approval that fills the limit.
TOKEN_BUDGET_WARN_AT = SALESFORCE_TOKEN_LIMIT - 1
REVOKE_RECORD_TASK = "connections.tasks.revoke_refresh_token"
HEALTH_CHECK_TASK = "orgs.tasks.check_org_health"
HASH_LABEL = b"vbsf-refresh-token-ledger-v1"
# Salesforce's invalid_grant text for a refresh token it no longer honours
# (other invalid_grant answers, e.g. "app blocked", say nothing of the token).
DEAD_TOKEN_ANSWER = "expired access/refresh token"


def refresh_token_hash(token: str) -> str:
    """A keyed SHA-256 of the whole token: finds a record again without
    keeping the token (the 8-character fingerprint is for people)."""
    return hmac.new(HASH_LABEL, token.encode(), hashlib.sha256).hexdigest()


def live_records(
    *, salesforce_org_id: str, user_id: str, client_app_id: int | None
) -> QuerySet[RefreshTokenRecord]:
    return RefreshTokenRecord.objects.filter(
        salesforce_org_id=salesforce_org_id,
        salesforce_user_id=user_id,
        client_app_id=client_app_id,
        revoked_at__isnull=True,
    )


@transaction.atomic
def refresh_token_record(
    *,
    token: str,
    client_app_id: int | None,
    salesforce_org_id: str,
    user_id: str,
    username: str = "",
    purpose: str,
    login_url: str,
    org: SalesforceOrg | None = None,
    approved_at: datetime | None = None,
    revoke_reason: str = "",
) -> RefreshTokenRecord:
    """Record a refresh token the console just obtained; idempotent.

    A new approval (anything but a rotation) beyond five live tokens for the
    user and app marks the oldest as revoked by Salesforce. With
    ``revoke_reason`` the token is owed a revoke at once: the ledger keeps it
    and the revoke task is sent after commit.
    """
    record, _ = refresh_token_get_or_create(
        token=token,
        client_app_id=client_app_id,
        salesforce_org_id=salesforce_org_id,
        user_id=user_id,
        username=username,
        purpose=purpose,
        login_url=login_url,
        org=org,
        approved_at=approved_at,
    )
    if revoke_reason:
        refresh_token_revoke_later(record=record, reason=revoke_reason, token=token)
    return record


def refresh_token_get_or_create(
    *,
    token: str,
    client_app_id: int | None,
    salesforce_org_id: str,
    user_id: str,
    username: str = "",
    purpose: str,
    login_url: str,
    org: SalesforceOrg | None,
    approved_at: datetime | None = None,
    owed: dict[str, object] | None = None,
) -> tuple[RefreshTokenRecord, bool]:
    """The token's record, created if new, and the eviction a new approval
    causes; in the caller's transaction (no savepoint of its own). A new
    record gets the ``owed`` revoke fields in its INSERT, no UPDATE after."""
    now = timezone.now()
    record, created = RefreshTokenRecord.objects.get_or_create(
        token_hash=refresh_token_hash(token),
        defaults={
            "org": org,
            "client_app_id": client_app_id,
            "salesforce_org_id": salesforce_org_id,
            "salesforce_user_id": user_id,
            "salesforce_username": username,
            "fingerprint": encryption.fingerprint(token),
            "purpose": purpose,
            "login_url": login_url,
            "obtained_at": now,
            "approved_at": approved_at or now,
            **(owed or {}),
        },
    )
    # A rotation is no new approval, and a token found again was approved
    # long ago: neither makes Salesforce evict anything.
    if created and purpose not in (Purpose.ROTATION, Purpose.EXISTING):
        refresh_tokens_evict(record)
    return record, created


def refresh_tokens_evict(newest: RefreshTokenRecord) -> list[RefreshTokenRecord]:
    """The sixth approval: Salesforce revoked the oldest live tokens of this
    user and app. Mark them, and name the org that lost its connection (its
    health check is queued, so its page soon says so)."""
    live = list(
        live_records(
            salesforce_org_id=newest.salesforce_org_id,
            user_id=newest.salesforce_user_id,
            client_app_id=newest.client_app_id,
        )
        .select_for_update()
        .order_by("approved_at", "pk")
        .values_list("pk", flat=True)
    )
    # Usually none: the records are loaded only when some are evicted.
    oldest = live[: max(0, len(live) - SALESFORCE_TOKEN_LIMIT)]
    evicted = (
        list(
            RefreshTokenRecord.objects.filter(pk__in=oldest).order_by(
                "approved_at", "pk"
            )
        )
        if oldest
        else []
    )
    now = timezone.now()
    for record in evicted:
        lost = (
            SalesforceOrg.objects.filter(
                pk=record.org_id, refresh_token_fingerprint=record.fingerprint
            )
            .select_related("company")
            .first()
            if record.org_id
            else None
        )
        record.revoked_at = now
        record.revoke_reason = Reason.EVICTED
        record.revoke_token_encrypted = ""
        record.lost_connection_of = lost
        record.save(
            update_fields=[
                "revoked_at",
                "revoke_reason",
                "revoke_token_encrypted",
                "lost_connection_of",
            ]
        )
        if lost is not None:
            audit_record(
                actor=Actor.system(),
                action="org.token_evicted",
                org=lost,
                outcome="failure",
                summary=f"Salesforce revoked {lost.label}'s refresh token: "
                f"{record.salesforce_username or record.salesforce_user_id} "
                "approved this app a sixth time. Re-authorize the connection.",
                after={"fingerprint": record.fingerprint},
            )
            enqueue_on_commit(HEALTH_CHECK_TASK, org_id=lost.pk)
    return evicted


def refresh_token_revoke_later(
    *, record: RefreshTokenRecord, reason: str, token: str | None = None
) -> None:
    """The console owes this token a revoke. With ``token`` the ledger holds
    it and sends the revoke after commit; without, a ConnectionChange holds
    it and its own task revokes it."""
    if record.revoked_at is not None:
        return
    record.revoke_reason = reason
    record.revoke_requested_at = timezone.now()
    fields = ["revoke_reason", "revoke_requested_at"]
    if token:
        record.revoke_token_encrypted = encryption.encrypt(token)
        fields.append("revoke_token_encrypted")
    record.save(update_fields=fields)
    if token:
        enqueue_on_commit(
            REVOKE_RECORD_TASK, record_id=record.pk, priority=PRIORITY_BACKGROUND
        )


def refresh_token_owed_by_fingerprint(
    *,
    fingerprint: str,
    reason: str,
    org: SalesforceOrg | None = None,
    user_id: str = "",
) -> int:
    """Mark a token a ConnectionChange now holds for revocation (replaced at
    Finish, or abandoned) as owed a revoke."""
    if not fingerprint:
        return 0
    records = RefreshTokenRecord.objects.filter(
        fingerprint=fingerprint, revoked_at__isnull=True
    )
    records = records.filter(org=org) if org is not None else records
    records = records.filter(salesforce_user_id=user_id) if user_id else records
    return records.update(revoke_reason=reason, revoke_requested_at=timezone.now())


def refresh_token_revoked(*, token: str, reason: str = "") -> int:
    """Salesforce no longer honours this token: mark its record revoked and
    drop any copy held for the revoke. A no-op when already marked."""
    changes: dict[str, object] = {
        "revoked_at": timezone.now(),
        "revoke_token_encrypted": "",
    }
    if reason:
        changes["revoke_reason"] = reason
    return RefreshTokenRecord.objects.filter(
        token_hash=refresh_token_hash(token), revoked_at__isnull=True
    ).update(**changes)


def refresh_token_kept(*, token: str, org: SalesforceOrg) -> None:
    """The token is now the org's connection (Finish, re-authorization): it
    belongs to the org, and no revoke is owed (an exchange records its token
    as owed until the change keeps it, see ``refresh_token_pending``)."""
    RefreshTokenRecord.objects.filter(token_hash=refresh_token_hash(token)).update(
        org=org
    )


@transaction.atomic
def refresh_token_pending(
    *,
    token: str,
    client_app_id: int | None,
    salesforce_org_id: str,
    user_id: str,
    purpose: str,
    login_url: str,
    org: SalesforceOrg | None = None,
) -> RefreshTokenRecord:
    """Write-ahead for a code exchange: record the token as owed a revoke
    the moment Salesforce sent it, before anything else can fail. Not sent
    to the revoke task: the exchange clears it with :func:`refresh_token_claim`
    once the change keeps the token; if the worker dies in between, beat
    revokes it, so no token is left alive that nobody holds."""
    # A new token (the usual case) is inserted owed a revoke: one INSERT.
    owed = {
        "revoke_reason": Reason.ABANDONED,
        "revoke_requested_at": timezone.now(),
        "revoke_token_encrypted": encryption.encrypt(token),
    }
    record, created = refresh_token_get_or_create(
        token=token,
        client_app_id=client_app_id,
        salesforce_org_id=salesforce_org_id,
        user_id=user_id,
        purpose=purpose,
        login_url=login_url,
        org=org,
        owed=owed,
    )
    if not created and record.revoked_at is None and not record.revoke_token_encrypted:
        for name, value in owed.items():
            setattr(record, name, value)
        record.save(update_fields=list(owed))
    return record


def refresh_token_claim(*, token: str, username: str = "") -> bool:
    """The change keeps the token (same transaction): no revoke is owed any
    more. False when the token died meanwhile (evicted, or revoked by beat
    because the exchange took too long): the caller must not keep it."""
    # One UPDATE: it waits for a revoke being written meanwhile and then
    # finds the record revoked (no row), as a locked read would.
    changes: dict[str, object] = {
        "revoke_reason": "",
        "revoke_requested_at": None,
        "revoke_token_encrypted": "",
    }
    if username:
        changes["salesforce_username"] = username
    return bool(
        RefreshTokenRecord.objects.filter(
            token_hash=refresh_token_hash(token), revoked_at__isnull=True
        ).update(**changes)
    )


@transaction.atomic
def refresh_token_rotated(
    *, org: SalesforceOrg, parent_fingerprint: str, token: str, stored: bool
) -> RefreshTokenRecord:
    """A refresh rotated the org's token: Salesforce revoked the parent and
    the new one keeps the parent's approval age. If Finish or a
    re-authorization replaced the org's token meanwhile (``stored`` false),
    nobody holds the new one: it is revoked."""
    parent = (
        live_records(
            salesforce_org_id=org.org_id,
            user_id=org.connected_as_user_id,
            client_app_id=org.client_app_id,
        )
        .filter(fingerprint=parent_fingerprint)
        .first()
    )
    if parent is not None:
        RefreshTokenRecord.objects.filter(pk=parent.pk).update(
            revoked_at=timezone.now(),
            revoke_reason=Reason.ROTATED,
            revoke_token_encrypted="",
        )
    return refresh_token_record(
        token=token,
        client_app_id=org.client_app_id,
        salesforce_org_id=org.org_id,
        user_id=org.connected_as_user_id,
        username=org.connected_as_username,
        purpose=Purpose.ROTATION,
        login_url=org.login_url,
        org=org,
        approved_at=parent.approved_at if parent is not None else None,
        revoke_reason="" if stored else Reason.ABANDONED,
    )


def refresh_token_dead(*, org: SalesforceOrg, fingerprint: str, answer: str) -> int:
    """A refresh answered that the org's token is dead: unless the ledger
    knows why already, it was revoked at Salesforce (in Setup, or evicted by
    an approval the console did not make), and it no longer counts."""
    if answer != DEAD_TOKEN_ANSWER or not fingerprint:
        return 0
    return RefreshTokenRecord.objects.filter(
        org=org, fingerprint=fingerprint, revoked_at__isnull=True
    ).update(
        revoked_at=timezone.now(),
        revoke_reason=Reason.REVOKED_AT_SALESFORCE,
        revoke_token_encrypted="",
    )
