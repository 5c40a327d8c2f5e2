"""Benchmark 3: how many probes one 10-minute activation window costs.

Salesforce takes up to 10 minutes to activate a new external client app.
The console probes the token endpoint on ``ACTIVATION_SCHEDULE`` (often at
first, then less often) instead of polling at a fixed rate. Three runs,
each against a simulator app with ``activation_delay_seconds`` of 10 minutes:

* **schedule**: the real schedule, run in-process exactly as the integration
  test ``test_activation_of_a_10_minute_app_takes_at_most_20_probes`` does it:
  ``connection_change_probe`` is called for each attempt with the console's
  clock (``timezone.now``) and the simulator's clock both moved to the
  probe's offset instead of waited on;
* **fixed 5-second polling**, for comparison: the same probe request every
  5 simulated seconds until the app answers as active;
* **real worker**: the same schedule on a real Celery worker, with time
  compressed by ``VBSF_ACTIVATION_TIME_SCALE`` (and the app's delay by the
  same factor), so the chain of countdown tasks through Redis is exercised.

Probes are counted from the simulator's request log (token endpoint calls).
"""

from __future__ import annotations

import time
from datetime import timedelta
from typing import Any
from unittest import mock

from .common import (
    PUBLIC_URL,
    BenchEnv,
    Simulator,
    format_table,
    running_worker,
    wait_until,
)

WINDOW_SECONDS = 600
POLL_SECONDS = 5
TARGET_PROBES = 20
CALLBACK = f"{PUBLIC_URL}/oauth/callback/"
TOKEN_PATH = "/services/oauth2/token"


def _connected_org(simulator: Simulator, name: str) -> tuple[Any, dict[str, Any]]:
    """A console org on a working app, and its simulator org."""
    from companies.models import Company
    from connections.models import ExternalClientApp
    from orgs.models import ConnectionStatus, SalesforceOrg

    sim = simulator.sim
    created = sim.create_org(name)
    user_id = sim.create_user(created["org_id"], f"backup@{name}.example")
    old = sim.create_app(created["org_id"], CALLBACK, name=f"{name}-old")
    tokens = sim.mint_tokens(old["consumer_key"], user_id)
    app = ExternalClientApp(name=f"{name}-old", consumer_key=old["consumer_key"])
    app.set_consumer_secret(old["consumer_secret"])
    app.save()
    org = SalesforceOrg(
        alias=name,
        org_id=created["org_id"],
        login_url=created["login_url"],
        instance_url=created["instance_url"],
        company=Company.objects.get_or_create(name="Activation Co")[0],
        client_app=app,
        connected_as_username=f"backup@{name}.example",
        status=ConnectionStatus.CONNECTED,
    )
    org.set_refresh_token(tokens["refresh_token"])
    org.save()
    return org, created


def _admin() -> Any:
    from django.contrib.auth import get_user_model

    from companies.models import Role, RoleGrant

    user, created = get_user_model().objects.get_or_create(
        username="bench-activation-admin", defaults={"is_staff": True}
    )
    if created:
        RoleGrant.objects.create(user=user, role=Role.ADMINISTRATOR, company=None)
    return user


def _start_change(org: Any, app: dict[str, str]) -> Any:
    from companies.audit import Actor
    from connections import services

    return services.connection_change_start(
        actor=Actor(user=_admin()),
        org=org,
        consumer_key=app["consumer_key"],
        consumer_secret=app["consumer_secret"],
    )


def run_schedule(simulator: Simulator, delay: int = WINDOW_SECONDS) -> dict[str, Any]:
    """The real schedule with both clocks moved (the integration test's way)
    against an app that Salesforce activates after ``delay`` seconds."""
    from connections import services, tasks

    sim = simulator.sim
    org, created = _connected_org(simulator, f"activation-schedule-{delay}")
    app = sim.create_app(
        created["org_id"],
        CALLBACK,
        name="activation-new",
        activation_delay_seconds=delay,
    )
    # The first probe would be queued on commit; here each probe is called
    # directly, so nothing may reach the broker.
    with mock.patch.object(tasks.probe_activation, "apply_async"):
        change = _start_change(org, app)
        sim.clear_requests()
        started = change.activation_started_at
        result, attempt, elapsed, offsets = "waiting", 0, 0.0, []
        while result == "waiting":
            offset = services.ACTIVATION_SCHEDULE[attempt]
            sim.advance(offset - elapsed)
            elapsed = offset
            offsets.append(offset)
            with mock.patch(
                "django.utils.timezone.now",
                return_value=started + timedelta(seconds=offset),
            ):
                result = services.connection_change_probe(
                    change_id=change.pk, attempt=attempt
                )
            attempt += 1
    return {
        "result": result,
        "probes": simulator.request_count(TOKEN_PATH),
        "attempts": attempt,
        "offsets_s": offsets,
        "detected_after_s": offsets[-1],
    }


