"""The staged change: start it, wait for Salesforce to activate the new
app (activation probing), expire or cancel it, and beat's safety net.

The org keeps its old app and tokens until Finish swaps them in
(blue/green), so a change that fails, expires or is cancelled never breaks
the working connection.
"""

from __future__ import annotations

import logging
import re
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.core.exceptions import NON_FIELD_ERRORS, ValidationError
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from companies.access import AccessProfile, Capability
from companies.audit import Actor, audit_record
from companies.models import Company
from connections import salesforce
from connections.salesforce.urls import InvalidSalesforceUrl, normalize_org_url
from orgs.models import ConnectionStatus, OrgType, SalesforceOrg
from orgs.services import org_snapshot
from vbsf import encryption
from vbsf.queue import enqueue_now, enqueue_on_commit

from ..models import ConnectionChange, ExternalClientApp, PermissionCheck
from .campaigns import campaign_rows_change_refused
from .revocation import change_token_abandon, revocations_resume

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


_CONSUMER_KEY_RE = re.compile(r"^[A-Za-z0-9._]{20,255}$")
_SECRET_RE = re.compile(r"^[\x21-\x7e]{8,255}$")  # printable ASCII, no spaces


class ChangeError(Exception):
    """A change cannot go on; the message tells the admin why and what to do."""


class OrgUrlMoved(ChangeError):
    """The org's URL changed at Salesforce and is not fixed in the console."""


def org_changes_lock(org_id: int) -> None:
    """Lock the org's open changes before the org itself: the order in which
    the exchange and the apply take them (change, then org). A start that
    took the org first and then saved its open changes could deadlock with
    an exchange of the change it replaces."""
    list(
        ConnectionChange.objects.select_for_update()
        .filter(org_id=org_id, state__in=ConnectionChange.OPEN_STATES)
        .values_list("pk", flat=True)
    )


def org_url_moved(org: SalesforceOrg, then: str) -> str:
    """Why nobody is sent to Salesforce for an org whose URL changed (SPEC:
    enhanced domains): its old address answers nothing, so the login, the
    activation probes and every token would fail there. ``then``: what to
    do once the URL is fixed. Empty when the org's URL is current."""
    if org.status != ConnectionStatus.URL_CHANGED:
        return ""
    now_at = f" at {org.suggested_url}" if org.suggested_url else " at a new URL"
    return (
        f"Salesforce now answers {org.label}{now_at}, not at {org.login_url}. "
        "The org's URL must be updated in the console first (Edit organization "
        f"URL); then {then}."
    )


def time_scale() -> float:
    # Benchmarks compress time; the schedule itself stays the real one.
    return float(getattr(settings, "ACTIVATION_TIME_SCALE", 1.0))


def activation_deadline(change: ConnectionChange) -> Any:
    window = settings.ACTIVATION_WINDOW_SECONDS + settings.ACTIVATION_MARGIN_SECONDS
    return change.activation_started_at + timedelta(seconds=window * time_scale())


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


def change_snapshot(change: ConnectionChange) -> dict[str, Any]:
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


def elapsed_text(seconds: float) -> str:
    seconds = int(max(0, seconds))
    minutes, secs = divmod(seconds, 60)
    return f"{minutes} min {secs} s" if minutes else f"{secs} s"


# --- start ------------------------------------------------------------------


