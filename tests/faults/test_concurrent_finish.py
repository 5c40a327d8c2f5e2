"""Two Finishes of the same org at the same moment (two admins, two tabs, a
double click): each runs in its own thread with its own database connection,
released together by a barrier. Exactly one wins; the other gets a clear
error and changes nothing; the org ends with the winner's token and one
``org.edit_connection`` audit event.

PostgreSQL serializes them on row locks (the change, then the org, both
``SELECT ... FOR UPDATE``); SQLite on its single writer (transactions begin
IMMEDIATE), so the same tests run on both.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
from django.db import connections, transaction

from companies.audit import Actor
from connections import services
from connections.models import ConnectionChange
from orgs.models import SalesforceOrg
from orgs.services import ConcurrentChange
from tests.faults.flows import (
    REVOKE_PATH,
    audit_count,
    authorized_by_hand,
    change,
    connected_org,
    org_host,
    settle,
)
from tests.live import wait_for

pytestmark = pytest.mark.integration


def _race(org_id: int, *calls: Callable[[], Any]) -> list[tuple[str, Any]]:
    """Run the calls in threads released at the same moment; each result is
    ("ok", value) or ("error", exception).

    The org's row (on SQLite, the database) is held until every thread is
    past the barrier, so the Finishes really overlap and queue on the lock.
    """
    barrier = threading.Barrier(len(calls) + 1)
    results: list[tuple[str, Any]] = [("missing", None)] * len(calls)

    def run(index: int, call: Callable[[], Any]) -> None:
        try:
            barrier.wait(timeout=10)
            results[index] = ("ok", call())
        except Exception as exc:  # reported to the test
            results[index] = ("error", exc)
        finally:
            connections.close_all()  # this thread's connection

    threads = [
        threading.Thread(target=run, args=(index, call))
        for index, call in enumerate(calls)
    ]
    with transaction.atomic():
        SalesforceOrg.objects.select_for_update().get(pk=org_id)
        for thread in threads:
            thread.start()
        barrier.wait(timeout=10)
        time.sleep(0.3)  # both Finishes are now waiting for the lock
    for thread in threads:
        thread.join(timeout=60)
    assert not any(thread.is_alive() for thread in threads), "a Finish hung"
    return results


def _apply(change_id: int) -> Callable[[], SalesforceOrg]:
    def call() -> SalesforceOrg:
        staged = ConnectionChange.objects.get(pk=change_id)
        return services.connection_change_apply(
            actor=Actor.system(),
            change=staged,
            company=SalesforceOrg.objects.get(pk=staged.org_id).company,
        )

    return call


def test_the_same_change_finished_twice_at_once_applies_once(fault_stack):
    """Both requests lock the change; the second sees it applied and is
    told the change has already ended. The old token is revoked once."""
    sim = fault_stack.sim
    target = connected_org(fault_stack, "double-click")
    username = "new@double-click.example"
    user_id = sim.create_user(target.sim_org["org_id"], username)
    staged = authorized_by_hand(
        fault_stack, target, "double-click-new", user_id, username
    )
    new_token = staged.get_secret("new_refresh_token")
    sim.clear_requests()

    results = _race(target.org.pk, _apply(staged.pk), _apply(staged.pk))

    outcomes = sorted(kind for kind, _ in results)
    assert outcomes == ["error", "ok"], results
    error = next(value for kind, value in results if kind == "error")
    assert isinstance(error, services.ChangeError)
    assert "already ended" in str(error)
    org = SalesforceOrg.objects.get(pk=target.org.pk)
    assert org.get_refresh_token() == new_token
    assert org.version == target.org.version + 1
    assert change(staged.pk).state == "applied"
    assert audit_count("org.edit_connection", org=org) == 1
    wait_for(lambda: not sim.token_active(target.old_token))
    assert settle(sim, REVOKE_PATH, 1, host=org_host(target)) == 1
    assert sim.token_active(new_token)


def test_two_changes_of_one_org_finished_at_once_one_wins(fault_stack):
    """Two authorized changes started from the same org version: the org
    row lock orders them, and the version check turns the second into a
    ConcurrentChange. The loser stays authorized and unapplied; cancelling
    it revokes its token, so no token is left behind."""
    sim = fault_stack.sim
    target = connected_org(fault_stack, "two-admins")
    users = {}
    for who in ("ann", "bob"):
        username = f"{who}@two-admins.example"
        users[who] = authorized_by_hand(
            fault_stack,
            target,
            f"two-admins-{who}",
            sim.create_user(target.sim_org["org_id"], username),
            username,
        )
    tokens = {who: c.get_secret("new_refresh_token") for who, c in users.items()}

    results = dict(
        zip(
            users,
            _race(target.org.pk, *(_apply(c.pk) for c in users.values())),
            strict=True,
        )
    )

    winners = [who for who, (kind, _) in results.items() if kind == "ok"]
    assert len(winners) == 1, results
    winner = winners[0]
    loser = next(who for who in users if who != winner)
    kind, error = results[loser]
    assert kind == "error" and isinstance(error, ConcurrentChange), results
    assert "Someone else changed this org" in str(error)

    org = SalesforceOrg.objects.get(pk=target.org.pk)
    assert org.get_refresh_token() == tokens[winner]
    assert org.connected_as_username == f"{winner}@two-admins.example"
    assert org.version == target.org.version + 1
    assert audit_count("org.edit_connection", org=org) == 1
    assert change(users[winner].pk).state == "applied"
    assert change(users[loser].pk).state == "authorized"
    assert sim.token_active(tokens[winner])
    wait_for(lambda: not sim.token_active(target.old_token))

    services.connection_change_cancel(
        actor=Actor.system(), change=change(users[loser].pk)
    )
    wait_for(lambda: not sim.token_active(tokens[loser]))
    assert sim.token_active(SalesforceOrg.objects.get(pk=org.pk).get_refresh_token())
    assert audit_count("org.edit_connection", org=org) == 1
