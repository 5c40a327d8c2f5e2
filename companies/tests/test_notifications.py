"""Notifications (SPEC §10): recipients and a signed webhook per company,
Send test, and deliveries tried a bounded number of times."""

from __future__ import annotations

import hashlib
import hmac
import io
import json
import socket
from datetime import timedelta
from unittest import mock

import pytest
import responses
from cryptography.fernet import Fernet
from django.core.management import call_command
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from companies import notifications
from companies.audit import Actor
from companies.models import (
    AuditEvent,
    Incident,
    NotificationChannel,
    NotificationDelivery,
)
from companies.notifications import notification_deliver, notification_settings_save
from tests.factories import CompanyFactory, RoleGrantFactory, UserFactory
from vbsf import encryption
from vbsf.http import OutboundError, post_json

pytestmark = pytest.mark.django_db
HOOK = "https://hooks.example.com/console"
Delivery = NotificationDelivery


@pytest.fixture
def admin():
    user = UserFactory(username="alice", is_staff=True)
    RoleGrantFactory(user=user, role="administrator", company=None)
    return user


@pytest.fixture
def admin_client(admin):
    client = Client()
    client.force_login(admin)
    return client


@pytest.fixture
def sent_tasks():
    """The tasks sent to the broker: (kwargs, countdown)."""
    with mock.patch("celery.app.task.Task.apply_async") as apply_async:
        yield apply_async


@pytest.fixture
def acme():
    return CompanyFactory(name="Acme", contact_emails="ops@acme.example")


def _save(client: Client, company, **data):
    form = {"contact_emails": company.contact_emails, "webhook_enabled": "on"}
    return client.post(f"/settings/notifications/{company.pk}/", form | data)


def test_the_webhook_secret_is_shown_once_and_stored_encrypted(admin_client, acme):
    response = _save(admin_client, acme, webhook_url=HOOK)
    assert response.status_code == 302
    channel = NotificationChannel.objects.get(company=acme)
    secret = encryption.decrypt(channel.secret_encrypted)
    assert secret.startswith("whsec_") and secret not in channel.secret_encrypted
    first = admin_client.get(response["Location"])
    assert secret in first.content.decode()
    assert "no-store" in first["Cache-Control"]
    again = admin_client.get(response["Location"])
    assert secret not in again.content.decode()
    event = AuditEvent.objects.get(action="notification.settings")
    assert secret not in json.dumps([event.before, event.after, event.summary])
    assert event.after["secret_fingerprint"] == encryption.fingerprint(secret)
    # The URL may be a credential too (Slack's are): only its host is kept.
    assert HOOK not in json.dumps(event.after)
    assert event.after["webhook_host"] == "hooks.example.com"
    # A new secret replaces it, is shown once, and is audited by fingerprint.
    rotated = admin_client.post(f"/settings/notifications/{acme.pk}/rotate-secret/")
    new = encryption.decrypt(NotificationChannel.objects.get().secret_encrypted)
    assert new != secret
    assert new in admin_client.get(rotated["Location"]).content.decode()
    assert AuditEvent.objects.filter(action="notification.secret_rotate").exists()


SLACK_STYLE = "https://hooks.example.com/services/T000/B000/planted-url-key-4b1d"


def _raw_channels() -> str:
    with connection.cursor() as cursor:
        cursor.execute("SELECT * FROM companies_notificationchannel")
        return repr(cursor.fetchall())


