"""Shared parts of the connection services: schedule, scopes, helpers."""

from __future__ import annotations

import logging
import re
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction
from django.urls import reverse

from orgs.models import SalesforceOrg

from ..models import ConnectionChange

logger = logging.getLogger(__name__)

State = ConnectionChange.State

# Seconds after the credentials were saved at which Salesforce is asked
# whether they are active: often at first, then less often. 16 probes fall
# inside Salesforce's 10-minute window and 18 before the change expires at
# window + margin (900 s), against 120 for fixed 5-second polling.
ACTIVATION_SCHEDULE = (
    0, 10, 20, 30, 45, 60, 90, 120, 180, 240, 300, 360, 420, 480, 540, 600, 660,
    780, 900,
)  # fmt: skip

BASE_SCOPES = ("api", "refresh_token", "id")
REQUIRED_SCOPES = ("api", "refresh_token")

_CONSUMER_KEY_RE = re.compile(r"^[A-Za-z0-9._]{20,255}$")
_SECRET_RE = re.compile(r"^[\x21-\x7e]{8,255}$")  # printable ASCII, no spaces


class ChangeError(Exception):
    """A change cannot go on; the message tells the admin why and what to do."""


# --- helpers ----------------------------------------------------------------


def callback_url() -> str:
    return settings.PUBLIC_URL + reverse("connections:oauth-callback")


def _time_scale() -> float:
    # Benchmarks compress time; the schedule itself stays the real one.
    return float(getattr(settings, "ACTIVATION_TIME_SCALE", 1.0))


def activation_deadline(change: ConnectionChange) -> Any:
    window = settings.ACTIVATION_WINDOW_SECONDS + settings.ACTIVATION_MARGIN_SECONDS
    return change.activation_started_at + timedelta(seconds=window * _time_scale())


def required_scopes_for(org: SalesforceOrg | None) -> tuple[str, ...]:
    if org is not None and org.is_identity_provider:
        return (*REQUIRED_SCOPES, "openid")
    return REQUIRED_SCOPES


def _enqueue(task: Any, **kwargs: Any) -> None:
    # robust: a broker outage after commit must not turn a saved change into
    # an error page; beat's safety net (connection_changes_resume) resends.
    transaction.on_commit(lambda: task.apply_async(kwargs=kwargs), robust=True)


def _enqueue_later(task: Any, countdown: float, **kwargs: Any) -> None:
    transaction.on_commit(
        lambda: task.apply_async(kwargs=kwargs, countdown=max(0.0, countdown)),
        robust=True,
    )


def _tasks() -> Any:
    from .. import tasks

    return tasks


def clean_consumer_key(value: str) -> str:
    value = (value or "").strip()
    if not _CONSUMER_KEY_RE.match(value):
        raise ValidationError(
            {
                "consumer_key": "Paste the consumer key exactly as Salesforce shows "
                "it: letters, digits, dots and underscores, at least 20 characters."
            }
        )
    return value


def clean_consumer_secret(value: str) -> str:
    value = (value or "").strip()
    if not _SECRET_RE.match(value):
        raise ValidationError(
            {
                "consumer_secret": "Paste the consumer secret exactly as Salesforce "
                "shows it (8 to 255 characters, no spaces)."
            }
        )
    return value


def _change_snapshot(change: ConnectionChange) -> dict[str, Any]:
    app = change.client_app
    return {
        "change": change.pk,
        "kind": change.kind,
        "state": change.state,
        "client_app": app.name,
        "consumer_key_hint": app.key_hint,
        "consumer_secret_fingerprint": app.fingerprint,
        "login_url": change.login_url,
        "new_refresh_token_fingerprint": change.new_refresh_token_fingerprint or None,
        "connected_as": change.new_username or None,
    }


def _message(exc: BaseException) -> str:
    return getattr(exc, "message", None) or str(exc) or exc.__class__.__name__


def elapsed_text(seconds: float) -> str:
    seconds = int(max(0, seconds))
    minutes, secs = divmod(seconds, 60)
    return f"{minutes} min {secs} s" if minutes else f"{secs} s"
