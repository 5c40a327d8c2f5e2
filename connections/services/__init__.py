"""Staged connection changes: start, probe, authorize, verify, apply.

Every write runs in one transaction; Celery tasks are enqueued on commit and
take only IDs. The org keeps its old app and tokens until
``connection_change_apply`` swaps them in (blue/green), so a change that
fails, expires or is abandoned never breaks the working connection.
"""

from .authorization import (
    connection_change_authorization_failed,
    connection_change_begin_authorization,
    connection_change_exchange,
    connection_change_receive_code,
)
from .changes import (
    MAX_REVOKE_ATTEMPTS,
    connection_change_cancel,
    connection_change_expire,
    connection_change_probe,
    connection_change_start,
    connection_changes_resume,
)
from .common import (
    ACTIVATION_SCHEDULE,
    BASE_SCOPES,
    REQUIRED_SCOPES,
    ChangeError,
    _enqueue,
    _enqueue_later,
    _tasks,
    activation_deadline,
    callback_url,
    clean_consumer_key,
    clean_consumer_secret,
    elapsed_text,
    required_scopes_for,
)
from .finish import connection_change_apply, revoke_old_token
from .verification import (
    TRANSIENT_ERRORS,
    permission_check_fail,
    permission_check_run,
    permission_check_start,
)

__all__ = [
    "ACTIVATION_SCHEDULE",
    "BASE_SCOPES",
    "MAX_REVOKE_ATTEMPTS",
    "REQUIRED_SCOPES",
    "TRANSIENT_ERRORS",
    "ChangeError",
    "_enqueue",
    "_enqueue_later",
    "_tasks",
    "activation_deadline",
    "callback_url",
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
    "connection_change_start",
    "connection_changes_resume",
    "elapsed_text",
    "permission_check_fail",
    "permission_check_run",
    "permission_check_start",
    "required_scopes_for",
    "revoke_old_token",
]
