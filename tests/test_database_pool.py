"""VBSF_DB_POOL_SIZE: a pool of PostgreSQL connections per process.

Read in fresh processes (settings are read once). On PostgreSQL (CI's run),
the pool is also used for real: a connection closed the way Celery's Django
fix-up closes it after every task goes back to the pool, so the next task
talks to the same PostgreSQL backend; without the pool it is a new one.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from django.db import connection

SETTINGS_OF = """
import json
import django
django.setup()
from django.conf import settings
default = settings.DATABASES["default"]
print(json.dumps({
    "pool": default.get("OPTIONS", {}).get("pool"),
    "conn_max_age": default["CONN_MAX_AGE"],
}))
"""

# Three "tasks" in one worker thread: each queries, then closes the connection
# as celery.fixups.django does after a task.
BACKENDS_OF = """
import json
import django
django.setup()
from django.db import connection
backends = []
for _ in range(3):
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        backends.append(cursor.fetchone()[0])
    connection.close()
print(json.dumps(backends))
"""


def run(script: str, **env: str) -> object:
    done = subprocess.run(
        [sys.executable, "-c", script],
        env=os.environ | env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.django_db
def test_the_pool_is_postgresql_only_and_replaces_persistent_connections() -> None:
    postgres = "postgres://postgres@127.0.0.1:5432/vbsf"
    assert run(
        SETTINGS_OF,
        VBSF_DATABASE_URL=postgres,
        VBSF_DB_POOL_SIZE="10",
        VBSF_DB_CONN_MAX_AGE="60",
    ) == {"pool": {"min_size": 1, "max_size": 10, "timeout": 10}, "conn_max_age": 0}
    assert run(
        SETTINGS_OF,
        VBSF_DATABASE_URL=postgres,
        VBSF_DB_POOL_SIZE="0",
        VBSF_DB_CONN_MAX_AGE="60",
    ) == {"pool": None, "conn_max_age": 60}
    sqlite = f"sqlite:///{os.devnull}"
    assert run(SETTINGS_OF, VBSF_DATABASE_URL=sqlite, VBSF_DB_POOL_SIZE="10") == {
        "pool": None,
        "conn_max_age": 0,
    }
    if connection.vendor != "postgresql":
        return  # a run on SQLite (make test on a laptop): nothing to connect to
    # The test database itself, through the settings as a worker reads them.
    params = connection.settings_dict
    url = (
        f"postgres://{params['USER']}@{params['HOST'] or '127.0.0.1'}:"
        f"{params['PORT'] or 5432}/{params['NAME']}"
    )
    # A pool of one: every task gets the one connection back.
    pooled = run(BACKENDS_OF, VBSF_DATABASE_URL=url, VBSF_DB_POOL_SIZE="1")
    assert len(set(pooled)) == 1, pooled
    unpooled = run(BACKENDS_OF, VBSF_DATABASE_URL=url, VBSF_DB_POOL_SIZE="0")
    assert len(set(unpooled)) == 3, unpooled  # a new backend for each task


def test_a_worker_raises_the_pool_to_one_connection_per_thread(settings) -> None:
    from types import SimpleNamespace

    from vbsf.celery import pool_for_every_thread

    options = settings.DATABASES["default"].setdefault("OPTIONS", {})
    options["pool"] = {"min_size": 1, "max_size": 10, "timeout": 10}
    try:
        pool_for_every_thread(sender=SimpleNamespace(concurrency=8))
        assert options["pool"]["max_size"] == 10  # enough already
        pool_for_every_thread(sender=SimpleNamespace(concurrency=14))
        assert options["pool"]["max_size"] == 15  # the threads and the consumer
    finally:
        del options["pool"]
