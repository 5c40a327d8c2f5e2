"""The embedded broker's messages appear whole (kombu#1551).

A writer's ``_put`` is paused between creating its file and writing it (the
pause is injected by wrapping the module's ``open``); meanwhile a reader
looks at the queue the way kombu's ``_get`` does. kombu's stock transport
shows an empty message file there, which killed a worker with
JSONDecodeError; ours shows nothing until the message is whole.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from queue import Empty
from types import ModuleType
from typing import Any

import pytest
from kombu import Connection
from kombu.transport import filesystem as stock

from tests.live import wait_for
from tests.processes import CeleryWorkerProcess
from vbsf import filesystem_broker
from vbsf.celery import app

QUEUE = "celery"
PAYLOAD = {"body": "x" * 4096, "headers": {"task": "demo"}}


class PausedFile:
    """A file whose first write waits until the test lets it go on."""

    def __init__(self, handle: Any, opened: threading.Event, go: threading.Event):
        self.handle = handle
        self.opened = opened
        self.go = go

    def __enter__(self) -> PausedFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.handle.close()

    def write(self, data: bytes) -> int:
        self.opened.set()
        assert self.go.wait(10), "the test never let the write go on"
        return self.handle.write(data)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.handle, name)


def channel_for(transport: type, folder: Path) -> Any:
    for name in ("queue", "processed", "control"):
        (folder / name).mkdir(exist_ok=True)
    connection = Connection(
        "filesystem://",
        transport=transport,
        transport_options={
            "data_folder_in": str(folder / "queue"),
            "data_folder_out": str(folder / "queue"),
            "processed_folder": str(folder / "processed"),
            "control_folder": str(folder / "control"),
        },
    )
    return connection.default_channel


def queue_files(folder: Path) -> dict[str, bytes]:
    """What kombu's reader would take: names ending in ``.<queue>.msg``."""
    found = {}
    for name in sorted(os.listdir(folder)):
        if name.partition(".")[2] == f"{QUEUE}.msg":
            try:
                found[name] = (folder / name).read_bytes()
            except FileNotFoundError:
                continue
    return found


@pytest.fixture
def paused_put(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """Start ``_put`` in a thread, paused before its write; the test looks."""
    started: list[threading.Thread] = []
    go = threading.Event()

    def start(module: ModuleType, transport: type) -> Any:
        channel = channel_for(transport, tmp_path)
        opened = threading.Event()

        def paused_open(*args: Any, **kwargs: Any) -> PausedFile:
            return PausedFile(open(*args, **kwargs), opened, go)

        # Both modules call the builtin ``open`` by name; a module global
        # shadows it for that module alone.
        monkeypatch.setattr(module, "open", paused_open, raising=False)
        writer = threading.Thread(target=channel._put, args=(QUEUE, PAYLOAD))
        writer.start()
        started.append(writer)
        assert opened.wait(10), "_put never reached its write"
        return channel

    yield start, go
    go.set()
    for writer in started:
        writer.join(10)


def test_stock_transport_shows_an_empty_message_mid_put(
    paused_put: Any, tmp_path: Path
) -> None:
    # The race this module exists for; if kombu ever writes atomically this
    # fails, and vbsf/filesystem_broker.py can go.
    start, _go = paused_put
    start(stock, stock.Transport)
    seen = queue_files(tmp_path / "queue")
    assert list(seen.values()) == [b""]


def test_our_transport_shows_no_message_until_it_is_whole(
    paused_put: Any, tmp_path: Path
) -> None:
    start, go = paused_put
    channel = start(filesystem_broker, filesystem_broker.Transport)
    assert queue_files(tmp_path / "queue") == {}
    with pytest.raises(Empty):
        channel._get(QUEUE)

    go.set()
    whole = wait_for(lambda: queue_files(tmp_path / "queue"), timeout=10)
    assert [json.loads(body) for body in whole.values()] == [PAYLOAD]
    assert channel._get(QUEUE) == PAYLOAD
    # No temporary file is left behind, and nothing else is queued.
    assert os.listdir(tmp_path / "queue") == []


TRANSPORT_OF = """
import django
django.setup()
from vbsf.celery import app
with app.connection_for_write() as connection:
    print(connection.transport_cls, type(connection.transport).__module__)
"""


def transport_for(broker_url: str) -> list[str]:
    """The transport the console's settings choose for ``broker_url``, in a
    fresh process (settings are read once; CI's run uses Redis)."""
    env = os.environ | {"VBSF_BROKER_URL": broker_url}
    done = subprocess.run(
        [sys.executable, "-c", TRANSPORT_OF],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return done.stdout.split()


def test_settings_choose_our_transport_for_the_embedded_broker() -> None:
    assert transport_for("filesystem://") == [
        "vbsf.filesystem_broker:Transport",
        "vbsf.filesystem_broker",
    ]
    # Redis keeps kombu's own transport.
    assert transport_for("redis://127.0.0.1:6379/15")[0] == "redis"


def test_a_real_worker_takes_a_burst_of_messages_whole(tmp_path: Path) -> None:
    """A worker polling the queue folder while eight threads send: every
    message runs once, and the worker never meets a partial file."""
    data_dir = tmp_path / "celery"
    options = {
        "data_folder_in": str(data_dir / "queue"),
        "data_folder_out": str(data_dir / "queue"),
        "processed_folder": str(data_dir / "processed"),
        "control_folder": str(data_dir / "control"),
    }
    for folder in options.values():
        os.makedirs(folder, exist_ok=True)
    env = {**os.environ, "VBSF_CELERY_DATA_DIR": str(data_dir)}
    worker = CeleryWorkerProcess(env, concurrency=2, log_path=tmp_path / "w.log")
    worker.start()
    sends, threads = 50, 8
    try:

        def send(thread: int) -> None:
            with app.connection_for_write(transport_options=options) as connection:
                for n in range(sends):
                    # A builtin task that needs no database: it returns its
                    # argument, and the worker logs it.
                    app.send_task(
                        "celery.accumulate",
                        args=[f"burst-{thread}-{n}"],
                        connection=connection,
                    )

        senders = [threading.Thread(target=send, args=(t,)) for t in range(threads)]
        for sender in senders:
            sender.start()
        for sender in senders:
            sender.join(60)
        wait_for(
            lambda: worker.output().count("succeeded in") >= sends * threads,
            timeout=60,
        )
        assert worker.process is not None and worker.process.poll() is None
    finally:
        worker.stop()
    output = worker.output()
    assert "Unrecoverable error" not in output
    assert output.count("succeeded in") == sends * threads
    assert os.listdir(options["data_folder_in"]) == []
