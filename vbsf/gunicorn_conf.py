"""gunicorn's configuration (``gunicorn -c python:vbsf.gunicorn_conf``).

Its access log prints request lines with their query strings, and the OAuth
callback's query carries an authorization code and state: both of its logs
pass the console's redaction filter, like every other log line.
"""

from __future__ import annotations

import os

bind = os.environ.get("VBSF_BIND", "0.0.0.0:8000")
workers = int(os.environ.get("VBSF_WEB_WORKERS", "3"))
timeout = int(os.environ.get("VBSF_WEB_TIMEOUT", "30"))
accesslog = "-"
errorlog = "-"

logconfig_dict = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"redact": {"()": "vbsf.logging.RedactSecretsFilter"}},
    "formatters": {
        "plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"},
        "json": {"()": "vbsf.logging.json_formatter"},
    },
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            # VBSF_LOG_FORMAT=json: JSON lines, as the console's (settings).
            "formatter": os.environ.get("VBSF_LOG_FORMAT", "plain"),
            "filters": ["redact"],
            "stream": "ext://sys.stdout",
        }
    },
    "loggers": {
        "gunicorn.error": {
            "handlers": ["console"],
            "level": "INFO",
            "propagate": False,
        },
        "gunicorn.access": {
            "handlers": ["console"],
            "level": "INFO",
            "propagate": False,
        },
    },
}
