"""Salesforce 503 storms, rate limits and timeouts, on a real worker.

Every task retries a bounded number of times with backoff, then leaves a
clear status; the simulator's request log gives the upper bound, and the
log stays quiet afterwards (nothing retries forever). Health checks of the
token endpoint are covered in ``tests/integration/test_keep_connected.py``
and a 503 during an in-process exchange in ``test_edit_connection_bad_input``.
"""

from __future__ import annotations

import pytest

from companies.audit import Actor
from connections import services
from connections.models import PermissionCheck
from connections.tasks import revoke_old_token
from orgs.models import ConnectionStatus, SalesforceOrg
from orgs.tasks import MAX_HEALTH_RETRIES, check_org_health
from tests.faults.flows import (
    REST_PATH,
    REVOKE_PATH,
    TOKEN_PATH,
    audit_count,
    authorize,
    change,
    connected_org,
    fault,
    finish,
    login_for_code,
    new_app,
    org_host,
    org_with_authorized_change,
    requests_to,
    settle,
    start_change,
    wait_state,
)
from tests.live import purge_broker, wait_for

pytestmark = pytest.mark.integration

# One logical call: the first send and SALESFORCE_MAX_RETRIES (2) more.
SENDS_PER_CALL = 3


def _check(check_id: int) -> PermissionCheck:
    return wait_for(
        lambda: (
            (c := PermissionCheck.objects.get(pk=check_id)).state != "running" and c
        ),
        timeout=40,
    )


def _authorized(stack, name):
    target = connected_org(stack, name)
    new_user = f"new@{name}.example"
    stack.sim.create_user(target.sim_org["org_id"], new_user)
    staged = start_change(target, new_app(stack, target, f"{name}-new"))
    wait_state(staged.pk, "active")
    return target, staged, new_user


def test_a_timed_out_code_exchange_is_not_retried_and_can_be_repeated(fault_stack):
    """Codes are single-use, so a timeout is never retried: one exchange
    request, the change back to "active" with a message; a second
    authorization then completes."""
    sim = fault_stack.sim
    target, staged, new_user = _authorized(fault_stack, "exchange-timeout")
    # This org's exchanges only: the test before may have killed a worker
    # mid-exchange, and the simulator logs that request when it ends, after
    # this test's reset (seen on a loaded machine as a second exchange).
    login_host = org_host(target)
    code = login_for_code(fault_stack, staged.pk, new_user)
    fault(
        sim,
        kind="timeout",
        host=login_host,
        path_prefix=TOKEN_PATH,
        latency_ms=2300,
        count=1,
    )
    services.connection_change_receive_code(change_id=staged.pk, code=code)
    back = wait_for(
        lambda: (c := change(staged.pk)).state == "active" and c.failure_code and c,
        timeout=20,
    )
    assert back.failure_code == "timeout"
    assert "did not answer while completing the sign-in" in back.failure_message
    assert (
        settle(sim, TOKEN_PATH, 1, grant_type="authorization_code", host=login_host)
        == 1
    )
    org = SalesforceOrg.objects.get(pk=target.org.pk)
    assert org.get_refresh_token() == target.old_token
    authorize(fault_stack, staged.pk, new_user)
    assert (
        settle(sim, TOKEN_PATH, 2, grant_type="authorization_code", host=login_host)
        == 2
    )
    assert change(staged.pk).new_username == new_user
    assert audit_count("connection_change.fail") == 0


def test_permission_verification_in_a_503_storm_fails_clearly_and_stops(fault_stack):
    """REST calls answer 503: the check ends "failed" with a message after
    a bounded number of requests, and Finish stays blocked on it. A burst
    shorter than the client's retries is absorbed; the change then
    finishes once."""
    sim = fault_stack.sim
    target, staged, new_user = _authorized(fault_stack, "perm-storm")
    storm = fault(sim, kind="error_503", path_prefix=REST_PATH)
    authorize(fault_stack, staged.pk, new_user)
    first = wait_for(lambda: PermissionCheck.objects.filter(change=staged).first())
    failed = _check(first.pk)
    assert failed.state == "failed"
    assert "temporarily unavailable" in failed.error
    # One call's sends per task run; at most 1 + 3 task runs. This org's
    # requests only: a worker the test before killed mid-call has its request
    # logged when it ends, after this test's reset.
    host = org_host(target)
    rest = settle(sim, REST_PATH, SENDS_PER_CALL, host=host)
    assert SENDS_PER_CALL <= rest <= 4 * SENDS_PER_CALL
    # One refresh per task run (1 + 3 retries), besides the activation probe.
    refreshes = requests_to(sim, TOKEN_PATH, grant_type="refresh_token", host=host)
    assert len([r for r in refreshes if r["status"] == 200]) <= 4
    with pytest.raises(services.ChangeError, match="Backup permissions are missing"):
        services.connection_change_apply(
            actor=Actor.system(),
            change=change(staged.pk),
            company=target.company,
            permission_check=failed,
        )

    sim.delete(f"/faults/{storm}")
    fault(sim, kind="error_503", path_prefix=REST_PATH, count=SENDS_PER_CALL - 1)
    again = services.permission_check_start(
        actor=Actor.system(), change=change(staged.pk)
    )
    assert _check(again.pk).state == "done"
    org = finish(staged.pk)
    assert audit_count("org.edit_connection", org=org) == 1
    assert SalesforceOrg.objects.get(pk=org.pk).connected_as_username == new_user


