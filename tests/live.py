"""Live parts for integration and browser tests: the simulator over HTTP and a real
Celery worker process on the configured broker (the embedded filesystem
broker by default, Redis in CI) and the test database."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, NoReturn

import pytest
from django.conf import settings as django_settings
from django.db import connection

from tests.processes import CeleryWorkerProcess
from tests.sfsim_fixture import start_simulator, stop_simulator
from tests.simclient import Sim

ROOT = Path(__file__).resolve().parents[1]
# The worker writes emails here, so tests can read what contacts received.
EMAIL_DIR = Path(tempfile.gettempdir()) / f"vbsf-test-mail-{os.getpid()}"


def missing_dependency(reason: str) -> NoReturn:
    """Skip on a laptop without a system package; fail in CI, where
    VBSF_STRICT_TESTS=true and every dependency must be installed."""
    if os.environ.get("VBSF_STRICT_TESTS") == "true":
        pytest.fail(f"{reason} (required when VBSF_STRICT_TESTS=true)")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def sim_url() -> Iterator[str]:
    process, base_url = start_simulator()
    try:
        yield base_url
    finally:
        stop_simulator(process)


@pytest.fixture
def sim(sim_url: str) -> Sim:
    client = Sim(sim_url)
    client.reset()
    return client


def database_url() -> str:
    params = connection.settings_dict
    if params["ENGINE"].endswith("sqlite3"):
        return f"sqlite:///{params['NAME']}"
    user = params.get("USER") or ""
    password = f":{params['PASSWORD']}" if params.get("PASSWORD") else ""
    auth = f"{user}{password}@" if user else ""
    host = params.get("HOST") or "127.0.0.1"
    port = params.get("PORT") or 5432
    return f"postgres://{auth}{host}:{port}/{params['NAME']}"


def purge_broker() -> None:
    from vbsf.celery import app

    if django_settings.CELERY_BROKER_URL.startswith("filesystem"):
        for key in ("data_folder_in", "processed_folder"):
            folder = django_settings.CELERY_BROKER_TRANSPORT_OPTIONS.get(key)
            if folder:
                shutil.rmtree(folder, ignore_errors=True)
                os.makedirs(folder, exist_ok=True)
    else:
        with app.connection_for_write() as conn:
            conn.default_channel.queue_purge("celery")


class Worker(CeleryWorkerProcess):
    """A real ``celery worker`` process against the test database."""


@pytest.fixture(scope="session")
def worker(
    django_db_setup, django_db_blocker, live_server, sim_url
) -> Iterator[Worker]:
    env = {
        **{k: v for k, v in os.environ.items() if k != "DJANGO_ALLOW_ASYNC_UNSAFE"},
        "VBSF_DATABASE_URL": database_url(),
        "VBSF_SALESFORCE_SIMULATOR_URL": sim_url,
        "VBSF_PUBLIC_URL": live_server.url,
        "VBSF_SALESFORCE_RETRY_BACKOFF": "0.05",
        "VBSF_SALESFORCE_READ_TIMEOUT": "3",
        "VBSF_SALESFORCE_CONNECT_TIMEOUT": "2",
        "VBSF_HEALTH_RETRY_BACKOFF_SECONDS": "0.2",
        # The worker's queue folder is this test run's, not its own pid's.
        "VBSF_CELERY_DATA_DIR": str(django_settings.CELERY_DATA_DIR),
        "VBSF_EMAIL_BACKEND": "django.core.mail.backends.filebased.EmailBackend",
        "VBSF_EMAIL_FILE_PATH": str(EMAIL_DIR),
    }
    with django_db_blocker.unblock():
        purge_broker()
    process = Worker(env)
    process.start()
    try:
        yield process
    finally:
        process.stop()
        if django_settings.CELERY_BROKER_URL.startswith("filesystem"):
            shutil.rmtree(django_settings.CELERY_DATA_DIR, ignore_errors=True)


@pytest.fixture
def stack(settings, transactional_db, live_server, sim, worker) -> Any:
    """The console as in production: live web server, simulator, worker."""
    settings.SALESFORCE_SIMULATOR_URL = sim.base_url
    settings.PUBLIC_URL = live_server.url
    settings.SALESFORCE_RETRY_BACKOFF = 0.05
    settings.SALESFORCE_READ_TIMEOUT = 3
    return type("Stack", (), {"sim": sim, "url": live_server.url, "worker": worker})


def wait_for(
    predicate: Callable[[], Any], timeout: float = 30, interval: float = 0.2
) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if result := predicate():
            return result
        time.sleep(interval)
    raise AssertionError(f"condition not met within {timeout}s")


def mailed(to: str, pattern: str) -> str:
    """What ``pattern`` matches in the mail to ``to`` that the live worker
    wrote (the file backend, EMAIL_DIR), waiting for it."""

    def find() -> str | None:
        for path in sorted(EMAIL_DIR.glob("*.log")):
            for message in path.read_text().split("-" * 79):
                if f"To: {to}" in message and (m := re.search(pattern, message)):
                    return m.group(0)
        return None

    return wait_for(find)


@contextlib.contextmanager
def private_redis(folder: Path) -> Iterator[str]:
    """A ``redis-server`` of the test's own on a free port, keeping nothing
    on disk; yields its URL and stops it on the way out."""
    import redis

    binary = shutil.which("redis-server")
    if binary is None:
        missing_dependency("redis-server is not installed")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    process = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", ""],
        cwd=folder,
        stdout=subprocess.DEVNULL,
    )

    def pings() -> bool:
        try:
            return bool(redis.Redis(port=port).ping())
        except redis.RedisError:
            return False

    try:
        wait_for(pings, timeout=20)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        process.kill()
        process.wait(10)
