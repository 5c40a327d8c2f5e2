"""Keeping orgs connected: access tokens, health checks, URL drift,
Edit organization URL verification.

Called by Celery tasks (``orgs/tasks.py``); never from a web request.
"""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Iterator
from contextlib import contextmanager

from django.conf import settings
from django.core.cache import cache
from django.db import transaction
from django.utils import timezone

from companies.audit import Actor, audit_record
from connections import salesforce
from connections.salesforce_urls import host_of, login_host_for
from vbsf import encryption

from .models import BackupPolicy, ConnectionStatus, SalesforceOrg, UrlVerification

logger = logging.getLogger(__name__)

# Failures no retry can fix: a person must log in again.
PERMANENT = (
    salesforce.InvalidGrant,
    salesforce.InactiveUser,
    salesforce.InactiveOrg,
    salesforce.InvalidClientSecret,
    salesforce.InvalidClient,
    salesforce.CredentialsNotActive,
    salesforce.MissingScope,
    salesforce.PermissionMissing,
    encryption.SecretUnavailable,
)
_FAILING = (ConnectionStatus.FAILED, ConnectionStatus.NEEDS_REAUTHORIZATION)
TRANSIENT = (
    salesforce.TransientError,
    salesforce.HostUnreachable,
    salesforce.RateLimited,
    salesforce.MalformedResponse,
)


def _refresh_lock_ttl() -> int:
    # As long as one refresh can take with its retries: a worker killed
    # mid-refresh leaves the lock behind for no longer than that.
    per_attempt = settings.SALESFORCE_CONNECT_TIMEOUT + settings.SALESFORCE_READ_TIMEOUT
    return int(per_attempt * (1 + settings.SALESFORCE_MAX_RETRIES)) + 5


@contextmanager
def org_refresh_lock(org_id: int) -> Iterator[None]:
    """One refresh of an org at a time, across workers.

    A cache key, not a database row lock: the org row stays free for web
    requests while a worker waits on Salesforce.
    """
    key = f"vbsf:org-refresh:{org_id}"
    owner = secrets.token_hex(8)
    ttl = _refresh_lock_ttl()
    deadline = time.monotonic() + ttl
    while not cache.add(key, owner, timeout=ttl):
        if time.monotonic() > deadline:
            raise salesforce.TransientError(
                "Another refresh of this org is still running."
            )
        time.sleep(0.05)
    try:
        yield
    finally:
        if cache.get(key) == owner:
            cache.delete(key)


def org_access_token(
    *,
    org_id: int,
    login_url: str | None = None,
    org: SalesforceOrg | None = None,
) -> salesforce.TokenSet:
    """Refresh the org's access token with its stored app and refresh token.

    Refreshes of one org are serialised, and a rotated refresh token is saved
    with a conditional update: if Finish or a re-authorization replaced the
    token meanwhile, their token wins.
    """
    with org_refresh_lock(org_id):
        if org is None:
            org = SalesforceOrg.objects.select_related("client_app").get(pk=org_id)
        if org.client_app is None:
            raise salesforce.InvalidGrant("This org has no client app.")
        stored = org.refresh_token_encrypted
        tokens = salesforce.refresh(
            login_url=login_url or org.login_url,
            client_id=org.client_app.consumer_key,
            client_secret=org.client_app.get_consumer_secret(),
            refresh_token=org.get_refresh_token(),
            expected_org_id=org.org_id,
        )
        if tokens.refresh_token:
            SalesforceOrg.objects.filter(
                pk=org_id, refresh_token_encrypted=stored
            ).update(
                refresh_token_encrypted=encryption.encrypt(tokens.refresh_token),
                refresh_token_fingerprint=encryption.fingerprint(tokens.refresh_token),
                updated_at=timezone.now(),
            )
    return tokens


def reason_for(exc: BaseException) -> str:
    if isinstance(exc, salesforce.InvalidGrant):
        description = getattr(exc, "description", "") or ""
        if "expired" in description or "revoked" in description.lower():
            return "The refresh token was revoked or expired at Salesforce."
        return (
            f"Salesforce refused the refresh token ({description or 'invalid grant'})."
        )
    if isinstance(exc, salesforce.InactiveUser):
        return "The connected Salesforce user is inactive."
    if isinstance(exc, salesforce.InactiveOrg):
        return "Salesforce says the org is locked, closed or suspended."
    if isinstance(exc, salesforce.InvalidClientSecret | salesforce.InvalidClient):
        return "Salesforce no longer accepts the client app's credentials."
    if isinstance(exc, salesforce.CredentialsNotActive):
        return "Salesforce does not know the client app's consumer key any more."
    if isinstance(exc, encryption.SecretUnavailable):
        return f"A stored secret cannot be read: {exc}"
    if isinstance(exc, salesforce.RateLimited):
        return "Salesforce's API request limit is exhausted for this org."
    if isinstance(exc, salesforce.HostUnreachable):
        return "Salesforce did not answer at the org's URL."
    message = getattr(exc, "message", "") or str(exc)
    return message[:300] or exc.__class__.__name__