def test_the_webhook_url_is_a_credential_encrypted_and_shown_by_host_only(
    admin_client, acme, sent_tasks, django_capture_on_commit_callbacks
):
    saved = _save(admin_client, acme, webhook_url=SLACK_STYLE)
    assert saved.status_code == 302
    assert "planted-url-key" not in _raw_channels()
    channel = NotificationChannel.objects.get(company=acme)
    assert notifications.webhook_url_of(channel) == SLACK_STYLE
    page = admin_client.get(saved["Location"]).content.decode()
    assert "planted-url-key" not in page
    assert "hooks.example.com" in page
    assert encryption.fingerprint(SLACK_STYLE) in page
    # Not even a form that comes back with errors shows the URL typed.
    bad = _save(admin_client, acme, webhook_url=SLACK_STYLE, contact_emails="nope")
    assert bad.status_code == 422
    assert "planted-url-key" not in bad.content.decode()
    # Saving again without a URL keeps the webhook (it cannot be shown).
    again = _save(admin_client, acme, webhook_url="")
    assert again.status_code == 302
    channel = NotificationChannel.objects.get(company=acme)
    assert notifications.webhook_url_of(channel) == SLACK_STYLE
    with django_capture_on_commit_callbacks(execute=True):
        admin_client.post(f"/settings/notifications/{acme.pk}/test/")
    messages = json.dumps([c.kwargs for c in sent_tasks.call_args_list], default=str)
    audit = json.dumps(list(AuditEvent.objects.values()), default=str)
    assert "planted-url-key" not in messages + audit
    # A new URL replaces it; "Remove the webhook" removes it.
    _save(admin_client, acme, webhook_url="https://other.example.com/in")
    channel = NotificationChannel.objects.get(company=acme)
    assert channel.url_host == "other.example.com"
    both = _save(admin_client, acme, webhook_url=HOOK, webhook_remove="on")
    assert both.status_code == 422
    assert NotificationChannel.objects.get(company=acme).url_host == (
        "other.example.com"
    )
    assert _save(admin_client, acme, webhook_remove="on").status_code == 302
    assert not NotificationChannel.objects.exists()


def test_key_rotation_reencrypts_the_webhook_url(admin, acme, settings, capsys):
    notification_settings_save(
        actor=Actor(user=admin),
        company=acme,
        contact_emails="",
        webhook_url=SLACK_STYLE,
        webhook_enabled=True,
    )
    old_key = settings.ENCRYPTION_KEYS[0]
    settings.ENCRYPTION_KEYS = [Fernet.generate_key().decode(), old_key]
    call_command("rotate_encryption_keys")
    settings.ENCRYPTION_KEYS = settings.ENCRYPTION_KEYS[:1]  # the old key gone
    channel = NotificationChannel.objects.get(company=acme)
    assert notifications.webhook_url_of(channel) == SLACK_STYLE


def test_another_companys_page_leaves_the_new_secret_waiting(admin_client, acme):
    other = CompanyFactory(name="Other")
    saved = _save(admin_client, acme, webhook_url=HOOK)
    secret = encryption.decrypt(NotificationChannel.objects.get().secret_encrypted)
    assert (
        secret
        not in admin_client.get(f"/settings/notifications/{other.pk}/").content.decode()
    )
    assert secret in admin_client.get(saved["Location"]).content.decode()


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("http://hooks.example.com/x", "Only https://"),
        ("https://127.0.0.1/x", "not a public one"),
        ("https://10.1.2.3/x", "not a public one"),
        ("https://[::1]/x", "not a public one"),
        ("https://localhost/x", "not a public one"),
        ("https://api.localhost./x", "not a public one"),
        ("https://user:pw@hooks.example.com/x", "user name or password"),
        ("hooks", "Enter a full https:// address"),
    ],
)
def test_webhook_urls_that_are_refused(admin_client, acme, settings, url, message):
    settings.WEBHOOK_ALLOWED_HOSTS = []
    response = _save(admin_client, acme, webhook_url=url)
    assert response.status_code == 422
    assert message in response.content.decode()
    assert not NotificationChannel.objects.exists()


def test_bad_recipients_change_nothing(admin_client, acme):
    response = _save(admin_client, acme, contact_emails="ops@acme.example, nope")
    assert response.status_code == 422
    assert "nope is not an email address" in response.content.decode()
    acme.refresh_from_db()
    assert acme.contact_emails == "ops@acme.example"


def test_send_test_makes_one_delivery_per_channel(
    admin, admin_client, acme, sent_tasks, django_capture_on_commit_callbacks
):
    notification_settings_save(
        actor=Actor(user=admin),
        company=acme,
        contact_emails="ops@acme.example",
        webhook_url=HOOK,
        webhook_enabled=True,
    )
    with django_capture_on_commit_callbacks(execute=True):
        response = admin_client.post(f"/settings/notifications/{acme.pk}/test/")
    assert response.status_code == 302
    kinds = sorted(Delivery.objects.values_list("kind", flat=True))
    assert kinds == ["email", "webhook"]
    assert sent_tasks.call_count == 2
    assert AuditEvent.objects.get(action="notification.test").after == {
        "channels": ["email", "webhook"]
    }
    page = admin_client.get(response["Location"]).content.decode()
    assert "Delivery log" in page and 'hx-trigger="every 2s"' in page


