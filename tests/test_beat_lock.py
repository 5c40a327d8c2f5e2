"""One beat only: two beat processes started by mistake schedule once.

Real ``celery beat`` processes, on the embedded broker (a file lock) and on
a private ``redis-server`` (celery-redbeat's lock). The first beat sends
tasks; the second waits and sends nothing; when the first is killed with
SIGKILL, the second takes over.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from tests.live import missing_dependency, private_redis, wait_for

ROOT = Path(__file__).resolve().parents[1]
SENT = "Sending due task"


class Beat:
    """``celery -A vbsf beat`` with its output in a file."""

    def __init__(self, env: dict[str, str], name: str, folder: Path) -> None:
        self.env = env
        self.log = folder / f"beat-{name}.log"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> Beat:
        with self.log.open("wb") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "celery", "-A", "vbsf", "beat", "-l", "INFO"],
                cwd=ROOT,
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        return self

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def sent(self) -> int:
        return self.output().count(SENT)

    def kill(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(10)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def folder() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="vbsf-beat-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def _env(folder: Path, **extra: str) -> dict[str, str]:
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("VBSF_BROKER_URL", "VBSF_CACHE_URL"))
    }
    env.update(
        {
            "VBSF_CELERY_DATA_DIR": str(folder / "celery"),
            "VBSF_RESUME_CHANGES_SECONDS": "1",
            "VBSF_BEAT_MAX_INTERVAL": "1",
            **extra,
        }
    )
    return env


def _one_schedules_then_other_takes_over(first: Beat, second: Beat) -> None:
    first.start()
    wait_for(lambda: first.sent() >= 3, timeout=60)
    second.start()
    time.sleep(4)  # the second beat has started and ticked by now
    assert second.process and second.process.poll() is None, second.output()
    assert second.sent() == 0, second.output()
    before = first.sent()
    time.sleep(2)
    assert first.sent() > before  # the first goes on scheduling
    first.kill()
    try:
        wait_for(lambda: second.sent() >= 2, timeout=60)
    except AssertionError:
        raise AssertionError(second.output()[-3000:]) from None
    second.kill()


def test_two_embedded_beats_one_schedules(folder: Path) -> None:
    env = _env(folder)
    first, second = Beat(env, "a", folder), Beat(env, "b", folder)
    try:
        _one_schedules_then_other_takes_over(first, second)
        assert "another beat holds" in second.output()
    finally:
        first.kill()
        second.kill()


@pytest.fixture
def redis_url(folder: Path) -> Iterator[str]:
    with private_redis(folder) as url:
        yield url


def _pings(client: redis.Redis) -> bool:
    try:
        return bool(client.ping())
    except redis.RedisError:
        return False


def test_a_beat_rides_out_a_redis_restart(folder: Path) -> None:
    """Redis restarts (persisted, as in production): the beat holding the
    lock keeps it and goes on; the waiting one still sends nothing."""
    binary = shutil.which("redis-server")
    if binary is None:
        missing_dependency("redis-server is not installed")
    port = _free_port()
    command = [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", ""]
    command += ["--appendonly", "yes", "--appendfsync", "always"]
    client = redis.Redis(port=port)

    def start_redis() -> subprocess.Popen[bytes]:
        process = subprocess.Popen(command, cwd=folder, stdout=subprocess.DEVNULL)
        wait_for(lambda: _pings(client), timeout=20)
        return process

    server = start_redis()
    env = _env(folder, VBSF_BROKER_URL=f"redis://127.0.0.1:{port}/0")
    first, second = Beat(env, "a", folder), Beat(env, "b", folder)
    try:
        first.start()
        wait_for(lambda: first.sent() >= 2, timeout=60)
        second.start()
        time.sleep(3)
        server.terminate()  # SIGTERM: Redis writes its append-only file
        server.wait(20)
        time.sleep(2)
        server = start_redis()
        before = first.sent()
        wait_for(lambda: first.sent() >= before + 3, timeout=30)
        assert first.process and first.process.poll() is None, first.output()
        assert "Redis unreachable" in first.output()
        assert second.sent() == 0, second.output()
    finally:
        first.kill()
        second.kill()
        server.kill()
        server.wait(10)


def test_two_redis_beats_one_schedules(folder: Path, redis_url: str) -> None:
    # A short lock, so the takeover after a SIGKILL is quick to see.
    env = _env(folder, VBSF_BROKER_URL=redis_url, VBSF_BEAT_LOCK_TIMEOUT="3")
    first, second = Beat(env, "a", folder), Beat(env, "b", folder)
    try:
        _one_schedules_then_other_takes_over(first, second)
        assert "RedBeat" in first.output() or "redis" in first.output()
    finally:
        first.kill()
        second.kill()
