"""The words a person reads about a Salesforce error: one mapping.

Every page, task outcome and audit summary that explains a Salesforce
failure takes its text from here, so the same error reads the same
everywhere. No text carries a token, code, secret or response body: the
errors' own ``message`` and ``description`` are safe by construction.
"""

from __future__ import annotations

from vbsf import encryption

from .errors import (
    CredentialsNotActive,
    HostUnreachable,
    InactiveOrg,
    InactiveUser,
    InvalidClient,
    InvalidClientSecret,
    InvalidGrant,
    MissingScope,
    OrgMismatch,
    RateLimited,
    SalesforceError,
    TransientError,
)


def message_of(exc: BaseException) -> str:
    """The error's own safe message, or its class name."""
    return getattr(exc, "message", None) or str(exc) or exc.__class__.__name__


def connection_problem(exc: BaseException) -> str:
    """Why a stored connection does not work (health checks, URL checks)."""
    if isinstance(exc, InvalidGrant):
        description = getattr(exc, "description", "") or ""
        if "expired" in description or "revoked" in description.lower():
            return "The refresh token was revoked or expired at Salesforce."
        return (
            f"Salesforce refused the refresh token ({description or 'invalid grant'})."
        )
    if isinstance(exc, InactiveUser):
        return "The connected Salesforce user is inactive."
    if isinstance(exc, InactiveOrg):
        return "Salesforce says the org is locked, closed or suspended."
    if isinstance(exc, InvalidClientSecret | InvalidClient):
        return "Salesforce no longer accepts the client app's credentials."
    if isinstance(exc, CredentialsNotActive):
        return "Salesforce does not know the client app's consumer key any more."
    if isinstance(exc, encryption.SecretUnavailable):
        return f"A stored secret cannot be read: {exc}"
    if isinstance(exc, RateLimited):
        return "Salesforce's API request limit is exhausted for this org."
    if isinstance(exc, HostUnreachable):
        return "Salesforce did not answer at the org's URL."
    return message_of(exc)[:300]


def authorization_problem(exc: SalesforceError) -> str:
    """Why exchanging an authorization code for an org's connection failed."""
    if isinstance(exc, MissingScope):
        missing = ", ".join(sorted(exc.missing))
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
    if isinstance(exc, InvalidGrant):
        return (
            "Salesforce did not accept the sign-in (the code expired, was "
            "already used, or did not match this sign-in). Authorize again."
        )
    if isinstance(exc, TransientError | HostUnreachable):
        return (
            "Salesforce did not answer while completing the sign-in. Authorize "
            "again in a minute."
        )
    return message_of(exc)


def signin_problem(exc: SalesforceError) -> str:
    """Why a console sign-in with Salesforce failed."""
    if isinstance(exc, MissingScope):
        return (
            "The sign-in org's Salesforce app is not granted the “openid” scope. "
            "Ask an Administrator to add it to the app."
        )
    if isinstance(exc, OrgMismatch):
        return (
            "You logged in to a different Salesforce org. Log in with a user of "
            "the console's sign-in org."
        )
    if isinstance(exc, InvalidGrant):
        return "Salesforce did not accept the sign-in (it expired). Log in again."
    if isinstance(exc, TransientError | HostUnreachable):
        return "Salesforce did not answer. Try again in a minute."
    if isinstance(exc, RateLimited):
        return "Salesforce is refusing sign-ins for now. Try again later."
    return f"Salesforce refused the sign-in: {exc.message}"
