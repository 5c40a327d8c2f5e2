"""A worker killed with SIGKILL in the middle of a Salesforce call.

The simulator slows the one request the task is making; once that request
has reached it, the worker is killed (no warm shutdown, nothing acknowledged
or handed back) and a new worker is started. Recovery is what production
has: beat's ``connection_changes_resume()``, or the broker delivering the
unacknowledged message again (Redis does, after its visibility timeout).
Each change must end exactly once, with one audit event, and the org's
refresh token must keep working.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.core.exceptions import ValidationError
from django.utils import timezone

from companies.audit import Actor
from connections import services
from connections.models import ConnectionChange
from connections.tasks import revoke_old_token
from orgs import url_change
from orgs.models import SalesforceOrg, UrlVerification
from orgs.tasks import verify_org_url
from orgs.url_change import org_url_change_start
from tests.faults.flows import (
    REVOKE_PATH,
    TOKEN_PATH,
    audit_count,
    authorize,
    change,
    connected_org,
    fault,
    fault_fired,
    finish,
    kill_mid_call,
    login_for_code,
    new_app,
    org_host,
    org_with_authorized_change,
    resume_later,
    settle,
    start_change,
    wait_state,
)
from tests.live import wait_for

pytestmark = pytest.mark.integration


def test_killed_during_the_code_exchange_the_change_can_be_authorized_again(
    fault_stack,
):
    """The single-use code was spent by the dead worker, so the exchange
    cannot be replayed: beat leaves an exchange that may still be running
    alone, then returns the change to "active" with a clear message. The
    org is untouched; authorizing again applies the change exactly once."""
    sim = fault_stack.sim
    target = connected_org(fault_stack, "crash-exchange")
    new_user = "new@crash-exchange.example"
    sim.create_user(target.sim_org["org_id"], new_user)
    staged = start_change(target, new_app(fault_stack, target, "crash-exchange-new"))
    wait_state(staged.pk, "active")
    code = login_for_code(fault_stack, staged.pk, new_user)
    slow = fault(sim, kind="latency", path_prefix=TOKEN_PATH, latency_ms=1500, count=1)
    services.connection_change_receive_code(change_id=staged.pk, code=code)
    kill_mid_call(fault_stack, slow)
    fault_stack.workers.restart()
    # Salesforce answered the dead worker: the code is spent.
    exchanges = settle(
        sim, TOKEN_PATH, 1, grant_type="authorization_code", host=org_host(target)
    )
    assert exchanges == 1

    interrupted = change(staged.pk)
    assert interrupted.state == "exchanging"
    assert (
        interrupted.code_encrypted == "" and interrupted.code_verifier_encrypted == ""
    )
    assert services.connection_changes_resume() == 0  # it might still be running
    assert change(staged.pk).state == "exchanging"
    assert resume_later(600) == 1
    back = change(staged.pk)
    assert back.state == "active"
    assert back.failure_code == "interrupted"
    assert "nothing was changed" in back.failure_message
    assert "Authorize again" in back.failure_message
    assert resume_later(600) == 0  # handled once

    org = SalesforceOrg.objects.get(pk=target.org.pk)
    assert org.version == target.org.version
    assert org.get_refresh_token() == target.old_token
    assert sim.token_active(target.old_token)
    assert audit_count("org.edit_connection") == 0

    authorize(fault_stack, staged.pk, new_user)
    org = finish(staged.pk)
    assert org.connected_as_username == new_user
    assert change(staged.pk).state == "applied"
    with pytest.raises(services.ChangeError, match="already ended"):
        finish(staged.pk)
    assert audit_count("org.edit_connection", org=org) == 1
    assert audit_count("connection_change.start", org=org) == 1
    assert audit_count("connection_change.fail") == 0
    wait_for(lambda: not sim.token_active(target.old_token))
    assert sim.token_active(SalesforceOrg.objects.get(pk=org.pk).get_refresh_token())


def test_killed_during_an_activation_probe_beat_restarts_the_probes(fault_stack):
    """The probe had claimed its attempt (compare-and-set on probe_count)
    when the worker died; beat restarts the chain at the next attempt once
    it is overdue, the change becomes active once, and the lost attempt,
    delivered again, is a no-op."""
    sim = fault_stack.sim
    target = connected_org(fault_stack, "crash-probe")
    app = new_app(fault_stack, target, "crash-probe-new")
    slow = fault(sim, kind="latency", path_prefix=TOKEN_PATH, latency_ms=1500, count=1)
    staged = start_change(target, app)
    kill_mid_call(fault_stack, slow)
    fault_stack.workers.restart()

    stuck = change(staged.pk)
    assert stuck.state == "awaiting_activation"
    assert stuck.probe_count == 1  # attempt 0 was claimed, then lost
    assert services.connection_changes_resume() == 0  # not overdue yet
    assert resume_later(120) == 1
    active = wait_state(staged.pk, "active")
    assert active.probe_count == 2
    # Redelivery of the lost attempt (Redis, after its visibility timeout)
    # and a second copy of the resumed one change nothing.
    assert services.connection_change_probe(change_id=staged.pk, attempt=0) == (
        "skipped"
    )
    assert services.connection_change_probe(change_id=staged.pk, attempt=1) == (
        "skipped"
    )
    assert resume_later(120) == 0
    assert change(staged.pk).probe_count == 2
    # The killed probe (answered to no one) and the resumed one.
    assert settle(sim, TOKEN_PATH, 2, host=org_host(target)) == 2
    assert audit_count("connection_change.start") == 1
    assert audit_count("connection_change.expire") == 0
    assert audit_count("connection_change.fail") == 0
    org = SalesforceOrg.objects.get(pk=target.org.pk)
    assert org.client_app_id == target.org.client_app_id
    assert sim.token_active(target.old_token)


def test_killed_during_a_url_verification_redelivery_applies_it_once(fault_stack):
    """Nothing is saved before the new URL is proven, so a verification whose
    worker died leaves the org as it was (and refuses a second check while it
    may still be running); delivered again, it applies the URL once, and a
    further delivery is a no-op."""
    sim = fault_stack.sim
    target = connected_org(fault_stack, "crash-url")
    new_url = sim.post(f"/orgs/{target.sim_org['org_id']}/enhanced-domains")["new_url"]
    slow = fault(sim, kind="latency", path_prefix=TOKEN_PATH, latency_ms=1500, count=1)
    verification = org_url_change_start(
        actor=Actor.system(), org=target.org, new_url=new_url
    )
    kill_mid_call(fault_stack, slow)
    fault_stack.workers.restart()
    settle(sim, TOKEN_PATH, 1)

    assert UrlVerification.objects.get(pk=verification.pk).state == "running"
    org = SalesforceOrg.objects.get(pk=target.org.pk)
    assert org.login_url == target.org.login_url
    assert org.version == target.org.version
    with pytest.raises(ValidationError, match="already running"):
        org_url_change_start(actor=Actor.system(), org=org, new_url=new_url)

    verify_org_url.apply_async(kwargs={"verification_id": verification.pk})
    done = wait_for(
        lambda: (
            (v := UrlVerification.objects.get(pk=verification.pk)).state != "running"
            and v
        )
    )
    assert done.state == "succeeded", done.message
    assert url_change.url_verification_run(verification_id=verification.pk) == "skipped"
    org = SalesforceOrg.objects.get(pk=target.org.pk)
    assert org.login_url == new_url
    assert org.version == target.org.version + 1
    assert audit_count("org.url_change", org=org) == 1
    assert org.get_refresh_token() == target.old_token
    assert sim.token_active(target.old_token)


def test_killed_during_the_revoke_after_finish_redelivery_revokes_once(fault_stack):
    """Finish commits in the web request; the worker revoking the replaced
    token dies before Salesforce acted on it. The org runs on the new token
    and the old one is still pending; delivered again, the revoke completes
    once and the change stays applied with one audit event."""
    sim = fault_stack.sim
    target, staged = org_with_authorized_change(fault_stack, "crash-revoke")
    # A hung call Salesforce never acts on (it answers 504 later).
    hung = fault(sim, kind="timeout", path_prefix=REVOKE_PATH, latency_ms=1500, count=1)
    org = finish(staged.pk, checked=False)
    kill_mid_call(fault_stack, hung)
    fault_stack.workers.restart()
    settle(sim, REVOKE_PATH, 1, host=org_host(target))

    applied = change(staged.pk)
    assert applied.state == "applied"
    assert applied.old_refresh_token_encrypted != ""
    assert applied.old_token_revoked_at is None
    new_token = SalesforceOrg.objects.get(pk=org.pk).get_refresh_token()
    assert new_token != target.old_token
    assert sim.token_active(new_token)
    assert sim.token_active(target.old_token)  # not revoked yet

    revoke_old_token.apply_async(kwargs={"change_id": staged.pk})
    wait_for(lambda: change(staged.pk).old_token_revoked_at is not None)
    assert not sim.token_active(target.old_token)
    assert services.revoke_old_token(change_id=staged.pk) == "skipped"
    done = change(staged.pk)
    assert done.state == "applied" and done.old_refresh_token_encrypted == ""
    assert sim.token_active(new_token)
    assert audit_count("org.edit_connection", org=org) == 1
    assert settle(sim, REVOKE_PATH, 2, host=org_host(target)) == 2


def test_beat_resends_a_revoke_lost_with_its_worker(fault_stack):
    """SPEC §4.6/§5: the replaced token is revoked even if the worker that
    was revoking it died; beat's safety net must send the revoke again."""
    sim = fault_stack.sim
    target, staged = org_with_authorized_change(fault_stack, "lost-revoke")
    hung = fault(sim, kind="timeout", path_prefix=REVOKE_PATH, latency_ms=1500, count=1)
    finish(staged.pk, checked=False)
    kill_mid_call(fault_stack, hung)
    fault_stack.workers.restart()
    resume_later(3600)
    wait_for(lambda: not sim.token_active(target.old_token), timeout=2)


