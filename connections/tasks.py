"""Celery tasks: thin, idempotent, IDs in, nothing secret out.

Retries cover transient Salesforce failures only, with backoff and jitter;
permanent ones are recorded by the services and never retried.
"""

from __future__ import annotations

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


@shared_task(
    ignore_result=True,
    acks_late=True,
    autoretry_for=TRANSIENT,
    retry_backoff=2,
    retry_backoff_max=60,
    retry_jitter=True,
    max_retries=3,
)
def verify_permissions(*, check_id: int) -> None:
    services.permission_check_run(check_id=check_id)


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
