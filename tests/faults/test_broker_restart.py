"""A Redis restart loses every queued and reserved message (no persistence);
staged changes still complete, because beat's safety net finds them in the
database and enqueues them again.

The test runs its own ``redis-server`` on a free port, never the machine's
shared one, with a worker and this process both pointed at it.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager, suppress

import pytest
import redis
from kombu.exceptions import OperationalError

from connections import services
from orgs.models import SalesforceOrg
from tests.faults.flows import (
    TOKEN_PATH,
    audit_count,
    change,
    connected_org,
    finish,
    login_for_code,
    new_app,
    org_host,
    requests_to,
    resume_later,
    start_change,
    wait_state,
)
from tests.live import missing_dependency, wait_for

pytestmark = pytest.mark.integration

REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class PrivateRedis:
    """A throwaway redis-server on 127.0.0.1 that keeps nothing on disk."""

    def __init__(self) -> None:
        self.port = _free_port()
        self.dir = tempfile.mkdtemp(prefix="vbsf-redis-")
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.client = redis.Redis(host="127.0.0.1", port=self.port)
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(
            [
                REDIS_SERVER,
                *("--port", str(self.port), "--bind", "127.0.0.1"),
                *("--save", "", "--appendonly", "no", "--dir", self.dir),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

        def up() -> bool:
            with suppress(redis.ConnectionError):
                return bool(self.client.ping())
            return False

        wait_for(up, timeout=10, interval=0.05)

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(10)
        self.client.connection_pool.disconnect()


@pytest.fixture
def private_redis() -> Iterator[PrivateRedis]:
    if not os.access(REDIS_SERVER, os.X_OK):
        missing_dependency("redis-server is not installed")
    server = PrivateRedis()
    server.start()
    try:
        yield server
    finally:
        server.stop()
        shutil.rmtree(server.dir, ignore_errors=True)


@contextmanager
def publishing_to(url: str) -> Iterator[None]:
    """Point this process's Celery app (``delay_on_commit`` and the like) at
    another broker, and back afterwards."""
    from vbsf.celery import app

    # broker_transport too: the embedded broker names its transport class
    # (vbsf.filesystem_broker), which would override the URL's scheme.
    keys = ("broker_url", "broker_transport", "broker_transport_options")
    saved = {key: app.conf[key] for key in keys}

    def forget_connections() -> None:
        app._pool = None
        app.amqp._producer_pool = None

    forget_connections()
    app.conf.update(broker_url=url, broker_transport=None, broker_transport_options={})
    try:
        yield
    finally:
        forget_connections()
        app.conf.update(saved)


def test_staged_changes_complete_after_redis_restarts(fault_stack, private_redis):
    """One change waits between activation probes (its next probe is a
    countdown message the worker holds); another has its code saved while
    Redis is down, so its exchange could not be enqueued. Redis comes back
    empty; beat's safety net enqueues both again, and both complete once."""
    sim = fault_stack.sim
    worker = fault_stack.workers.use(VBSF_BROKER_URL=private_redis.url)
    with publishing_to(private_redis.url):
        slow = connected_org(fault_stack, "redis-slow")
        probing = start_change(
            slow, new_app(fault_stack, slow, "redis-slow-new", delay=300)
        )
        fast = connected_org(fault_stack, "redis-fast")
        new_user = "new@redis-fast.example"
        sim.create_user(fast.sim_org["org_id"], new_user)
        signing_in = start_change(fast, new_app(fault_stack, fast, "redis-fast-new"))
        wait_state(signing_in.pk, "active")
        code = login_for_code(fault_stack, signing_in.pk, new_user)
        # The first probe found the app pending and scheduled the next one.
        wait_for(
            lambda: (
                (c := change(probing.pk)).probe_count == 1
                and c.next_probe_at > c.activation_started_at
            )
        )
        assert change(probing.pk).state == "awaiting_activation"

        private_redis.stop()
        # The callback saves the code; enqueueing its exchange fails.
        with suppress(OperationalError):
            services.connection_change_receive_code(change_id=signing_in.pk, code=code)
        assert change(signing_in.pk).state == "exchanging"
        private_redis.start()
        assert private_redis.client.dbsize() == 0  # every message is gone
        sim.advance(301)  # Salesforce has activated the slow app meanwhile
        # A worker holding a countdown message when Redis goes away exits
        # ("Unrecoverable error" in kombu's restore of unacked messages);
        # its supervisor starts it again (docker compose: unless-stopped).
        wait_for(
            lambda: (
                worker.process.poll() is not None
                or worker.output().count("Connected to redis") >= 2
            )
        )
        if worker.process.poll() is not None:
            worker.start()
        assert change(probing.pk).probe_count == 1  # nothing ran meanwhile

        assert resume_later(120) == 2
        active = wait_state(probing.pk, "active")
        assert active.probe_count == 2
        wait_state(signing_in.pk, "authorized")
        org = finish(signing_in.pk)
        wait_for(lambda: not sim.token_active(fast.old_token))

    assert org.connected_as_username == new_user
    assert audit_count("org.edit_connection", org=org) == 1
    exchanges = requests_to(
        sim, TOKEN_PATH, grant_type="authorization_code", host=org_host(fast)
    )
    assert len(exchanges) == 1
    assert SalesforceOrg.objects.get(pk=slow.org.pk).version == slow.org.version
    assert sim.token_active(slow.old_token)
    assert audit_count("connection_change.fail") == 0
