"""Celery tasks: thin, idempotent, IDs in, nothing secret out.

Each task calls one service (HackSoft's Celery-as-an-interface). Retries
cover transient Salesforce failures only, with backoff and jitter;
permanent ones are recorded by the services and never retried. Services
enqueue these by name through ``vbsf.queue``, so this module may import
them without an import circle.
"""

from __future__ import annotations

import random

from celery import shared_task

from connections.salesforce import TRANSIENT_ERRORS

from .services import (
    authorization,
    bulk,
    campaigns,
    changes,
    delegation,
    finish,
    revocation,
    signin,
    verification,
)


@shared_task(ignore_result=True, acks_late=True)
def probe_activation(*, change_id: int, attempt: int) -> None:
    changes.connection_change_probe(change_id=change_id, attempt=attempt)


@shared_task(ignore_result=True, acks_late=True)
def exchange_code(*, change_id: int) -> None:
    authorization.connection_change_exchange(change_id=change_id)


@shared_task(ignore_result=True, acks_late=True)
def apply_reauthorization(*, change_id: int) -> None:
    finish.reauthorization_apply(change_id=change_id)


@shared_task(bind=True, ignore_result=True, acks_late=True, max_retries=3)
def verify_permissions(self, *, check_id: int) -> None:
    try:
        verification.permission_check_run(check_id=check_id)
    except TRANSIENT_ERRORS as exc:
        if self.request.retries >= self.max_retries:
            verification.permission_check_fail(check_id=check_id, exc=exc)
            return
        countdown = random.uniform(1, 2 ** (self.request.retries + 2))
        raise self.retry(exc=exc, countdown=countdown) from None


@shared_task(
    ignore_result=True,
    acks_late=True,
    autoretry_for=TRANSIENT_ERRORS,
    retry_backoff=5,
    retry_backoff_max=300,
    retry_jitter=True,
    max_retries=5,
)
def revoke_old_token(*, change_id: int) -> None:
    revocation.revoke_old_token(change_id=change_id)


@shared_task(
    ignore_result=True,
    acks_late=True,
    autoretry_for=TRANSIENT_ERRORS,
    retry_backoff=5,
    retry_backoff_max=300,
    retry_jitter=True,
    max_retries=5,
)
def revoke_refresh_token(*, record_id: int) -> None:
    # A token the token ledger holds for its revoke (SPEC §9).
    revocation.token_record_revoke(record_id=record_id)


@shared_task(ignore_result=True)
def resume_connection_changes() -> None:
    changes.connection_changes_resume()


@shared_task(ignore_result=True)
def prune_signin_attempts() -> None:
    signin.signin_attempts_prune()


@shared_task(ignore_result=True, acks_late=True)
def exchange_signin_code(*, attempt_id: int) -> None:
    # Never retried: the code is single-use and wiped before the exchange.
    signin.signin_exchange(attempt_id=attempt_id)


# Campaigns (SPEC §9). The link is signed inside the task: the token is never
# in a Celery message. A mail that fails (SMTP down) is retried; sending the
# same link twice is harmless.
@shared_task(
    ignore_result=True,
    acks_late=True,
    autoretry_for=(OSError,),
    retry_backoff=30,
    retry_backoff_max=600,
    max_retries=5,
)
def send_campaign_link(*, row_id: int, reminder: bool = False) -> None:
    delegation.campaign_link_mail_send(row_id=row_id, reminder=reminder)


@shared_task(ignore_result=True)
def remind_campaigns() -> None:
    delegation.campaigns_remind()


@shared_task(ignore_result=True)
def expire_campaigns() -> None:
    campaigns.campaigns_expire()


# Bulk actions (SPEC §9): one fan-out, then at most VBSF_BULK_CONCURRENCY
# chunks, each running its orgs in turn. A chunk whose orgs met a transient
# failure runs again later (it skips the orgs that have a result); its last
# try records the failure, so the action always finishes.
@shared_task(ignore_result=True, acks_late=True)
def bulk_action_fan_out(*, bulk_action_id: int) -> None:
    bulk.bulk_action_fan_out(bulk_action_id=bulk_action_id)


@shared_task(ignore_result=True)
def resume_bulk_actions() -> None:
    bulk.bulk_actions_resume()


@shared_task(bind=True, ignore_result=True, acks_late=True, max_retries=3)
def bulk_action_chunk(self, *, bulk_action_id: int, chunk: int, chunks: int) -> None:
    outcome = bulk.bulk_action_chunk_run(
        bulk_action_id=bulk_action_id,
        chunk=chunk,
        chunks=chunks,
        final=self.request.retries >= self.max_retries,
        attempts=self.request.retries + 1,
    )
    if outcome == "continue":  # out of time: a fresh task goes on
        self.apply_async(kwargs=self.request.kwargs)
    elif outcome == "retry":
        countdown = random.uniform(1, 2 ** (self.request.retries + 2))
        raise self.retry(countdown=countdown)
