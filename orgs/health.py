"""Health checks: is each org's connection still working?

Called by Celery tasks (``orgs/tasks.py``); never from a web request.
"""

from __future__ import annotations

import logging

from django.core.cache import cache
from django.db import transaction
from django.utils import timezone

from companies.audit import Actor, audit_record
from connections import salesforce
from connections.salesforce.urls import host_of, login_host_for
from vbsf import encryption
from vbsf.queue import enqueue_on_commit

from .models import ConnectionStatus, SalesforceOrg
from .tokens import (
    CachedAccessToken,
    org_access_token,
    org_access_token_forget,
    org_cached_access_token,
    orgs_cached_access_tokens,
)

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
FAILING = (ConnectionStatus.FAILED, ConnectionStatus.NEEDS_REAUTHORIZATION)


def org_status_record(
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
        old, old_reason = org.status, org.status_reason
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
        if status != old:
            # The dashboard's failure line and the org's timeline read these
            # events; a check that changes nothing writes none.
            why = reason or (
                "The connection works." if status == ConnectionStatus.CONNECTED else ""
            )
            first, _, rest = why.partition(" ")
            if first in ("The", "A", "An", "No"):
                why = f"{first.lower()} {rest}"  # after the colon
            label = dict(ConnectionStatus.choices).get(status, status)
            audit_record(
                actor=Actor.system(),
                action="org.status",
                summary=f"{label}: {why}" if why else label,
                org=org,
                before={"status": old, "status_reason": old_reason},
                after={"status": status, "status_reason": org.status_reason},
            )
        if (old in FAILING) != (status in FAILING):
            # Into or out of failure: let the company's alert digest decide.
            enqueue_on_commit(
                "orgs.tasks.evaluate_company_alerts", company_id=org.company_id
            )
    return old, status


def org_health_check(*, org_id: int) -> str:
    """Call the org with its kept access token, or refresh first; record the
    status. Raises transient errors for the task to retry; records permanent
    ones as needs_reauthorization.

    A healthy org with a kept access token costs one Salesforce request. A
    token Salesforce no longer accepts (``INVALID_SESSION_ID``: session ended
    or revoked) is dropped, and the check refreshes once and calls again.
    """
    org = SalesforceOrg.objects.select_related("client_app").get(pk=org_id)
    return _health_check(org, org_cached_access_token(org))


def orgs_health_check(*, org_ids: list[int]) -> list[int]:
    """Check several orgs one after the other (the beat's batches): one query
    loads them and one cache read finds their kept access tokens.

    Returns the orgs whose check failed transiently, for the caller to retry
    one by one; an org deleted meanwhile is skipped.
    """
    orgs = SalesforceOrg.objects.select_related("client_app").in_bulk(org_ids)
    kept = orgs_cached_access_tokens(list(orgs.values()))
    retry, still_connected = [], []
    for org_id in org_ids:
        if (org := orgs.get(org_id)) is None:
            continue
        # The common outcome, connected as before, is recorded for the whole
        # batch in one UPDATE at the end.
        unchanged = (
            org.status == ConnectionStatus.CONNECTED
            and not org.status_reason
            and not org.suggested_url
        )
        try:
            status = _health_check(org, kept.get(org_id), record_healthy=not unchanged)
        except salesforce.TRANSIENT_ERRORS:
            retry.append(org_id)
        except Exception:
            # One org's unexpected failure must not skip the rest of the
            # batch; the log line says which org (no secrets in our errors).
            logger.exception("health check of org %s failed", org_id)
        else:
            if unchanged and status == ConnectionStatus.CONNECTED:
                still_connected.append(org_id)
    recorded = SalesforceOrg.objects.filter(
        pk__in=still_connected,
        status=ConnectionStatus.CONNECTED,
        status_reason="",
        suggested_url="",
    ).update(last_checked_at=timezone.now())
    if recorded != len(still_connected):
        # Some changed meanwhile (a Finish, another check): one at a time.
        for org_id in still_connected:
            org_healthy(org_id)
    return retry


def _health_check(
    org: SalesforceOrg, kept: CachedAccessToken | None, *, record_healthy: bool = True
) -> str:
    org_id = org.pk
    if not org.has_refresh_token or org.client_app_id is None:
        org_status_record(
            org_id,
            ConnectionStatus.NEEDS_REAUTHORIZATION,
            "No refresh token is stored: re-authorize the connection.",
        )
        return ConnectionStatus.NEEDS_REAUTHORIZATION
    try:
        moved_to = _salesforce_check(org, kept)
    except salesforce.SessionInvalid as exc:
        # A token minted a moment ago and refused at once: not a kept token
        # that expired, so no second refresh; the next check tries again.
        org_access_token_forget(
            org_id=org_id, fingerprint=org.refresh_token_fingerprint
        )
        org_status_record(
            org_id, ConnectionStatus.FAILED, salesforce.connection_problem(exc)
        )
        return ConnectionStatus.FAILED
    except PERMANENT as exc:
        org_status_record(
            org_id,
            ConnectionStatus.NEEDS_REAUTHORIZATION,
            salesforce.connection_problem(exc),
        )
        return ConnectionStatus.NEEDS_REAUTHORIZATION
    except salesforce.OrgMismatch:
        org_status_record(
            org_id,
            ConnectionStatus.NEEDS_REAUTHORIZATION,
            "The stored tokens open a different org: re-authorize the connection.",
        )
        return ConnectionStatus.NEEDS_REAUTHORIZATION
    except salesforce.UnsafeUrl as exc:
        org_status_record(
            org_id, ConnectionStatus.FAILED, salesforce.connection_problem(exc)
        )
        return ConnectionStatus.FAILED
    if moved_to is not None:
        org_status_record(
            org_id,
            ConnectionStatus.URL_CHANGED,
            f"Salesforce now answers at {host_of(moved_to)}",
            suggested_url=moved_to,
        )
        return ConnectionStatus.URL_CHANGED
    return org_healthy(org_id) if record_healthy else ConnectionStatus.CONNECTED


def _salesforce_check(org: SalesforceOrg, kept: CachedAccessToken | None) -> str | None:
    """A check's Salesforce calls; returns the org's new URL if it moved."""
    here = org.instance_url or org.login_url
    if kept is not None:
        try:
            salesforce.check_org(
                instance_url=here,
                access_token=kept.access_token,
                expected_org_id=org.org_id,
            )
            return None
        except (salesforce.SessionInvalid, salesforce.HostUnreachable):
            # Session ended or revoked, or the host is gone (a My Domain
            # change): the refresh below tells which, and finds the new URL.
            org_access_token_forget(
                org_id=org.pk, fingerprint=org.refresh_token_fingerprint
            )
    try:
        tokens = org_access_token(org_id=org.pk, org=org)
    except salesforce.HostUnreachable:
        # The stored host may be gone after a My Domain change: ask the
        # generic login host, which answers with the org's current URL.
        tokens = org_access_token(
            org_id=org.pk, login_url=login_host_for(org.org_type), org=org
        )
    if host_of(tokens.instance_url) != host_of(here):
        return tokens.instance_url
    salesforce.check_org(
        instance_url=here,
        access_token=tokens.access_token,
        expected_org_id=org.org_id,
    )
    return None


def org_healthy(org_id: int) -> str:
    org_status_record(
        org_id,
        ConnectionStatus.CONNECTED,
        "",
        suggested_url="",
        keep_permissions_missing=True,
    )
    return ConnectionStatus.CONNECTED


def org_health_failed(*, org_id: int, exc: BaseException, attempts: int) -> None:
    """Transient failures outlived their retries: the org is failed."""
    org_status_record(
        org_id,
        ConnectionStatus.FAILED,
        f"{salesforce.connection_problem(exc)} ({attempts} attempts)",
    )


def health_check_targets() -> list[int]:
    return list(
        SalesforceOrg.objects.with_refresh_token()
        .order_by("pk")
        .values_list("pk", flat=True)
    )


CHECK_REQUESTED = "vbsf:org-check-requested:{}"
# How long a requested check shows as running at most (its retries included).
CHECK_REQUESTED_TTL = 600
CHECKED_NOW_SECONDS = 60


def orgs_check_now(*, org_ids: list[int]) -> int:
    """Queue health checks for these orgs (the operator's "Check again").

    The request is remembered (in the cache) so pages can show the check as
    running until its outcome is recorded, and then show the outcome.
    """
    now = timezone.now().timestamp()
    cache.set_many(
        {CHECK_REQUESTED.format(org_id): now for org_id in org_ids},
        CHECK_REQUESTED_TTL,
    )
    for org_id in org_ids:
        enqueue_on_commit("orgs.tasks.check_org_health", org_id=org_id)
    return len(org_ids)


def orgs_checking(orgs: list[SalesforceOrg]) -> set[int]:
    """The orgs among these whose requested check has no outcome yet: one
    cache read for all of them."""
    requested = cache.get_many([CHECK_REQUESTED.format(o.pk) for o in orgs])
    checking = set()
    for org in orgs:
        at = requested.get(CHECK_REQUESTED.format(org.pk))
        last = org.last_checked_at.timestamp() if org.last_checked_at else 0
        if at is not None and last < at:
            checking.add(org.pk)
    return checking


def org_check_progress(org: SalesforceOrg) -> str:
    """ "checking" while a requested check runs, "checked" for a minute after
    its outcome was recorded, else ""."""
    if org.pk in orgs_checking([org]):
        return "checking"
    at = cache.get(CHECK_REQUESTED.format(org.pk))
    last = org.last_checked_at
    age = timezone.now().timestamp() - last.timestamp() if last else None
    if at is not None and age is not None and age < CHECKED_NOW_SECONDS:
        return "checked"
    return ""
