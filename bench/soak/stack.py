"""The production topology on this machine, as processes the soak controls.

gunicorn (2 workers), 2 Celery workers, 2 beats (one must schedule), a
private ``redis-server`` on its own port (so restarting it disturbs nobody),
the Salesforce simulator. PostgreSQL is the machine's, with the soak's own
database. A supervisor thread restarts what dies, as a process manager
(compose's ``restart: unless-stopped``) would.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

import redis

from tests.processes import ROOT, CeleryWorkerProcess


class SoakError(RuntimeError):
    """The soak cannot run or failed; the message says why."""


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait(check: Callable[[], object], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(Exception):
            if check():
                return
        time.sleep(0.2)
    raise SoakError(f"timed out after {timeout:.0f}s waiting for {what}")


class Process:
    """A subprocess with its output in a log file, restartable."""

    def __init__(
        self, name: str, command: list[str], env: dict[str, str], logs: Path
    ) -> None:
        self.name, self.command, self.env = name, command, env
        self.log_path = logs / f"{name}.log"
        self.process: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def start(self) -> None:
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                self.command,
                cwd=ROOT,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.starts += 1

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def signal(self, sig: int) -> None:
        if self.alive():
            assert self.process is not None
            self.process.send_signal(sig)

    def stop(self, timeout: float = 20) -> None:
        if not self.alive():
            return
        assert self.process is not None
        self.process.terminate()
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(10)

    def output(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""


class PrivateRedis(Process):
    """redis-server on its own port, persisted like production (AOF), so a
    restart keeps queued messages, the beat lock and the schedule."""

    def __init__(self, logs: Path) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise SoakError("The soak needs redis-server: apt-get install redis-server")
        self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="vbsf-soak-redis-"))
        command = [binary, "--port", str(self.port), "--bind", "127.0.0.1"]
        command += ["--dir", str(self.dir), "--save", "", "--appendonly", "yes"]
        command += ["--appendfsync", "always"]
        super().__init__("redis", command, dict(os.environ), logs)
        self.client = redis.Redis(port=self.port, socket_connect_timeout=1)

    def url(self, db: int) -> str:
        return f"redis://127.0.0.1:{self.port}/{db}"

    def start(self) -> None:
        super().start()
        wait(self.client.ping, 20, "the private redis-server")

    def cleanup(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)


class Gunicorn(Process):
    def __init__(self, env: dict[str, str], logs: Path, port: int) -> None:
        command = [sys.executable, "-m", "gunicorn", "vbsf.wsgi"]
        command += ["-c", "python:vbsf.gunicorn_conf"]
        super().__init__(
            "gunicorn",
            command,
            {**env, "VBSF_BIND": f"127.0.0.1:{port}", "VBSF_WEB_WORKERS": "2"},
            logs,
        )
        self.url = f"http://127.0.0.1:{port}"

    def start(self) -> None:
        super().start()
        wait(lambda: len(self.workers()) == 2, 60, "gunicorn's two workers")

    def workers(self) -> list[int]:
        if not self.alive():
            return []
        assert self.process is not None
        found = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            with contextlib.suppress(OSError):
                stat = (entry / "stat").read_text()
                if int(stat[stat.rfind(")") + 2 :].split()[1]) == self.process.pid:
                    found.append(int(entry.name))
        return found

    def restart_one_worker(self) -> int:
        """SIGTERM one worker: it finishes its request, the master forks a
        new one."""
        workers = self.workers()
        if not workers:
            raise SoakError("gunicorn has no worker to restart")
        os.kill(workers[0], signal.SIGTERM)
        return workers[0]


class Worker(Process):
    def __init__(self, env: dict[str, str], logs: Path, index: int) -> None:
        celery = CeleryWorkerProcess(env, concurrency=4, hostname=f"soak-{index}@%h")
        super().__init__(f"worker-{index}", celery.command(), env, logs)

    def start(self) -> None:
        size = self.log_path.stat().st_size if self.log_path.exists() else 0
        super().start()
        wait(lambda: " ready." in self.output()[size:], 90, f"{self.name}")


class Beat(Process):
    def __init__(self, env: dict[str, str], logs: Path, index: int) -> None:
        command = [sys.executable, "-m", "celery", "-A", "vbsf", "beat", "-l", "INFO"]
        super().__init__(f"beat-{index}", command, env, logs)

    def sent(self) -> int:
        return self.output().count("Sending due task")


class Supervisor(threading.Thread):
    """Restart what died, once a second, unless told to leave it down."""

    def __init__(self, processes: list[Process]) -> None:
        super().__init__(daemon=True, name="supervisor")
        self.processes = processes
        self.held: set[str] = set()
        self.restarts: dict[str, int] = {}
        self.stopping = threading.Event()
        self.lock = threading.Lock()

    def hold(self, name: str) -> None:
        with self.lock:
            self.held.add(name)

    def release(self, name: str) -> None:
        with self.lock:
            self.held.discard(name)

    def run(self) -> None:
        while not self.stopping.wait(1.0):
            with self.lock:
                dead = [
                    p
                    for p in self.processes
                    if p.name not in self.held and not p.alive()
                ]
            for process in dead:
                try:
                    process.start()
                except SoakError:
                    continue
                self.restarts[process.name] = self.restarts.get(process.name, 0) + 1

    def stop(self) -> None:
        self.stopping.set()
        self.join(5)
