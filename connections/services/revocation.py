"""Revoking the refresh tokens the console replaced or abandoned.

A token the console no longer uses must not stay alive at Salesforce: it is
a credential nobody controls, and it counts against Salesforce's five
approvals per user and app. A change holds a replaced or abandoned token
(encrypted) until the revoke succeeds; any other token owed a revoke (an org
mix-up, a sign-in, an exchange whose change moved on) is held by its record
in the token ledger (``orgs.token_ledger``). Both tasks retry transient
failures, beat resends revokes whose message was lost, and every revoke
marks the ledger.
"""

from __future__ import annotations

import logging
from datetime import timedelta

from django.db import transaction
from django.utils import timezone

from companies.audit import Actor, audit_record
from connections import salesforce
from orgs import token_ledger
from orgs.models import RefreshTokenRecord, SalesforceOrg
from vbsf import encryption
from vbsf.queue import PRIORITY_BACKGROUND, enqueue_now, enqueue_on_commit

from ..models import ConnectionChange

logger = logging.getLogger(__name__)

MAX_REVOKE_ATTEMPTS = 10
REVOKE_TASK = "connections.tasks.revoke_old_token"
REVOKE_RECORD_TASK = token_ledger.REVOKE_RECORD_TASK
# A revoke not done this long after it was sent is sent again by beat.
RESEND_AFTER = timedelta(minutes=5)


def change_token_revoke_later(*, change: ConnectionChange) -> None:
    """Revoke the token the change holds for revocation, after commit."""
    if change.holds_replaced_token:
        enqueue_on_commit(
            REVOKE_TASK, change_id=change.pk, priority=PRIORITY_BACKGROUND
        )


def change_token_abandon(*, change: ConnectionChange, save: bool = True) -> None:
    """The change's new token will never be used: revoke it.

    ``save=False`` for a caller that saves the change itself in the same
    transaction (a new sign-in replacing the earlier one's token)."""
    if not change.has_new_token:
        return
    if change.holds_replaced_token:
        # The change's one revocation slot still holds an earlier token:
        # the ledger takes this one rather than overwrite that.
        token_hand_to_ledger(
            change=change,
            token=change.get_secret("new_refresh_token"),
            reason=RefreshTokenRecord.RevokeReason.ABANDONED,
        )
        change.release_new_token()
    else:
        token_ledger.refresh_token_owed_by_fingerprint(
            fingerprint=change.new_refresh_token_fingerprint,
            reason=RefreshTokenRecord.RevokeReason.ABANDONED,
            user_id=change.new_user_id,
        )
        change.abandon_new_token()
        change_token_revoke_later(change=change)
    if save:
        change.save()


def token_hand_to_ledger(
    *,
    change: ConnectionChange,
    token: str,
    reason: str,
    user_id: str | None = None,
) -> None:
    """The ledger holds ``token`` and revokes it with retries (a change has
    one slot for a token to revoke; a second one must not overwrite it).
    ``user_id``: whose token it is, when not the change's new user's."""
    org = change.org
    token_ledger.refresh_token_record(
        token=token,
        client_app_id=change.client_app_id,
        salesforce_org_id=change.new_org_id or (org.org_id if org else ""),
        user_id=change.new_user_id if user_id is None else user_id,
        username=change.new_username if user_id is None else "",
        # Only when the ledger never saw it (held since before the ledger).
        purpose=RefreshTokenRecord.Purpose.EXISTING,
        login_url=change.login_url,
        org=org,
        revoke_reason=reason,
    )


def revoke_login_url(*, stored: str, org: SalesforceOrg | None) -> str:
    """Where a token of ``org`` is revoked now: the org's current login URL.

    Salesforce moves an org's My Domain (enhanced domains, then Edit
    organization URL), so the host a token was obtained at may be gone when
    a revoke is resent; every host of the org accepts the org's tokens.
    """
    return org.login_url if org is not None and org.login_url else stored


def revoke_old_token(*, change_id: int) -> str:
    change = ConnectionChange.objects.select_related("org").get(pk=change_id)
    if not change.holds_replaced_token:
        return "skipped"
    try:
        token = change.get_secret("old_refresh_token")
    except encryption.SecretUnavailable:
        return "unreadable"
    salesforce.revoke(
        login_url=revoke_login_url(stored=change.login_url, org=change.org),
        token=token,
    )
    with transaction.atomic():
        ConnectionChange.objects.filter(pk=change_id).mark_token_revoked(timezone.now())
        token_ledger.refresh_token_revoked(token=token)
    return "revoked"


