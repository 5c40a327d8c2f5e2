"""Celery tasks for orgs: thin, idempotent, IDs only.

Each task calls one service; retries of transient Salesforce failures live
here, with backoff and jitter, and the service records the final outcome.
"""

from __future__ import annotations

import random

from celery import shared_task
from django.conf import settings

from connections.salesforce import TRANSIENT_ERRORS

from . import alerts, health, url_change

MAX_HEALTH_RETRIES = 3
# The beat checks orgs in batches: one task, one database connection, one
# broker message and one cache read for this many orgs instead of each.
# Small, so the last batches do not keep the fleet check waiting.
HEALTH_CHECK_BATCH = 5


def backoff_seconds(retries: int) -> float:
    # Exponential backoff with full jitter, so a Salesforce outage does not
    # bring every org back at the same second.
    base = settings.HEALTH_RETRY_BACKOFF_SECONDS
    return random.uniform(base, min(300, base * 2 ** (retries + 1)))


@shared_task(
    bind=True, ignore_result=True, acks_late=True, max_retries=MAX_HEALTH_RETRIES
)
def check_org_health(self, *, org_id: int) -> None:
    try:
        health.org_health_check(org_id=org_id)
    except TRANSIENT_ERRORS as exc:
        if self.request.retries >= self.max_retries:
            health.org_health_failed(
                org_id=org_id, exc=exc, attempts=self.request.retries + 1
            )
            return
        raise self.retry(
            exc=exc, countdown=backoff_seconds(self.request.retries)
        ) from None


@shared_task(ignore_result=True, acks_late=True)
def check_orgs_health(*, org_ids: list[int]) -> None:
    """A batch of the beat's checks. An org that fails transiently goes on
    as its own ``check_org_health``, counted as its first retry."""
    for org_id in health.orgs_health_check(org_ids=org_ids):
        check_org_health.apply_async(
            kwargs={"org_id": org_id}, countdown=backoff_seconds(0), retries=1
        )


@shared_task(ignore_result=True)
def check_all_orgs(*, spread: bool = True) -> int:
    """Beat: queue a check of every org, in batches spread over the interval
    so the fleet is not checked in one burst; the worker's concurrency
    bounds how many run at once."""
    org_ids = health.health_check_targets()
    batches = [
        org_ids[start : start + HEALTH_CHECK_BATCH]
        for start in range(0, len(org_ids), HEALTH_CHECK_BATCH)
    ]
    window = settings.HEALTH_CHECK_INTERVAL_SECONDS * 0.8 if spread else 0
    step = window / max(1, len(batches))
    # One producer for the whole fan-out instead of one connection per task.
    with check_orgs_health.app.producer_or_acquire() as producer:
        for index, batch in enumerate(batches):
            check_orgs_health.apply_async(
                kwargs={"org_ids": batch},
                countdown=index * step,
                expires=window + 600,
                producer=producer,
            )
    return len(org_ids)


@shared_task(bind=True, ignore_result=True, acks_late=True, max_retries=3)
def verify_org_url(self, *, verification_id: int) -> None:
    try:
        url_change.url_verification_run(verification_id=verification_id)
    except TRANSIENT_ERRORS as exc:
        if self.request.retries >= self.max_retries:
            url_change.url_verification_gave_up(
                verification_id=verification_id, exc=exc
            )
            return
        raise self.retry(
            exc=exc, countdown=backoff_seconds(self.request.retries) / 5
        ) from None


@shared_task(ignore_result=True)
def resume_url_verifications() -> None:
    url_change.url_verifications_resume()


@shared_task(ignore_result=True)
def send_alert_digests() -> None:
    alerts.alerts_evaluate_all()


@shared_task(ignore_result=True)
def evaluate_company_alerts(*, company_id: int) -> None:
    alerts.alerts_evaluate(company_id=company_id)
