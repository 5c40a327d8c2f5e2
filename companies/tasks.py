"""Thin tasks of the companies app: they take IDs and call services."""

from __future__ import annotations

from celery import shared_task

from .notifications import notification_deliver, notification_deliveries_resume
from .people import invitation_mail_send, invitations_mail_resume


@shared_task(ignore_result=True, acks_late=True)
def deliver_notification(*, delivery_id: int) -> None:
    # Retries are the service's: it records the error and enqueues the next
    # attempt with a backoff, so the delivery log shows every attempt.
    notification_deliver(delivery_id=delivery_id)


@shared_task(ignore_result=True)
def resume_notifications() -> None:
    notification_deliveries_resume()


@shared_task(ignore_result=True, acks_late=True)
def send_invitation(*, invitation_id: int) -> None:
    invitation_mail_send(invitation_id=invitation_id)


@shared_task(ignore_result=True)
def resume_invitations() -> None:
    invitations_mail_resume()