@transaction.atomic
def connection_change_start(
    *,
    actor: Actor,
    kind: str = ConnectionChange.Kind.EDIT,
    org: SalesforceOrg | None = None,
    company: Company | None = None,
    login_url: str = "",
    org_type: str = "",
    consumer_key: str = "",
    consumer_secret: str = "",
    existing_app: ExternalClientApp | None = None,
    app_name: str = "",
) -> ConnectionChange:
    """Stage new credentials for an org (or a new org) and start probing."""
    if org is not None:
        org_changes_lock(org.pk)
        org = SalesforceOrg.objects.select_for_update().get(pk=org.pk)
        if moved := org_url_moved(org, "change the connection"):
            raise ValidationError({NON_FIELD_ERRORS: [moved]})
        login_url = org.login_url
        org_type = org.org_type
    else:
        try:
            login_url = normalize_org_url(login_url)
        except InvalidSalesforceUrl as exc:
            raise ValidationError({"login_url": str(exc)}) from None
    if existing_app is None:
        app = client_app_for_change(
            actor=actor,
            org=org,
            consumer_key=clean_consumer_key(consumer_key),
            consumer_secret=clean_consumer_secret(consumer_secret),
            app_name=app_name,
        )
    else:
        app = existing_app
    # One open change per org: a new one replaces any earlier one, and an
    # unused new token of the replaced one is revoked.
    if org is not None:
        for replaced in org.connection_changes.filter(
            state__in=ConnectionChange.OPEN_STATES
        ):
            replaced.state = State.ROLLED_BACK
            replaced.finished_at = timezone.now()
            replaced.failure_message = "Replaced by a newer change."
            replaced.save()
            change_token_abandon(change=replaced)
    now = timezone.now()
    change = ConnectionChange.objects.create(
        kind=kind,
        org=org,
        company=company if org is None else org.company,
        created_by=actor.user if actor.user and actor.user.is_authenticated else None,
        created_from=actor.ip_address,
        started_version=org.version if org else 0,
        client_app=app,
        login_url=login_url,
        org_type=org_type or OrgType.PRODUCTION,
        state=State.AWAITING_ACTIVATION,
        activation_started_at=now,
        next_probe_at=now,
    )
    audit_record(
        actor=actor,
        action="connection_change.start",
        org=org,
        company=change.company,
        summary=f"Staged new client app {app.name} (key {app.key_hint})"
        + (f" for {org.label}" if org else f" for a new org at {login_url}"),
        before=org_snapshot(org) if org else {},
        after=change_snapshot(change),
    )
    enqueue_on_commit(
        "connections.tasks.probe_activation", change_id=change.pk, attempt=0
    )
    return change


def client_app_for_change(
    *,
    actor: Actor,
    org: SalesforceOrg | None,
    consumer_key: str,
    consumer_secret: str,
    app_name: str,
) -> ExternalClientApp:
    """The app record for newly entered credentials.

    A key this org (or, for Add organization, this user) staged before in a
    change that was cancelled, failed or expired is free again: the record
    is reused with the new secret, so a mistyped secret never burns the key.
    A key in use by another org is refused.
    """
    taken = (
        ExternalClientApp.objects.select_for_update()
        .filter(consumer_key=consumer_key)
        .first()
    )
    if taken is None:
        app = ExternalClientApp(
            name=(app_name or f"{org.label if org else 'new-org'}-eca")[:80],
            consumer_key=consumer_key,
        )
    elif org is not None and taken.pk == org.client_app_id:
        raise ValidationError(
            {
                "consumer_key": "This is the app the org already uses. Choose "
                "“Keep the current app”, or enter the key of the new app."
            }
        )
    elif client_app_is_free_for(taken, org=org, user=actor.user):
        app = taken
        app.name = (app_name or app.name)[:80]
    else:
        raise ValidationError({"consumer_key": key_taken_message(taken, actor=actor)})
    app.set_consumer_secret(consumer_secret)
    app.full_clean()
    app.save()
    return app


def client_app_is_free_for(
    app: ExternalClientApp, *, org: SalesforceOrg | None, user: Any
) -> bool:
    """No org uses the app, no open change of anyone else holds it, and every
    change that used it was this org's (or this user's new org)."""
    if app.is_legacy_shared or app.orgs.exists():
        return False
    changes = app.changes.all()
    if org is not None:
        return not changes.exclude(org=org).exists()
    user_id = getattr(user, "pk", None)
    return not changes.exclude(org__isnull=True, created_by_id=user_id).exists()


def key_taken_message(app: ExternalClientApp, *, actor: Actor) -> str:
    owner = app.orgs.select_related("company").first()
    if owner is None:
        change = app.changes.select_related("org").exclude(org=None).first()
        owner = change.org if change else None
    visible = owner is not None and AccessProfile(actor.user).can(
        Capability.VIEW, owner.company_id
    )
    where = f" of {owner.label}" if visible else " of another org"
    return (
        f"This consumer key belongs to the app{where}. Each org needs its own "
        "external client app: create one in Salesforce and paste its key and "
        "secret."
    )


@transaction.atomic
def connection_change_retry_secret(
    *, actor: Actor, change: ConnectionChange, consumer_secret: str
) -> ConnectionChange:
    """Salesforce rejected the secret: stage the same key again with the
    secret entered anew (the key is kept; nothing else to re-enter)."""
    return connection_change_start(
        actor=actor,
        kind=change.kind,
        org=change.org,
        company=change.company,
        login_url=change.login_url,
        org_type=change.org_type,
        consumer_key=change.client_app.consumer_key,
        consumer_secret=consumer_secret,
        app_name=change.client_app.name,
    )


