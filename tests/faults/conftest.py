"""Fault-injection fixtures: workers this package may kill, and a stack on them.

The session worker of ``tests/live.py`` is stopped (it is idle, so SIGKILL
loses nothing) while these tests run, so the only consumer of the broker is
a worker the test controls: it kills it with SIGKILL, restarts it, or starts
it with other settings. The session worker is started again, on a purged
broker, when the package is done, so later tests still have it.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.live import Worker, purge_broker


class Workers:
    """The one worker the fault tests run on, restartable with other env."""

    def __init__(self, base_env: dict[str, str]) -> None:
        # Salesforce calls give up after 2 s and health checks retry after
        # 0.05 s or more, so timeouts and retries are quick to test.
        self.base_env = {
            **base_env,
            "VBSF_SALESFORCE_READ_TIMEOUT": "2",
            "VBSF_HEALTH_RETRY_BACKOFF_SECONDS": "0.05",
        }
        self.overrides: dict[str, str] = {}
        self.current = Worker(dict(self.base_env))

    def use(self, **overrides: str) -> Worker:
        """A running worker with exactly these env overrides."""
        running = self.current.process and self.current.process.poll() is None
        if running and overrides == self.overrides:
            return self.current
        self.current.kill()  # idle between tests; a warm shutdown takes seconds
        self.overrides = dict(overrides)
        self.current = Worker({**self.base_env, **overrides})
        self.current.start()
        return self.current

    def kill(self) -> None:
        """SIGKILL: no warm shutdown, nothing acknowledged or given back."""
        self.current.kill()

    def restart(self) -> Worker:
        self.current.kill()
        self.current.start()
        return self.current


@pytest.fixture(scope="package")
def workers(worker: Worker, django_db_blocker: Any) -> Iterator[Workers]:
    worker.kill()  # idle by now; a warm shutdown would take seconds
    own = Workers(worker.env)
    try:
        yield own
    finally:
        own.current.kill()
        with django_db_blocker.unblock():
            purge_broker()
        worker.start()


@pytest.fixture
def fault_stack(stack: Any, workers: Workers) -> Any:
    """``stack`` on a worker of this package, running with default settings."""
    stack.workers = workers
    stack.worker = workers.use()
    return stack
