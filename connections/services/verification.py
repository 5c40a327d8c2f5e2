"""Verifying the connected user's permissions for backup and restore."""

from __future__ import annotations

from typing import Any

from django.db import transaction
from django.utils import timezone

from companies.audit import Actor
from connections import salesforce
from orgs.models import ConnectionStatus, SalesforceOrg
from orgs.tokens import org_access_token
from vbsf import encryption
from vbsf.queue import PRIORITY_FOLLOW_UP, enqueue_on_commit

from ..models import ConnectionChange, PermissionCheck
from ..permissions import (
    BACKUP,
    INTEGRATION_LICENSE,
    PERMISSION_FIELDS,
    REQUIRED_PERMISSIONS,
)
from .changes import ChangeError

# --- permission verification -----------------------------------------------


def permission_check_start(
    *,
    actor: Actor,
    org: SalesforceOrg | None = None,
    change: ConnectionChange | None = None,
    follow_up: bool = False,
) -> PermissionCheck:
    """One INSERT, its task sent after the caller's commit (or at once
    outside a transaction): no transaction, so no savepoint, of its own.
    ``follow_up``: started by the console after a re-authorization, not by
    someone waiting on it; it queues behind what people are waiting on."""
    if (org is None) == (change is None):
        raise ValueError("Check either an org or a change.")
    if change is not None and not change.has_new_token:
        raise ChangeError("Authorize the new app at Salesforce first.")
    check = PermissionCheck.objects.create(
        # A change's check joins the org's history only when it is applied.
        org=org,
        change=change,
        requested_by=actor.user if actor.user and actor.user.is_authenticated else None,
    )
    enqueue_on_commit(
        "connections.tasks.verify_permissions",
        check_id=check.pk,
        priority=PRIORITY_FOLLOW_UP if follow_up else None,
    )
    return check


def permission_check_fail(*, check_id: int, exc: BaseException) -> None:
    PermissionCheck.objects.filter(
        pk=check_id, state=PermissionCheck.State.RUNNING
    ).update(
        state=PermissionCheck.State.FAILED,
        error=salesforce.message_of(exc)[:500],
        finished_at=timezone.now(),
    )


def permission_check_run(*, check_id: int) -> str:
    # Not the org: org_access_token() loads it itself.
    check = PermissionCheck.objects.select_related("change__client_app").get(
        pk=check_id
    )
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
    except salesforce.TRANSIENT_ERRORS:
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
            org_status_after_check(check.org_id, backup_ok, results, license_name)
    return "done"


def org_status_after_check(
    org_id: int, backup_ok: bool, results: list[dict[str, Any]], license_name: str
) -> None:
    if backup_ok:
        # The usual answer changes nothing: one UPDATE that matches no row,
        # not a locked read first.
        now = timezone.now()
        SalesforceOrg.objects.filter(
            pk=org_id, status=ConnectionStatus.PERMISSIONS_MISSING
        ).update(
            status=ConnectionStatus.CONNECTED,
            status_reason="",
            status_changed_at=now,
            updated_at=now,
        )
        return
    org = SalesforceOrg.objects.select_for_update().get(pk=org_id)
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