# --- activation probing -----------------------------------------------------


def connection_change_probe(*, change_id: int, attempt: int) -> str:
    """Run probe number ``attempt`` once, then schedule the next one.

    A compare-and-set on ``probe_count`` makes a duplicate delivery of the
    same attempt (worker crash, Redis redelivery) a no-op.
    """
    now = timezone.now()
    claimed = ConnectionChange.objects.filter(
        pk=change_id, state=State.AWAITING_ACTIVATION, probe_count=attempt
    ).update(probe_count=attempt + 1, last_probe_at=now)
    if not claimed:
        return "skipped"
    change = ConnectionChange.objects.select_related("client_app").get(pk=change_id)
    if now >= activation_deadline(change):
        connection_change_expire(change_id=change_id)
        return "expired"
    try:
        result = salesforce.probe_activation(
            login_url=change.login_url,
            client_id=change.client_app.consumer_key,
            client_secret=change.client_app.get_consumer_secret(),
        )
    except salesforce.TRANSIENT_ERRORS as exc:
        logger.info(
            "activation probe %s of change %s: %s", attempt, change_id, exc.code
        )
        ConnectionChange.objects.filter(pk=change_id).update(
            failure_code=exc.code[:40],
            failure_message="Salesforce did not answer the last check "
            f"({exc.code.replace('_', ' ')}); the console keeps trying.",
        )
        result = None
    except (salesforce.SalesforceError, encryption.SecretUnavailable) as exc:
        connection_change_fail(
            change_id, getattr(exc, "code", "error"), salesforce.message_of(exc)
        )
        return "failed"
    if result == salesforce.ActivationProbe.ACTIVE:
        with transaction.atomic():
            ConnectionChange.objects.filter(
                pk=change_id, state=State.AWAITING_ACTIVATION
            ).update(
                state=State.ACTIVE,
                activated_at=timezone.now(),
                next_probe_at=None,
                failure_code="",
                failure_message="",
            )
        return "active"
    if result == salesforce.ActivationProbe.WRONG_SECRET:
        connection_change_fail(
            change_id,
            "wrong_secret",
            "Salesforce knows this consumer key but rejected the consumer secret. "
            "Copy the secret again from the app's OAuth settings and enter it "
            "below: the key is kept.",
        )
        return "wrong_secret"
    return probe_schedule_next(change, attempt + 1)


def probe_schedule_next(change: ConnectionChange, attempt: int) -> str:
    if attempt >= len(ACTIVATION_SCHEDULE):
        connection_change_expire(change_id=change.pk)
        return "expired"
    due = change.activation_started_at + timedelta(
        seconds=ACTIVATION_SCHEDULE[attempt] * time_scale()
    )
    with transaction.atomic():
        ConnectionChange.objects.filter(
            pk=change.pk, state=State.AWAITING_ACTIVATION
        ).update(next_probe_at=due)
        enqueue_on_commit(
            "connections.tasks.probe_activation",
            countdown=(due - timezone.now()).total_seconds(),
            change_id=change.pk,
            attempt=attempt,
        )
    return "waiting"


@transaction.atomic
def connection_change_fail(change_id: int, code: str, message: str) -> None:
    change = ConnectionChange.objects.select_for_update().get(pk=change_id)
    if not change.is_open:
        return
    change.state = State.FAILED
    change.failure_code = code[:40]
    change.failure_message = message[:500]
    change.finished_at = timezone.now()
    change.code_encrypted = ""
    change.code_verifier_encrypted = ""
    change.next_probe_at = None
    change.save()
    audit_record(
        actor=Actor.system(),
        action="connection_change.fail",
        org=change.org,
        company=change.company,
        outcome="failure",
        summary=f"Connection change failed: {message}"[:300],
        after=change_snapshot(change),
    )


