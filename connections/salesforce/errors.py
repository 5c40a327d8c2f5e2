"""The client's typed errors.

Every error has a ``code``, whether it is ``permanent`` and a ``message``
that is safe to show to users: it never carries tokens, codes, secrets or
response bodies.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any


class SalesforceError(Exception):
    """Base of the client's errors; ``message`` is safe to show to users."""

    code = "salesforce_error"
    permanent = False
    default_message = "Salesforce returned an unexpected error."

    def __init_subclass__(cls, code: str = "", permanent: bool | None = None) -> None:
        cls.code = code or cls.code
        cls.permanent = cls.permanent if permanent is None else permanent

    def __init__(
        self,
        message: str | None = None,
        *,
        code: str | None = None,
        permanent: bool | None = None,
        description: str = "",
    ) -> None:
        self.message = message or self.default_message
        self.code = code or type(self).code
        self.permanent = type(self).permanent if permanent is None else permanent
        # Salesforce's short error text (error_description or REST message),
        # never a body that could echo a token.
        self.description = description
        super().__init__(self.message)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(code={self.code!r}, permanent={self.permanent})"


class CredentialsNotActive(SalesforceError, code="invalid_client_id"):
    default_message = (
        "Salesforce does not accept this consumer key yet. New or changed apps "
        "take up to 10 minutes to activate; if this persists, check the key."
    )


class InvalidClient(SalesforceError, code="invalid_client_id", permanent=True):
    default_message = "Salesforce does not recognize this consumer key."


class InvalidClientSecret(SalesforceError, code="invalid_client", permanent=True):
    default_message = "Salesforce rejected the consumer secret. Enter it again."


class InvalidGrant(SalesforceError, code="invalid_grant", permanent=True):
    default_message = "Salesforce no longer accepts this authorization; re-authorize."

    def __init__(self, message: str | None = None, **kwargs: Any) -> None:
        if message is None and kwargs.get("description"):
            message = (
                "Salesforce no longer accepts this authorization "
                f"({kwargs['description']}); re-authorize the connection."
            )
        super().__init__(message, **kwargs)


class InactiveUser(SalesforceError, code="inactive_user", permanent=True):
    default_message = "The Salesforce user of this connection is inactive."


class InactiveOrg(SalesforceError, code="inactive_org", permanent=True):
    default_message = "The Salesforce org is locked, closed or suspended."


class RedirectUriMismatch(
    SalesforceError, code="redirect_uri_mismatch", permanent=True
):
    default_message = (
        "The callback URL is not registered in the Salesforce app exactly as "
        "the console shows it."
    )


class PkceError(SalesforceError, code="invalid_request", permanent=True):
    default_message = (
        "Salesforce rejected the PKCE code verifier. Start the login again."
    )


class AccessDenied(SalesforceError, code="access_denied", permanent=True):
    default_message = "The authorization was cancelled at Salesforce."


class OrgMismatch(SalesforceError, code="org_mismatch", permanent=True):
    default_message = "These credentials belong to another Salesforce org."

    def __init__(self, *, expected_org_id: str, actual_org_id: str) -> None:
        self.expected_org_id, self.actual_org_id = expected_org_id, actual_org_id
        super().__init__(
            f"These credentials belong to Salesforce org {actual_org_id}, "
            f"not to org {expected_org_id}."
        )


class MissingScope(SalesforceError, code="missing_scope", permanent=True):
    default_message = "The Salesforce app was not granted the required OAuth scopes."

    def __init__(self, missing: Iterable[str], **kwargs: Any) -> None:
        self.missing = frozenset(missing)
        names = ", ".join(sorted(self.missing))
        message = f"The Salesforce app was not granted the OAuth scopes: {names}."
        super().__init__(message if names else None, **kwargs)


class PermissionMissing(SalesforceError, code="API_DISABLED_FOR_ORG", permanent=True):
    default_message = "API access is disabled for this Salesforce org or user."


class SessionInvalid(SalesforceError, code="INVALID_SESSION_ID"):
    default_message = "The Salesforce session expired or is invalid."


class RateLimited(SalesforceError, code="REQUEST_LIMIT_EXCEEDED"):
    default_message = "Salesforce API limits are used up; try again later."

    def __init__(self, message: str | None = None, **kwargs: Any) -> None:
        self.retry_after: float | None = kwargs.pop("retry_after", None)
        super().__init__(message, **kwargs)


class HostUnreachable(SalesforceError, code="host_unreachable"):
    default_message = (
        "Salesforce could not be reached. Check that the org exists and that "
        "its URL is right."
    )


class TransientError(SalesforceError, code="transient"):
    default_message = "Salesforce is temporarily unavailable; try again shortly."


class UnsafeUrl(SalesforceError, code="unsafe_url", permanent=True):
    default_message = "The address is not an allowed Salesforce host."


class MalformedResponse(SalesforceError, code="malformed_response"):
    default_message = "Salesforce sent a response the console could not read."


class InvalidQuery(SalesforceError, code="INVALID_FIELD", permanent=True):
    default_message = "Salesforce rejected a query of the console."


# Errors a retry can help with: the network or Salesforce failed for now
# (timeouts, connection errors, 5xx), the host did not answer, API limits
# refill, or a response came garbled. Callers that retry (Celery tasks,
# activation probes) catch this one table instead of keeping lists of their
# own. Any other error needs new credentials, a re-authorization, another
# URL or a fresh access token, never the same call again.
TRANSIENT_ERRORS: tuple[type[SalesforceError], ...] = (
    TransientError,
    HostUnreachable,
    RateLimited,
    MalformedResponse,
)
