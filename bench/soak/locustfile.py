"""Locust users for the soak: signed-in Administrators running journeys.

Started by ``python -m bench.soak`` as ``locust --headless -f`` this file;
``VBSF_SOAK_CONFIG`` names a JSON file with the console and simulator URLs,
the sign-in, the orgs, and the journal to append to. Locust measures the
console's requests (web latency); the simulator's login pages and control
API go through their own session and are not counted.
"""

from __future__ import annotations

import json
import os
import random
import threading
import time
from pathlib import Path
from typing import Any

from locust import HttpUser, between, task

from bench.soak.journeys import JOURNEYS, Console, JourneyError, Target
from tests.simclient import Sim

CONFIG: dict[str, Any] = json.loads(Path(os.environ["VBSF_SOAK_CONFIG"]).read_text())
JOURNAL = Path(CONFIG["journal"])
_journal_lock = threading.Lock()


class OrgPool:
    """Orgs free for a journey: two journeys never work on one org at once
    (a person would not either, and the checks can then say what happened).
    Greenlets of one process share it; no lock is needed between yields."""

    def __init__(self, orgs: list[dict[str, Any]]) -> None:
        self.free = [Target(**org) for org in orgs]
        random.shuffle(self.free)

    def take(self) -> Target | None:
        return self.free.pop(0) if self.free else None

    def give(self, target: Target) -> None:
        self.free.append(target)


POOL = OrgPool(CONFIG["orgs"])
ALL = [Target(**org) for org in CONFIG["orgs"]]
NAMES = list(JOURNEYS)
WEIGHTS = [JOURNEYS[name][1] for name in NAMES]


def record(entry: dict[str, Any]) -> None:
    with _journal_lock, JOURNAL.open("a") as journal:
        journal.write(json.dumps(entry) + "\n")


class Administrator(HttpUser):
    wait_time = between(0.5, 2.0)

    def on_start(self) -> None:
        self.console = Console(self.client, CONFIG["web_url"], named=True)
        self.sim = Sim(CONFIG["sim_url"])
        self.console.sign_in(CONFIG["username"], CONFIG["password"])

    @task
    def journey(self) -> None:
        name = random.choices(NAMES, WEIGHTS)[0]
        run, _, own_org = JOURNEYS[name]
        target = POOL.take() if own_org else random.choice(ALL)
        if target is None:
            name, run, target = "browse", JOURNEYS["browse"][0], random.choice(ALL)
            own_org = False
        started = time.time()
        entry: dict[str, Any] = {"journey": name, "org": target.pk, "start": started}
        try:
            entry["result"] = run(self.console, target, self.sim)
            entry["ok"] = True
        except (JourneyError, AssertionError) as exc:
            entry["ok"], entry["error"] = False, str(exc)[:200]
        except Exception as exc:  # a fault may break any step; keep going
            entry["ok"], entry["error"] = False, f"{type(exc).__name__}: {exc}"[:200]
        except BaseException:  # the run ended (GreenletExit) mid-journey
            entry["ok"], entry["error"] = False, "interrupted by the end of the run"
            raise
        finally:
            entry["seconds"] = round(time.time() - started, 2)
            record(entry)
            if own_org:
                POOL.give(target)