def test_beat_leaves_alone_an_exchange_whose_message_waited(fault_stack):
    """The code arrived while no worker was up; its exchange starts three
    minutes later. Beat running while that exchange is in flight must not
    call it interrupted: the sign-in completes and the change is authorized.
    """
    sim = fault_stack.sim
    target = connected_org(fault_stack, "late-exchange")
    new_user = "new@late-exchange.example"
    sim.create_user(target.sim_org["org_id"], new_user)
    staged = start_change(target, new_app(fault_stack, target, "late-exchange-new"))
    wait_state(staged.pk, "active")
    code = login_for_code(fault_stack, staged.pk, new_user)
    fault_stack.workers.kill()
    services.connection_change_receive_code(change_id=staged.pk, code=code)
    ConnectionChange.objects.filter(pk=staged.pk).update(
        updated_at=timezone.now() - timedelta(minutes=3)
    )
    slow = fault(sim, kind="latency", path_prefix=TOKEN_PATH, latency_ms=1500, count=1)
    fault_stack.workers.current.start()
    wait_for(lambda: fault_fired(sim, slow), timeout=30, interval=0.05)
    services.connection_changes_resume()  # beat, during the exchange
    # Either the change gets authorized, or the exchange finds it taken
    # back and revokes the tokens it just got.
    wait_for(lambda: change(staged.pk).state != "exchanging", timeout=10)
    final = change(staged.pk)
    assert final.state == "authorized", (final.state, final.failure_code)
