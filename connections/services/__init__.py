"""Connection services, one module per capability; this is their public
surface (netbox-style: callers import from here or from the module).

- ``changes``: the staged change, activation probing, expiry, cancel, resume
- ``authorization``: sending the browser to Salesforce, receiving and
  exchanging the code
- ``callback``: the one OAuth callback dispatcher
- ``verification``: permission checks
- ``finish``: Finish and re-authorization apply (``org_connection_replace``)
- ``reauthorization``: starting a re-authorization
- ``revocation``: revoking replaced and abandoned refresh tokens
- ``signin``: Log in with Salesforce
- ``campaigns``: re-authorization campaigns and their rows
- ``delegation``: delegated re-authorization links (``/r/<token>/``)

Every write runs in one transaction; tasks are enqueued on commit through
``vbsf.queue`` and take only IDs.
"""

from .authorization import (
    BASE_SCOPES,
    REQUIRED_SCOPES,
    callback_url,
    connection_change_authorization_failed,
    connection_change_begin_authorization,
    connection_change_exchange,
    connection_change_receive_code,
    required_scopes_for,
)
from .callback import ANONYMOUS_PURPOSES, CallbackOutcome, oauth_callback_receive
from .changes import (
    ACTIVATION_SCHEDULE,
    ChangeError,
    activation_deadline,
    change_snapshot,
    clean_consumer_key,
    clean_consumer_secret,
    connection_change_cancel,
    connection_change_expire,
    connection_change_probe,
    connection_change_retry_secret,
    connection_change_start,
    connection_changes_resume,
    elapsed_text,
)
from .finish import (
    connection_change_apply,
    connection_keep_finish,
    org_connection_replace,
    reauthorization_apply,
    wizard_finished,
)
from .reauthorization import reauthorization_start
from .revocation import MAX_REVOKE_ATTEMPTS, revocations_resume, revoke_old_token
from .verification import (
    permission_check_fail,
    permission_check_run,
    permission_check_start,
)

__all__ = [
    "ACTIVATION_SCHEDULE",
    "ANONYMOUS_PURPOSES",
    "BASE_SCOPES",
    "MAX_REVOKE_ATTEMPTS",
    "REQUIRED_SCOPES",
    "CallbackOutcome",
    "ChangeError",
    "activation_deadline",
    "callback_url",
    "change_snapshot",
    "clean_consumer_key",
    "clean_consumer_secret",
    "connection_change_apply",
    "connection_change_authorization_failed",
    "connection_change_begin_authorization",
    "connection_change_cancel",
    "connection_change_exchange",
    "connection_change_expire",
    "connection_change_probe",
    "connection_change_receive_code",
    "connection_change_retry_secret",
    "connection_change_start",
    "connection_changes_resume",
    "connection_keep_finish",
    "elapsed_text",
    "oauth_callback_receive",
    "org_connection_replace",
    "permission_check_fail",
    "permission_check_run",
    "permission_check_start",
    "reauthorization_apply",
    "reauthorization_start",
    "required_scopes_for",
    "revocations_resume",
    "revoke_old_token",
    "wizard_finished",
]