def test_verifying_an_orgs_permissions_in_a_503_storm_keeps_its_status(
    fault_stack,
):
    """The org page's "Verify permissions" in a storm: a failed check with a
    message, a bounded number of requests, and the org's status and
    token untouched."""
    sim = fault_stack.sim
    target = connected_org(fault_stack, "org-perm-storm")
    fault(sim, kind="error_503", path_prefix=REST_PATH)
    check = services.permission_check_start(actor=Actor.system(), org=target.org)
    failed = _check(check.pk)
    assert failed.state == "failed"
    assert "temporarily unavailable" in failed.error
    rest = settle(sim, REST_PATH, SENDS_PER_CALL, host=org_host(target))
    assert SENDS_PER_CALL <= rest <= 4 * SENDS_PER_CALL
    org = SalesforceOrg.objects.get(pk=target.org.pk)
    assert org.status == ConnectionStatus.CONNECTED
    assert org.get_refresh_token() == target.old_token
    assert sim.token_active(target.old_token)


@pytest.mark.parametrize(
    ("kind", "reason", "sends"),
    [
        ("error_503", "temporarily unavailable", SENDS_PER_CALL),
        ("request_limit", "API request limit is exhausted", 1),
    ],
)
def test_health_check_with_failing_rest_calls_gives_up_after_bounded_retries(
    fault_stack, kind, reason, sends
):
    """The token refresh works but every REST call fails: the task retries
    with backoff (with the access token it kept, no new refresh), then marks
    the org failed with the reason and the number of attempts; no request
    follows."""
    sim = fault_stack.sim
    target = connected_org(fault_stack, f"rest-{kind.replace('_', '-')}")
    fault(sim, kind=kind, path_prefix=REST_PATH)
    check_org_health.apply_async(kwargs={"org_id": target.org.pk})
    failed = wait_for(
        lambda: (
            (o := SalesforceOrg.objects.get(pk=target.org.pk)).status
            == ConnectionStatus.FAILED
            and o
        ),
        timeout=40,
    )
    attempts = MAX_HEALTH_RETRIES + 1
    assert reason in failed.status_reason
    assert f"({attempts} attempts)" in failed.status_reason
    host = org_host(target)
    assert settle(sim, REST_PATH, attempts * sends, host=host) == attempts * sends
    refreshes = requests_to(sim, TOKEN_PATH, grant_type="refresh_token", host=host)
    # The first attempt refreshes; the retries reuse the kept access token.
    assert len(refreshes) == 1
    assert sim.token_active(target.old_token)


def test_revoke_retries_a_503_burst_with_backoff_then_revokes_once(fault_stack):
    """A burst longer than one call's retries: the task retries after a
    backoff and revokes the old token; one more request, no more."""
    sim = fault_stack.sim
    target, staged = org_with_authorized_change(fault_stack, "revoke-burst")
    fault(sim, kind="error_503", path_prefix=REVOKE_PATH, count=SENDS_PER_CALL)
    finish(staged.pk, checked=False)
    wait_for(lambda: change(staged.pk).old_token_revoked_at is not None, timeout=20)
    assert not sim.token_active(target.old_token)
    assert (
        settle(sim, REVOKE_PATH, SENDS_PER_CALL + 1, host=org_host(target))
        == SENDS_PER_CALL + 1
    )


def test_revoke_in_an_endless_503_storm_stops_after_max_retries(fault_stack):
    """Unbounded 503s: the revoke gives up after its max_retries task runs
    (run here in-process, where retries happen without their countdowns of
    up to minutes), and keeps the token to revoke for a later attempt."""
    sim = fault_stack.sim
    target, staged = org_with_authorized_change(fault_stack, "revoke-storm")
    fault_stack.workers.kill()  # the revoke Finish enqueues is not run
    finish(staged.pk, checked=False)
    purge_broker()
    fault(sim, kind="error_503", path_prefix=REVOKE_PATH)
    sim.clear_requests()
    result = revoke_old_token.apply(kwargs={"change_id": staged.pk})
    assert result.state == "FAILURE"
    runs = revoke_old_token.max_retries + 1
    sent = requests_to(sim, REVOKE_PATH, host=org_host(target))
    assert len(sent) == runs * SENDS_PER_CALL
    pending = change(staged.pk)
    assert pending.state == "applied"
    assert pending.old_token_revoked_at is None
    assert pending.old_refresh_token_encrypted != ""
    assert sim.token_active(target.old_token)  # still to be revoked
    assert audit_count("org.edit_connection") == 1


def test_probing_in_an_endless_503_storm_expires_after_the_schedule(fault_stack):
    """Every probe meets 503s (each probe a bounded number of sends): the
    chain follows the activation schedule, compressed about 300 times here, then
    the change expires with a message and no request follows. The org
    keeps its connection."""
    sim = fault_stack.sim
    fault_stack.workers.use(VBSF_ACTIVATION_TIME_SCALE="0.003")
    target = connected_org(fault_stack, "probe-storm")
    fault(sim, kind="error_503", path_prefix=TOKEN_PATH)
    staged = start_change(target, new_app(fault_stack, target, "probe-storm-new"))
    expired = wait_state(staged.pk, "expired", timeout=40)
    assert expired.failure_code == "not_activated"
    assert "keeps its current connection" in expired.failure_message
    probes = len(services.ACTIVATION_SCHEDULE)
    assert expired.probe_count <= probes + 1
    sent = settle(sim, TOKEN_PATH, 1, host=org_host(target))
    assert sent <= probes * SENDS_PER_CALL
    assert audit_count("connection_change.expire") == 1
    org = SalesforceOrg.objects.get(pk=target.org.pk)
    assert org.client_app_id == target.org.client_app_id
    sim.clear_faults()
    assert sim.token_active(target.old_token)
