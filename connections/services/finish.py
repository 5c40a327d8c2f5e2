"""Applying an authorized change: Finish (Edit Connection, Add organization)
and re-authorization, which share :func:`org_connection_replace`.

The org keeps its old app and tokens until here; the swap happens in one
transaction, and the replaced refresh token is revoked after commit.
"""

from __future__ import annotations

from django.db import transaction
from django.utils import timezone

from companies.audit import Actor, audit_record
from companies.models import Company
from orgs import token_ledger
from orgs.models import (
    BackupPolicy,
    ConnectionStatus,
    RefreshTokenRecord,
    SalesforceOrg,
)
from orgs.services import org_create, org_locked, org_snapshot, orgs_move
from orgs.tokens import org_refresh_token_store
from vbsf import encryption

from ..models import ConnectionChange, PermissionCheck, WizardState
from .campaigns import campaign_rows_change_finished, campaign_rows_change_refused
from .changes import ChangeError, State
from .revocation import (
    change_token_abandon,
    change_token_revoke_later,
    token_hand_to_ledger,
)
from .verification import permission_check_start


def org_connection_replace(*, org: SalesforceOrg, change: ConnectionChange) -> None:
    """Swap the change's new tokens into the (locked) org and save both.

    The org's replaced refresh token moves to the change, which holds it
    until it is revoked after commit. Bumps the org's version.
    """
    new_token = change.get_secret("new_refresh_token")
    replaced_fingerprint = org.refresh_token_fingerprint
    replaced = org_refresh_token_store(org=org, token=new_token)
    token_ledger.refresh_token_kept(token=new_token, org=org)
    if replaced and change.holds_replaced_token:
        # The change's one revocation slot still holds a token it abandoned
        # (Authorize again while Salesforce refused revokes): the ledger
        # takes the replaced one rather than overwrite that.
        token_hand_to_ledger(
            change=change,
            token=encryption.decrypt(replaced),
            reason=RefreshTokenRecord.RevokeReason.REPLACED,
            user_id=org.connected_as_user_id,
        )
    elif replaced:
        change.hold_for_revocation(replaced)
        token_ledger.refresh_token_owed_by_fingerprint(
            fingerprint=replaced_fingerprint,
            reason=RefreshTokenRecord.RevokeReason.REPLACED,
            org=org,
        )
    now = timezone.now()
    org.instance_url = change.new_instance_url or org.instance_url
    org.connected_as_username = change.new_username
    org.connected_as_user_id = change.new_user_id
    org.granted_scopes = change.granted_scopes
    org.status = ConnectionStatus.CONNECTED
    org.status_reason = ""
    org.status_changed_at = now
    org.version += 1
    org.save()
    change.state = State.APPLIED
    change.finished_at = now
    change.release_new_token()
    change.save()
    change_token_revoke_later(change=change)


def locked_change(change_id: int) -> ConnectionChange:
    # With its creator: a re-authorization's audit names them.
    return (
        ConnectionChange.objects.select_for_update(of=("self",))
        .select_related("client_app", "created_by")
        .get(pk=change_id)
    )


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
    change = locked_change(change.pk)
    if change.state != State.AUTHORIZED:
        raise ChangeError(
            "This change is not ready: authorize the new app and verify "
            "permissions first."
            if change.is_open
            else "This change has already ended. Start Edit Connection again."
        )
    if permission_check is not None and not permission_check.backup_ok:
        raise ChangeError("Backup permissions are missing; Finish is blocked.")
    if change.org_id is None:
        org = finish_new_org(actor=actor, change=change, company=company, alias=alias)
    else:
        org = org_locked(change.org_id, change.started_version)
        before = org_snapshot(org)
        org.client_app = change.client_app
        org.company = company
        org.suggested_url = ""
        org_connection_replace(org=org, change=change)
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
    if permission_check is not None and permission_check.org_id is None:
        PermissionCheck.objects.filter(pk=permission_check.pk).update(org=org)
    # The org runs as the new user now: its rows in open campaigns (SPEC §9)
    # need nobody any more, and their links stop working.
    campaign_rows_change_finished(change=change, org=org)
    return org


