"""Log in with Salesforce: the console's OpenID Connect sign-in (SPEC §6).

The services of the flow; its pages are in ``connections/views/signin.py``
and its task in ``connections/tasks.py``.

The flow, with no web request ever waiting on Salesforce:

1. ``signin_start`` creates a :class:`SignInAttempt` (PKCE verifier
   encrypted, nonce) for the identity-provider org, binds the OAuth state to
   the browser session and sends the browser to Salesforce.
2. The shared OAuth callback hands a ``signin`` flow to
   :func:`signin_callback`, which keeps the code (encrypted) and enqueues
   :func:`exchange_signin_code`.
3. The task exchanges the code with the org's app, verifies the id_token
   (signature against the login host's JWKS, issuer, audience, nonce,
   expiry), matches the Salesforce user to a :class:`SalesforceIdentityLink`
   and records the outcome, then revokes the tokens: the console keeps none.
4. ``signin_wait`` polls the attempt; a succeeded attempt is consumed once,
   and only by the browser session that started it, which is then signed in.
"""

from __future__ import annotations

import logging
import re
from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit

from django.contrib.auth.base_user import AbstractBaseUser
from django.db import transaction
from django.utils import timezone

from companies.audit import Actor, audit_record
from companies.models import AuditEvent
from connections import salesforce
from connections.salesforce.id_tokens import InvalidIdToken, verify_id_token
from connections.salesforce.urls import (
    InvalidSalesforceId,
    login_host_for,
    normalize_org_url,
    to_18,
)
from orgs import token_ledger
from orgs.models import RefreshTokenRecord, SalesforceOrg
from vbsf import encryption
from vbsf.queue import enqueue_on_commit
from vbsf.ratelimit import address_allowed

from .. import oauth_flows
from ..models import SalesforceIdentityLink, SignInAttempt
from .authorization import callback_url
from .revocation import access_token_revoke_quietly

logger = logging.getLogger(__name__)

State = SignInAttempt.State

AUDIT_ACTION = "auth.salesforce_signin"
SCOPES = ("openid", "id")
# Attempt IDs this browser session started; only they can be waited on.
SESSION_KEY = "salesforce_signin_attempts"
MAX_SESSION_ATTEMPTS = 5
# A sign-in must be finished within the OAuth state's lifetime, and the
# exchange must not keep the browser waiting longer than this.
ATTEMPT_LIFETIME = timedelta(seconds=oauth_flows.LIFETIME_SECONDS)
EXCHANGE_TIMEOUT = timedelta(seconds=120)
BACKEND = "django.contrib.auth.backends.ModelBackend"

NOT_LINKED = (
    "This Salesforce user is not linked to a console user. Ask an Administrator "
    "to link it."
)
_ID_PATH_RE = re.compile(r"^/id/(00D[A-Za-z0-9]{12,15})/(005[A-Za-z0-9]{12,15})$")


class SignInRefused(Exception):
    """The sign-in cannot go on; the message says why, safe to show."""


# --- selectors --------------------------------------------------------------


def identity_provider_org() -> SalesforceOrg | None:
    """The org console users log in through, if one is set up with an app."""
    return (
        SalesforceOrg.objects.select_related("client_app", "company")
        .filter(is_identity_provider=True, client_app__isnull=False)
        .first()
    )


# --- services ---------------------------------------------------------------


def _audit(
    attempt: SignInAttempt,
    *,
    outcome: str,
    summary: str,
    actor: Actor | None = None,
    details: dict[str, Any] | None = None,
) -> None:
    audit_record(
        actor=actor or Actor.system(),
        action=AUDIT_ACTION,
        org=attempt.org,
        outcome=outcome,
        summary=summary,
        after={"attempt": attempt.pk, "state": attempt.state, **(details or {})},
    )


def _refuse(
    attempt: SignInAttempt,
    message: str,
    *,
    actor: Actor | None = None,
    details: dict[str, Any] | None = None,
) -> None:
    """Mark a locked attempt refused, wipe its secrets, audit the failure."""
    attempt.state = State.REFUSED
    attempt.message = message[:300]
    attempt.code_encrypted = attempt.code_verifier_encrypted = ""
    attempt.save()
    _audit(
        attempt,
        outcome=AuditEvent.Outcome.FAILURE,
        summary=f"Salesforce sign-in refused: {message}",
        actor=actor,
        details=details,
    )


