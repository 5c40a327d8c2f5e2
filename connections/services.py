"""Staged connection changes: start, probe, authorize, verify, apply.

Every write runs in one transaction; Celery tasks are enqueued on commit and
take only IDs. The org keeps its old app and tokens until
``connection_change_apply`` swaps them in (blue/green), so a change that
fails, expires or is abandoned never breaks the working connection.
"""

from __future__ import annotations

import logging
import re
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction
from django.urls import reverse
from django.utils import timezone

from companies.audit import Actor, audit_record
from companies.models import Company
from orgs.models import BackupPolicy, ConnectionStatus, OrgType, SalesforceOrg
from orgs.services import ConcurrentChange, org_create, org_snapshot
from vbsf import encryption

from . import salesforce
from .models import ConnectionChange, ExternalClientApp, PermissionCheck
from .permissions import (
    BACKUP,
    INTEGRATION_LICENSE,
    PERMISSION_FIELDS,
    REQUIRED_PERMISSIONS,
)
from .salesforce_urls import InvalidSalesforceUrl, normalize_org_url

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
    from . import tasks

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
        org = SalesforceOrg.objects.select_for_update().get(pk=org.pk)
        login_url = org.login_url
        org_type = org.org_type
    else:
        try:
            login_url = normalize_org_url(login_url)
        except InvalidSalesforceUrl as exc:
            raise ValidationError({"login_url": str(exc)}) from None
    if existing_app is None:
        consumer_key = clean_consumer_key(consumer_key)
        consumer_secret = clean_consumer_secret(consumer_secret)
        taken = ExternalClientApp.objects.filter(consumer_key=consumer_key).first()
        if taken is not None:
            owner = taken.orgs.first()
            if org is not None and taken.pk == org.client_app_id:
                raise ValidationError(
                    {
                        "consumer_key": "This is the app the org already uses. Choose "
                        "“Keep the current app”, or enter the key of the new app."
                    }
                )
            where = f" of {owner.label}" if owner else ""
            raise ValidationError(
                {
                    "consumer_key": f"This consumer key belongs to the app{where}. "
                    "Each org needs its own external client app: create one in "
                    "Salesforce and paste its key and secret."
                }
            )
        app = ExternalClientApp(
            name=(app_name or f"{org.label if org else 'new-org'}-eca")[:80],
            consumer_key=consumer_key,
        )
        app.set_consumer_secret(consumer_secret)
        app.full_clean()
        app.save()
    else:
        app = existing_app
    # One open change per org: a new one replaces any earlier one.
    if org is not None:
        org.connection_changes.filter(state__in=ConnectionChange.OPEN_STATES).update(
            state=State.ROLLED_BACK,
            finished_at=timezone.now(),
            failure_message="Replaced by a newer change.",
        )
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
        after=_change_snapshot(change),
    )
    _enqueue(_tasks().probe_activation, change_id=change.pk, attempt=0)
    return change


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
    except (
        salesforce.TransientError,
        salesforce.HostUnreachable,
        salesforce.RateLimited,
        salesforce.MalformedResponse,
    ) as exc:
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
        _fail(change_id, getattr(exc, "code", "error"), _message(exc))
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
        _fail(
            change_id,
            "wrong_secret",
            "Salesforce knows this consumer key but rejected the consumer secret. "
            "Copy the secret again from the app's OAuth settings and re-enter both.",
        )
        return "wrong_secret"
    return _schedule_next_probe(change, attempt + 1)


def _schedule_next_probe(change: ConnectionChange, attempt: int) -> str:
    if attempt >= len(ACTIVATION_SCHEDULE):
        connection_change_expire(change_id=change.pk)
        return "expired"
    due = change.activation_started_at + timedelta(
        seconds=ACTIVATION_SCHEDULE[attempt] * _time_scale()
    )
    with transaction.atomic():
        ConnectionChange.objects.filter(
            pk=change.pk, state=State.AWAITING_ACTIVATION
        ).update(next_probe_at=due)
        _enqueue_later(
            _tasks().probe_activation,
            (due - timezone.now()).total_seconds(),
            change_id=change.pk,
            attempt=attempt,
        )
    return "waiting"


def _message(exc: BaseException) -> str:
    return getattr(exc, "message", None) or str(exc) or exc.__class__.__name__


