"""Follow-up work queues behind what people wait on (vbsf.queue).

On a private ``redis-server``: the console's own ``enqueue_now`` sends three
revokes of old tokens (nobody waits on them), then a permission check that
follows a re-authorization, then an exchange (a person waits on it), all
before any worker runs; then a real worker with one thread starts and takes
the exchange first, the check next, the revokes last. Without priorities it
took them in the order they were sent.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from tests.live import private_redis, wait_for
from tests.processes import CeleryWorkerProcess

ROOT = Path(__file__).resolve().parents[1]

# Sent in this order, before the worker starts. The IDs match no row: each
# task finds nothing to do, which is all this test needs.
SEND = """
from django import setup
setup()
from vbsf.queue import PRIORITY_BACKGROUND, PRIORITY_FOLLOW_UP, enqueue_now
from connections.services.revocation import REVOKE_TASK
for change_id in (990001, 990002, 990003):
    enqueue_now(REVOKE_TASK, change_id=change_id, priority=PRIORITY_BACKGROUND)
enqueue_now(
    "connections.tasks.verify_permissions", check_id=990005, priority=PRIORITY_FOLLOW_UP
)
enqueue_now("connections.tasks.exchange_code", change_id=990004)
"""


@pytest.fixture
def broker_url() -> Iterator[str]:
    folder = tempfile.mkdtemp(prefix="vbsf-priorities-")
    try:
        with private_redis(Path(folder)) as url:
            yield url
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def test_a_worker_takes_what_people_wait_on_before_follow_ups(
    broker_url: str, tmp_path: Path
) -> None:
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("VBSF_BROKER_URL", "VBSF_CACHE_URL"))
    }
    env.update(
        {
            "DJANGO_SETTINGS_MODULE": "vbsf.settings",
            "VBSF_BROKER_URL": broker_url,
            "VBSF_DATABASE_URL": f"sqlite:///{tmp_path / 'priorities.sqlite3'}",
        }
    )
    subprocess.run(
        [sys.executable, "-c", SEND], cwd=ROOT, env=env, check=True, timeout=60
    )
    # Each priority has its list: revokes, the check, the exchange.
    client = redis.Redis.from_url(broker_url)
    lists = {key.decode(): client.llen(key) for key in client.keys("celery*")}
    assert sorted(lists.values()) == [1, 1, 3], lists
    worker = CeleryWorkerProcess(env, concurrency=1, log_path=tmp_path / "worker.log")
    worker.start()
    try:
        wait_for(lambda: worker.output().count(" received") >= 5, timeout=60)
    finally:
        worker.stop()
    taken = re.findall(
        r"Task connections\.tasks\.(\w+)\[[^\]]+\] received", worker.output()
    )
    assert taken == [
        "exchange_code",
        "verify_permissions",
        "revoke_old_token",
        "revoke_old_token",
        "revoke_old_token",
    ], worker.output()[-3000:]
