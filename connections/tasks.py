"""Celery tasks: thin, idempotent, IDs in, nothing secret out.

Retries cover transient Salesforce failures only, with backoff and jitter;
permanent ones are recorded by the services and never retried.
"""

from __future__ import annotations

import random

from celery import shared_task

from . import salesforce, services

TRANSIENT = (
    salesforce.TransientError,
    salesforce.HostUnreachable,
    salesforce.RateLimited,
)


@shared_task(ignore_result=True, acks_late=True)
def probe_activation(*, change_id: int, attempt: int) -> None:
    services.connection_change_probe(change_id=change_id, attempt=attempt)


@shared_task(ignore_result=True, acks_late=True)
def exchange_code(*, change_id: int) -> None:
    services.connection_change_exchange(change_id=change_id)


@shared_task(bind=True, ignore_result=True, acks_late=True, max_retries=3)
def verify_permissions(self, *, check_id: int) -> None:
    try:
        services.permission_check_run(check_id=check_id)
    except TRANSIENT as exc:
        if self.request.retries >= self.max_retries:
            services.permission_check_fail(check_id=check_id, exc=exc)
            return
        countdown = random.uniform(1, 2 ** (self.request.retries + 2))
        raise self.retry(exc=exc, countdown=countdown) from None


@shared_task(
    ignore_result=True,
    acks_late=True,
    autoretry_for=TRANSIENT,
    retry_backoff=5,
    retry_backoff_max=300,
    retry_jitter=True,
    max_retries=5,
)
def revoke_old_token(*, change_id: int) -> None:
    services.revoke_old_token(change_id=change_id)


@shared_task(ignore_result=True)
def resume_connection_changes() -> None:
    services.connection_changes_resume()


from .signin import exchange_signin_code  # noqa: E402, F401
