"""Run the benchmarks: ``python -m bench [--quick] [--only NAME,...]``.

Sets up its own environment (PostgreSQL database ``vbsf_bench``, Redis
database 12, generated keys, debug off), starts the Salesforce simulator and
the Celery workers it needs, prints one table per benchmark and writes
``bench/results.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from datetime import UTC, datetime
from typing import Any

from . import common

# The campaign benchmark runs last: its links leave orgs with refresh tokens,
# which the fleet health check (every org with one) must not find.
BENCHMARKS = ("org_list", "health_check", "activation", "no_wait", "campaign")


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument(
        "--quick", action="store_true", help="fewer samples and a smaller fleet"
    )
    parser.add_argument(
        "--orgs",
        type=int,
        default=None,
        help="fleet size of the health check (default 1000, 250 with --quick); "
        "its result is kept under health_check.fleets.<N> in results.json",
    )
    parser.add_argument(
        "--only",
        default="",
        help=f"comma-separated subset of: {', '.join(BENCHMARKS)}",
    )
    args = parser.parse_args(argv)
    selected = [name.strip() for name in args.only.split(",") if name.strip()]
    unknown = [name for name in selected if name not in BENCHMARKS]
    if unknown:
        parser.error(f"unknown benchmark(s): {', '.join(unknown)}")
    args.selected = [name for name in BENCHMARKS if not selected or name in selected]
    return args


def _modules() -> dict[str, Any]:
    from . import activation, campaign, health_check, no_wait, org_list

    return {
        "org_list": org_list,
        "health_check": health_check,
        "activation": activation,
        "no_wait": no_wait,
        "campaign": campaign,
    }


def say(message: str) -> None:
    print(message, flush=True)


def _write_results(results: dict[str, Any], orgs: int | None) -> None:
    """Replace the sections of the benchmarks that ran and keep the others
    (a run with ``--only`` updates only its own). A health check of a fleet
    of another size (``--orgs``) goes under ``health_check.fleets.<N>``."""
    try:
        kept = json.loads(common.RESULTS_PATH.read_text())
    except (OSError, ValueError):
        kept = {}
    if orgs is not None and "health_check" in results:
        section = kept.get("health_check") or {}
        section.setdefault("fleets", {})[str(orgs)] = results.pop("health_check")
        results["health_check"] = section
    elif "health_check" in results and "fleets" in kept.get("health_check", {}):
        results["health_check"]["fleets"] = kept["health_check"]["fleets"]
    results = {**kept, **results}
    tmp = common.RESULTS_PATH.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(results, indent=2, default=str) + "\n")
    os.replace(tmp, common.RESULTS_PATH)


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    started = time.monotonic()
    env = common.prepare_environment(quick=args.quick, orgs=args.orgs)
    simulator = common.Simulator()
    try:
        common.check_services(env)
        say(
            f"bench: {'quick' if args.quick else 'full'} run of "
            f"{', '.join(args.selected)}"
        )
        common.recreate_database(env)
        env.simulator_url = simulator.start()
        os.environ["VBSF_SALESFORCE_SIMULATOR_URL"] = env.simulator_url
        common.setup_django(env)
        modules = _modules()
        results: dict[str, Any] = {
            "generated_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "quick": args.quick,
            "machine": common.machine_info(),
        }
        for name in args.selected:
            say(f"bench: running {name} ...")
            begun = time.monotonic()
            result = modules[name].run(env, simulator)
            result["duration_s"] = round(time.monotonic() - begun, 1)
            results[name] = result
            say("\n" + modules[name].table(result) + "\n")
        results["duration_s"] = round(time.monotonic() - started, 1)
        _write_results(results, args.orgs)
        say(
            f"bench: wrote {common.RESULTS_PATH.relative_to(common.ROOT)} "
            f"({results['duration_s']:.0f} s in all)"
        )
        return 0
    except common.BenchError as exc:
        print(f"bench: {exc}", file=sys.stderr)
        return 2
    finally:
        simulator.stop()


if __name__ == "__main__":
    sys.exit(main())
