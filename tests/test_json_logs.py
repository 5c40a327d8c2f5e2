"""VBSF_LOG_FORMAT=json: one JSON object a line, through the same redaction
filter; a secret canary in the message, in ``extra`` fields or in a
traceback reaches no line."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CANARY = "canary-secret-5d1e9a"

# Logs through the console's own configuration (django.setup()), as the
# web process and the worker do.
SCRIPT = f"""
import django
import logging

django.setup()
log = logging.getLogger("vbsf.test")
log.warning("exchange failed: code=%s&state=%s", "{CANARY}", "{CANARY}")
log.info("refreshed", extra={{"refresh_token": "{CANARY}", "org": "acme"}})
log.info("sent", extra={{"detail": "client_secret={CANARY}"}})
try:
    raise RuntimeError("token={CANARY}")
except RuntimeError:
    log.exception("task failed")
log.info("plain line without secrets")
"""


def _run(log_format: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "VBSF_LOG_FORMAT": log_format, "VBSF_LOG_LEVEL": "INFO"}
    env["DJANGO_SETTINGS_MODULE"] = "vbsf.settings"
    return subprocess.run(
        [sys.executable, "-c", SCRIPT],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_json_lines_are_json_and_redacted() -> None:
    result = _run("json")
    assert result.returncode == 0, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    records = [json.loads(line) for line in lines]
    assert len(records) == 5
    assert CANARY not in result.stderr
    first = records[0]
    assert first["level"] == "WARNING" and first["logger"] == "vbsf.test"
    assert "code=[redacted]" in first["message"]
    assert records[1]["org"] == "acme"
    assert records[1]["refresh_token"] == "[redacted]"
    assert "RuntimeError" in records[3]["exc_info"]
    assert records[4]["message"] == "plain line without secrets"


def test_plain_lines_stay_plain() -> None:
    result = _run("plain")
    assert result.returncode == 0, result.stderr
    assert "WARNING vbsf.test exchange failed: code=[redacted]" in result.stderr
    assert not result.stderr.lstrip().startswith("{")


def test_an_unknown_format_is_refused() -> None:
    result = _run("xml")
    assert result.returncode != 0
    assert "VBSF_LOG_FORMAT must be plain or json" in result.stderr
