"""A logging filter that keeps secrets out of log lines.

Code never logs secrets on purpose; this filter is the second line of
defence for things like a library echoing a request body.
"""

from __future__ import annotations

import logging
import re

from pythonjsonlogger.json import JsonFormatter

_PATTERNS = [
    # OAuth form and query parameters.
    re.compile(
        r"(?i)\b(client_secret|refresh_token|access_token|code|code_verifier|"
        r"token|password|pw|state|nonce|id_token)=([^&\s\"']+)"
    ),
    # JSON members.
    re.compile(
        r"(?i)\"(client_secret|refresh_token|access_token|id_token|code|"
        r"consumer_secret|state|nonce)\"\s*:\s*\"([^\"]+)\""
    ),
    # Bearer headers.
    re.compile(r"(?i)\b(bearer)\s+([A-Za-z0-9._!~+/=-]{8,})"),
    # Invitation links: /invite/<one-time token>/ in request and access logs.
    re.compile(r"(?i)/invite/()([^/\s\"'?]+)"),
    # Delegated re-authorization links: /r/<signed token>/ (not /r/result/).
    re.compile(r"/r/()((?!result/)[^/\s\"'?]+)"),
    # Salesforce access tokens look like 00D<org>!<payload>.
    re.compile(r"()(00D\w{12,15}![.\w]+)"),
]


def redact(text: str) -> str:
    for pattern in _PATTERNS:
        text = pattern.sub(
            lambda m: (
                m.group(0).replace(m.group(2), "[redacted]")
                if m.group(2)
                else m.group(0)
            ),
            text,
        )
    return text


class RedactSecretsFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = redact(message)
        if cleaned != message:
            record.msg = cleaned
            record.args = None
        return True


class RedactedJsonFormatter(JsonFormatter):
    """python-json-logger's formatter (``VBSF_LOG_FORMAT=json``), one JSON
    object a line. The message already passed :class:`RedactSecretsFilter`;
    the finished line is redacted as well, because fields given as
    ``extra`` and tracebacks are not part of the message the filter cleans."""

    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record))


def json_formatter() -> RedactedJsonFormatter:
    """The JSON formatter with the fields of a line, for the console's and
    gunicorn's logging configurations alike."""
    return RedactedJsonFormatter(
        "%(asctime)s %(levelname)s %(name)s %(message)s",
        rename_fields={"asctime": "time", "levelname": "level", "name": "logger"},
    )
