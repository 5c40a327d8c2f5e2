"""Re-authorize connection: the same app, a fresh login as any Salesforce
user (SPEC §3). The org keeps working on its old token until the new one
is proven; the old token is revoked after commit."""

from __future__ import annotations

from django.db import transaction
from django.http import HttpRequest, HttpResponse
from django.utils import timezone

from companies.audit import Actor, audit_record
from orgs.models import ConnectionStatus, SalesforceOrg
from orgs.services import org_snapshot

from . import salesforce
from .models import ConnectionChange
from .services import (
    ChangeError,
    _enqueue,
    _tasks,
    connection_change_begin_authorization,
    permission_check_start,
)

State = ConnectionChange.State


@transaction.atomic
def reauthorization_start(
    *, actor: Actor, org: SalesforceOrg
) -> tuple[ConnectionChange, salesforce.AuthorizationRequest]:
    org = (
        SalesforceOrg.objects.select_for_update(of=("self",))
        .select_related("client_app")
        .get(pk=org.pk)
    )
    if org.client_app is None:
        raise ChangeError(
            "This org has no client app yet: use Edit Connection to set one up."
        )
    org.connection_changes.filter(
        kind=ConnectionChange.Kind.REAUTHORIZE, state__in=ConnectionChange.OPEN_STATES
    ).update(state=State.ROLLED_BACK, finished_at=timezone.now())
    change = ConnectionChange.objects.create(
        kind=ConnectionChange.Kind.REAUTHORIZE,
        org=org,
        company=org.company,
        created_by=actor.user if actor.user and actor.user.is_authenticated else None,
        created_from=actor.ip_address,
        started_version=org.version,
        client_app=org.client_app,
        login_url=org.login_url,
        org_type=org.org_type,
        state=State.ACTIVE,  # the app is in use already: nothing to activate
        previous_username=org.connected_as_username,
    )
    return change, connection_change_begin_authorization(change=change)


def reauthorize_callback(
    request: HttpRequest, flow: dict[str, object], back: str
) -> HttpResponse:
    from .views import _change_callback

    return _change_callback(request, flow, back)


@transaction.atomic
def reauthorization_apply(*, change_id: int) -> str:
    change = (
        ConnectionChange.objects.select_for_update(of=("self",))
        .select_related("client_app")
        .get(pk=change_id)
    )
    if change.state != State.AUTHORIZED:
        return "skipped"
    org = (
        SalesforceOrg.objects.select_for_update(of=("self",))
        .select_related("company", "client_app")
        .get(pk=change.org_id)
    )
    if org.client_app_id != change.client_app_id:
        change.state = State.FAILED
        change.failure_code = "app_changed"
        change.failure_message = (
            "The org's client app changed while you were logging in; nothing was "
            "changed. Re-authorize again."
        )
        change.finished_at = timezone.now()
        change.save()
        _enqueue_revoke_unused(change)
        return "conflict"
    before = org_snapshot(org)
    if org.refresh_token_encrypted:
        change.old_refresh_token_encrypted = org.refresh_token_encrypted
    org.set_refresh_token(change.get_secret("new_refresh_token"))
    org.instance_url = change.new_instance_url or org.instance_url
    org.connected_as_username = change.new_username
    org.connected_as_user_id = change.new_user_id
    org.granted_scopes = change.granted_scopes
    org.status = ConnectionStatus.CONNECTED
    org.status_reason = ""
    org.status_changed_at = timezone.now()
    org.last_checked_at = timezone.now()
    org.version += 1
    org.save()
    change.state = State.APPLIED
    change.new_refresh_token_encrypted = ""
    change.finished_at = timezone.now()
    change.save()
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
    if change.old_refresh_token_encrypted:
        _enqueue(_tasks().revoke_old_token, change_id=change.pk)
    permission_check_start(actor=Actor(user=change.created_by), org=org)
    return "applied"


def _enqueue_revoke_unused(change: ConnectionChange) -> None:
    if change.new_refresh_token_encrypted:
        change.old_refresh_token_encrypted = change.new_refresh_token_encrypted
        change.new_refresh_token_encrypted = ""
        change.save()
        _enqueue(_tasks().revoke_old_token, change_id=change.pk)
