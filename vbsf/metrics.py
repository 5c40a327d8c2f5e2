"""Prometheus metrics at ``/metrics`` (text format, prometheus-client).

What is counted, and where:

* **Task runs and failures by task**, counted in the Celery worker (the
  ``task_postrun`` signal, connected below), and **Salesforce requests by
  outcome**, counted in the Salesforce client's transport, one per HTTP
  attempt. Web, workers and beat are
  separate processes, on separate hosts in production, so these counters
  live in the Django cache (Redis in production: ``INCR`` is atomic and
  every host sees it) and a custom collector reads them at scrape time.
  prometheus-client's multiprocess mode was not chosen: it sums files in
  one directory, which only works when every process shares one disk.
  Counts are kept in process memory and added to the cache in batches
  (:class:`CounterBuffer`): a round trip to the cache per Salesforce
  request and per task cost a fifth of the worker's CPU. With the embedded
  demo's database cache a batch is a read and a write, so a race may lose
  counts there; the demo does not need better.
* **Orgs by status per company** and **activation durations** are read
  from the database when scraped: the tables are the truth, and a gauge
  kept elsewhere could drift from them. ``vbsf`` sits below the apps and
  imports none of them; it names their models by label.

The endpoint (``vbsf/views.py``) is off (404) unless ``VBSF_METRICS_TOKEN``
is set; a scraper then sends it as a Bearer token.
"""

from __future__ import annotations

import atexit
import logging
import os
import threading
import time
from collections import Counter
from collections.abc import Iterable, Iterator
from datetime import timedelta
from typing import Any

import redis
from celery import current_app
from celery.signals import task_postrun, worker_process_shutdown, worker_shutdown
from django.apps import apps
from django.conf import settings
from django.core.cache import cache, caches
from django.core.cache.backends.db import DatabaseCache
from django.core.cache.backends.redis import RedisCache
from django.db import connection
from django.db.models import Count, DurationField, ExpressionWrapper, F, Q, Sum
from prometheus_client import CollectorRegistry
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

logger = logging.getLogger("vbsf.metrics")

KEY_PREFIX = "vbsf:metrics:"
# Outcomes of one Salesforce HTTP attempt, a fixed set so the collector
# knows every key to read (the cache cannot list keys).
SALESFORCE_OUTCOMES = (
    "ok",
    "redirect",
    "client_error",
    "unauthorized",
    "rate_limited",
    "server_error",
    "unavailable",
    "timeout",
    "connection_error",
)
TASK_STATES = ("success", "failure", "retry")
# Salesforce takes up to 10 minutes to activate an app; buckets in seconds.
ACTIVATION_BUCKETS = (5, 15, 30, 60, 120, 300, 600, 900)


def _key(*parts: str) -> str:
    return KEY_PREFIX + ":".join(parts)


# Counts wait in the process at most this long before they reach the cache
# (a scrape served by the process itself, and its exit, add them at once).
FLUSH_SECONDS = 5.0


def _database_cache() -> bool:
    return isinstance(caches["default"], DatabaseCache)


