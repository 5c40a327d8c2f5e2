"""Authorizing a change at Salesforce and exchanging the code."""

from __future__ import annotations

from django.db import transaction
from django.utils import timezone

from companies.audit import Actor
from orgs.models import SalesforceOrg

from .. import salesforce
from ..models import ConnectionChange, ExternalClientApp
from .common import (
    BASE_SCOPES,
    ChangeError,
    State,
    _enqueue,
    _message,
    _tasks,
    callback_url,
    logger,
    required_scopes_for,
)
from .verification import permission_check_start

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
        from ..reauthorization import reauthorization_apply

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
