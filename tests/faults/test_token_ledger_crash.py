"""A worker killed after Salesforce handed over a new refresh token but
before the change kept it (SPEC §5, §9). The token was written ahead to the
token ledger, owed a revoke: the change goes back to "active" (Authorize
again) with nothing half-stored, and beat revokes the orphan token instead
of leaving it alive at Salesforce, counting against the user's five."""

from __future__ import annotations

import pytest

from connections import services
from orgs.models import RefreshTokenRecord, SalesforceOrg
from tests.faults.flows import (
    change,
    connected_org,
    fault,
    kill_mid_call,
    login_for_code,
    new_app,
    resume_later,
    start_change,
    wait_state,
)
from tests.live import wait_for

pytestmark = pytest.mark.integration

IDENTITY_PATH = "/id/"


def test_killed_between_the_exchange_and_keeping_the_token(fault_stack):
    sim = fault_stack.sim
    target = connected_org(fault_stack, "crash-keep")
    new_user = "new@crash-keep.example"
    sim.create_user(target.sim_org["org_id"], new_user)
    staged = start_change(target, new_app(fault_stack, target, "crash-keep-new"))
    wait_state(staged.pk, "active")
    code = login_for_code(fault_stack, staged.pk, new_user)
    # The identity call comes after Salesforce answered the exchange.
    slow = fault(
        sim, kind="latency", path_prefix=IDENTITY_PATH, latency_ms=1500, count=1
    )
    services.connection_change_receive_code(change_id=staged.pk, code=code)
    kill_mid_call(fault_stack, slow)
    fault_stack.workers.restart()

    orphan = RefreshTokenRecord.objects.get(
        salesforce_username="", purpose="edit_connection"
    )
    assert orphan.revoke_owed and orphan.revoked_at is None
    token = orphan.get_revoke_token()
    assert sim.token_active(token)  # alive at Salesforce, held by nobody else
    interrupted = change(staged.pk)
    assert interrupted.state == "exchanging"
    assert interrupted.new_refresh_token_encrypted == ""  # nothing half-stored
    org = SalesforceOrg.objects.get(pk=target.org.pk)
    assert org.get_refresh_token() == target.old_token
    assert org.version == target.org.version

    assert resume_later(600) >= 1  # beat: the change, and the orphan's revoke
    assert change(staged.pk).state == "active"
    wait_for(lambda: not sim.token_active(token), timeout=30)
    wait_for(lambda: RefreshTokenRecord.objects.get(pk=orphan.pk).revoked_at)
    done = RefreshTokenRecord.objects.get(pk=orphan.pk)
    assert done.revoke_token_encrypted == "" and done.revoke_reason == "abandoned"
    assert sim.token_active(target.old_token)
