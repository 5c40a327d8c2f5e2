"""Notifications (SPEC §10): a company's email recipients and webhook.

An incident (``orgs/alerts.py``) gives one message when it opens and one
when it closes, on each channel the company has: email to
``Company.contact_emails`` and a webhook. Each message is a
``NotificationDelivery`` sent by a Celery task and tried at most
``NOTIFICATION_MAX_ATTEMPTS`` times, with exponential backoff and jitter in
between; the delivery log keeps the attempts and the last error.

A webhook gets JSON (incident, company, orgs, status, reason, console links
and a Slack-compatible ``text``) through ``vbsf.http.post_json``, signed:
``X-Console-Signature: sha256=<hex HMAC-SHA256 of the raw body>`` with the
channel's secret. The console makes that secret, stores it encrypted and
shows it once, after it is made.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import random
import secrets
import smtplib
from dataclasses import dataclass
from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings
from django.core.mail import send_mail
from django.db import IntegrityError, transaction
from django.db.models import F, Q
from django.utils import timezone

from vbsf import encryption
from vbsf.http import OutboundError, post_json
from vbsf.queue import enqueue_now, enqueue_on_commit

from .audit import Actor, audit_record
from .models import Company, Incident, NotificationChannel, NotificationDelivery

logger = logging.getLogger(__name__)

Delivery = NotificationDelivery
DELIVER_TASK = "companies.tasks.deliver_notification"
SIGNATURE_HEADER = "X-Console-Signature"
# A delivery claimed by a worker that died mid-send is taken again after this.
STALE_SENDING = timedelta(minutes=5)


def company_recipients(company: Company) -> list[str]:
    return [e.strip() for e in company.contact_emails.split(",") if e.strip()]


def webhook_signature(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def webhook_body(payload: dict[str, Any]) -> bytes:
    return json.dumps(payload, sort_keys=True, separators=(",", ":")).encode()


def _new_secret() -> str:
    return "whsec_" + secrets.token_urlsafe(32)


# --- settings ---------------------------------------------------------------


def _channel_snapshot(company: Company) -> dict[str, Any]:
    channel = NotificationChannel.objects.filter(company=company).first()
    snapshot: dict[str, Any] = {"recipients": company.contact_emails}
    if channel is not None:
        # Host and fingerprint only: a Slack-style webhook URL is itself a
        # credential (its path is the key).
        snapshot["webhook_host"] = channel.url_host
        snapshot["webhook_url_fingerprint"] = channel.url_fingerprint
        snapshot["webhook_enabled"] = channel.enabled
        snapshot["secret_fingerprint"] = encryption.fingerprint(
            encryption.decrypt(channel.secret_encrypted)
        )
    return snapshot


def _url_fields(url: str) -> dict[str, str]:
    """The channel's columns for a webhook URL: encrypted, host, fingerprint."""
    return {
        "url_encrypted": encryption.encrypt(url),
        "url_host": urlsplit(url).hostname or "",
        "url_fingerprint": encryption.fingerprint(url),
    }


def webhook_url_of(channel: NotificationChannel) -> str:
    return encryption.decrypt(channel.url_encrypted)


@transaction.atomic
def notification_settings_save(
    *,
    actor: Actor,
    company: Company,
    contact_emails: str,
    webhook_url: str,
    webhook_enabled: bool,
    webhook_remove: bool = False,
) -> str | None:
    """Save recipients and webhook; the new secret when a webhook is made
    (to be shown once), else None. The URL is never shown again, so an empty
    ``webhook_url`` keeps the current one; ``webhook_remove`` removes it."""
    company = Company.objects.select_for_update().get(pk=company.pk)
    before = _channel_snapshot(company)
    company.contact_emails = contact_emails
    company.save(update_fields=["contact_emails"])
    channel = NotificationChannel.objects.filter(company=company).first()
    secret = None
    if webhook_remove:
        NotificationChannel.objects.filter(company=company).delete()
    elif channel is None and webhook_url:
        secret = _new_secret()
        NotificationChannel.objects.create(
            company=company,
            enabled=webhook_enabled,
            secret_encrypted=encryption.encrypt(secret),
            **_url_fields(webhook_url),
        )
    elif channel is not None:
        fields = ["enabled", "updated_at"]
        channel.enabled = webhook_enabled
        if webhook_url:
            for name, value in _url_fields(webhook_url).items():
                setattr(channel, name, value)
            fields += ["url_encrypted", "url_host", "url_fingerprint"]
        channel.save(update_fields=fields)
    after = _channel_snapshot(company)
    if after != before:
        audit_record(
            actor=actor,
            action="notification.settings",
            company=company,
            summary=f"Changed the notifications of {company.name}",
            before=before,
            after=after,
        )
    return secret


