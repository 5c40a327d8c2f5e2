"""The one way the console enqueues background work: after commit.

Services call :func:`enqueue_on_commit` inside their transaction; the task
is sent only once the transaction commits, so a worker never sees a row
that is not there yet (HackSoft's ``transaction.on_commit`` rule). Tasks
are named, not imported: a service never imports its tasks module, so the
tasks module can import the services without an import circle.
"""

from __future__ import annotations

import importlib
from typing import Any

from celery import current_app
from django.db import transaction


def task_named(name: str) -> Any:
    """The Celery task ``name`` ("app.tasks.function"); fails at once on a
    typo. Web processes do not autodiscover tasks (only workers do), so the
    task's module is imported on first use."""
    if name not in current_app.tasks:
        importlib.import_module(name.rpartition(".")[0])
    return current_app.tasks[name]


# Message priorities. The Redis transport keeps a list per priority step
# (0, 3, 6, 9) and its workers poll them in order, 0 first (the embedded
# broker ignores priorities). What a person is waiting on right now happens
# at the default, 0: an exchange that connects their org. What they read
# next comes after it: the permission check the console starts once a
# re-authorization is applied (the delegated result page shows it below
# "Connected as"). What nobody waits on comes last: the revoke of a replaced
# or abandoned token. Under a burst of delegated links every person's org
# connects first; the rest runs as soon as the worker has a free thread.
PRIORITY_FOLLOW_UP = 3
PRIORITY_BACKGROUND = 6


def enqueue_on_commit(
    name: str,
    *,
    countdown: float | None = None,
    priority: int | None = None,
    **kwargs: Any,
) -> None:
    """Send task ``name`` with keyword arguments (IDs only) after commit.

    ``robust``: a broker outage after commit must not turn a saved change
    into an error page; beat's safety nets resend what was lost.
    """
    task = task_named(name)
    options: dict[str, Any] = {}
    if countdown is not None:
        options["countdown"] = max(0.0, countdown)
    if priority is not None:
        options["priority"] = priority
    transaction.on_commit(
        lambda: task.apply_async(kwargs=kwargs, **options), robust=True
    )


def enqueue_now(name: str, *, priority: int | None = None, **kwargs: Any) -> None:
    """Send task ``name`` at once: for beat's safety nets and fan-outs that
    run outside any transaction."""
    options: dict[str, Any] = {} if priority is None else {"priority": priority}
    task_named(name).apply_async(kwargs=kwargs, **options)
