"""Log in with Salesforce: the console's OpenID Connect sign-in (SPEC §6).

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

from celery import shared_task
from django.contrib import messages
from django.contrib.auth import login
from django.contrib.auth.base_user import AbstractBaseUser
from django.contrib.auth.decorators import login_not_required
from django.db import transaction
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_http_methods

from companies.audit import Actor, audit_record, client_ip
from companies.models import AuditEvent
from orgs.models import SalesforceOrg
from vbsf import encryption

from . import oauth_flows, salesforce
from .id_tokens import InvalidIdToken, verify_id_token
from .models import SalesforceIdentityLink, SignInAttempt
from .salesforce_urls import (
    InvalidSalesforceId,
    login_host_for,
    normalize_org_url,
    to_18,
)
from .services import callback_url

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


def _enqueue_exchange(attempt_id: int) -> None:
    transaction.on_commit(
        lambda: exchange_signin_code.apply_async(kwargs={"attempt_id": attempt_id})
    )


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
    _enqueue_exchange(attempt.pk)


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
    else:
        message = f"Salesforce did not sign you in: {exc.message}"
    if attempt.state == State.STARTED:
        _refuse(attempt, message, actor=actor, details={"error": exc.code})
    return message


def _exchange_message(exc: salesforce.SalesforceError) -> str:
    if isinstance(exc, salesforce.MissingScope):
        return (
            "The sign-in org's Salesforce app is not granted the “openid” scope. "
            "Ask an Administrator to add it to the app."
        )
    if isinstance(exc, salesforce.OrgMismatch):
        return (
            "You logged in to a different Salesforce org. Log in with a user of "
            "the console's sign-in org."
        )
    if isinstance(exc, salesforce.InvalidGrant):
        return "Salesforce did not accept the sign-in (it expired). Log in again."
    if isinstance(exc, salesforce.TransientError | salesforce.HostUnreachable):
        return "Salesforce did not answer. Try again in a minute."
    if isinstance(exc, salesforce.RateLimited):
        return "Salesforce is refusing sign-ins for now. Try again later."
    return f"Salesforce refused the sign-in: {exc.message}"


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
            attempt_id, _exchange_message(exc), {"error": exc.code}
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
        # Best effort, after the outcome, so the browser does not wait on it.
        _revoke_quietly(org, tokens)
    return outcome


def _revoke_quietly(org: SalesforceOrg, tokens: salesforce.TokenSet) -> None:
    for token in (tokens.refresh_token, tokens.access_token):
        if not token:
            continue
        try:
            salesforce.revoke(login_url=org.login_url, token=token)
        except salesforce.SalesforceError as exc:
            logger.warning("could not revoke a sign-in token (%s)", exc.code)


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


# --- task -------------------------------------------------------------------


@shared_task(ignore_result=True, acks_late=True)
def exchange_signin_code(*, attempt_id: int) -> None:
    # Never retried: the code is single-use and wiped before the exchange.
    signin_exchange(attempt_id=attempt_id)


# --- views ------------------------------------------------------------------


def _session_attempts(request: HttpRequest) -> list[int]:
    return [int(pk) for pk in request.session.get(SESSION_KEY, [])]


@login_not_required
@require_http_methods(["GET", "POST"])
def signin_start(request: HttpRequest) -> HttpResponse:
    """Send the browser to the identity-provider org's Salesforce login."""
    org = identity_provider_org()
    if org is None:
        raise Http404
    try:
        attempt, url, state = signin_begin(org=org)
    except salesforce.SalesforceError:
        messages.error(request, "Log in with Salesforce is not available right now.")
        return redirect("login")
    oauth_flows.remember(request, state=state, purpose="signin", attempt=attempt.pk)
    recent = [*_session_attempts(request), attempt.pk][-MAX_SESSION_ATTEMPTS:]
    request.session[SESSION_KEY] = recent
    return HttpResponseRedirect(url)


def signin_callback(request: HttpRequest, flow: dict[str, Any]) -> HttpResponse:
    """The OAuth callback of a sign-in: keep the code, let a task check it."""
    attempt_id = int(flow["attempt"])
    if error := request.GET.get("error"):
        message = signin_authorization_failed(
            attempt_id=attempt_id,
            error=error,
            description=request.GET.get("error_description", "")[:300],
            actor=Actor(ip_address=client_ip(request)),
        )
        messages.error(request, message)
        return redirect("login")
    try:
        signin_receive_code(attempt_id=attempt_id, code=request.GET.get("code", ""))
    except SignInRefused as exc:
        messages.error(request, str(exc))
        return redirect("login")
    response = redirect("connections:signin-wait", attempt_id=attempt_id)
    # The callback URL carried the code: keep it out of Referer headers.
    response["Referrer-Policy"] = "no-referrer"
    return response


@login_not_required
@require_GET
@never_cache
def signin_wait(request: HttpRequest, attempt_id: int) -> HttpResponse:
    """Poll the attempt; sign the browser in once the task has succeeded."""
    if attempt_id not in _session_attempts(request):
        raise Http404
    attempt = get_object_or_404(SignInAttempt, pk=attempt_id)
    if attempt.state in (State.STARTED, State.EXCHANGING):
        signin_expire_if_stale(attempt_id=attempt_id)
        attempt.refresh_from_db()
    if attempt.state == State.SUCCEEDED:
        if (user := signin_consume(attempt_id=attempt_id)) is not None:
            login(request, user, backend=BACKEND)
            return _to_dashboard(request)
        if request.user.is_authenticated and request.user.pk == attempt.user_id:
            return _to_dashboard(request)  # a second poll of the same sign-in
    context = {"attempt": attempt, "polling": attempt.state == State.EXCHANGING}
    return render(request, "connections/signin_wait.html", context)


def _to_dashboard(request: HttpRequest) -> HttpResponse:
    url = reverse("dashboard")
    if request.headers.get("HX-Request"):
        # htmx would swap a followed redirect into the page; navigate instead.
        return HttpResponse(headers={"HX-Redirect": url})
    return HttpResponseRedirect(url)
