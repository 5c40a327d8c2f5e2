"""Shared plumbing of the benchmarks: environment, database, broker, live
processes (simulator, Celery worker), statistics and table printing.

Nothing here imports Django at module level: ``prepare_environment`` must
set the ``VBSF_*`` variables before ``django.setup()`` reads the settings.
"""

from __future__ import annotations

import contextlib
import os
import platform
import secrets
import statistics
import subprocess
import tempfile
import time
import warnings
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

from tests.processes import CeleryWorkerProcess

ROOT = Path(__file__).resolve().parent.parent
RESULTS_PATH = ROOT / "bench" / "results.json"

DEFAULT_DATABASE_URL = "postgres://postgres@127.0.0.1:5432/vbsf_bench"
DEFAULT_BROKER_URL = "redis://127.0.0.1:6379/12"
# The callback URL the simulator's apps are registered with; the console
# builds it from VBSF_PUBLIC_URL. Nothing listens there: the benchmark hands
# the callback to the console in-process.
PUBLIC_URL = "http://127.0.0.1:8000"

T = TypeVar("T")


class BenchError(RuntimeError):
    """A benchmark cannot run; the message says what to fix."""


@dataclass
class BenchEnv:
    """Where the benchmark's state lives, decided before Django starts."""

    database_url: str
    broker_url: str
    own_database: bool
    own_broker_db: bool
    quick: bool
    # The health check's fleet size (``--orgs``); None for the default.
    orgs: int | None = None
    simulator_url: str = ""
    base_env: dict[str, str] = field(default_factory=dict)


# --- environment ------------------------------------------------------------


def _fernet_key() -> str:
    from cryptography.fernet import Fernet

    return Fernet.generate_key().decode()


def prepare_environment(*, quick: bool, orgs: int | None = None) -> BenchEnv:
    """Set the ``VBSF_*`` variables the console reads, production-like.

    Debug is off (templates and queries are not instrumented), keys are
    generated for this run, the database is PostgreSQL and the broker Redis.
    Other ``VBSF_*`` variables of the caller's shell are dropped so a run
    is reproducible; ``VBSF_BENCH_DATABASE_URL`` and ``VBSF_BENCH_BROKER_URL``
    point the benchmark at other servers.
    """
    database_url = os.environ.get("VBSF_BENCH_DATABASE_URL", "").strip()
    broker_url = os.environ.get("VBSF_BENCH_BROKER_URL", "").strip()
    for name in list(os.environ):
        if name.startswith("VBSF_") and not name.startswith("VBSF_BENCH_"):
            del os.environ[name]
    env = BenchEnv(
        database_url=database_url or DEFAULT_DATABASE_URL,
        broker_url=broker_url or DEFAULT_BROKER_URL,
        own_database=not database_url,
        own_broker_db=not broker_url,
        quick=quick,
        orgs=orgs,
    )
    env.base_env = {
        "DJANGO_SETTINGS_MODULE": "vbsf.settings",
        "VBSF_DEBUG": "false",
        "VBSF_SECRET_KEY": secrets.token_urlsafe(50),
        "VBSF_ENCRYPTION_KEYS": _fernet_key(),
        "VBSF_HTTPS": "false",
        "VBSF_ALLOWED_HOSTS": "testserver,127.0.0.1,localhost",
        "VBSF_PUBLIC_URL": PUBLIC_URL,
        "VBSF_DATABASE_URL": env.database_url,
        # As in .env.example: a connection pool per process, like production.
        "VBSF_DB_POOL_SIZE": "10",
        "VBSF_BROKER_URL": env.broker_url,
        "VBSF_LOG_LEVEL": "WARNING",
        # Never let the beat-style periodic jobs or mails interfere.
        "VBSF_EMAIL_BACKEND": "django.core.mail.backends.locmem.EmailBackend",
    }
    os.environ.update(env.base_env)
    os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
    return env


