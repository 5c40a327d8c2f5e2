"""The soak: ``python -m bench.soak [--minutes 10]`` (``make soak``).

Starts the production topology on this machine (gunicorn with 2 workers,
2 Celery workers, two beats of which one may schedule, PostgreSQL database
``vbsf_soak``, a private Redis, the simulator at 100 ms latency), drives
real journeys with Locust for the given time while it SIGKILLs a worker,
restarts Redis, restarts a gunicorn worker and sends Salesforce 503 storms,
then proves from the database and the simulator that nothing was lost,
doubled or left inconsistent. Prints a table, writes
``bench/soak-results.json``, and exits non-zero when a check fails.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import re
import secrets
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from bench.common import Simulator, format_table
from bench.soak.stack import (
    Beat,
    Gunicorn,
    PrivateRedis,
    Process,
    SoakError,
    Supervisor,
    Worker,
    free_port,
)
from tests.processes import ROOT

RESULTS_PATH = ROOT / "bench" / "soak-results.json"
LOGS = ROOT / "var" / "soak"
DEFAULT_DATABASE_URL = "postgres://postgres@127.0.0.1:5432/vbsf_soak"
ADMIN = "soak-admin"
RESUME_SECONDS = 10  # beat's safety net for changes, short for the soak
FAULTS = ("worker_kill", "salesforce_503_storm", "redis_restart", "web_worker_restart")


def say(message: str) -> None:
    print(message, flush=True)


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.soak", description=__doc__)
    parser.add_argument("--minutes", type=float, default=10.0, help="load time")
    parser.add_argument("--users", type=int, default=6, help="Locust users")
    parser.add_argument("--orgs", type=int, default=24, help="orgs in the fleet")
    return parser.parse_args(argv)


# --- setting up -----------------------------------------------------------


def _recreate_database(url: str) -> None:
    import psycopg
    from psycopg import sql

    parts = urlsplit(url)
    name = parts.path.lstrip("/")
    maintenance = urlunsplit(parts._replace(scheme="postgresql", path="/postgres"))
    try:
        with psycopg.connect(maintenance, autocommit=True, connect_timeout=5) as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
                    sql.Identifier(name)
                )
            )
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    except psycopg.Error as exc:
        raise SoakError(
            f"PostgreSQL is not reachable for {name}: {exc}".strip()
            + "\nStart PostgreSQL (trust auth for user postgres on 127.0.0.1:5432)"
            " or set VBSF_SOAK_DATABASE_URL."
        ) from None


def _environment(redis: PrivateRedis, sim_url: str, web_port: int) -> dict[str, str]:
    from cryptography.fernet import Fernet

    base = {k: v for k, v in os.environ.items() if not k.startswith("VBSF_")}
    return {
        **base,
        "DJANGO_SETTINGS_MODULE": "vbsf.settings",
        "VBSF_DEBUG": "false",
        "VBSF_SECRET_KEY": secrets.token_urlsafe(50),
        "VBSF_ENCRYPTION_KEYS": Fernet.generate_key().decode(),
        "VBSF_HTTPS": "false",
        "VBSF_ALLOWED_HOSTS": "127.0.0.1,localhost",
        "VBSF_PUBLIC_URL": f"http://127.0.0.1:{web_port}",
        "VBSF_DATABASE_URL": os.environ.get("VBSF_SOAK_DATABASE_URL")
        or DEFAULT_DATABASE_URL,
        "VBSF_DB_POOL_SIZE": "10",
        "VBSF_BROKER_URL": redis.url(0),
        "VBSF_CACHE_URL": redis.url(1),
        "VBSF_SALESFORCE_SIMULATOR_URL": sim_url,
        "VBSF_LOG_LEVEL": "INFO",
        "VBSF_EMAIL_BACKEND": "django.core.mail.backends.locmem.EmailBackend",
        "VBSF_RESUME_CHANGES_SECONDS": str(RESUME_SECONDS),
        "VBSF_METRICS_TOKEN": secrets.token_urlsafe(24),
        # Many sign-ins from one address are the load, not an attack.
        "VBSF_LOGIN_MAX_FAILURES_PER_ADDRESS": "10000",
    }


def _setup_django(env: dict[str, str]) -> None:
    os.environ.update(env)
    import django
    from django.core.management import call_command

    django.setup()
    call_command("migrate", verbosity=0, interactive=False)
    call_command("createcachetable", verbosity=0)
    subprocess.run(
        [sys.executable, "manage.py", "collectstatic", "--noinput", "-v", "0"],
        cwd=ROOT,
        env=env,
        check=True,
    )


def _seed(sim: Any, web_url: str, count: int) -> tuple[str, list[dict[str, Any]]]:
    """An Administrator and ``count`` orgs connected in both worlds."""
    from django.contrib.auth import get_user_model

    from companies.models import Company, Role, RoleGrant
    from connections.models import ExternalClientApp
    from orgs.models import BackupPolicy, ConnectionStatus, SalesforceOrg

    password = secrets.token_urlsafe(16)
    admin = get_user_model().objects.create_user(ADMIN, password=password)
    admin.is_staff = True
    admin.save()
    RoleGrant.objects.create(user=admin, role=Role.ADMINISTRATOR)
    companies = [Company.objects.create(name=f"Soak {n} Co") for n in "ABC"]
    orgs = []
    for n in range(count):
        name = f"soak{n:03d}"
        created = sim.create_org(name)
        username = f"admin@{name}.example"
        user_id = sim.create_user(created["org_id"], username)
        app = sim.create_app(
            created["org_id"], f"{web_url}/oauth/callback/", name=f"{name}-app"
        )
        tokens = sim.mint_tokens(app["consumer_key"], user_id)
        client_app = ExternalClientApp(
            name=f"{name}-app", consumer_key=app["consumer_key"]
        )
        client_app.set_consumer_secret(app["consumer_secret"])
        client_app.save()
        company = companies[n % len(companies)]
        org = SalesforceOrg(
            alias=name,
            org_id=created["org_id"],
            login_url=created["login_url"],
            instance_url=created["instance_url"],
            company=company,
            client_app=client_app,
            connected_as_username=username,
            status=ConnectionStatus.CONNECTED,
        )
        org.set_refresh_token(tokens["refresh_token"])
        org.save()
        BackupPolicy.objects.create(
            name=f"{name} daily", org=org, client_app=client_app, org_url=org.login_url
        )
        orgs.append(
            {
                "pk": org.pk,
                "org_id": created["org_id"],
                "username": username,
                "company": company.name,
                "extra": {"alias": name},
            }
        )
    return password, orgs


# --- faults -----------------------------------------------------------------


class Faults(threading.Thread):
    """Inject the four faults in turn, evenly over the load time."""

    def __init__(
        self,
        *,
        minutes: float,
        workers: list[Worker],
        redis: PrivateRedis,
        web: Gunicorn,
        sim: Any,
        supervisor: Supervisor,
    ) -> None:
        super().__init__(daemon=True, name="faults")
        self.seconds = minutes * 60
        self.workers, self.redis, self.web, self.sim = workers, redis, web, sim
        self.supervisor = supervisor
        self.done: list[dict[str, Any]] = []
        self.stopping = threading.Event()
        self.started = time.monotonic()

    def plan(self) -> list[float]:
        count = max(len(FAULTS), int(self.seconds // 50))
        gap = (self.seconds - 20) / count
        return [15 + i * gap for i in range(count)]

    def run(self) -> None:
        for index, at in enumerate(self.plan()):
            delay = at - (time.monotonic() - self.started)
            if self.stopping.wait(max(0.0, delay)):
                return
            kind = FAULTS[index % len(FAULTS)]
            entry = {"fault": kind, "at_s": round(time.monotonic() - self.started, 1)}
            try:
                entry["detail"] = getattr(self, kind)(index)
            except Exception as exc:  # report, keep soaking
                entry["error"] = f"{type(exc).__name__}: {exc}"[:200]
            say(f"soak: fault {entry}")
            self.done.append(entry)

    def worker_kill(self, index: int) -> str:
        worker = self.workers[(index // len(FAULTS)) % len(self.workers)]
        worker.signal(signal.SIGKILL)
        return f"SIGKILL {worker.name}; the supervisor starts it again"

    def salesforce_503_storm(self, index: int) -> str:
        fault_id = self.sim.fault(kind="error_503", path_prefix="/services/")
        self.stopping.wait(15)
        self.sim.delete(f"/faults/{fault_id}")
        return "every /services/ call answered 503 for 15 s"

    def redis_restart(self, index: int) -> str:
        self.supervisor.hold("redis")
        try:
            self.redis.stop()
            self.stopping.wait(3)
            self.redis.start()
        finally:
            self.supervisor.release("redis")
        return "redis-server stopped (SIGTERM), down 3 s, started again"

    def web_worker_restart(self, index: int) -> str:
        pid = self.web.restart_one_worker()
        return f"SIGTERM gunicorn worker {pid}; the master forks another"


# --- running ----------------------------------------------------------------


def _run_locust(
    env: dict[str, str], config: Path, web_url: str, minutes: float, users: int
) -> tuple[int, Path]:
    prefix = LOGS / "locust"
    command = [sys.executable, "-m", "locust", "-f", "bench/soak/locustfile.py"]
    command += ["--headless", "--users", str(users), "--spawn-rate", str(users)]
    command += ["--run-time", f"{int(minutes * 60)}s", "--host", web_url]
    command += ["--csv", str(prefix), "--only-summary", "--exit-code-on-error", "0"]
    command += ["--stop-timeout", "30", "--loglevel", "WARNING"]
    with (LOGS / "locust.log").open("wb") as log:
        result = subprocess.run(
            command,
            cwd=ROOT,
            env={**env, "VBSF_SOAK_CONFIG": str(config)},
            stdout=log,
            stderr=subprocess.STDOUT,
            timeout=minutes * 60 + 120,
        )
    return result.returncode, prefix


def _locust_figures(prefix: Path) -> dict[str, Any]:
    import csv

    path = Path(f"{prefix}_stats.csv")
    if not path.exists():
        return {}
    rows = list(csv.DictReader(path.open()))
    total = next((r for r in rows if r["Name"] == "Aggregated"), None)
    if total is None:
        return {}
    return {
        "requests": int(total["Request Count"]),
        "failures": int(total["Failure Count"]),
        "p50_ms": float(total["50%"]),
        "p95_ms": float(total["95%"]),
        "p99_ms": float(total["99%"]),
        "requests_per_s": round(float(total["Requests/s"]), 2),
    }


def _beat_check(beats: list[Beat], seconds: float) -> dict[str, Any]:
    """Two beats ran; the safety net must have been sent at most once per
    interval (a doubled schedule would send it twice as often)."""
    sent = {b.name: b.output().count("resume-connection-changes") for b in beats}
    sends = [
        line
        for b in beats
        for line in b.output().splitlines()
        if "Sending due task resume-connection-changes" in line
    ]
    stamps = sorted(
        datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S").timestamp()
        for line in sends
        if (m := re.match(r"(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d)", line))
    )
    too_close = sum(1 for a, b in itertools.pairwise(stamps) if b - a < 5)
    expected = seconds / RESUME_SECONDS
    return {
        "sends_by_beat": sent,
        "sends": len(sends),
        "expected_at_most": int(expected) + 3,
        "sends_closer_than_half_an_interval": too_close,
        "passed": len(sends) <= expected + 3 and too_close == 0 and len(sends) > 0,
    }


def _metrics(web_url: str, token: str) -> dict[str, Any]:
    import requests
    from prometheus_client.parser import text_string_to_metric_families

    response = requests.get(
        f"{web_url}/metrics", headers={"Authorization": f"Bearer {token}"}, timeout=30
    )
    response.raise_for_status()
    figures: dict[str, Any] = {"salesforce_requests": {}, "task_failures": {}}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            if sample.name == "vbsf_salesforce_requests_total" and sample.value:
                figures["salesforce_requests"][sample.labels["outcome"]] = int(
                    sample.value
                )
            if sample.name == "vbsf_task_failures_total" and sample.value:
                figures["task_failures"][sample.labels["task"]] = int(sample.value)
            if sample.name == "vbsf_task_runs_total" and sample.value:
                figures["task_runs"] = figures.get("task_runs", 0) + int(sample.value)
    return figures


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    LOGS.mkdir(parents=True, exist_ok=True)
    for old in LOGS.glob("*"):
        old.unlink()
    started = time.monotonic()
    simulator = Simulator()
    processes: list[Process] = []
    supervisor: Supervisor | None = None
    redis_server: PrivateRedis | None = None
    try:
        redis_server = PrivateRedis(LOGS)
        redis_server.start()
        sim_url = simulator.start()
        simulator.set_latency(100)
        web_port = free_port()
        env = _environment(redis_server, sim_url, web_port)
        _recreate_database(env["VBSF_DATABASE_URL"])
        _setup_django(env)
        web_url = f"http://127.0.0.1:{web_port}"
        password, orgs = _seed(simulator.sim, web_url, args.orgs)
        say(f"soak: {len(orgs)} orgs seeded; starting the stack")
        web = Gunicorn(env, LOGS, web_port)
        workers = [Worker(env, LOGS, 1), Worker(env, LOGS, 2)]
        beats = [Beat(env, LOGS, 1), Beat(env, LOGS, 2)]
        processes = [web, *workers, *beats]
        for process in processes:
            process.start()
        supervisor = Supervisor([redis_server, *processes])
        supervisor.start()
        config = LOGS / "config.json"
        journal_path = LOGS / "journal.jsonl"
        config.write_text(
            json.dumps(
                {
                    "web_url": web_url,
                    "sim_url": sim_url,
                    "username": ADMIN,
                    "password": password,
                    "orgs": orgs,
                    "journal": str(journal_path),
                }
            )
        )
        faults = Faults(
            minutes=args.minutes,
            workers=workers,
            redis=redis_server,
            web=web,
            sim=simulator.sim,
            supervisor=supervisor,
        )
        say(f"soak: {args.users} users for {args.minutes:g} min, with faults")
        load_started = time.monotonic()
        faults.start()
        code, prefix = _run_locust(env, config, web_url, args.minutes, args.users)
        faults.stopping.set()
        faults.join(30)
        load_seconds = time.monotonic() - load_started
        simulator.sim.clear_faults()
        return _verify(
            args,
            code=code,
            prefix=prefix,
            journal_path=journal_path,
            env=env,
            web_url=web_url,
            sim=simulator.sim,
            faults=faults,
            beats=beats,
            supervisor=supervisor,
            load_seconds=load_seconds,
            started=started,
        )
    except SoakError as exc:
        print(f"soak: {exc}", file=sys.stderr)
        return 2
    finally:
        if supervisor is not None:
            supervisor.stop()
        for process in reversed(processes):
            process.stop()
        simulator.stop()
        if redis_server is not None:
            redis_server.stop()
            redis_server.cleanup()


def _verify(args: argparse.Namespace, **run: Any) -> int:
    from bench.soak import checks

    entries = checks.journal(run["journal_path"])
    drained = checks.drain(180, say)
    left = checks.recheck_all(120)
    results = [
        checks.changes_once(entries),
        checks.audit_once(),
        checks.tokens_held(run["sim"]),
        checks.statuses_true(run["sim"]),
    ]
    beat = _beat_check(run["beats"], run["load_seconds"] + drained)
    results.append(
        checks.Check(
            "one beat schedules (two running)",
            beat["passed"],
            f"{beat['sends']} sends of the safety net, at most "
            f"{beat['expected_at_most']} expected",
        )
    )
    locust = _locust_figures(run["prefix"])
    journeys = Counter(e["journey"] for e in entries)
    succeeded = Counter(e["journey"] for e in entries if e.get("ok"))
    try:
        metrics = _metrics(run["web_url"], run["env"]["VBSF_METRICS_TOKEN"])
    except Exception as exc:  # the figures are a report, not a check
        metrics = {"error": str(exc)[:200]}
    report = {
        "generated_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "minutes": args.minutes,
        "users": args.users,
        "orgs": args.orgs,
        "locust_exit_code": run["code"],
        "web": locust,
        "journeys": {
            name: {"run": journeys[name], "succeeded": succeeded[name]}
            for name in sorted(journeys)
        },
        "faults": run["faults"].done,
        "restarts_by_supervisor": run["supervisor"].restarts,
        "beat": beat,
        "orgs_not_rechecked": left,
        "url_checks_waiting_for_beat_resend": checks.url_checks_waiting(),
        "drain_seconds": round(drained, 1),
        "metrics": metrics,
        "checks": [
            {
                "name": c.name,
                "passed": c.passed,
                "detail": c.detail,
                "problems": c.problems[:20],
                "notes": c.notes[:20],
            }
            for c in results
        ],
        "duration_s": round(time.monotonic() - run["started"], 1),
    }
    RESULTS_PATH.write_text(json.dumps(report, indent=2) + "\n")
    _print(report)
    return 0 if all(c.passed for c in results) and locust else 1


def _print(report: dict[str, Any]) -> None:
    web = report["web"]
    rows = [
        ["web requests", web.get("requests", 0)],
        ["web failures (during faults)", web.get("failures", 0)],
        ["p50 web latency, ms", web.get("p50_ms", float("nan"))],
        ["p95 web latency, ms (reported)", web.get("p95_ms", float("nan"))],
        ["requests per second", web.get("requests_per_s", float("nan"))],
    ]
    for name, counts in report["journeys"].items():
        rows.append(
            [f"journey {name} (ok/run)", f"{counts['succeeded']}/{counts['run']}"]
        )
    for fault, n in Counter(f["fault"] for f in report["faults"]).items():
        rows.append([f"fault {fault}", n])
    say(
        "\n"
        + format_table(f"Soak, {report['minutes']:g} min", ["figure", "value"], rows)
    )
    checks_rows = [
        ["pass" if c["passed"] else "FAIL", c["name"], c["detail"]]
        for c in report["checks"]
    ]
    say("\n" + format_table("Checks", ["", "check", "detail"], checks_rows))
    for c in report["checks"]:
        for problem in c["problems"]:
            say(f"  {c['name']}: {problem}")
        for note in c.get("notes", []):
            say(f"  note, {c['name']}: {note}")
    passed = sum(1 for c in report["checks"] if c["passed"])
    say(
        f"\nsoak: {passed} of {len(report['checks'])} checks passed; "
        f"wrote {RESULTS_PATH.relative_to(ROOT)}"
    )


if __name__ == "__main__":
    sys.exit(main())