class CounterBuffer:
    """This process's counts that are not in the shared cache yet.

    Why: the worker counted every Salesforce request and every task with
    two round trips to the cache, which cost a fifth of its CPU (and more
    wall time, each round trip waiting for the GIL again among 8 threads).
    Now a count is a dictionary update, and the counts reach the cache in
    one round trip per flush (Redis: a MULTI/EXEC pipeline of INCRBY): at
    most every ``flush_seconds`` when a count arrives, from a timer thread
    when the process goes quiet, at each scrape this process serves, and at
    exit (``atexit``, Celery's worker shutdown signals). A process killed
    hard loses at most ``flush_seconds`` of counts.

    With the database cache, a flush is a read and a write in the caller's
    database connection: never inside the caller's transaction (a rollback
    would take the counts with it), and no timer thread (it would hold a
    database connection of its own).
    """

    def __init__(self, flush_seconds: float) -> None:
        self.flush_seconds = flush_seconds
        self._lock = threading.Lock()
        self._pending: Counter[str] = Counter()
        self._last_flush = time.monotonic()
        self._timer: threading.Timer | None = None
        self._redis: dict[str, redis.Redis] = {}

    def add(self, key: str, amount: int = 1) -> None:
        with self._lock:
            self._pending[key] += amount
            due = time.monotonic() - self._last_flush >= self.flush_seconds
            if not due and self._timer is None and not _database_cache():
                self._timer = threading.Timer(self.flush_seconds, self.flush)
                self._timer.daemon = True
                self._timer.start()
        if due and not (_database_cache() and connection.in_atomic_block):
            self.flush()

    def pending(self) -> dict[str, int]:
        with self._lock:
            return dict(self._pending)

    def clear(self) -> None:
        """Forget the counts not flushed yet (tests start from nothing)."""
        with self._lock:
            self._pending.clear()

    def flush(self) -> None:
        """Add the pending counts to the cache; never let counting break the
        work it counts."""
        with self._lock:
            pending, self._pending = self._pending, Counter()
            self._last_flush = time.monotonic()
            timer, self._timer = self._timer, None
        if timer is not None and timer is not threading.current_thread():
            timer.cancel()
        if not pending:
            return
        try:
            self._write(pending)
        except Exception:  # a cache outage must not fail a Salesforce call
            logger.debug(
                "metrics: could not add %d counts", len(pending), exc_info=True
            )
            with self._lock:  # the next flush tries again
                self._pending.update(pending)

    def _write(self, pending: Counter[str]) -> None:
        backend = caches["default"]
        if isinstance(backend, RedisCache):
            # The keys and integer values of Django's Redis cache, so
            # cache.get_many() reads them back.
            pipe = self._redis_client().pipeline(transaction=True)
            for key, amount in pending.items():
                pipe.incrby(backend.make_and_validate_key(key), amount)
            pipe.execute()
            return
        current = backend.get_many(list(pending))
        backend.set_many(
            {key: int(current.get(key, 0)) + n for key, n in pending.items()},
            timeout=None,
        )

    def _redis_client(self) -> redis.Redis:
        # Django's Redis cache writes to its first server; its client is
        # not public, so the pipeline gets one of its own (one per process:
        # redis-py reconnects after a fork).
        location = settings.CACHES["default"]["LOCATION"]
        if isinstance(location, str):
            location = location.split(",")
        url = location[0].strip()
        if url not in self._redis:
            self._redis[url] = redis.Redis.from_url(url)
        return self._redis[url]

    def after_fork(self) -> None:
        # A child starts with nothing pending: the parent's counts are the
        # parent's to flush, and its timer thread did not come along.
        self._lock = threading.Lock()
        self._pending = Counter()
        self._timer = None
        self._last_flush = time.monotonic()


counters = CounterBuffer(FLUSH_SECONDS)
os.register_at_fork(after_in_child=counters.after_fork)
atexit.register(counters.flush)


def _increment(key: str) -> None:
    counters.add(key)


def salesforce_outcome(outcome: object) -> str:
    """Map an HTTP status or an exception's name to an outcome label."""
    if isinstance(outcome, int):
        if outcome < 300:
            return "ok"
        if outcome < 400:
            return "redirect"
        if outcome in (401, 403):
            return "unauthorized"
        if outcome == 429:
            return "rate_limited"
        if outcome == 503:
            return "unavailable"
        return "server_error" if outcome >= 500 else "client_error"
    return "timeout" if "Timeout" in str(outcome) else "connection_error"


def count_salesforce_request(outcome: object) -> None:
    """One HTTP attempt to Salesforce: a status code or an exception name."""
    _increment(_key("salesforce", salesforce_outcome(outcome)))


def count_task_run(task: str, state: str) -> None:
    """One task run ended in ``state`` (success, failure, retry)."""
    if state in TASK_STATES:
        _increment(_key("task", task, state))