def _maintenance_url(database_url: str) -> tuple[str, str]:
    parts = urlsplit(database_url)
    name = parts.path.lstrip("/")
    if not name:
        raise BenchError(f"No database name in {database_url!r}.")
    return urlunsplit(parts._replace(path="/postgres")), name


def _psycopg_dsn(url: str) -> str:
    # psycopg understands postgresql:// URLs; dj-database-url also takes
    # postgres:// and pgsql://.
    parts = urlsplit(url)
    return urlunsplit(parts._replace(scheme="postgresql"))


def check_services(env: BenchEnv) -> None:
    """Fail early, with a clear message, when PostgreSQL or Redis is down."""
    import psycopg
    import redis

    if not env.database_url.startswith(("postgres://", "postgresql://", "pgsql://")):
        raise BenchError(
            f"The benchmark needs PostgreSQL; {env.database_url!r} is not a "
            "postgres:// URL (set VBSF_BENCH_DATABASE_URL)."
        )
    target = (
        _maintenance_url(env.database_url)[0] if env.own_database else env.database_url
    )
    try:
        with psycopg.connect(_psycopg_dsn(target), connect_timeout=5) as conn:
            conn.execute("SELECT 1")
    except psycopg.Error as exc:
        raise BenchError(
            f"PostgreSQL is not reachable at {_redact(target)}: {exc}".strip()
            + "\nStart PostgreSQL (trust auth for user postgres on 127.0.0.1:5432) "
            "or set VBSF_BENCH_DATABASE_URL."
        ) from None
    try:
        redis.Redis.from_url(env.broker_url, socket_connect_timeout=5).ping()
    except redis.RedisError as exc:
        raise BenchError(
            f"Redis is not reachable at {_redact(env.broker_url)}: {exc}"
            "\nStart Redis on 127.0.0.1:6379 or set VBSF_BENCH_BROKER_URL."
        ) from None


def _redact(url: str) -> str:
    parts = urlsplit(url)
    if parts.password:
        netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
        return urlunsplit(parts._replace(netloc=netloc))
    return url


def recreate_database(env: BenchEnv) -> None:
    """Drop and create the benchmark's own database (not a given one)."""
    import psycopg
    from psycopg import sql

    if not env.own_database:
        return
    maintenance, name = _maintenance_url(env.database_url)
    with psycopg.connect(_psycopg_dsn(maintenance), autocommit=True) as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
                sql.Identifier(name)
            )
        )
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))


def setup_django(env: BenchEnv) -> None:
    """Start Django in this process and bring the schema up to date."""
    import django
    from django.conf import settings
    from django.core.management import call_command

    # WhiteNoise warns once per process that the (uncollected) STATIC_ROOT
    # does not exist; the benchmark does not serve static files.
    warnings.filterwarnings("ignore", "No directory at", UserWarning)
    django.setup()
    # The manifest storage needs `collectstatic` output under the project's
    # staticfiles/, which a fresh clone does not have and the benchmark must
    # not write: serve static URLs unhashed. Console pages and the Django
    # admin both go through the same storage, so the comparison is fair.
    settings.STORAGES = {
        **settings.STORAGES,
        "staticfiles": {
            "BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"
        },
    }
    call_command("migrate", verbosity=0, interactive=False)
    call_command("createcachetable", verbosity=0)
    if not env.own_database:
        call_command("flush", verbosity=0, interactive=False)


def purge_broker(env: BenchEnv) -> None:
    """Empty the broker: queued, reserved and scheduled messages alike."""
    import redis

    client = redis.Redis.from_url(env.broker_url)
    if env.own_broker_db:
        client.flushdb()
        return
    from vbsf.celery import app

    with app.connection_for_write() as conn:
        conn.default_channel.queue_purge("celery")
    client.delete("unacked", "unacked_index", "unacked_mutex")