def signin_begin(*, org: SalesforceOrg) -> tuple[SignInAttempt, str, str]:
    """Create an attempt for the identity-provider org.

    Returns the attempt, the Salesforce authorize URL and the OAuth state.
    The PKCE verifier is stored encrypted; the nonce goes into the id_token.
    """
    auth = salesforce.start_authorization(
        login_url=org.login_url,
        client_id=org.client_app.consumer_key,
        redirect_uri=callback_url(),
        scopes=list(SCOPES),
        prompt="login",
        with_nonce=True,
    )
    attempt = SignInAttempt.objects.create(
        org=org,
        state=State.STARTED,
        nonce=auth.nonce or "",
        code_verifier_encrypted=encryption.encrypt(auth.code_verifier),
    )
    return attempt, auth.url, auth.state


@transaction.atomic
def signin_receive_code(*, attempt_id: int, code: str) -> None:
    """Keep the code (encrypted) and let a task exchange it."""
    attempt = SignInAttempt.objects.select_for_update().get(pk=attempt_id)
    if attempt.state != State.STARTED or not attempt.code_verifier_encrypted:
        raise SignInRefused("This sign-in was already used. Log in again.")
    if not code or len(code) > 2048 or not code.isprintable():
        raise SignInRefused(
            "Salesforce sent no valid authorization code. Log in again."
        )
    attempt.code_encrypted = encryption.encrypt(code)
    attempt.state = State.EXCHANGING
    attempt.save(update_fields=["code_encrypted", "state"])
    enqueue_on_commit("connections.tasks.exchange_signin_code", attempt_id=attempt.pk)


@transaction.atomic
def signin_authorization_failed(
    *, attempt_id: int, error: str, description: str, actor: Actor
) -> str:
    """Salesforce came back with an error (the user denied access, say)."""
    attempt = (
        SignInAttempt.objects.select_for_update(of=("self",))
        .select_related("org__company")
        .get(pk=attempt_id)
    )
    # The mapped code is "unknown" for anything that is not a plain error
    # name, so the audit trail never stores what the query string carried.
    exc = salesforce.error_from_callback(error=error[:64], description=description)
    if exc.code == "access_denied":
        message = "The sign-in was cancelled at Salesforce. Log in again to continue."
        stored = message
    else:
        message = f"Salesforce did not sign you in: {exc.message}"
        # Nobody is signed in yet: the callback's text could be anyone's, so
        # only the mapped error code is kept, never the description.
        stored = f"Salesforce did not sign you in ({exc.code})."
    if attempt.state == State.STARTED:
        _refuse(attempt, stored, actor=actor, details={"error": exc.code})
    return message


def _issuers(org: SalesforceOrg) -> set[str]:
    """Accepted ``iss`` values: the login host the token came from (the
    org's My Domain, what the simulator and My Domain logins put there) and
    the generic login/test host of the org type (real Salesforce's)."""
    return {
        normalize_org_url(org.login_url, allow_legacy_instance=True),
        login_host_for(org.org_type),
    }


def _verified_user_id(
    *, org: SalesforceOrg, tokens: salesforce.TokenSet, nonce: str
) -> str:
    """Verify the id_token; return the 18-character Salesforce user ID."""
    if not tokens.id_token:
        raise InvalidIdToken("Salesforce sent no identity token.")
    jwks = salesforce.fetch_jwks(login_url=org.login_url)
    claims = verify_id_token(
        tokens.id_token,
        jwks=jwks,
        issuers=_issuers(org),
        client_id=org.client_app.consumer_key,
        nonce=nonce,
    )
    # sub is the identity URL: /id/<org>/<user> (reference §3).
    match = _ID_PATH_RE.match(urlsplit(str(claims["sub"])).path)
    try:
        org_id, user_id = to_18(match[1]), to_18(match[2])  # type: ignore[index]
    except (TypeError, InvalidSalesforceId):
        raise InvalidIdToken("The identity token names no Salesforce user.") from None
    if org_id != to_18(org.org_id) or org_id != tokens.org_id:
        raise salesforce.OrgMismatch(expected_org_id=org.org_id, actual_org_id=org_id)
    if user_id != tokens.user_id:
        raise InvalidIdToken("The identity token names another user.")
    return user_id