def _set_status(
    org_id: int,
    status: str,
    reason: str = "",
    *,
    suggested_url: str | None = None,
    keep_permissions_missing: bool = False,
) -> tuple[str, str]:
    """Record a check's outcome; returns (old status, new status)."""
    now = timezone.now()
    if suggested_url in (None, ""):
        # The common case, nothing changed: one UPDATE, no lock.
        same = SalesforceOrg.objects.filter(pk=org_id, status_reason=reason)
        same = (
            same.filter(status__in=[status, ConnectionStatus.PERMISSIONS_MISSING])
            if keep_permissions_missing
            else same.filter(status=status)
        )
        if suggested_url == "":
            same = same.filter(suggested_url="")
        if same.update(last_checked_at=now):
            return status, status
    with transaction.atomic():
        org = SalesforceOrg.objects.select_for_update().get(pk=org_id)
        old = org.status
        if keep_permissions_missing and old == ConnectionStatus.PERMISSIONS_MISSING:
            status, reason = old, org.status_reason
        fields = ["last_checked_at", "updated_at"]
        org.last_checked_at = timezone.now()
        if status != old or reason != org.status_reason:
            if status != old:
                org.status_changed_at = timezone.now()
            org.status, org.status_reason = status, reason[:300]
            fields += ["status", "status_reason", "status_changed_at"]
        if suggested_url is not None:
            org.suggested_url = suggested_url
            fields.append("suggested_url")
        org.save(update_fields=fields)
        if (old in _FAILING) != (status in _FAILING):
            # Into or out of failure: let the company's alert digest decide.
            from companies.tasks import evaluate_company_alerts

            company_id = org.company_id
            transaction.on_commit(
                lambda: evaluate_company_alerts.apply_async(
                    kwargs={"company_id": company_id}
                ),
                robust=True,
            )
    return old, status


def org_health_check(*, org_id: int) -> str:
    """Refresh, call the org, record the status. Raises transient errors for
    the task to retry; records permanent ones as needs_reauthorization."""
    org = SalesforceOrg.objects.select_related("client_app").get(pk=org_id)
    if not org.has_refresh_token or org.client_app_id is None:
        _set_status(
            org_id,
            ConnectionStatus.NEEDS_REAUTHORIZATION,
            "No refresh token is stored: re-authorize the connection.",
        )
        return ConnectionStatus.NEEDS_REAUTHORIZATION
    try:
        try:
            tokens = org_access_token(org_id=org_id, org=org)
        except salesforce.HostUnreachable:
            # The stored host may be gone after a My Domain change: ask the
            # generic login host, which answers with the org's current URL.
            tokens = org_access_token(
                org_id=org_id, login_url=login_host_for(org.org_type), org=org
            )
        if host_of(tokens.instance_url) != host_of(org.instance_url or org.login_url):
            _set_status(
                org_id,
                ConnectionStatus.URL_CHANGED,
                f"Salesforce now answers at {host_of(tokens.instance_url)}",
                suggested_url=tokens.instance_url,
            )
            return ConnectionStatus.URL_CHANGED
        salesforce.check_org(
            instance_url=org.instance_url or org.login_url,
            access_token=tokens.access_token,
            expected_org_id=org.org_id,
        )
    except PERMANENT as exc:
        _set_status(org_id, ConnectionStatus.NEEDS_REAUTHORIZATION, reason_for(exc))
        return ConnectionStatus.NEEDS_REAUTHORIZATION
    except salesforce.OrgMismatch:
        _set_status(
            org_id,
            ConnectionStatus.NEEDS_REAUTHORIZATION,
            "The stored tokens open a different org: re-authorize the connection.",
        )
        return ConnectionStatus.NEEDS_REAUTHORIZATION
    except salesforce.UnsafeUrl as exc:
        _set_status(org_id, ConnectionStatus.FAILED, reason_for(exc))
        return ConnectionStatus.FAILED
    _set_status(
        org_id,
        ConnectionStatus.CONNECTED,
        "",
        suggested_url="",
        keep_permissions_missing=True,
    )
    return ConnectionStatus.CONNECTED


