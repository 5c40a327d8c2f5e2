"""Authorizing a change at Salesforce and exchanging the code.

Used by Edit Connection, Add organization and re-authorization alike: the
browser is sent to Salesforce with state and PKCE, the callback hands the
code over, and a task exchanges it and checks that the tokens open the
right org before anything is kept.
"""

from __future__ import annotations

from django.conf import settings
from django.db import transaction
from django.db.models import Exists, OuterRef
from django.urls import reverse
from django.utils import timezone

from companies.audit import Actor
from connections import salesforce
from orgs import token_ledger
from orgs.models import RefreshTokenRecord, SalesforceOrg
from vbsf.queue import enqueue_on_commit

from ..models import CampaignOrg, ConnectionChange, ExternalClientApp
from .campaigns import campaign_rows_change_refused
from .changes import ChangeError, OrgUrlMoved, State, org_url_moved
from .finish import reauthorization_apply_locked
from .revocation import (
    access_token_revoke_quietly,
    change_token_abandon,
)
from .verification import permission_check_start

BASE_SCOPES = ("api", "refresh_token", "id")
PURPOSES = {
    ConnectionChange.Kind.EDIT: RefreshTokenRecord.Purpose.EDIT_CONNECTION,
    ConnectionChange.Kind.ADD: RefreshTokenRecord.Purpose.ADD_ORGANIZATION,
    ConnectionChange.Kind.REAUTHORIZE: RefreshTokenRecord.Purpose.REAUTHORIZATION,
}
REQUIRED_SCOPES = ("api", "refresh_token")


def callback_url() -> str:
    return settings.PUBLIC_URL + reverse("connections:oauth-callback")


def required_scopes_for(org: SalesforceOrg | None) -> tuple[str, ...]:
    if org is not None and org.is_identity_provider:
        return (*REQUIRED_SCOPES, "openid")
    return REQUIRED_SCOPES


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
    if change.org is not None and (
        moved := org_url_moved(change.org, "authorize again")
    ):
        raise OrgUrlMoved(moved)
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
    try:
        request = salesforce.start_authorization(
            login_url=change.login_url,
            client_id=change.client_app.consumer_key,
            redirect_uri=callback_url(),
            scopes=scopes,
            prompt="login",
        )
    except salesforce.UnsafeUrl:
        # A URL stored before the one URL check covered every path (or by
        # hand in the database): a clear refusal, never an error page.
        raise ChangeError(
            f"{change.login_url} is not a Salesforce address, so the console "
            "does not send anyone there. Fix the org's URL with Edit "
            "organization URL, then authorize again."
        ) from None
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
    enqueue_on_commit("connections.tasks.exchange_code", change_id=change.pk)


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
        message = f"Salesforce did not authorize the app: {salesforce.message_of(exc)}"
    change.code_verifier_encrypted = ""
    change.failure_code = error[:40]
    change.failure_message = message[:500]
    change.save()
    campaign_rows_change_refused(change_id=change_id, message=message)
    return message