@transaction.atomic
def _fail(change_id: int, code: str, message: str) -> None:
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
        after=_change_snapshot(change),
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
    change.failure_message = (
        (
            "Salesforce did not answer the activation checks during the "
            f"{settings.ACTIVATION_WINDOW_SECONDS // 60}-minute window, so the change "
            "expired. The org keeps its current connection; try again later."
        )
        if silent
        else (
            "Salesforce did not accept the new consumer key within "
            f"{settings.ACTIVATION_WINDOW_SECONDS // 60} minutes. Check that the key "
            "was copied completely, that OAuth is enabled in the app and that the "
            "app is installed or enabled in this org. The org keeps its current "
            "connection."
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
        after=_change_snapshot(change),
    )


def connection_changes_resume() -> int:
    """Beat safety net: restart probe chains whose message was lost (worker
    or Redis restart) and expire changes past their deadline."""
    stale_before = timezone.now() - timedelta(seconds=30)
    resumed = 0
    for change in ConnectionChange.objects.filter(
        state=State.AWAITING_ACTIVATION, next_probe_at__lt=stale_before
    ):
        _tasks().probe_activation.apply_async(
            kwargs={"change_id": change.pk, "attempt": change.probe_count}
        )
        resumed += 1
    for change in ConnectionChange.objects.filter(
        state=State.EXCHANGING, updated_at__lt=stale_before
    ).exclude(code_encrypted=""):
        _tasks().exchange_code.apply_async(kwargs={"change_id": change.pk})
        resumed += 1
    # An exchange interrupted after the single-use code was spent cannot be
    # repeated: the change goes back to "active" so the user authorizes again.
    interrupted = ConnectionChange.objects.filter(
        state=State.EXCHANGING,
        code_encrypted="",
        updated_at__lt=timezone.now() - timedelta(minutes=2),
    ).update(
        state=State.ACTIVE,
        failure_code="interrupted",
        failure_message="The sign-in was interrupted before it completed; nothing "
        "was changed. Authorize again.",
    )
    # A check whose worker died mid-way would poll forever: end it.
    stuck_checks = PermissionCheck.objects.filter(
        state=PermissionCheck.State.RUNNING,
        created_at__lt=timezone.now() - timedelta(minutes=10),
    ).update(
        state=PermissionCheck.State.FAILED,
        error="The check was interrupted; verify permissions again.",
        finished_at=timezone.now(),
    )
    return resumed + interrupted + stuck_checks + _resend_lost_revokes()


MAX_REVOKE_ATTEMPTS = 10


def _resend_lost_revokes() -> int:
    """Old refresh tokens whose revoke message was lost are revoked again;
    after MAX_REVOKE_ATTEMPTS the admin is told to revoke it in Setup."""
    due = ConnectionChange.objects.filter(
        finished_at__lt=timezone.now() - timedelta(minutes=5),
        old_token_revoked_at__isnull=True,
        revoke_attempts__lt=MAX_REVOKE_ATTEMPTS,
    ).exclude(old_refresh_token_encrypted="")
    resent = 0
    for change in due:
        attempts = change.revoke_attempts + 1
        ConnectionChange.objects.filter(pk=change.pk).update(revoke_attempts=attempts)
        if attempts >= MAX_REVOKE_ATTEMPTS:
            with transaction.atomic():
                audit_record(
                    actor=Actor.system(),
                    action="connection_change.revoke_failed",
                    org=change.org,
                    company=change.company,
                    outcome="failure",
                    summary="The replaced refresh token could not be revoked at "
                    "Salesforce: revoke it in Setup → Connected Apps OAuth Usage.",
                )
            continue
        _tasks().revoke_old_token.apply_async(kwargs={"change_id": change.pk})
        resent += 1
    return resent


# --- authorization ----------------------------------------------------------


@transaction.atomic
def connection_change_begin_authorization(
    *, change: ConnectionChange
) -> salesforce.AuthorizationRequest:
    """Build the Salesforce login URL (state, PKCE S256) for an active change."""
    change = (
        ConnectionChange.objects.select_for_update(of=("self",))
        .select_related("client_app", "org")
        .get(pk=change.pk)
    )
    if change.state not in (State.ACTIVE, State.AUTHORIZED):
        raise ChangeError(
            "Salesforce has not activated the new app yet; wait until the page "
            "says it is active."
            if change.state == State.AWAITING_ACTIVATION
            else "This change is no longer open. Start again."
        )
    scopes = list(BASE_SCOPES)
    if change.org is not None and change.org.is_identity_provider:
        scopes.append("openid")
    request = salesforce.start_authorization(
        login_url=change.login_url,
        client_id=change.client_app.consumer_key,
        redirect_uri=callback_url(),
        scopes=scopes,
        prompt="login",
    )
    change.set_secret("code_verifier", request.code_verifier)
    change.authorize_started_at = timezone.now()
    change.state = State.ACTIVE
    change.failure_code = change.failure_message = ""
    change.save()
    return request


@transaction.atomic
def connection_change_receive_code(*, change_id: int, code: str) -> None:
    """Keep the code (encrypted) and let a task exchange it."""
    change = ConnectionChange.objects.select_for_update().get(pk=change_id)
    if change.state != State.ACTIVE or not change.code_verifier_encrypted:
        raise ChangeError("This sign-in was already used. Authorize again.")
    if len(code) > 2048 or not code.isprintable():
        raise ChangeError("Salesforce sent an authorization code that is not valid.")
    change.set_secret("code", code)
    change.state = State.EXCHANGING
    change.save()
    _enqueue(_tasks().exchange_code, change_id=change.pk)


@transaction.atomic
def connection_change_authorization_failed(
    *, change_id: int, error: str, description: str
) -> str:
    """Salesforce redirected back with an error (e.g. the user denied access)."""
    change = ConnectionChange.objects.select_for_update().get(pk=change_id)
    exc = salesforce.error_from_callback(error=error[:64], description=description)
    if error == "access_denied":
        message = (
            "Access was denied at Salesforce, so nothing changed. Authorize again "
            "and choose Allow."
        )
    else:
        message = f"Salesforce did not authorize the app: {_message(exc)}"
    change.code_verifier_encrypted = ""
    change.failure_code = error[:40]
    change.failure_message = message[:500]
    change.save()
    return message


def connection_change_exchange(*, change_id: int) -> str:
    """Exchange the stored code; check org, scopes and the user; keep tokens.

    The code is wiped whatever happens: a code is single-use.
    """
    with transaction.atomic():
        change = (
            ConnectionChange.objects.select_for_update(of=("self",))
            .select_related("client_app", "org")
            .get(pk=change_id)
        )
        if change.state != State.EXCHANGING or not change.code_encrypted:
            return "skipped"
        code = change.get_secret("code")
        verifier = change.get_secret("code_verifier")
        change.code_encrypted = ""
        change.code_verifier_encrypted = ""
        # updated_at marks when the exchange started, for beat's safety net.
        change.save(
            update_fields=["code_encrypted", "code_verifier_encrypted", "updated_at"]
        )
    app = change.client_app
    org = change.org
    try:
        tokens = salesforce.exchange_code(
            login_url=change.login_url,
            client_id=app.consumer_key,
            client_secret=app.get_consumer_secret(),
            code=code,
            redirect_uri=callback_url(),
            code_verifier=verifier,
            required_scopes=required_scopes_for(org),
        )
    except salesforce.SalesforceError as exc:
        return _authorization_problem(change_id, exc.code, _exchange_message(exc))
    # The tokens must open THIS org (SPEC §4.2): check before storing.
    problem = None
    if org is not None and tokens.org_id != org.org_id:
        problem = (
            "org_mismatch",
            f"You logged in to a different Salesforce org ({tokens.org_id}), not "
            f"{org.label} ({org.org_id}). Nothing was changed. Authorize again and "
            "log in to the right org.",
        )
    elif org is None and (
        existing := SalesforceOrg.objects.filter(org_id=tokens.org_id).first()
    ):
        problem = (
            "org_exists",
            f"The org you logged in to ({tokens.org_id}) is already registered as "
            f"{existing.label}. Use Edit Connection on it instead.",
        )
    if problem:
        _revoke_quietly(change.login_url, tokens.refresh_token or tokens.access_token)
        return _authorization_problem(change_id, *problem)
    try:
        identity = salesforce.get_identity(
            identity_url=tokens.identity_url, access_token=tokens.access_token
        )
        username = identity.username
    except salesforce.SalesforceError:
        username = ""
    with transaction.atomic():
        change = ConnectionChange.objects.select_for_update().get(pk=change_id)
        if change.state != State.EXCHANGING:
            _revoke_quietly(change.login_url, tokens.refresh_token)
            return "skipped"
        change.set_secret("new_refresh_token", tokens.refresh_token)
        change.new_instance_url = tokens.instance_url
        change.new_org_id = tokens.org_id
        change.new_user_id = tokens.user_id
        change.new_username = username
        change.granted_scopes = sorted(tokens.scopes)
        change.authorized_at = timezone.now()
        change.state = State.AUTHORIZED
        change.failure_code = change.failure_message = ""
        change.save()
        if app.scopes != sorted(tokens.scopes):
            ExternalClientApp.objects.filter(pk=app.pk).update(
                scopes=sorted(tokens.scopes)
            )
        after_authorized = None
        if change.kind == ConnectionChange.Kind.REAUTHORIZE:
            after_authorized = change
    if after_authorized is not None:
        from .reauthorization import reauthorization_apply

        reauthorization_apply(change_id=change_id)
    else:
        permission_check_start(actor=Actor.system(), change=change)
    return "authorized"


def _exchange_message(exc: salesforce.SalesforceError) -> str:
    if isinstance(exc, salesforce.MissingScope):
        missing = ", ".join(sorted(exc.missing)) if hasattr(exc, "missing") else ""
        if "openid" in missing:
            return (
                "This org signs users in to the console, so the new app must be "
                "granted the “openid” scope (access unique user identifiers). Add "
                "it to the app's OAuth scopes in Salesforce, then authorize again."
            )
        return (
            f"The app was not granted the scopes the console needs ({missing}). "
            "Add them to the app's OAuth scopes in Salesforce, then authorize again."
        )
    if isinstance(exc, salesforce.InvalidGrant):
        return (
            "Salesforce did not accept the sign-in (the code expired or was "
            "already used). Authorize again."
        )
    if isinstance(exc, salesforce.TransientError | salesforce.HostUnreachable):
        return (
            "Salesforce did not answer while completing the sign-in. Authorize "
            "again in a minute."
        )
    return _message(exc)


def _authorization_problem(change_id: int, code: str, message: str) -> str:
    """Back to "active": the admin can authorize again; nothing was stored."""
    with transaction.atomic():
        ConnectionChange.objects.filter(pk=change_id).filter(
            state__in=[State.EXCHANGING, State.ACTIVE]
        ).update(state=State.ACTIVE, failure_code=code[:40], failure_message=message)
    return code


def _revoke_quietly(login_url: str, token: str | None) -> None:
    if not token:
        return
    try:
        salesforce.revoke(login_url=login_url, token=token)
    except salesforce.SalesforceError:
        logger.warning("could not revoke an unwanted token at %s", login_url)


# --- permission verification -----------------------------------------------


@transaction.atomic
def permission_check_start(
    *,
    actor: Actor,
    org: SalesforceOrg | None = None,
    change: ConnectionChange | None = None,
) -> PermissionCheck:
    if (org is None) == (change is None):
        raise ValueError("Check either an org or a change.")
    if change is not None and not change.new_refresh_token_encrypted:
        raise ChangeError("Authorize the new app at Salesforce first.")
    check = PermissionCheck.objects.create(
        # A change's check joins the org's history only when it is applied.
        org=org,
        change=change,
        requested_by=actor.user if actor.user and actor.user.is_authenticated else None,
    )
    _enqueue(_tasks().verify_permissions, check_id=check.pk)
    return check


TRANSIENT_ERRORS = (
    salesforce.TransientError,
    salesforce.HostUnreachable,
    salesforce.RateLimited,
)


def permission_check_fail(*, check_id: int, exc: BaseException) -> None:
    PermissionCheck.objects.filter(
        pk=check_id, state=PermissionCheck.State.RUNNING
    ).update(
        state=PermissionCheck.State.FAILED,
        error=_message(exc)[:500],
        finished_at=timezone.now(),
    )


def permission_check_run(*, check_id: int) -> str:
    check = PermissionCheck.objects.select_related(
        "org", "change", "change__client_app", "org__client_app"
    ).get(pk=check_id)
    if check.state != PermissionCheck.State.RUNNING:
        return "skipped"
    try:
        if check.change_id:
            change = check.change
            tokens = salesforce.refresh(
                login_url=change.login_url,
                client_id=change.client_app.consumer_key,
                client_secret=change.client_app.get_consumer_secret(),
                refresh_token=change.get_secret("new_refresh_token"),
            )
            if tokens.refresh_token:  # rotated: the old one is dead now
                with transaction.atomic():
                    locked = ConnectionChange.objects.select_for_update().get(
                        pk=change.pk
                    )
                    locked.set_secret("new_refresh_token", tokens.refresh_token)
                    locked.save()
            user_id = change.new_user_id
        else:
            from orgs.health import org_access_token

            tokens = org_access_token(org_id=check.org_id)
            user_id = tokens.user_id
        granted = salesforce.fetch_user_permissions(
            instance_url=tokens.instance_url,
            access_token=tokens.access_token,
            fields=PERMISSION_FIELDS,
        )
        user = salesforce.fetch_user(
            instance_url=tokens.instance_url,
            access_token=tokens.access_token,
            user_id=user_id,
        )
    except TRANSIENT_ERRORS:
        raise  # the task retries with backoff, then permission_check_fail()
    except (salesforce.SalesforceError, encryption.SecretUnavailable) as exc:
        permission_check_fail(check_id=check_id, exc=exc)
        return "failed"
    results = [
        {
            "key": p.key,
            "field": p.field,
            "label": p.label,
            "purpose": p.purpose,
            "granted": bool(granted.get(p.field)),
            "why": p.why,
            "how_to_grant": p.how_to_grant,
        }
        for p in REQUIRED_PERMISSIONS
    ]
    license_name = user.get("license_name") or ""
    backup_ok = license_name != INTEGRATION_LICENSE and all(
        r["granted"] for r in results if r["purpose"] == BACKUP
    )
    restore_ok = backup_ok and all(r["granted"] for r in results)
    with transaction.atomic():
        PermissionCheck.objects.filter(pk=check_id).update(
            state=PermissionCheck.State.DONE,
            finished_at=timezone.now(),
            checked_username=user.get("username") or "",
            checked_user_id=user.get("user_id") or user_id,
            license_name=license_name[:80],
            results=results,
            backup_ok=backup_ok,
            restore_ok=restore_ok,
        )
        if not check.change_id and check.org_id:
            _org_status_after_check(check.org_id, backup_ok, results, license_name)
    return "done"


def _org_status_after_check(
    org_id: int, backup_ok: bool, results: list[dict[str, Any]], license_name: str
) -> None:
    org = SalesforceOrg.objects.select_for_update().get(pk=org_id)
    if not backup_ok:
        missing = [
            r["label"] for r in results if r["purpose"] == BACKUP and not r["granted"]
        ]
        reason = (
            "The connected user has an Integration license, which cannot back up."
            if license_name == INTEGRATION_LICENSE
            else "Backup permission missing: " + ", ".join(missing) + "."
        )
        if org.status in (
            ConnectionStatus.CONNECTED,
            ConnectionStatus.PERMISSIONS_MISSING,
        ):
            org.status = ConnectionStatus.PERMISSIONS_MISSING
            org.status_reason = reason[:300]
            if org.status != ConnectionStatus.PERMISSIONS_MISSING:
                org.status_changed_at = timezone.now()
            org.save(
                update_fields=[
                    "status",
                    "status_reason",
                    "status_changed_at",
                    "updated_at",
                ]
            )
    elif org.status == ConnectionStatus.PERMISSIONS_MISSING:
        org.status = ConnectionStatus.CONNECTED
        org.status_reason = ""
        org.status_changed_at = timezone.now()
        org.save(
            update_fields=["status", "status_reason", "status_changed_at", "updated_at"]
        )


# --- Finish -----------------------------------------------------------------


@transaction.atomic
def connection_change_apply(
    *,
    actor: Actor,
    change: ConnectionChange,
    company: Company,
    permission_check: PermissionCheck | None = None,
    alias: str = "",
) -> SalesforceOrg:
    """Finish: swap the new app and tokens in, in one transaction.

    Only if the org's version is still the one the change started from;
    otherwise ``ConcurrentChange`` and nothing is applied.
    """
    change = (
        ConnectionChange.objects.select_for_update(of=("self",))
        .select_related("client_app")
        .get(pk=change.pk)
    )
    if change.state != State.AUTHORIZED:
        raise ChangeError(
            "This change is not ready: authorize the new app and verify "
            "permissions first."
            if change.is_open
            else "This change has already ended. Start Edit Connection again."
        )
    if permission_check is not None and not permission_check.backup_ok:
        raise ChangeError("Backup permissions are missing; Finish is blocked.")
    new_token = change.get_secret("new_refresh_token")
    if change.org_id is None:
        org = org_create(
            actor=actor,
            org_id=change.new_org_id,
            alias=alias,
            org_type=change.org_type,
            login_url=change.login_url,
            instance_url=change.new_instance_url,
            company=company,
            client_app=change.client_app,
            refresh_token=new_token,
            connected_as_username=change.new_username,
            connected_as_user_id=change.new_user_id,
            granted_scopes=change.granted_scopes,
            status=ConnectionStatus.CONNECTED,
        )
        SalesforceOrg.objects.filter(pk=org.pk).update(last_checked_at=timezone.now())
        change.org = org
    else:
        org = (
            SalesforceOrg.objects.select_for_update(of=("self",))
            .select_related("company", "client_app")
            .get(pk=change.org_id)
        )
        if org.version != change.started_version:
            raise ConcurrentChange(ConcurrentChange.message)
        before = org_snapshot(org)
        if org.refresh_token_encrypted:
            change.old_refresh_token_encrypted = org.refresh_token_encrypted
        org.client_app = change.client_app
        org.set_refresh_token(new_token)
        org.instance_url = change.new_instance_url or org.instance_url
        org.connected_as_username = change.new_username
        org.connected_as_user_id = change.new_user_id
        org.granted_scopes = change.granted_scopes
        org.company = company
        org.status = ConnectionStatus.CONNECTED
        org.status_reason = ""
        org.status_changed_at = timezone.now()
        org.suggested_url = ""
        org.version += 1
        org.save()
        BackupPolicy.objects.filter(org=org).update(
            client_app=change.client_app, org_url=org.login_url
        )
        audit_record(
            actor=actor,
            action="org.edit_connection",
            org=org,
            summary=f"Edit Connection: {org.label} now uses {change.client_app.name} "
            f"as {org.connected_as_username or 'the new user'}",
            before=before,
            after=org_snapshot(org),
        )
    change.state = State.APPLIED
    change.finished_at = timezone.now()
    change.new_refresh_token_encrypted = ""
    change.save()
    if permission_check is not None and permission_check.org_id is None:
        PermissionCheck.objects.filter(pk=permission_check.pk).update(org=org)
    if change.old_refresh_token_encrypted:
        _enqueue(_tasks().revoke_old_token, change_id=change.pk)
    return org


def revoke_old_token(*, change_id: int) -> str:
    change = ConnectionChange.objects.get(pk=change_id)
    if not change.old_refresh_token_encrypted:
        return "skipped"
    try:
        token = change.get_secret("old_refresh_token")
    except encryption.SecretUnavailable:
        return "unreadable"
    salesforce.revoke(login_url=change.login_url, token=token)
    ConnectionChange.objects.filter(pk=change_id).update(
        old_refresh_token_encrypted="", old_token_revoked_at=timezone.now()
    )
    return "revoked"


@transaction.atomic
def connection_change_cancel(*, actor: Actor, change: ConnectionChange) -> None:
    change = ConnectionChange.objects.select_for_update().get(pk=change.pk)
    if not change.is_open:
        return
    change.state = State.ROLLED_BACK
    change.finished_at = timezone.now()
    change.code_encrypted = change.code_verifier_encrypted = ""
    token = change.new_refresh_token_encrypted
    change.save()
    audit_record(
        actor=actor,
        action="connection_change.cancel",
        org=change.org,
        company=change.company,
        summary="Connection change cancelled; the org keeps its connection",
        after=_change_snapshot(change),
    )
    if token:
        # The unused new token is revoked too, so it cannot linger.
        change.old_refresh_token_encrypted = token
        change.new_refresh_token_encrypted = ""
        change.save()
        _enqueue(_tasks().revoke_old_token, change_id=change.pk)


def elapsed_text(seconds: float) -> str:
    seconds = int(max(0, seconds))
    minutes, secs = divmod(seconds, 60)
    return f"{minutes} min {secs} s" if minutes else f"{secs} s"