def test_send_test_without_a_channel_says_so_and_records_nothing(admin_client):
    bare = CompanyFactory(name="Bare", contact_emails="")
    response = admin_client.post(f"/settings/notifications/{bare.pk}/test/")
    page = admin_client.get(response["Location"]).content.decode()
    assert "Add email recipients or a webhook first." in page
    assert not Delivery.objects.exists()
    assert not AuditEvent.objects.filter(action="notification.test").exists()


def _webhook_delivery(company, admin) -> tuple[Delivery, str]:
    secret = notification_settings_save(
        actor=Actor(user=admin),
        company=company,
        contact_emails="",
        webhook_url=HOOK,
        webhook_enabled=True,
    )
    company.refresh_from_db()
    (delivery,) = notifications.notification_test_send(
        actor=Actor(user=admin), company=company
    )
    return delivery, secret


@responses.activate
def test_a_webhook_is_signed_with_the_channel_secret(admin, acme, sent_tasks):
    delivery, secret = _webhook_delivery(acme, admin)
    responses.post(HOOK, status=204)
    assert notification_deliver(delivery_id=delivery.pk) == "sent"
    (call,) = responses.calls
    body = call.request.body
    expected = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
    assert call.request.headers["X-Console-Signature"] == f"sha256={expected}"
    assert call.request.headers["Content-Type"] == "application/json"
    payload = json.loads(body)
    assert payload["company"] == {"id": acme.pk, "name": "Acme"}
    assert payload["status"] == "test" and payload["text"].startswith("*Test")
    assert set(payload) >= {"incident", "orgs", "reason", "links", "text"}
    delivery.refresh_from_db()
    assert (delivery.state, delivery.attempts) == ("sent", 1)
    # Sent is final: a duplicate task sends nothing.
    assert notification_deliver(delivery_id=delivery.pk) == "skipped"
    assert len(responses.calls) == 1


class _UnreadBody(io.BufferedReader):
    """A response body that must not be read."""

    def read(self, *args, **kwargs):
        raise AssertionError("the webhook's answer was read")

    read1 = readinto = read


@responses.activate
def test_the_answer_of_a_webhook_is_not_read(settings):
    settings.WEBHOOK_CA_BUNDLE = ""
    # An endless (or huge) answer would be held in the worker's memory.
    responses.post(HOOK, status=200, body=_UnreadBody(io.BytesIO(b"x" * 64)))
    assert post_json(HOOK, b"{}", {}).status_code == 200


@responses.activate
def test_failures_retry_with_backoff_then_stop(admin, acme, settings, sent_tasks):
    settings.NOTIFICATION_MAX_ATTEMPTS = 3
    settings.NOTIFICATION_RETRY_BACKOFF = 10
    delivery, _ = _webhook_delivery(acme, admin)
    responses.post(HOOK, status=503)
    countdowns = []
    for _ in range(3):
        with mock.patch("companies.notifications.enqueue_on_commit") as enqueue:
            notification_deliver(delivery_id=delivery.pk)
        countdowns += [c.kwargs["countdown"] for c in enqueue.call_args_list]
    delivery.refresh_from_db()
    assert (delivery.state, delivery.attempts) == ("failed", 3)
    assert delivery.last_error == "The webhook answered HTTP 503."
    assert len(countdowns) == 2  # no retry after the last attempt
    assert 5 <= countdowns[0] <= 10 and 10 <= countdowns[1] <= 20


@responses.activate
def test_redirects_are_not_followed(admin, acme, sent_tasks):
    delivery, _ = _webhook_delivery(acme, admin)
    responses.post(HOOK, status=302, headers={"Location": "http://169.254.169.254/"})
    assert notification_deliver(delivery_id=delivery.pk) == "failed"
    assert len(responses.calls) == 1
    delivery.refresh_from_db()
    assert "redirect (HTTP 302)" in delivery.last_error


def test_hosts_resolving_to_private_addresses_are_refused(settings):
    settings.WEBHOOK_ALLOWED_HOSTS = []
    settings.WEBHOOK_CA_BUNDLE = ""
    infos = [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("10.0.0.5", 443))]
    with (
        mock.patch("socket.getaddrinfo", return_value=infos),
        mock.patch("urllib3.util.connection.create_connection") as connect,
        pytest.raises(OutboundError, match="non-public address: not sent"),
    ):
        post_json(HOOK, b"{}", {})
    connect.assert_not_called()