def token_record_revoke(*, record_id: int) -> str:
    """Revoke a token the ledger holds; raises transient errors for the
    task to retry, and keeps the last error on the record."""
    record = RefreshTokenRecord.objects.select_related("org").get(pk=record_id)
    if not record.revoke_owed or not record.revoke_token_encrypted:
        return "skipped"
    try:
        token = record.get_revoke_token()
    except encryption.SecretUnavailable:
        return "unreadable"
    try:
        salesforce.revoke(
            login_url=revoke_login_url(stored=record.login_url, org=record.org),
            token=token,
        )
    except salesforce.SalesforceError as exc:
        RefreshTokenRecord.objects.filter(pk=record_id).update(
            last_error=f"{exc.code}: {salesforce.message_of(exc)}"[:300]
        )
        raise
    token_ledger.refresh_token_revoked(token=token)
    return "revoked"


def revocations_resume() -> int:
    """Old refresh tokens whose revoke message was lost are revoked again;
    after MAX_REVOKE_ATTEMPTS the admin is told to revoke it in Setup."""
    due = ConnectionChange.objects.holding_replaced_token().filter(
        finished_at__lt=timezone.now() - timedelta(minutes=5),
        old_token_revoked_at__isnull=True,
        revoke_attempts__lt=MAX_REVOKE_ATTEMPTS,
    )
    resent = 0
    for change in due:
        attempts = change.revoke_attempts + 1
        ConnectionChange.objects.filter(pk=change.pk).update(revoke_attempts=attempts)
        if attempts >= MAX_REVOKE_ATTEMPTS:
            with transaction.atomic():
                audit_record(
                    actor=Actor.system(),
                    action="connection_change.revoke_failed",
                    org=change.org,
                    company=change.company,
                    outcome="failure",
                    summary="The replaced refresh token could not be revoked at "
                    "Salesforce: revoke it in Setup → Connected Apps OAuth Usage.",
                )
            continue
        enqueue_now(REVOKE_TASK, change_id=change.pk, priority=PRIORITY_BACKGROUND)
        resent += 1
    return resent + token_records_revoke_resume()


def token_records_revoke_resume() -> int:
    """Beat: tokens the ledger holds whose revoke is still owed after
    RESEND_AFTER are sent again, at most MAX_REVOKE_ATTEMPTS times; then
    the Administrator is told to revoke it in Setup."""
    now = timezone.now()
    due = RefreshTokenRecord.objects.filter(
        revoked_at__isnull=True,
        revoke_requested_at__lt=now - RESEND_AFTER,
        revoke_attempts__lt=MAX_REVOKE_ATTEMPTS,
    ).exclude(revoke_token_encrypted="")
    resent = 0
    for record in due.select_related("org__company"):
        attempts = record.revoke_attempts + 1
        RefreshTokenRecord.objects.filter(pk=record.pk).update(
            revoke_attempts=attempts, revoke_requested_at=now
        )
        if attempts >= MAX_REVOKE_ATTEMPTS:
            with transaction.atomic():
                audit_record(
                    actor=Actor.system(),
                    action="refresh_token.revoke_failed",
                    org=record.org,
                    outcome="failure",
                    summary=f"A refresh token of {record.salesforce_username or record.salesforce_user_id} "
                    f"({record.fingerprint}) could not be revoked at Salesforce: "
                    "revoke it in Setup → Connected Apps OAuth Usage.",
                )
            continue
        enqueue_now(
            REVOKE_RECORD_TASK, record_id=record.pk, priority=PRIORITY_BACKGROUND
        )
        resent += 1
    return resent


def access_token_revoke_quietly(login_url: str, token: str | None) -> None:
    """Best effort, for an access token that came without a refresh token:
    it counts against no budget and dies with its session anyway. Refresh
    tokens go through the ledger (``token_ledger.refresh_token_record``
    with a revoke reason), which retries."""
    if not token:
        return
    try:
        salesforce.revoke(login_url=login_url, token=token)
    except salesforce.SalesforceError as exc:
        logger.warning("could not revoke an unwanted token (%s)", exc.code)
