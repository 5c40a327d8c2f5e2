"""Finish: applying a change in one transaction, then revoking the old token."""

from __future__ import annotations

from django.db import transaction
from django.utils import timezone

from companies.audit import Actor, audit_record
from companies.models import Company
from orgs.models import BackupPolicy, ConnectionStatus, SalesforceOrg
from orgs.services import ConcurrentChange, org_create, org_snapshot
from vbsf import encryption

from .. import salesforce
from ..models import ConnectionChange, PermissionCheck
from .common import (
    ChangeError,
    State,
    _enqueue,
    _tasks,
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
