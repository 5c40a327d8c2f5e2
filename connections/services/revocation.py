"""Revoking the refresh tokens the console replaced or abandoned.

A token the console no longer uses must not stay alive at Salesforce: it is
a credential nobody controls, and it counts against Salesforce's five
approvals per user and app. A change holds such a token (encrypted) until
the revoke succeeds; the task retries transient failures, and beat resends
revokes whose message was lost.
"""

from __future__ import annotations

import logging
from datetime import timedelta

from django.db import transaction
from django.utils import timezone

from companies.audit import Actor, audit_record
from connections import salesforce
from vbsf import encryption
from vbsf.queue import enqueue_now, enqueue_on_commit

from ..models import ConnectionChange

logger = logging.getLogger(__name__)

MAX_REVOKE_ATTEMPTS = 10
REVOKE_TASK = "connections.tasks.revoke_old_token"


def change_token_revoke_later(*, change: ConnectionChange) -> None:
    """Revoke the token the change holds for revocation, after commit."""
    if change.holds_replaced_token:
        enqueue_on_commit(REVOKE_TASK, change_id=change.pk)


def change_token_abandon(*, change: ConnectionChange) -> None:
    """The change's new token will never be used: revoke it."""
    if change.abandon_new_token():
        change.save()
        change_token_revoke_later(change=change)


def revoke_old_token(*, change_id: int) -> str:
    change = ConnectionChange.objects.get(pk=change_id)
    if not change.holds_replaced_token:
        return "skipped"
    try:
        token = change.get_secret("old_refresh_token")
    except encryption.SecretUnavailable:
        return "unreadable"
    salesforce.revoke(login_url=change.login_url, token=token)
    ConnectionChange.objects.filter(pk=change_id).mark_token_revoked(timezone.now())
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
        enqueue_now(REVOKE_TASK, change_id=change.pk)
        resent += 1
    return resent


def token_revoke_quietly(login_url: str, token: str | None) -> None:
    """Best effort, for a token that was never stored (an org mix-up, a
    sign-in): nothing holds it to retry later."""
    if not token:
        return
    try:
        salesforce.revoke(login_url=login_url, token=token)
    except salesforce.SalesforceError as exc:
        logger.warning("could not revoke an unwanted token (%s)", exc.code)
