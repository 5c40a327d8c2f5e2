"""Every log line of every web process passes the redaction filter: an
authorization code and state sent to the OAuth callback appear in no log
of runserver or gunicorn (issue 11, point 4). The worker's log is searched
for planted secrets by the security sweep."""

from __future__ import annotations

import logging
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.live import database_url
from vbsf.logging import RedactSecretsFilter, redact

ROOT = Path(__file__).resolve().parents[2]
CODE = "aPrx-canary-code-7f3e"
STATE = "canary-state-91b2d"

pytestmark = pytest.mark.integration


def test_the_filter_redacts_code_and_state_in_a_request_line():
    line = f'"GET /oauth/callback/?code={CODE}&state={STATE} HTTP/1.1" 403'
    cleaned = redact(line)
    assert CODE not in cleaned and STATE not in cleaned
    record = logging.LogRecord("x", logging.INFO, "", 0, "%s", (line,), None)
    RedactSecretsFilter().filter(record)
    assert CODE not in record.getMessage()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def serve_and_log(command: list[str], port: int) -> str:
    env = {
        **os.environ,
        "VBSF_DATABASE_URL": database_url(),
        "VBSF_BIND": f"127.0.0.1:{port}",
        "VBSF_WEB_WORKERS": "1",
        "PYTHONUNBUFFERED": "1",
    }
    process = subprocess.Popen(
        command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    url = f"http://127.0.0.1:{port}/oauth/callback/?code={CODE}&state={STATE}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                urllib.request.urlopen(url, timeout=5)
            except urllib.error.HTTPError:
                break  # 403: the request was served (and logged)
            except OSError:
                if time.monotonic() > deadline or process.poll() is not None:
                    raise
                time.sleep(0.2)
            else:
                break
        time.sleep(0.5)
    finally:
        process.terminate()
        output, _ = process.communicate(timeout=20)
    return output.decode(errors="replace")


@pytest.mark.parametrize(
    "command",
    [
        [
            sys.executable,
            "-m",
            "gunicorn",
            "vbsf.wsgi",
            "-c",
            "python:vbsf.gunicorn_conf",
        ],
        [sys.executable, "manage.py", "runserver", "--noreload", "PORT"],
    ],
    ids=["gunicorn", "runserver"],
)
def test_no_web_server_logs_the_callback_code_or_state(transactional_db, command):
    port = free_port()
    command = [f"127.0.0.1:{port}" if part == "PORT" else part for part in command]
    log = serve_and_log(command, port)
    assert "/oauth/callback/" in log or "Forbidden" in log, log[-2000:]
    assert CODE not in log, log[-2000:]
    assert STATE not in log, log[-2000:]
