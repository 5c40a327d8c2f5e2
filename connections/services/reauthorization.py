"""Re-authorize connection: the same app, a fresh login as any Salesforce
user (SPEC §3). The org keeps working on its old token until the new one is
proven; ``finish.reauthorization_apply`` then swaps it in and the old token
is revoked after commit."""

from __future__ import annotations

from django.db import transaction
from django.utils import timezone

from companies.audit import Actor
from connections import salesforce
from orgs.models import SalesforceOrg

from ..models import ConnectionChange
from .authorization import connection_change_begin_authorization
from .changes import (
    ChangeError,
    OrgUrlMoved,
    State,
    org_changes_lock,
    org_url_moved,
)
from .revocation import change_token_abandon


@transaction.atomic
def reauthorization_start(
    *, actor: Actor, org: SalesforceOrg
) -> tuple[ConnectionChange, salesforce.AuthorizationRequest]:
    org_changes_lock(org.pk)
    org = (
        SalesforceOrg.objects.select_for_update(of=("self",))
        .select_related("client_app")
        .get(pk=org.pk)
    )
    if org.client_app is None:
        raise ChangeError(
            "This org has no client app yet: use Edit Connection to set one up."
        )
    if moved := org_url_moved(org, "re-authorize it"):
        raise OrgUrlMoved(moved)
    # An earlier re-authorization left open ends; a token it already got
    # is revoked, not left alive at Salesforce.
    for earlier in org.connection_changes.filter(
        kind=ConnectionChange.Kind.REAUTHORIZE, state__in=ConnectionChange.OPEN_STATES
    ):
        earlier.state = State.ROLLED_BACK
        earlier.finished_at = timezone.now()
        earlier.save()
        change_token_abandon(change=earlier)
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