@transaction.atomic
def webhook_secret_rotate(*, actor: Actor, company: Company) -> str:
    """A new signing secret for the company's webhook (shown once); the old
    one stops signing at once."""
    channel = NotificationChannel.objects.select_for_update().get(company=company)
    old = encryption.fingerprint(encryption.decrypt(channel.secret_encrypted))
    secret = _new_secret()
    channel.secret_encrypted = encryption.encrypt(secret)
    channel.save(update_fields=["secret_encrypted", "updated_at"])
    audit_record(
        actor=actor,
        action="notification.secret_rotate",
        company=company,
        summary=f"New webhook secret for {company.name}",
        before={"secret_fingerprint": old},
        after={"secret_fingerprint": encryption.fingerprint(secret)},
    )
    return secret


# --- messages ---------------------------------------------------------------


def _links(company: Company) -> dict[str, str]:
    return {
        "queue": f"{settings.PUBLIC_URL}/orgs/queue/",
        "orgs": f"{settings.PUBLIC_URL}/orgs/?company={company.pk}",
        "notifications": f"{settings.PUBLIC_URL}/settings/notifications/{company.pk}/",
    }


def _messages(
    company: Company, event: str, incident: Incident | None, orgs: list[dict]
) -> tuple[str, str, str, str]:
    """(subject, text, status, reason) of one event."""
    if event == Delivery.Event.OPENED:
        lines = [f"- {o['alias'] or o['org_id']}: {o['reason']}" for o in orgs]
        return (
            f"[VBSF] {len(orgs)} Salesforce org(s) of {company.name} need attention",
            f"These orgs of {company.name} cannot be backed up right now:\n\n"
            + "\n".join(lines)
            + f"\n\nOpen the console to fix them: {_links(company)['queue']}"
            "\n\nYou get one more message when they are all connected again.",
            "failing",
            f"{len(orgs)} org(s) cannot be backed up",
        )
    if event == Delivery.Event.CLOSED:
        opened = f"{incident.opened_at:%Y-%m-%d %H:%M} UTC" if incident else ""
        return (
            f"[VBSF] Salesforce orgs of {company.name} are connected again",
            f"Every Salesforce org of {company.name} is connected again "
            f"(incident opened {opened}).",
            "recovered",
            "every org is connected again",
        )
    return (
        f"[VBSF] Test notification for {company.name}",
        f"This is a test from the Salesforce connection console for "
        f"{company.name}. Incidents will arrive like this.",
        "test",
        "a test sent from the console",
    )


def _payloads(
    company: Company, event: str, incident: Incident | None, orgs: list[dict]
) -> dict[str, dict[str, Any]]:
    """Per channel kind, what is sent (recipients fixed now)."""
    subject, text, status, reason = _messages(company, event, incident, orgs)
    channel = NotificationChannel.objects.filter(company=company, enabled=True).first()
    payloads: dict[str, dict[str, Any]] = {}
    if recipients := company_recipients(company):
        payloads[Delivery.Kind.EMAIL] = {
            "subject": subject,
            "text": text,
            "recipients": recipients,
        }
    if channel is not None:
        payloads[Delivery.Kind.WEBHOOK] = {
            "event": f"incident.{event}" if event != "test" else "test",
            "status": status,
            "reason": reason,
            "incident": {
                "id": incident.pk,
                "opened_at": incident.opened_at.isoformat(),
                "closed_at": incident.closed_at.isoformat()
                if incident.closed_at
                else None,
            }
            if incident
            else None,
            "company": {"id": company.pk, "name": company.name},
            "orgs": orgs,
            "links": _links(company),
            "text": f"*{subject.removeprefix('[VBSF] ')}*\n{text}",
        }
    return payloads


