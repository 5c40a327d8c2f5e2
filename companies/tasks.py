"""Celery tasks for companies: alert digests."""

from __future__ import annotations

from celery import shared_task

from . import alerts


@shared_task(ignore_result=True)
def send_alert_digests() -> None:
    alerts.alerts_evaluate_all()


@shared_task(ignore_result=True)
def evaluate_company_alerts(*, company_id: int) -> None:
    alerts.alerts_evaluate(company_id=company_id)