def org_health_failed(*, org_id: int, exc: BaseException, attempts: int) -> None:
    """Transient failures outlived their retries: the org is failed."""
    _set_status(
        org_id,
        ConnectionStatus.FAILED,
        f"{reason_for(exc)} ({attempts} attempts)",
    )


# --- Edit organization URL --------------------------------------------------


def url_verification_run(*, verification_id: int) -> str:
    """Check the new URL with the org's own tokens before saving anything."""
    verification = UrlVerification.objects.select_related("org").get(pk=verification_id)
    if verification.state != UrlVerification.State.RUNNING:
        return "skipped"
    org = verification.org
    new_url = verification.new_url
    try:
        tokens = org_access_token(org_id=org.pk, login_url=new_url)
        salesforce.check_org(
            instance_url=new_url,
            access_token=tokens.access_token,
            expected_org_id=org.org_id,
        )
    except salesforce.OrgMismatch as exc:
        return _url_refused(
            verification_id,
            f"{new_url} belongs to another Salesforce org "
            f"({getattr(exc, 'actual_org_id', 'unknown')}), not {org.org_id}.",
        )
    except (salesforce.SessionInvalid, salesforce.InvalidGrant):
        return _url_refused(
            verification_id,
            f"{new_url} answers, but not for this org: its tokens are not valid "
            "there. Check the URL, or re-authorize the connection.",
        )
    except salesforce.UnsafeUrl:
        return _url_refused(verification_id, f"{new_url} is not a Salesforce host.")
    except salesforce.HostUnreachable:
        return _url_refused(
            verification_id,
            f"{new_url} does not answer as a Salesforce org. Check the URL in "
            "Salesforce Setup → My Domain.",
        )
    except PERMANENT as exc:
        return _url_refused(verification_id, reason_for(exc))
    _url_apply(verification_id, tokens)
    return "applied"


def _url_refused(verification_id: int, message: str) -> str:
    UrlVerification.objects.filter(pk=verification_id).update(
        state=UrlVerification.State.FAILED,
        message=message[:500],
        finished_at=timezone.now(),
    )
    return "refused"


def url_verification_gave_up(*, verification_id: int, exc: BaseException) -> None:
    _url_refused(
        verification_id,
        f"Salesforce did not answer at the new URL ({reason_for(exc)}). Nothing "
        "was changed; try again later.",
    )


@transaction.atomic
def _url_apply(verification_id: int, tokens: salesforce.TokenSet) -> None:
    from .services import org_snapshot

    verification = UrlVerification.objects.select_for_update().get(pk=verification_id)
    if verification.state != UrlVerification.State.RUNNING:
        return
    org = (
        SalesforceOrg.objects.select_for_update(of=("self",))
        .select_related("company", "client_app")
        .get(pk=verification.org_id)
    )
    before = org_snapshot(org)
    org.login_url = verification.new_url
    org.instance_url = verification.new_url
    org.status = ConnectionStatus.CONNECTED
    org.status_reason = ""
    org.status_changed_at = timezone.now()
    org.suggested_url = ""
    org.last_checked_at = timezone.now()
    org.version += 1
    org.save()
    BackupPolicy.objects.filter(org=org).update(org_url=org.login_url)
    verification.state = UrlVerification.State.SUCCEEDED
    verification.message = f"{org.label} now uses {org.login_url}."
    verification.finished_at = timezone.now()
    verification.save()
    audit_record(
        actor=Actor(
            user=verification.requested_by, ip_address=verification.requested_from
        ),
        action="org.url_change",
        org=org,
        summary=f"Organization URL of {org.label} changed to {org.login_url}",
        before=before,
        after=org_snapshot(org),
    )


def health_check_targets() -> list[int]:
    return list(
        SalesforceOrg.objects.exclude(refresh_token_encrypted="")
        .order_by("pk")
        .values_list("pk", flat=True)
    )


def url_verifications_resume() -> int:
    """Beat safety net: a verification whose message was lost is sent again
    (the run is idempotent); one that keeps getting lost ends refused."""
    from datetime import timedelta

    from .tasks import verify_org_url

    now = timezone.now()
    running = UrlVerification.objects.filter(state=UrlVerification.State.RUNNING)
    given_up = running.filter(created_at__lt=now - timedelta(minutes=30)).update(
        state=UrlVerification.State.FAILED,
        message="The check was interrupted; nothing was changed. Apply again.",
        finished_at=now,
    )
    resent = 0
    for verification_id in running.filter(
        created_at__lt=now - timedelta(minutes=6)
    ).values_list("pk", flat=True):
        verify_org_url.apply_async(kwargs={"verification_id": verification_id})
        resent += 1
    return given_up + resent