@transaction.atomic
def connection_change_expire(*, change_id: int) -> None:
    change = ConnectionChange.objects.select_for_update().get(pk=change_id)
    if change.state != State.AWAITING_ACTIVATION:
        return
    change.state = State.EXPIRED
    change.next_probe_at = None
    change.finished_at = timezone.now()
    silent = change.failure_code in (
        "transient",
        "host_unreachable",
        "REQUEST_LIMIT_EXCEEDED",
        "malformed_response",
    ) or change.failure_code.startswith("http_")
    change.failure_code = "not_activated"
    minutes = settings.ACTIVATION_WINDOW_SECONDS // 60
    keeps = (
        " The org keeps its current connection."
        if change.org_id
        else " Nothing was added."
    )
    change.failure_message = (
        (
            "Salesforce did not answer the activation checks during the "
            f"{minutes}-minute window, so the change expired.{keeps} Try again later."
        )
        if silent
        else (
            f"Salesforce did not accept the new consumer key within {minutes} "
            "minutes. Check that the key was copied completely, that OAuth is "
            "enabled in the app and that the app is installed or enabled in this "
            f"org.{keeps}"
        )
    )
    change.save()
    audit_record(
        actor=Actor.system(),
        action="connection_change.expire",
        org=change.org,
        company=change.company,
        outcome="failure",
        summary="New client app was never activated; change expired",
        after=change_snapshot(change),
    )


def connection_changes_resume() -> int:
    """Beat safety net: restart probe chains whose message was lost (worker
    or Redis restart) and expire changes past their deadline."""
    stale_before = timezone.now() - timedelta(seconds=30)
    resumed = 0
    # A change staged without a probe chain (seeded, or its first message
    # lost before it was scheduled) is picked up too.
    for change in ConnectionChange.objects.filter(
        Q(next_probe_at__lt=stale_before) | Q(next_probe_at__isnull=True),
        state=State.AWAITING_ACTIVATION,
        created_at__lt=stale_before,
    ):
        enqueue_now(
            "connections.tasks.probe_activation",
            change_id=change.pk,
            attempt=change.probe_count,
        )
        resumed += 1
    for change in ConnectionChange.objects.filter(
        state=State.EXCHANGING, updated_at__lt=stale_before
    ).exclude(code_encrypted=""):
        enqueue_now("connections.tasks.exchange_code", change_id=change.pk)
        resumed += 1
    # An exchange interrupted after the single-use code was spent cannot be
    # repeated: the change goes back to "active" so the user authorizes again.
    stale_exchanges = ConnectionChange.objects.filter(
        state=State.EXCHANGING,
        code_encrypted="",
        updated_at__lt=timezone.now() - timedelta(minutes=2),
    )
    message = (
        "The sign-in was interrupted before it completed; nothing was changed. "
        "Authorize again."
    )
    with transaction.atomic():
        interrupted_ids = list(stale_exchanges.values_list("pk", flat=True))
        interrupted = stale_exchanges.filter(pk__in=interrupted_ids).update(
            state=State.ACTIVE, failure_code="interrupted", failure_message=message
        )
        # A campaign row waiting on it fails with the reason; its link
        # still works in the same browser.
        for change_id in interrupted_ids:
            campaign_rows_change_refused(change_id=change_id, message=message)
    # A check whose worker died mid-way would poll forever: end it.
    stuck_checks = PermissionCheck.objects.filter(
        state=PermissionCheck.State.RUNNING,
        created_at__lt=timezone.now() - timedelta(minutes=10),
    ).update(
        state=PermissionCheck.State.FAILED,
        error="The check was interrupted; verify permissions again.",
        finished_at=timezone.now(),
    )
    # A re-authorization whose apply message was lost is applied now.
    for change_id in ConnectionChange.objects.filter(
        kind=ConnectionChange.Kind.REAUTHORIZE,
        state=State.AUTHORIZED,
        authorized_at__lt=stale_before,
    ).values_list("pk", flat=True):
        enqueue_now("connections.tasks.apply_reauthorization", change_id=change_id)
        resumed += 1
    return resumed + interrupted + stuck_checks + revocations_resume()


@transaction.atomic
def connection_change_cancel(*, actor: Actor, change: ConnectionChange) -> None:
    change = ConnectionChange.objects.select_for_update().get(pk=change.pk)
    if not change.is_open:
        return
    change.state = State.ROLLED_BACK
    change.finished_at = timezone.now()
    change.code_encrypted = change.code_verifier_encrypted = ""
    change.save()
    audit_record(
        actor=actor,
        action="connection_change.cancel",
        org=change.org,
        company=change.company,
        summary="Connection change cancelled; the org keeps its connection",
        after=change_snapshot(change),
    )
    # The unused new token is revoked too, so it cannot linger.
    change_token_abandon(change=change)