def finish_new_org(
    *, actor: Actor, change: ConnectionChange, company: Company, alias: str
) -> SalesforceOrg:
    """Add organization's Finish: the org is created with the new tokens."""
    org = org_create(
        actor=actor,
        org_id=change.new_org_id,
        alias=alias,
        org_type=change.org_type,
        login_url=change.login_url,
        instance_url=change.new_instance_url,
        company=company,
        client_app=change.client_app,
        refresh_token=change.get_secret("new_refresh_token"),
        connected_as_username=change.new_username,
        connected_as_user_id=change.new_user_id,
        granted_scopes=change.granted_scopes,
        status=ConnectionStatus.CONNECTED,
    )
    SalesforceOrg.objects.filter(pk=org.pk).update(last_checked_at=timezone.now())
    token_ledger.refresh_token_kept(
        token=change.get_secret("new_refresh_token"), org=org
    )
    change.org = org
    change.state = State.APPLIED
    change.finished_at = timezone.now()
    change.release_new_token()
    change.save()
    return org


@transaction.atomic
def reauthorization_apply(*, change_id: int) -> str:
    """Re-authorization: the same app, the new user's tokens, applied as soon
    as they are proven (no wizard, no Finish). The exchange applies it in
    the transaction that keeps the token; this is beat's way for a change an
    earlier version of the console left authorized."""
    return reauthorization_apply_locked(change=locked_change(change_id))


def reauthorization_apply_locked(*, change: ConnectionChange) -> str:
    """:func:`reauthorization_apply` of a change the caller's transaction
    holds locked (with its creator, whom the audit names)."""
    if change.state != State.AUTHORIZED:
        return "skipped"
    org = org_locked(change.org_id, None)
    if org.client_app_id != change.client_app_id:
        change.state = State.FAILED
        change.failure_code = "app_changed"
        change.failure_message = (
            "The org's client app changed while you were logging in; nothing was "
            "changed. Re-authorize again."
        )
        change.finished_at = timezone.now()
        change.save()
        change_token_abandon(change=change)
        campaign_rows_change_refused(
            change_id=change.pk, message=change.failure_message
        )
        return "conflict"
    before = org_snapshot(org)
    org.last_checked_at = timezone.now()
    org_connection_replace(org=org, change=change)
    other_user = (
        change.previous_username and change.previous_username != change.new_username
    )
    audit_record(
        actor=Actor(user=change.created_by, ip_address=change.created_from),
        action="org.reauthorize",
        org=org,
        summary=f"Re-authorized {org.label} as {org.connected_as_username}"
        + (f" (before: {change.previous_username})" if other_user else ""),
        before=before,
        after=org_snapshot(org),
    )
    permission_check_start(actor=Actor(user=change.created_by), org=org, follow_up=True)
    campaign_rows_change_finished(change=change, org=org)
    return "applied"


@transaction.atomic
def connection_keep_finish(
    *,
    actor: Actor,
    org: SalesforceOrg,
    company: Company,
    expected_version: int | None,
) -> SalesforceOrg:
    """Finish with "Keep the current app": only the company may change,
    and only if the org is still the one the wizard started from."""
    org = org_locked(org, expected_version)
    if company.pk != org.company_id:
        orgs_move(actor=actor, orgs=[org], to_company=company)
    return org


def wizard_finished(*, state: WizardState, user: object) -> None:
    """Close the wizard's run: a page rendered for it cannot Finish again,
    and says who finished it and when."""
    now = timezone.now()
    finished_by = user if getattr(user, "is_authenticated", False) else None
    WizardState.objects.filter(pk=state.pk).update(
        run=state.run + 1, finished_by=finished_by, finished_at=now
    )
    state.run, state.finished_by, state.finished_at = state.run + 1, finished_by, now