def run_fixed_polling(simulator: Simulator) -> dict[str, Any]:
    """The same probe every 5 simulated seconds until the app is active."""
    from connections import salesforce

    sim = simulator.sim
    _, created = _connected_org(simulator, "activation-polling")
    app = sim.create_app(
        created["org_id"],
        CALLBACK,
        name="polling-new",
        activation_delay_seconds=WINDOW_SECONDS,
    )
    sim.clear_requests()
    elapsed = 0
    while True:
        answer = salesforce.probe_activation(
            login_url=created["login_url"],
            client_id=app["consumer_key"],
            client_secret=app["consumer_secret"],
        )
        if answer == salesforce.ActivationProbe.ACTIVE:
            break
        if elapsed > 2 * WINDOW_SECONDS:
            raise RuntimeError("the simulator app never became active")
        sim.advance(POLL_SECONDS)
        elapsed += POLL_SECONDS
    return {"probes": simulator.request_count(TOKEN_PATH), "detected_after_s": elapsed}


def run_real_worker(
    env: BenchEnv, simulator: Simulator, scale: float
) -> dict[str, Any]:
    """The schedule on a real worker, time compressed by ``scale``."""
    from connections.models import ConnectionChange

    sim = simulator.sim
    org, created = _connected_org(simulator, "activation-worker")
    delay = round(WINDOW_SECONDS * scale)
    with running_worker(
        env,
        name="activation",
        concurrency=4,
        extra_env={"VBSF_ACTIVATION_TIME_SCALE": str(scale)},
    ):
        app = sim.create_app(
            created["org_id"],
            CALLBACK,
            name="worker-new",
            activation_delay_seconds=delay,
        )
        sim.clear_requests()
        started = time.monotonic()
        change = _start_change(org, app)
        wait_until(
            lambda: (
                ConnectionChange.objects.get(pk=change.pk).state
                != ConnectionChange.State.AWAITING_ACTIVATION
            ),
            timeout=WINDOW_SECONDS * scale * 2 + 30,
            interval=0.05,
            what="activation on the worker",
        )
        wall = time.monotonic() - started
    change.refresh_from_db()
    return {
        "time_scale": scale,
        "app_delay_s": delay,
        "state": change.state,
        "probes": simulator.request_count(TOKEN_PATH),
        "probe_count_field": change.probe_count,
        "wall_s": round(wall, 2),
        "detected_after_simulated_s": round(wall / scale),
    }


def run(env: BenchEnv, simulator: Simulator) -> dict[str, Any]:
    from connections.services import ACTIVATION_SCHEDULE

    simulator.sim.reset()
    schedule = run_schedule(simulator)
    simulator.sim.reset()
    never = run_schedule(simulator, delay=100 * WINDOW_SECONDS)
    simulator.sim.reset()
    polling = run_fixed_polling(simulator)
    simulator.sim.reset()
    worker = run_real_worker(env, simulator, scale=0.02)
    simulator.sim.reset()
    if schedule["result"] != "active" or worker["state"] != "active":
        raise RuntimeError(f"activation was not detected: {schedule} {worker}")
    if never["result"] != "expired":
        raise RuntimeError(f"a never-activated change did not expire: {never}")
    return {
        "probes": schedule["probes"],
        "fixed_5s_polling": polling["probes"],
        "fixed_5s_polling_nominal": WINDOW_SECONDS // POLL_SECONDS,
        "ratio_to_fixed_polling": round(schedule["probes"] / polling["probes"], 3),
        "probes_real_worker": worker["probes"],
        "probes_never_activated": never["probes"],
        "window_s": WINDOW_SECONDS,
        "schedule_s": list(ACTIVATION_SCHEDULE),
        "schedule_run": schedule,
        "never_activated_run": never,
        "fixed_polling_run": polling,
        "real_worker_run": worker,
        "targets": {
            "probes_at_most": TARGET_PROBES,
            "met": schedule["probes"] <= TARGET_PROBES
            and worker["probes"] <= TARGET_PROBES
            and never["probes"] <= TARGET_PROBES,
        },
    }


def table(result: dict[str, Any]) -> str:
    schedule, polling, worker = (
        result["schedule_run"],
        result["fixed_polling_run"],
        result["real_worker_run"],
    )
    rows = [
        [
            "ACTIVATION_SCHEDULE, clocks moved (in-process)",
            schedule["probes"],
            schedule["detected_after_s"],
        ],
        [
            "worst case: the app never activates (change expires)",
            result["never_activated_run"]["probes"],
            float("nan"),
        ],
        [
            "fixed 5-second polling (same probe request)",
            polling["probes"],
            polling["detected_after_s"],
        ],
        [
            f"ACTIVATION_SCHEDULE on a real worker, time x{worker['time_scale']}",
            worker["probes"],
            worker["detected_after_simulated_s"],
        ],
    ]
    return format_table(
        f"3. Activation probing (one {result['window_s'] // 60}-minute activation "
        "window)",
        ["run", "probes seen by the simulator", "active detected after s"],
        rows,
        notes=[
            f"target: at most {result['targets']['probes_at_most']} probes; "
            f"fixed 5 s polling needs {result['fixed_5s_polling']} "
            f"({result['fixed_5s_polling_nominal']} nominal), "
            f"{result['ratio_to_fixed_polling']}x of it is spent",
            "schedule (s after saving): "
            + ", ".join(str(s) for s in result["schedule_s"]),
            f"real worker: {worker['wall_s']} s of wall time for "
            f"{worker['app_delay_s']} s of compressed delay",
        ],
    )