def test_listed_hosts_may_be_private(settings):
    settings.WEBHOOK_ALLOWED_HOSTS = ["127.0.0.1"]
    settings.WEBHOOK_CONNECT_TIMEOUT = 1
    settings.WEBHOOK_CA_BUNDLE = ""
    # Nothing listens on port 9 (discard): refused, not blocked.
    with pytest.raises(OutboundError, match="could not be reached") as caught:
        post_json("https://127.0.0.1:9/hook", b"{}", {})
    assert not caught.value.permanent
    settings.WEBHOOK_CA_BUNDLE = "/nonexistent/ca.pem"
    with pytest.raises(OutboundError, match="CA bundle"):
        post_json("https://127.0.0.1:9/hook", b"{}", {})


def test_an_incident_gives_one_message_per_channel_when_it_opens_and_closes(
    admin, acme, sent_tasks, django_capture_on_commit_callbacks
):
    notification_settings_save(
        actor=Actor(user=admin),
        company=acme,
        contact_emails="ops@acme.example",
        webhook_url=HOOK,
        webhook_enabled=True,
    )
    incident = Incident.objects.create(company=acme)
    orgs = [
        {
            "alias": "acme-prod",
            "org_id": "00D000000000001EAA",
            "status": "failed",
            "reason": "Salesforce refused the refresh token",
            "url": "http://console/orgs/1/",
        }
    ]
    with django_capture_on_commit_callbacks(execute=True):
        notifications.incident_notify(incident=incident, event="opened", orgs=orgs)
        notifications.incident_notify(incident=incident, event="opened", orgs=orgs)
    opened = Delivery.objects.filter(incident=incident, event="opened")
    assert sorted(opened.values_list("kind", flat=True)) == ["email", "webhook"]
    email = opened.get(kind="email").payload
    assert "need attention" in email["subject"]
    assert "acme-prod: Salesforce refused" in email["text"]
    hook = opened.get(kind="webhook").payload
    assert hook["status"] == "failing" and hook["orgs"] == orgs
    assert hook["incident"]["id"] == incident.pk
    assert sent_tasks.call_count == 2


def test_beat_resends_deliveries_left_behind(admin, acme, settings, sent_tasks):
    settings.NOTIFICATION_RETRY_BACKOFF = 30
    delivery, _ = _webhook_delivery(acme, admin)
    sent_tasks.reset_mock()
    assert notifications.notification_deliveries_resume() == 0  # just made
    old = timezone.now() - timedelta(minutes=6)
    Delivery.objects.filter(pk=delivery.pk).update(updated_at=old)
    assert notifications.notification_deliveries_resume() == 1
    assert sent_tasks.call_args.kwargs["kwargs"] == {"delivery_id": delivery.pk}
    # A retry waits its backoff first; sent ones are left alone.
    Delivery.objects.filter(pk=delivery.pk).update(
        state="retrying", attempts=4, updated_at=old
    )
    assert notifications.notification_deliveries_resume() == 0
    Delivery.objects.filter(pk=delivery.pk).update(state="sent")
    assert notifications.notification_deliveries_resume() == 0


def test_a_worker_dying_on_the_last_attempt_ends_the_delivery(
    admin, acme, settings, sent_tasks
):
    """Retries stay bounded when the sending worker dies (no error recorded):
    the delivery is not resent forever."""
    settings.NOTIFICATION_MAX_ATTEMPTS = 3
    delivery, _ = _webhook_delivery(acme, admin)
    sent_tasks.reset_mock()
    old = timezone.now() - timedelta(hours=1)
    Delivery.objects.filter(pk=delivery.pk).update(
        state="sending", attempts=3, updated_at=old
    )
    assert notification_deliver(delivery_id=delivery.pk) == "skipped"
    assert notifications.notification_deliveries_resume() == 0
    delivery.refresh_from_db()
    assert (delivery.state, delivery.attempts) == ("failed", 3)
    assert "last attempt" in delivery.last_error
    sent_tasks.assert_not_called()


def test_the_notifications_page_queries_do_not_grow_with_deliveries(
    admin, admin_client, acme, sent_tasks
):
    def count() -> int:
        with CaptureQueriesContext(connection) as queries:
            page = admin_client.get(f"/settings/notifications/{acme.pk}/")
            assert page.status_code == 200
        return len(queries)

    _webhook_delivery(acme, admin)
    few = count()
    for _ in range(10):
        notifications.notification_test_send(actor=Actor(user=admin), company=acme)
    assert count() == few