def _known_tasks() -> list[str]:
    # The console's Celery app is the current one (vbsf/__init__.py loads
    # it); vbsf.celery imports this module, so it is not imported here.
    # The web process never loads the tasks modules otherwise; importing
    # them again is a dictionary look-up.
    current_app.loader.import_default_modules()
    tasks = current_app.tasks
    return sorted(name for name in tasks if not name.startswith("celery."))


class ConsoleCollector(Collector):
    """Reads the counters from the cache and the gauges from the database."""

    def collect(self) -> Iterator[Metric]:
        counters.flush()  # this process's own counts, then everyone's
        yield from self._orgs()
        yield from self._tasks()
        yield from self._salesforce()
        yield self._activations()

    def _orgs(self) -> Iterable[Metric]:
        org_model = apps.get_model("orgs", "SalesforceOrg")
        family = GaugeMetricFamily(
            "vbsf_orgs",
            "Orgs by connection status and company",
            labels=["company", "status"],
        )
        rows = (
            org_model.objects.values("company__name", "status")
            .annotate(n=Count("pk"))
            .order_by("company__name", "status")
        )
        for row in rows:
            family.add_metric([row["company__name"] or "", row["status"]], row["n"])
        yield family

    def _tasks(self) -> Iterable[Metric]:
        names = _known_tasks()
        keys = [_key("task", n, s) for n in names for s in TASK_STATES]
        values = cache.get_many(keys)
        runs = CounterMetricFamily(
            "vbsf_task_runs",
            "Celery task runs by task and state",
            labels=["task", "state"],
        )
        failures = CounterMetricFamily(
            "vbsf_task_failures",
            "Celery task runs that failed, by task",
            labels=["task"],
        )
        for name in names:
            for state in TASK_STATES:
                count = int(values.get(_key("task", name, state), 0))
                runs.add_metric([name, state], count)
                if state == "failure":
                    failures.add_metric([name], count)
        yield runs
        yield failures

    def _salesforce(self) -> Iterable[Metric]:
        keys = {o: _key("salesforce", o) for o in SALESFORCE_OUTCOMES}
        values = cache.get_many(list(keys.values()))
        family = CounterMetricFamily(
            "vbsf_salesforce_requests",
            "HTTP attempts to Salesforce by outcome",
            labels=["outcome"],
        )
        for outcome, key in keys.items():
            family.add_metric([outcome], int(values.get(key, 0)))
        yield family

    def _activations(self) -> Metric:
        change_model = apps.get_model("connections", "ConnectionChange")
        took = ExpressionWrapper(
            F("activated_at") - F("activation_started_at"),
            output_field=DurationField(),
        )
        bounds = {f"le_{b}": timedelta(seconds=b) for b in ACTIVATION_BUCKETS}
        counts = (
            change_model.objects.filter(
                activated_at__isnull=False, activation_started_at__isnull=False
            )
            .annotate(took=took)
            .aggregate(
                total=Count("pk"),
                seconds=Sum("took"),
                **{
                    name: Count("pk", filter=Q(took__lte=bound))
                    for name, bound in bounds.items()
                },
            )
        )
        buckets = [(f"{b:.1f}", counts[f"le_{b}"]) for b in ACTIVATION_BUCKETS]
        buckets.append(("+Inf", counts["total"]))
        total = counts["seconds"] or timedelta(0)
        return HistogramMetricFamily(
            "vbsf_activation_duration_seconds",
            "Time Salesforce took to activate a new client app",
            buckets=buckets,
            sum_value=total.total_seconds(),
        )


def metrics_registry() -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(ConsoleCollector())
    return registry


@task_postrun.connect
def _count_task_run(sender: Any = None, state: str | None = None, **_: Any) -> None:
    # Every process that loads the tasks imports this module (the Salesforce
    # client counts through it), so the worker counts its task runs.
    if sender is not None and state:
        count_task_run(sender.name, state.lower())


@worker_shutdown.connect
@worker_process_shutdown.connect
def _flush_at_shutdown(**_: Any) -> None:
    counters.flush()
