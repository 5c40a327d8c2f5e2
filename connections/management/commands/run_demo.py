"""Run the whole demo: simulator, Celery worker and beat, web server.

Started by ``make demo`` after migrate, collectstatic and seed_demo, with
debug off like production. Ctrl-C (or SIGTERM or SIGHUP to this process)
stops all four.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand
from django.db import connections

from connections import demo


class Command(BaseCommand):
    help = "Start the simulator, a Celery worker, beat and the web server."

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--port", type=int, default=8000)
        parser.add_argument("--simulator-port", type=int, default=8765)

    def handle(self, *args: Any, **options: Any) -> None:
        base = Path(settings.BASE_DIR)
        python = sys.executable
        env = os.environ.copy()
        fixture = base / "var" / "sfsim-demo.json"
        commands = {
            "simulator": [
                python,
                "-m",
                "sfsim",
                "--port",
                str(options["simulator_port"]),
                "--fixture",
                str(fixture),
            ],
            "worker": [
                python,
                "-m",
                "celery",
                "-A",
                "vbsf",
                "worker",
                "--loglevel",
                "INFO",
                "--concurrency",
                "4",
                "--pool",
                "threads",
            ],
            "beat": [
                python,
                "-m",
                "celery",
                "-A",
                "vbsf",
                "beat",
                "--loglevel",
                "INFO",
            ],
            "web": [
                python,
                "manage.py",
                "runserver",
                f"127.0.0.1:{options['port']}",
                "--noreload",
            ],
        }
        connections.close_all()
        processes: dict[str, subprocess.Popen[bytes]] = {}
        # Ctrl-C, a `kill` of this process or a closed terminal all stop the
        # demo, children included; a second Ctrl-C does not cut that short.
        stopping: list[int] = []
        for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(signum, lambda signum, frame: stopping.append(signum))
        try:
            for name, command in commands.items():
                if stopping:
                    return
                processes[name] = subprocess.Popen(command, cwd=base, env=env)
                time.sleep(0.5)
            self.stdout.write(self.style.SUCCESS(self._banner(options)))
            while not stopping:
                for name, process in processes.items():
                    if process.poll() is not None:
                        self.stderr.write(
                            f"{name} stopped (exit {process.returncode}); stopping the demo."
                        )
                        return
                time.sleep(0.2)
            self.stdout.write("\nStopping the demo…")
        finally:
            for process in processes.values():
                if process.poll() is None:
                    process.send_signal(signal.SIGTERM)
            for process in processes.values():
                try:
                    process.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    process.kill()

    def _banner(self, options: dict[str, Any]) -> str:
        users = ", ".join(demo.USERS)
        mode = "on (development)" if settings.DEBUG else "off, as in production"
        return (
            "\n"
            f"  Console:    http://127.0.0.1:{options['port']}/  (debug {mode})\n"
            f"  Simulator:  http://127.0.0.1:{options['simulator_port']}/_sim/setup\n"
            f"  Logins:     {users} (password: {demo.DEMO_PASSWORD})\n"
            f"  Salesforce demo users log in with password: {demo.SALESFORCE_DEMO_PASSWORD}\n"
            "  Stop with Ctrl-C.\n"
        )