def _deliveries_create(
    company: Company, event: str, incident: Incident | None, orgs: list[dict]
) -> list[Delivery]:
    made = []
    for kind, payload in _payloads(company, event, incident, orgs).items():
        try:
            with transaction.atomic():
                delivery = Delivery.objects.create(
                    company=company,
                    incident=incident,
                    kind=kind,
                    event=event,
                    payload=payload,
                )
        except IntegrityError:
            continue  # this incident's message is already on its way
        enqueue_on_commit(DELIVER_TASK, delivery_id=delivery.pk)
        made.append(delivery)
    return made


@transaction.atomic
def incident_notify(
    *, incident: Incident, event: str, orgs: list[dict]
) -> list[Delivery]:
    """One message per channel for the incident's opening or closing.
    ``orgs``: alias, org_id, status, reason and url of each failing org."""
    return _deliveries_create(incident.company, event, incident, orgs)


@transaction.atomic
def notification_test_send(*, actor: Actor, company: Company) -> list[Delivery]:
    """A test message on each of the company's channels; none (and nothing
    recorded) when the company has no channel."""
    deliveries = _deliveries_create(company, Delivery.Event.TEST, None, [])
    if not deliveries:
        return deliveries
    audit_record(
        actor=actor,
        action="notification.test",
        company=company,
        summary=f"Sent a test notification for {company.name}",
        after={"channels": [d.kind for d in deliveries]},
    )
    return deliveries


# --- sending ----------------------------------------------------------------


class DeliveryFailed(Exception):
    """``str()`` is the error to record; ``permanent`` stops the retries."""

    def __init__(self, message: str, *, permanent: bool = False) -> None:
        super().__init__(message[:300])
        self.permanent = permanent


def _send_email(delivery: Delivery) -> None:
    payload = delivery.payload
    try:
        send_mail(
            subject=payload["subject"],
            message=payload["text"],
            from_email=settings.DEFAULT_FROM_EMAIL,
            recipient_list=payload["recipients"],
        )
    except (smtplib.SMTPException, OSError) as exc:
        raise DeliveryFailed(f"The mail server refused: {type(exc).__name__}") from None


def _send_webhook(delivery: Delivery) -> None:
    channel = NotificationChannel.objects.filter(company=delivery.company_id).first()
    if channel is None or not channel.enabled:
        raise DeliveryFailed("The webhook was removed or turned off.", permanent=True)
    body = webhook_body(delivery.payload)
    secret = encryption.decrypt(channel.secret_encrypted)
    headers = {
        SIGNATURE_HEADER: webhook_signature(secret, body),
        "X-Console-Delivery": str(delivery.pk),
    }
    try:
        response = post_json(webhook_url_of(channel), body, headers)
    except OutboundError as exc:
        raise DeliveryFailed(str(exc), permanent=exc.permanent) from None
    status = response.status_code
    if 200 <= status < 300:
        return
    if 300 <= status < 400:
        raise DeliveryFailed(
            f"The webhook answered with a redirect (HTTP {status}), which is "
            "not followed.",
            permanent=True,
        )
    raise DeliveryFailed(
        f"The webhook answered HTTP {status}.",
        permanent=400 <= status < 500 and status not in (408, 429),
    )


def _claim(delivery_id: int) -> Delivery | None:
    now = timezone.now()
    claimed = (
        # Bounded even when workers die mid-send: no attempt past the last.
        Delivery.objects.filter(
            pk=delivery_id, attempts__lt=settings.NOTIFICATION_MAX_ATTEMPTS
        )
        .filter(
            Q(state__in=[Delivery.State.PENDING, Delivery.State.RETRYING])
            | Q(state=Delivery.State.SENDING, updated_at__lt=now - STALE_SENDING)
        )
        .update(
            state=Delivery.State.SENDING, attempts=F("attempts") + 1, updated_at=now
        )
    )
    if not claimed:
        return None
    return Delivery.objects.select_related("company").get(pk=delivery_id)


