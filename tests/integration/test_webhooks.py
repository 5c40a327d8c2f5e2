"""Webhooks for real: the worker posts signed JSON over HTTPS to a local
receiver (its own certificate, trusted through VBSF_WEBHOOK_CA_BUNDLE), one
message when an incident opens and one when it closes; failures retry with
backoff, and private addresses are refused by the guard."""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import time

import pytest

from companies.audit import Actor
from companies.models import Incident, NotificationDelivery
from companies.notifications import notification_settings_save, notification_test_send
from orgs.alerts import alerts_evaluate
from orgs.models import SalesforceOrg
from tests.factories import CompanyFactory
from tests.integration.test_keep_connected import _check, _org
from tests.live import wait_for
from tests.webhook_receiver import webhook_receiver
from vbsf.http import post_json

pytestmark = pytest.mark.integration
Delivery = NotificationDelivery


@pytest.fixture
def receiver():
    with webhook_receiver() as receiver:
        yield receiver


def _hook(company, url: str) -> str:
    return notification_settings_save(
        actor=Actor.system(),
        company=company,
        contact_emails="",
        webhook_url=url,
        webhook_enabled=True,
    )


def _signed_by(secret: str, request) -> bool:
    digest = hmac.new(secret.encode(), request.body, hashlib.sha256).hexdigest()
    return request.headers["X-Console-Signature"] == f"sha256={digest}"


def test_an_incident_posts_once_when_it_opens_and_once_on_recovery(stack, receiver):
    company = CompanyFactory(name="Hooked Co")
    secret = _hook(company, receiver.url)
    first, created1, user1, _ = _org(stack, "hook-one", company=company)
    second, created2, user2, _ = _org(stack, "hook-two", company=company)
    for created, user in ((created1, user1), (created2, user2)):
        stack.sim.post(f"/orgs/{created['org_id']}/users/{user}/revoke-tokens")
    _check(first)
    _check(second)
    _check(first)  # failing again: no second message
    wait_for(lambda: len(receiver.requests) >= 1)
    time.sleep(2)  # anything more would have arrived by now
    (opened,) = receiver.requests
    assert _signed_by(secret, opened)
    payload = json.loads(opened.body)
    assert payload["status"] == "failing"
    assert payload["company"]["name"] == "Hooked Co"
    assert {o["alias"] for o in payload["orgs"]} <= {"hook-one", "hook-two"}
    assert payload["orgs"][0]["url"].startswith(stack.url + "/orgs/")
    assert "need attention" in payload["text"]
    assert payload["incident"]["id"] == Incident.objects.get(company=company).pk

    SalesforceOrg.objects.filter(company=company).update(
        status="connected", status_reason=""
    )
    assert alerts_evaluate(company_id=company.pk) == "closed"
    wait_for(lambda: len(receiver.requests) == 2)
    closed = json.loads(receiver.requests[1].body)
    assert closed["status"] == "recovered"
    assert closed["incident"]["closed_at"] is not None
    assert _signed_by(secret, receiver.requests[1])
    states = Delivery.objects.filter(company=company).values_list("state", flat=True)
    assert list(states) == ["sent", "sent"]


def test_failures_are_retried_with_backoff_until_delivered(stack, receiver):
    company = CompanyFactory(name="Flaky Co")
    _hook(company, receiver.url)
    receiver.statuses = [503, 500]
    (delivery,) = notification_test_send(actor=Actor.system(), company=company)
    wait_for(lambda: Delivery.objects.get(pk=delivery.pk).state == "sent")
    delivery.refresh_from_db()
    assert delivery.attempts == 3 and len(receiver.requests) == 3
    # Each attempt is the same message, with the same signature.
    assert (
        len({(r.body, r.headers["X-Console-Signature"]) for r in receiver.requests})
        == 1
    )


def test_a_redirect_is_not_followed_and_the_error_is_kept(stack, receiver):
    company = CompanyFactory(name="Moved Co")
    _hook(company, receiver.url)
    receiver.statuses = [301]
    (delivery,) = notification_test_send(actor=Actor.system(), company=company)
    wait_for(lambda: Delivery.objects.get(pk=delivery.pk).state == "failed")
    delivery.refresh_from_db()
    assert delivery.attempts == 1 and len(receiver.requests) == 1
    assert "redirect (HTTP 301)" in delivery.last_error


def test_a_host_that_resolves_to_a_private_address_is_refused(stack, receiver):
    company = CompanyFactory(name="Sneaky Co")
    # "localhost" is 127.0.0.1 too, but only the listed name is allowed.
    _hook(company, receiver.url.replace("127.0.0.1", "localhost"))
    (delivery,) = notification_test_send(actor=Actor.system(), company=company)
    wait_for(lambda: Delivery.objects.get(pk=delivery.pk).state == "failed")
    delivery.refresh_from_db()
    assert (
        delivery.last_error == "localhost resolves to a non-public address: not sent."
    )
    assert receiver.requests == []


def test_the_webhook_path_is_not_logged_even_at_debug(receiver, caplog):
    """A Slack-style URL's path is its key: urllib3's request lines (DEBUG)
    would print it, so they are not logged."""
    caplog.set_level(logging.DEBUG)
    response = post_json(receiver.url + "/T000/B000/planted-path-key", b"{}", {})
    assert response.status_code == 204
    assert receiver.requests[0].path.endswith("planted-path-key")
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert "planted-path-key" not in logged
