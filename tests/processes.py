"""A real Celery worker process, shared by the live tests (``tests/live.py``)
and the benchmarks (``bench/common.py``). Imports nothing of Django, so the
benchmarks can use it before they configure settings."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


class CeleryWorkerProcess:
    """``celery -A vbsf worker`` (thread pool) with its output in a log file."""

    def __init__(
        self,
        env: dict[str, str],
        *,
        concurrency: int = 4,
        hostname: str | None = None,
        log_path: Path | None = None,
    ) -> None:
        self.env = env
        self.concurrency = concurrency
        self.hostname = hostname
        if log_path is None:
            handle, name = tempfile.mkstemp(prefix="worker-", suffix=".log")
            os.close(handle)
            log_path = Path(name)
        self.log_path = log_path
        self.process: subprocess.Popen[bytes] | None = None

    def command(self) -> list[str]:
        command = [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "vbsf",
            "worker",
            "--pool",
            "threads",
            "--concurrency",
            str(self.concurrency),
            "--loglevel",
            "INFO",
            "--without-gossip",
            "--without-mingle",
            "--without-heartbeat",
        ]
        if self.hostname:
            command += ["--hostname", self.hostname]
        return command

    def start(self, timeout: float = 60) -> None:
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(
                self.command(),
                cwd=ROOT,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise self.failure(f"The Celery worker exited:\n{self.tail()}")
            if " ready." in self.output():
                return
            time.sleep(0.1)
        self.stop()
        raise self.failure(
            f"The Celery worker did not start in {timeout}s:\n{self.tail()}"
        )

    def failure(self, message: str) -> Exception:
        return RuntimeError(message)

    def output(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def tail(self, chars: int = 3000) -> str:
        return self.output()[-chars:]

    def kill(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(20)
        except subprocess.TimeoutExpired:
            self.kill()