def _locked_exchanging(attempt_id: int) -> SignInAttempt | None:
    """The attempt, locked, while it still waits for its exchange."""
    attempt = (
        SignInAttempt.objects.select_for_update(of=("self",))
        .select_related("org__company")
        .get(pk=attempt_id)
    )
    return attempt if attempt.state == State.EXCHANGING else None


@transaction.atomic
def _finish_refused(
    attempt_id: int, message: str, details: dict[str, Any] | None = None
) -> str:
    if (attempt := _locked_exchanging(attempt_id)) is None:
        return "skipped"  # expired meanwhile; that outcome was recorded
    _refuse(attempt, message, details=details)
    return "refused"


@transaction.atomic
def _finish_matched(attempt_id: int, salesforce_user_id: str) -> str:
    """Sign in the console user linked to this Salesforce user, if any."""
    if (attempt := _locked_exchanging(attempt_id)) is None:
        return "skipped"
    details = {"salesforce_user_id": salesforce_user_id}
    link = (
        SalesforceIdentityLink.objects.select_related("user")
        .filter(
            org=attempt.org,
            salesforce_user_id__in={salesforce_user_id, salesforce_user_id[:15]},
        )
        .first()
    )
    if link is None:
        _refuse(attempt, NOT_LINKED, details=details)
        return "not_linked"
    username = link.user.get_username()
    if not link.user.is_active:
        message = "Your console user is inactive. Ask an Administrator."
        _refuse(attempt, message, details={**details, "console_user": username})
        return "inactive"
    attempt.state = State.SUCCEEDED
    attempt.user = link.user
    attempt.message = ""
    attempt.save(update_fields=["state", "user", "message"])
    _audit(
        attempt,
        outcome=AuditEvent.Outcome.SUCCESS,
        summary=f"Signed in with Salesforce user {salesforce_user_id} as {username}",
        actor=Actor(user=link.user),
        details={**details, "console_user": username},
    )
    return "succeeded"


def _take_secrets(attempt_id: int) -> tuple[SignInAttempt, str, str] | None:
    """Read and wipe the code and verifier: a code is single-use, so it is
    gone before Salesforce sees it, whatever happens next."""
    with transaction.atomic():
        attempt = (
            SignInAttempt.objects.select_for_update(of=("self",))
            .select_related("org__client_app")
            .get(pk=attempt_id)
        )
        if attempt.state != State.EXCHANGING or not attempt.code_encrypted:
            return None
        try:
            code = encryption.decrypt(attempt.code_encrypted)
            verifier = encryption.decrypt(attempt.code_verifier_encrypted)
        except encryption.SecretUnavailable:
            code = verifier = ""
        attempt.code_encrypted = attempt.code_verifier_encrypted = ""
        attempt.save(update_fields=["code_encrypted", "code_verifier_encrypted"])
    return attempt, code, verifier


