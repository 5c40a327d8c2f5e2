"""The one OAuth callback: what Salesforce's redirect means for the flow
that sent the browser there.

The view pops the flow bound to the browser session (``oauth_flows``) and
hands it here; each purpose (a change, a re-authorization, a console
sign-in) keeps the code for its task or records the refusal. The view only
turns the outcome into a message and a redirect.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from django.urls import reverse

from companies.audit import Actor

from .authorization import (
    connection_change_authorization_failed,
    connection_change_receive_code,
)
from .changes import ChangeError
from .signin import SignInRefused, signin_authorization_failed, signin_receive_code

CHANGE_PURPOSES = ("change", "reauthorize", "delegated")
# Flows that start without a console sign-in: the state bound to the
# browser session (and, for a delegated link, the row claimed by that
# browser) authorises their callback.
ANONYMOUS_PURPOSES = ("signin", "delegated")


@dataclass(frozen=True)
class CallbackOutcome:
    redirect_to: str
    message: str
    ok: bool
    # The callback URL carried the code: the next page must not leak it
    # through Referer headers.
    no_referrer: bool = False


def oauth_callback_receive(
    *, flow: dict[str, Any], params: Mapping[str, str], back: str, actor: Actor
) -> CallbackOutcome | None:
    """Dispatch one callback by its flow's purpose; None for an unknown one."""
    purpose = flow.get("purpose")
    if purpose in CHANGE_PURPOSES:
        # A delegated link's person lands on the link's result page, where
        # the outcome is shown without any of the console.
        outcome = change_callback(
            change_id=int(flow["change"]), params=params, back=back
        )
        if purpose == "delegated":
            return CallbackOutcome(
                back, outcome.message, ok=outcome.ok, no_referrer=True
            )
        return outcome
    if purpose == "signin":
        return signin_callback(
            attempt_id=int(flow["attempt"]), params=params, actor=actor
        )
    return None


def change_callback(
    *, change_id: int, params: Mapping[str, str], back: str
) -> CallbackOutcome:
    if error := params.get("error"):
        message = connection_change_authorization_failed(
            change_id=change_id,
            error=error,
            description=params.get("error_description", "")[:300],
        )
        return CallbackOutcome(back, message, ok=False)
    code = params.get("code", "")
    if not code:
        return CallbackOutcome(
            back, "Salesforce sent no authorization code. Authorize again.", ok=False
        )
    try:
        connection_change_receive_code(change_id=change_id, code=code)
    except ChangeError as exc:
        return CallbackOutcome(back, str(exc), ok=False)
    return CallbackOutcome(
        back, "Signed in at Salesforce; completing the connection…", ok=True
    )


def signin_callback(
    *, attempt_id: int, params: Mapping[str, str], actor: Actor
) -> CallbackOutcome:
    login = reverse("login")
    if error := params.get("error"):
        message = signin_authorization_failed(
            attempt_id=attempt_id,
            error=error,
            description=params.get("error_description", "")[:300],
            actor=actor,
        )
        return CallbackOutcome(login, message, ok=False)
    try:
        signin_receive_code(attempt_id=attempt_id, code=params.get("code", ""))
    except SignInRefused as exc:
        return CallbackOutcome(login, str(exc), ok=False)
    wait = reverse("connections:signin-wait", kwargs={"attempt_id": attempt_id})
    return CallbackOutcome(wait, "", ok=True, no_referrer=True)
