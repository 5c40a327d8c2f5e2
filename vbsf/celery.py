"""Celery application: the stock Django recipe, JSON only."""

from __future__ import annotations

import fcntl
import logging
import os
import time
from typing import Any

import redis
from celery import Celery
from celery.beat import PersistentScheduler
from celery.signals import worker_init
from django.conf import settings
from redbeat import RedBeatScheduler

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "vbsf.settings")

logger = logging.getLogger("vbsf.beat")

app = Celery("vbsf")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@worker_init.connect
def pool_for_every_thread(sender: Any = None, **kwargs: object) -> None:
    """A worker of N threads holds up to N database connections at once; a
    smaller pool (VBSF_DB_POOL_SIZE) would make threads wait and then fail
    with PoolTimeout. Raised before the worker opens its first connection."""
    pool = settings.DATABASES["default"].get("OPTIONS", {}).get("pool")
    threads = int(getattr(sender, "concurrency", 0) or 0)
    if isinstance(pool, dict) and threads + 1 > pool.get("max_size", 0):
        pool["max_size"] = threads + 1  # the threads and the consumer


@app.on_after_configure.connect
def _make_broker_folders(sender: Celery, **kwargs: object) -> None:
    # kombu's filesystem transport expects its folders to exist.
    options = sender.conf.broker_transport_options or {}
    for key in (
        "data_folder_in",
        "data_folder_out",
        "processed_folder",
        "control_folder",
    ):
        if folder := options.get(key):
            os.makedirs(folder, exist_ok=True)


class FileLockScheduler(PersistentScheduler):
    """Celery's file-backed scheduler, for one beat per machine at most.

    The embedded mode (filesystem broker, database cache) runs on one
    machine, so an exclusive ``flock`` beside the schedule file is the lock:
    the kernel drops it when its holder dies, even by SIGKILL. A second beat
    waits here, before it opens the schedule (two beats opening one shelve
    file could corrupt it), and takes over when the first is gone. On Redis,
    settings choose celery-redbeat and its lock instead (see settings).
    Own code because celery ships no locking scheduler and redbeat needs
    Redis.
    """

    lock_poll_seconds = 1.0
    # redbeat's beat_init handler (imported for RedisLockScheduler) takes
    # the Redis lock of any scheduler that names one; this one does not.
    lock_key = None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._lock_file: Any = None
        super().__init__(*args, **kwargs)

    def setup_schedule(self) -> None:
        self._acquire_lock()
        super().setup_schedule()

    def _acquire_lock(self) -> None:
        path = f"{self.schedule_filename}.lock"
        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
        handle = open(path, "a+")  # noqa: SIM115 (held for the process's life)
        waiting = False
        while True:
            try:
                fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                if not waiting:
                    logger.warning(
                        "beat: another beat holds %s; waiting to take over", path
                    )
                    waiting = True
                time.sleep(self.lock_poll_seconds)
                continue
            break
        logger.info("beat: acquired the beat lock %s", path)
        self._lock_file = handle

    def close(self) -> None:
        super().close()
        if self._lock_file is not None:
            self._lock_file.close()  # releases the flock
            self._lock_file = None


class RedisLockScheduler(RedBeatScheduler):
    """celery-redbeat's scheduler (one beat holds the lock in Redis), riding
    out a short Redis outage instead of exiting.

    redbeat extends its lock on every tick; while Redis restarts that call
    fails and beat would exit, leaving nobody to schedule until the lock
    expires. Here the beat keeps its lock and tries again a second later;
    Redis persists the lock (AOF), so the same beat goes on. Had the lock
    expired meanwhile and another beat taken it, the extension is refused
    (LockNotOwnedError, not a connection error) and this beat exits.
    """

    def tick(self, *args: Any, **kwargs: Any) -> float:
        try:
            return super().tick(*args, **kwargs)
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            logger.warning("beat: Redis unreachable (%s); trying again", exc)
            return 1.0