def signin_exchange(*, attempt_id: int) -> str:
    """Exchange the code, verify the id_token, match a linked console user.

    Records exactly one outcome (and its audit event), then revokes the
    tokens: the console needs the identity only, never the tokens.
    """
    if (taken := _take_secrets(attempt_id)) is None:
        return "skipped"
    attempt, code, verifier = taken
    org, app = attempt.org, attempt.org.client_app
    if not (code and verifier and org.is_identity_provider and app is not None):
        return _finish_refused(
            attempt_id, "Log in with Salesforce is not available. Log in again."
        )
    tokens: salesforce.TokenSet | None = None
    try:
        tokens = salesforce.exchange_code(
            login_url=org.login_url,
            client_id=app.consumer_key,
            client_secret=app.get_consumer_secret(),
            code=code,
            redirect_uri=callback_url(),
            code_verifier=verifier,
            expected_org_id=org.org_id,
            required_scopes=("openid",),
        )
        user_id = _verified_user_id(org=org, tokens=tokens, nonce=attempt.nonce)
    except encryption.SecretUnavailable:
        outcome = _finish_refused(
            attempt_id,
            "The sign-in org's app secret cannot be read. Ask an Administrator.",
        )
    except salesforce.SalesforceError as exc:
        outcome = _finish_refused(
            attempt_id, salesforce.signin_problem(exc), {"error": exc.code}
        )
    except InvalidIdToken as exc:
        outcome = _finish_refused(
            attempt_id,
            f"Salesforce's answer could not be verified: {exc.message}",
            {"error": "invalid_id_token"},
        )
    else:
        outcome = _finish_matched(attempt_id, user_id)
    if tokens is not None:
        # After the outcome, so the browser does not wait on it: the console
        # needs the identity only, never the tokens.
        signin_tokens_revoke(org, tokens)
    return outcome


def signin_tokens_revoke(org: SalesforceOrg, tokens: salesforce.TokenSet) -> None:
    """A refresh token (the app's policy may add one) is recorded in the
    ledger and revoked by its retrying task, taking its access tokens with
    it; a lone access token is revoked best effort."""
    if not tokens.refresh_token:
        access_token_revoke_quietly(org.login_url, tokens.access_token)
        return
    token_ledger.refresh_token_record(
        token=tokens.refresh_token,
        client_app_id=org.client_app_id,
        salesforce_org_id=tokens.org_id or org.org_id,
        user_id=tokens.user_id,
        purpose=RefreshTokenRecord.Purpose.SIGNIN,
        login_url=org.login_url,
        revoke_reason=RefreshTokenRecord.RevokeReason.SIGNIN,
    )


@transaction.atomic
def signin_expire_if_stale(*, attempt_id: int) -> None:
    """Refuse an attempt whose exchange never finished (lost task message,
    crashed worker), so the browser stops waiting."""
    attempt = (
        SignInAttempt.objects.select_for_update(of=("self",))
        .select_related("org__company")
        .get(pk=attempt_id)
    )
    age = timezone.now() - attempt.created_at
    if attempt.state == State.EXCHANGING and age > EXCHANGE_TIMEOUT:
        _refuse(attempt, "Salesforce did not answer in time. Log in again.")
    elif attempt.state == State.STARTED and age > ATTEMPT_LIFETIME:
        _refuse(attempt, "This sign-in expired. Log in again.")


def signin_consume(*, attempt_id: int) -> AbstractBaseUser | None:
    """Take the user of a succeeded attempt, once; None when already taken,
    expired, or the user was deactivated meanwhile."""
    now = timezone.now()
    taken = SignInAttempt.objects.filter(
        pk=attempt_id,
        state=State.SUCCEEDED,
        consumed_at__isnull=True,
        created_at__gte=now - ATTEMPT_LIFETIME,
        user__is_active=True,
    ).update(consumed_at=now)
    if taken != 1:
        return None
    return SignInAttempt.objects.select_related("user").get(pk=attempt_id).user


# Anonymous browsers start sign-ins: what they leave behind is bounded by
# the per-address limit below and pruned after a day.
SIGNIN_STARTS_PER_ADDRESS = 10
SIGNIN_STARTS_WINDOW_SECONDS = 60
ATTEMPT_RETENTION = timedelta(days=1)


def signin_start_allowed(*, address: str | None) -> bool:
    """At most SIGNIN_STARTS_PER_ADDRESS starts a minute from one address."""
    return address_allowed(
        "signin-starts",
        address=address,
        limit=SIGNIN_STARTS_PER_ADDRESS,
        window_seconds=SIGNIN_STARTS_WINDOW_SECONDS,
    )


def signin_attempts_prune() -> int:
    """Beat: forget sign-in attempts older than a day (their outcome is in
    the audit trail)."""
    cutoff = timezone.now() - ATTEMPT_RETENTION
    deleted, _ = SignInAttempt.objects.filter(created_at__lt=cutoff).delete()
    return deleted
