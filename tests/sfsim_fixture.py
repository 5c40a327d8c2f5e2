"""Start the Salesforce simulator (``python -m sfsim``) for integration tests.

A plain module so any test package can reuse it::

    from tests.sfsim_fixture import sfsim_fixture, start_simulator, stop_simulator

    sfsim_server = sfsim_fixture(scope="session")  # in a conftest.py
    sim = sfsim_fixture(scope="module", name="sim")  # or in a test module

The fixture yields the simulator's base URL (``http://127.0.0.1:PORT``). The
process writes to temporary files, not pipes, so a chatty simulator can never
block on a full pipe; its log is included in the error if it fails to start.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any, Literal

import pytest

PROJECT_ROOT = Path(__file__).resolve().parent.parent
_LISTENING_RE = re.compile(r"sfsim listening on (http://\S+)")

Fixture = str | os.PathLike[str] | dict[str, Any] | None
Scope = Literal["session", "package", "module", "class", "function"]


class SimulatorError(RuntimeError):
    """The simulator did not start or did not become healthy in time."""


def _read(handle: IO[str]) -> str:
    handle.flush()
    handle.seek(0)
    return handle.read()


def _fixture_path(fixture: Fixture) -> str | None:
    if fixture is None or isinstance(fixture, str | os.PathLike):
        return None if fixture is None else os.fspath(fixture)
    with tempfile.NamedTemporaryFile(
        "w", suffix=".json", prefix="sfsim-fixture-", delete=False
    ) as handle:
        json.dump(fixture, handle)
    return handle.name


def _healthy(base_url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{base_url}/_sim/health", timeout=1) as reply:
            return bool(reply.status == 200)
    except OSError:
        return False


def start_simulator(
    port: int | None = None,
    fixture: Fixture = None,
    *,
    timeout: float = 30.0,
    quiet: bool = True,
) -> tuple[subprocess.Popen[str], str]:
    """Start ``python -m sfsim`` and wait until ``/_sim/health`` answers.

    ``port=None`` lets the simulator pick a free port. ``fixture`` is a path
    to a JSON fixture or the fixture itself as a dict. Returns the process
    and the base URL; stop it with :func:`stop_simulator`.
    """
    command = [sys.executable, "-m", "sfsim", "--host", "127.0.0.1"]
    command += ["--port", str(port or 0)]
    if (path := _fixture_path(fixture)) is not None:
        command += ["--fixture", path]
    if quiet:
        command.append("--quiet")
    # The files live as long as the process; stop_simulator() closes them.
    stdout = tempfile.TemporaryFile("w+", prefix="sfsim-out-")  # noqa: SIM115
    stderr = tempfile.TemporaryFile("w+", prefix="sfsim-err-")  # noqa: SIM115
    process = subprocess.Popen(
        command, cwd=PROJECT_ROOT, stdout=stdout, stderr=stderr, text=True
    )
    process.sfsim_logs = (stdout, stderr)  # type: ignore[attr-defined]
    deadline = time.monotonic() + timeout
    base_url = ""
    while time.monotonic() < deadline:
        if process.poll() is not None:
            break
        if not base_url and (match := _LISTENING_RE.search(_read(stdout))):
            base_url = match[1].rstrip("/")
        if base_url and _healthy(base_url):
            return process, base_url
        time.sleep(0.05)
    log = _read(stdout) + _read(stderr)
    stop_simulator(process)
    raise SimulatorError(f"sfsim did not become healthy: {command}\n{log[-4000:]}")


def stop_simulator(process: subprocess.Popen[str]) -> None:
    """Terminate the simulator started by :func:`start_simulator`."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)
    for handle in getattr(process, "sfsim_logs", ()):
        handle.close()


def sfsim_fixture(
    *,
    scope: Scope = "module",
    fixture: Fixture = None,
    port: int | None = None,
    name: str = "sfsim_server",
) -> Callable[..., Iterator[str]]:
    """Return a pytest fixture, called ``name``, that runs one simulator for
    its ``scope`` and yields the simulator's base URL."""

    @pytest.fixture(scope=scope, name=name)
    def _sfsim_server() -> Iterator[str]:
        process, base_url = start_simulator(port=port, fixture=fixture)
        try:
            yield base_url
        finally:
            stop_simulator(process)

    return _sfsim_server


__all__ = ["SimulatorError", "sfsim_fixture", "start_simulator", "stop_simulator"]