def connection_change_exchange(*, change_id: int) -> str:
    """Exchange the stored code; check org, scopes and the user; keep tokens.

    The code is wiped whatever happens: a code is single-use. Answers
    "authorized" (an Edit Connection change, whose wizard Finishes), what
    :func:`reauthorization_apply` answers for a re-authorization, or why
    nothing was kept.
    """
    with transaction.atomic():
        change = (
            ConnectionChange.objects.select_for_update(of=("self",))
            .select_related("client_app", "org")
            .annotate(through_link=through_link())
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
        return authorization_refuse(
            change_id, exc.code, salesforce.authorization_problem(exc)
        )
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
        with transaction.atomic():
            token_record(change, tokens, RefreshTokenRecord.RevokeReason.WRONG_ORG)
            return authorization_refuse(change_id, *problem)
    # Written ahead, owed a revoke until the change keeps the token below:
    # a worker killed in between leaves a token beat revokes, never one
    # alive that nobody holds.
    token_record(change, tokens)
    try:
        identity = salesforce.get_identity(
            identity_url=tokens.identity_url, access_token=tokens.access_token
        )
        username = identity.username
    except salesforce.SalesforceError:
        username = ""
    with transaction.atomic():
        change = (
            ConnectionChange.objects.select_for_update(of=("self",))
            .select_related("created_by")
            .get(pk=change_id)
        )
        if change.state != State.EXCHANGING:
            token_record(change, tokens, RefreshTokenRecord.RevokeReason.ABANDONED)
            return "skipped"
        if tokens.refresh_token and not token_ledger.refresh_token_claim(
            token=tokens.refresh_token, username=username
        ):
            return authorization_refuse(
                change_id,
                "token_revoked",
                "Salesforce revoked the new token before the console could keep "
                "it; nothing was changed. Authorize again.",
            )
        # "Authorize again": the earlier sign-in's token is never used.
        change_token_abandon(change=change, save=False)
        change.set_secret("new_refresh_token", tokens.refresh_token)
        change.new_instance_url = tokens.instance_url
        change.new_org_id = tokens.org_id
        change.new_user_id = tokens.user_id
        change.new_username = username
        change.granted_scopes = sorted(tokens.scopes)
        change.authorized_at = timezone.now()
        change.state = State.AUTHORIZED
        change.failure_code = change.failure_message = ""
        if change.kind == ConnectionChange.Kind.REAUTHORIZE:
            # Same app, new tokens: applied at once, in the transaction that
            # keeps the token (which saves the change). A task of its own
            # would queue behind every other exchange, and nothing could
            # leave the change authorized but not applied.
            outcome = reauthorization_apply_locked(change=change)
        else:
            change.save()
            permission_check_start(actor=Actor.system(), change=change)
            outcome = "authorized"
        # The app last: every writer takes the change, then the org, then
        # the app (Edit Connection's start takes the org, then the app).
        if app.scopes != sorted(tokens.scopes):
            ExternalClientApp.objects.filter(pk=app.pk).update(
                scopes=sorted(tokens.scopes)
            )
    return outcome


def through_link() -> Exists:
    """Whether a campaign row bound to a browser (a delegated link) started
    the change: annotated on the change the exchange loads anyway."""
    return Exists(
        CampaignOrg.objects.filter(change=OuterRef("pk")).exclude(browser_binding="")
    )


def token_purpose(change: ConnectionChange) -> str:
    """Why the console obtained the token, for the ledger: a re-authorization
    through a campaign's delegated link is told apart (its row is bound to
    the browser that opened the link)."""
    if change.kind == ConnectionChange.Kind.REAUTHORIZE:
        linked = getattr(change, "through_link", None)
        if linked is None:
            linked = change.campaign_rows.exclude(browser_binding="").exists()
        if linked:
            return RefreshTokenRecord.Purpose.DELEGATED_LINK
    return PURPOSES.get(change.kind, RefreshTokenRecord.Purpose.EDIT_CONNECTION)


def token_record(
    change: ConnectionChange, tokens: salesforce.TokenSet, revoke_reason: str = ""
) -> None:
    """Record the exchange's refresh token in the ledger: owed a revoke
    with ``revoke_reason``, else until the change keeps it. Without a
    refresh token only the access token is revoked, best effort."""
    if not tokens.refresh_token:
        if revoke_reason:
            access_token_revoke_quietly(change.login_url, tokens.access_token)
        return
    if not revoke_reason:
        token_ledger.refresh_token_pending(
            token=tokens.refresh_token,
            client_app_id=change.client_app_id,
            salesforce_org_id=tokens.org_id,
            user_id=tokens.user_id,
            purpose=token_purpose(change),
            login_url=change.login_url,
            org=change.org,
        )
        return
    token_ledger.refresh_token_record(
        token=tokens.refresh_token,
        client_app_id=change.client_app_id,
        salesforce_org_id=tokens.org_id,
        user_id=tokens.user_id,
        purpose=token_purpose(change),
        login_url=change.login_url,
        org=change.org if change.org and change.org.org_id == tokens.org_id else None,
        revoke_reason=revoke_reason,
    )


def authorization_refuse(change_id: int, code: str, message: str) -> str:
    """Back to "active": the admin can authorize again; nothing was stored."""
    with transaction.atomic():
        ConnectionChange.objects.filter(pk=change_id).filter(
            state__in=[State.EXCHANGING, State.ACTIVE]
        ).update(state=State.ACTIVE, failure_code=code[:40], failure_message=message)
        campaign_rows_change_refused(change_id=change_id, message=message)
    return code