def machine_info() -> dict[str, Any]:
    """What the figures were measured on."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SHOW server_version")
        postgres = cursor.fetchone()[0]
    import redis

    from vbsf.celery import app

    try:
        redis_version = (
            redis.Redis.from_url(app.conf.broker_url)
            .info("server")
            .get("redis_version")
        )
    except redis.RedisError:
        redis_version = None
    import django

    return {
        "cpu_count": os.cpu_count(),
        "machine": platform.machine(),
        "system": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "django": django.get_version(),
        "postgres": postgres,
        "redis": redis_version,
    }


# --- live processes ---------------------------------------------------------


class Simulator:
    """The Salesforce simulator as a subprocess, with its control client."""

    def __init__(self) -> None:
        self.process: subprocess.Popen[str] | None = None
        self.url = ""

    def start(self) -> str:
        from tests.sfsim_fixture import start_simulator

        self.process, self.url = start_simulator()
        return self.url

    @property
    def sim(self) -> Any:
        from tests.simclient import Sim

        return Sim(self.url)

    def set_latency(self, milliseconds: int) -> None:
        self.sim.post("/config", {"latency_ms": milliseconds})

    def request_count(self, path_suffix: str = "") -> int:
        entries = self.sim.requests()
        if not path_suffix:
            return len(entries)
        return sum(1 for e in entries if e["path"].endswith(path_suffix))

    def stop(self) -> None:
        from tests.sfsim_fixture import stop_simulator

        if self.process is not None:
            stop_simulator(self.process)
            self.process = None


class Worker(CeleryWorkerProcess):
    """A real ``celery worker`` (thread pool) against the benchmark's
    database, Redis broker and simulator."""

    def __init__(
        self,
        env: BenchEnv,
        *,
        name: str,
        concurrency: int,
        extra_env: dict[str, str] | None = None,
    ) -> None:
        self.name = name
        super().__init__(
            {
                **os.environ,
                **env.base_env,
                "VBSF_SALESFORCE_SIMULATOR_URL": env.simulator_url,
                **(extra_env or {}),
            },
            concurrency=concurrency,
            hostname=f"bench-{name}@%h",
            log_path=Path(tempfile.gettempdir()) / f"vbsf-bench-{name}.log",
        )

    def failure(self, message: str) -> Exception:
        return BenchError(message)

    def mark(self) -> None:
        """Remember where the log is now, for :meth:`output_since_mark`."""
        self.marked = len(self.output())

    def output_since_mark(self) -> str:
        return self.output()[getattr(self, "marked", 0) :]

    def peak_rss_mb(self) -> float:
        """Peak resident memory (VmHWM) of the worker and its children."""
        if self.process is None:
            return 0.0
        return peak_rss_mb(self.process.pid)


@contextlib.contextmanager
def running_worker(
    env: BenchEnv,
    *,
    name: str,
    concurrency: int,
    extra_env: dict[str, str] | None = None,
) -> Iterator[Worker]:
    """A fresh worker on an empty broker, stopped on the way out."""
    purge_broker(env)
    worker = Worker(env, name=name, concurrency=concurrency, extra_env=extra_env)
    worker.start()
    try:
        yield worker
    finally:
        worker.stop()


def _descendants(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # The command name may hold spaces: fields follow the last ')'.
        fields = stat[stat.rfind(")") + 2 :].split()
        children.setdefault(int(fields[1]), []).append(int(entry.name))
    found, stack = [], [pid]
    while stack:
        current = stack.pop()
        found.append(current)
        stack.extend(children.get(current, []))
    return found


def peak_rss_mb(pid: int) -> float:
    """Sum of VmHWM (peak resident set) over ``pid`` and its descendants."""
    total_kb = 0
    for process in _descendants(pid):
        try:
            status = Path(f"/proc/{process}/status").read_text()
        except OSError:
            continue
        for line in status.splitlines():
            if line.startswith("VmHWM:"):
                total_kb += int(line.split()[1])
    return round(total_kb / 1024, 1)


def cpu_by_process() -> dict[int, tuple[str, float]]:
    """CPU seconds used so far by every process: ``{pid: (name, seconds)}``."""
    tick = os.sysconf("SC_CLK_TCK")
    found: dict[int, tuple[str, float]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        name = stat[stat.find("(") + 1 : stat.rfind(")")]
        fields = stat[stat.rfind(")") + 2 :].split()
        found[int(entry.name)] = (name, (int(fields[11]) + int(fields[12])) / tick)
    return found


def cpu_breakdown(
    before: dict[int, tuple[str, float]],
    after: dict[int, tuple[str, float]],
    named: dict[str, set[int]],
) -> dict[str, float]:
    """CPU seconds spent between two ``cpu_by_process`` snapshots, by group:
    the pids in ``named``, then postgres and redis by process name, and
    everything else (other users of the machine included) as ``other``."""
    totals: dict[str, float] = {key: 0.0 for key in [*named, "postgres", "redis"]}
    totals["other"] = 0.0
    for pid, (name, seconds) in after.items():
        spent = seconds - before.get(pid, (name, 0.0))[1]
        group = next((key for key, pids in named.items() if pid in pids), None)
        if group is None:
            if name.startswith("postgres"):
                group = "postgres"
            elif name.startswith("redis"):
                group = "redis"
            else:
                group = "other"
        totals[group] += spent
    return {key: round(value, 2) for key, value in totals.items()}


# --- measuring --------------------------------------------------------------


def median(values: Iterable[float]) -> float:
    data = list(values)
    return statistics.median(data) if data else float("nan")


def timed(fn: Callable[..., T], *args: Any) -> tuple[T, float]:
    """Call ``fn(*args)``; return its result and the elapsed milliseconds."""
    started = time.perf_counter()
    result = fn(*args)
    return result, (time.perf_counter() - started) * 1000


def wait_until(
    predicate: Callable[[], T],
    *,
    timeout: float,
    interval: float = 0.1,
    what: str = "condition",
) -> T:
    """Poll ``predicate`` until it returns something truthy."""
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if result:
            return result
        if time.monotonic() > deadline:
            raise BenchError(f"Timed out after {timeout:.0f}s waiting for {what}.")
        time.sleep(interval)


def ratio(numerator: float, denominator: float) -> float:
    return round(numerator / denominator, 3) if denominator else float("nan")


def rounded(value: float, digits: int = 2) -> float:
    return round(value, digits)


# --- output -----------------------------------------------------------------


def format_table(
    title: str,
    headers: Sequence[str],
    rows: Sequence[Sequence[Any]],
    notes: Sequence[str] = (),
) -> str:
    """A plain-text table: text left-aligned, numbers right-aligned."""

    def cell(value: Any) -> str:
        if isinstance(value, bool):
            return "yes" if value else "no"
        if isinstance(value, float):
            if value != value:  # NaN
                return "-"
            return f"{value:,.2f}" if abs(value) < 1000 else f"{value:,.0f}"
        if isinstance(value, int):
            return f"{value:,}"
        return str(value)

    text = [[cell(v) for v in row] for row in rows]
    numeric = [
        all(
            isinstance(row[i], int | float) and not isinstance(row[i], bool)
            for row in rows
        )
        if rows
        else False
        for i in range(len(headers))
    ]
    widths = [max([len(h)] + [len(r[i]) for r in text]) for i, h in enumerate(headers)]

    def line(values: Sequence[str]) -> str:
        return "  ".join(
            v.rjust(w) if numeric[i] else v.ljust(w)
            for i, (v, w) in enumerate(zip(values, widths, strict=True))
        ).rstrip()

    out = [title, "=" * len(title), line(headers), line(["-" * w for w in widths])]
    out += [line(r) for r in text]
    out += [f"  {note}" for note in notes]
    return "\n".join(out)
