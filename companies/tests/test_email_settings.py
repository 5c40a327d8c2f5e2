"""VBSF_EMAIL_URL configures the mail server in one variable; without it the
separate VBSF_EMAIL_* variables keep working."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SHOW = (
    "import json; from django.conf import settings as s; print(json.dumps({k: "
    "getattr(s, k, None) for k in ['EMAIL_BACKEND', 'EMAIL_HOST', 'EMAIL_PORT', "
    "'EMAIL_HOST_USER', 'EMAIL_USE_TLS', 'EMAIL_TIMEOUT', 'DEFAULT_FROM_EMAIL', "
    "'EMAIL_FILE_PATH']}))"
)


def _settings(env: dict[str, str]) -> dict:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("VBSF_")}
    result = subprocess.run(
        [sys.executable, "manage.py", "shell", "-c", SHOW],
        cwd=ROOT,
        env=clean | {"VBSF_DEBUG": "true"} | env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_email_url_sets_the_smtp_server() -> None:
    found = _settings(
        {
            "VBSF_EMAIL_URL": "submission://mailer:pa%24s@mail.example.com/"
            "?_default_from_email=console@example.com&timeout=7"
        }
    )
    assert found == found | {
        "EMAIL_BACKEND": "django.core.mail.backends.smtp.EmailBackend",
        "EMAIL_HOST": "mail.example.com",
        "EMAIL_PORT": 587,
        "EMAIL_HOST_USER": "mailer",
        "EMAIL_USE_TLS": True,
        "EMAIL_TIMEOUT": 7,
        "DEFAULT_FROM_EMAIL": "console@example.com",
    }


def test_without_it_the_separate_variables_apply() -> None:
    found = _settings(
        {
            "VBSF_EMAIL_BACKEND": "django.core.mail.backends.filebased.EmailBackend",
            "VBSF_EMAIL_FILE_PATH": "/tmp/vbsf-mail",
            "VBSF_DEFAULT_FROM_EMAIL": "alerts@example.com",
        }
    )
    assert found["EMAIL_BACKEND"].endswith("filebased.EmailBackend")
    assert found["EMAIL_FILE_PATH"] == "/tmp/vbsf-mail"
    assert found["DEFAULT_FROM_EMAIL"] == "alerts@example.com"
    assert found["EMAIL_TIMEOUT"] == 10