def retry_countdown(attempts: int) -> float:
    """Exponential backoff with jitter: between half and all of base * 2^n,
    so retries of many deliveries do not arrive at one second."""
    ceiling = float(settings.NOTIFICATION_RETRY_BACKOFF) * 2 ** (attempts - 1)
    return random.uniform(ceiling / 2, ceiling)


@transaction.atomic
def _record(delivery: Delivery, error: DeliveryFailed | None) -> str:
    if error is None:
        Delivery.objects.filter(pk=delivery.pk).update(
            state=Delivery.State.SENT, sent_at=timezone.now(), last_error=""
        )
        return Delivery.State.SENT
    last = error.permanent or delivery.attempts >= settings.NOTIFICATION_MAX_ATTEMPTS
    state = Delivery.State.FAILED if last else Delivery.State.RETRYING
    Delivery.objects.filter(pk=delivery.pk).update(state=state, last_error=str(error))
    if not last:
        enqueue_on_commit(
            DELIVER_TASK,
            countdown=retry_countdown(delivery.attempts),
            delivery_id=delivery.pk,
        )
    return state


def notification_deliver(*, delivery_id: int) -> str:
    """Send one delivery once; retry later or give up. Idempotent: a
    delivery that is sent, failed or being sent is left alone."""
    delivery = _claim(delivery_id)
    if delivery is None:
        return "skipped"
    send = _send_email if delivery.kind == Delivery.Kind.EMAIL else _send_webhook
    try:
        send(delivery)
    except DeliveryFailed as exc:
        logger.warning(
            "notification %s (%s) attempt %s failed: %s",
            delivery.pk,
            delivery.kind,
            delivery.attempts,
            exc,
        )
        return _record(delivery, exc)
    except encryption.SecretUnavailable as exc:
        return _record(delivery, DeliveryFailed(str(exc), permanent=True))
    return _record(delivery, None)


def notification_deliveries_resume() -> int:
    """Beat's safety net: send again what a broker outage or a dead worker
    left behind (a delivery untouched well past its next attempt). A second
    task for one delivery is harmless: only one can claim it."""
    now = timezone.now()
    # A worker died sending the last attempt: that is the end of it.
    Delivery.objects.filter(
        state=Delivery.State.SENDING,
        updated_at__lt=now - STALE_SENDING,
        attempts__gte=settings.NOTIFICATION_MAX_ATTEMPTS,
    ).update(
        state=Delivery.State.FAILED,
        last_error="The worker stopped while sending the last attempt.",
        updated_at=now,
    )
    waiting = Delivery.objects.filter(
        state__in=[
            Delivery.State.PENDING,
            Delivery.State.RETRYING,
            Delivery.State.SENDING,
        ],
        updated_at__lt=now - STALE_SENDING,
    ).only("pk", "attempts", "updated_at")
    resumed = 0
    for delivery in waiting[:500]:
        backoff = float(settings.NOTIFICATION_RETRY_BACKOFF)
        due = timedelta(seconds=backoff * 2 ** max(0, delivery.attempts - 1))
        if delivery.updated_at < now - due - STALE_SENDING:
            enqueue_now(DELIVER_TASK, delivery_id=delivery.pk)
            resumed += 1
    return resumed


@dataclass(frozen=True)
class DeliveryLog:
    deliveries: list[Delivery]
    polling: bool  # a delivery is still on its way: the page keeps asking


def delivery_log(*, company: Company, limit: int = 20) -> DeliveryLog:
    deliveries = list(
        Delivery.objects.filter(company=company).order_by("-created_at", "-id")[:limit]
    )
    active = {Delivery.State.PENDING, Delivery.State.SENDING, Delivery.State.RETRYING}
    return DeliveryLog(deliveries, any(d.state in active for d in deliveries))
