"""The token budget guard against the live simulator and a real worker
(SPEC §9): the same Salesforce user approves the same app again and again,
the console's ledger follows the simulator's token list (which keeps five
per user and app and evicts the oldest), and once Salesforce answers
revokes again, every replaced or abandoned token is revoked."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from companies.audit import Actor
from companies.models import AuditEvent
from connections import salesforce, services
from connections.models import ConnectionChange, PermissionCheck
from orgs.models import ConnectionStatus, RefreshTokenRecord, SalesforceOrg
from orgs.selectors import token_budget_for
from orgs.token_ledger import refresh_token_hash
from orgs.tokens import org_access_token
from tests.factories import (
    CompanyFactory,
    ExternalClientAppFactory,
    SalesforceOrgFactory,
)
from tests.faults.flows import resume_later
from tests.live import wait_for
from tests.simclient import salesforce_login

pytestmark = pytest.mark.integration

REVOKE_PATH = "/services/oauth2/revoke"
Reason = RefreshTokenRecord.RevokeReason


def change(change_id: int) -> ConnectionChange:
    return ConnectionChange.objects.get(pk=change_id)


def setup_org(
    stack: Any, name: str, *, rotate: bool = False
) -> tuple[SalesforceOrg, str, str, dict]:
    """An org whose app is in the simulator; no token yet. Returns the org,
    the Salesforce user's name and ID, and the simulator's app."""
    sim = stack.sim
    created = sim.create_org(name)
    username = f"integration@{name}.example"
    user_id = sim.create_user(created["org_id"], username)
    app = sim.create_app(
        created["org_id"],
        stack.url + "/oauth/callback/",
        name=name,
        rotate_refresh_tokens=rotate,
    )
    org = SalesforceOrgFactory(
        alias=f"{name}-prod",
        org_id=created["org_id"],
        login_url=created["login_url"],
        instance_url=created["instance_url"],
        company=CompanyFactory(name=f"{name.title()} Co"),
        client_app=ExternalClientAppFactory(
            name=name,
            consumer_key=app["consumer_key"],
            consumer_secret=app["consumer_secret"],
        ),
        connected_as_username=username,
        connected_as_user_id=user_id,
        status=ConnectionStatus.NEEDS_REAUTHORIZATION,
    )
    return org, username, user_id, app


def code_for(staged: ConnectionChange, username: str) -> str:
    auth = services.connection_change_begin_authorization(change=staged)
    callback = salesforce_login(auth.url, username, "sf-password")
    return parse_qs(urlsplit(callback).query)["code"][0]


def reauthorize(org: SalesforceOrg, username: str) -> str:
    """Re-authorize connection, applied by the worker; the org's new token."""
    staged, auth = services.reauthorization_start(actor=Actor.system(), org=org)
    callback = salesforce_login(auth.url, username, "sf-password")
    code = parse_qs(urlsplit(callback).query)["code"][0]
    services.connection_change_receive_code(change_id=staged.pk, code=code)
    wait_for(lambda: change(staged.pk).state == "applied", timeout=30)
    return SalesforceOrg.objects.get(pk=org.pk).get_refresh_token()


def authorize(staged: ConnectionChange, username: str) -> str:
    """Authorize at Salesforce (again) on an open change; its new token."""
    before = change(staged.pk).authorized_at
    code = code_for(change(staged.pk), username)
    services.connection_change_receive_code(change_id=staged.pk, code=code)
    wait_for(
        lambda: (
            (c := change(staged.pk)).state == "authorized" and c.authorized_at != before
        ),
        timeout=30,
    )
    return change(staged.pk).get_secret("new_refresh_token")


def record_of(token: str) -> RefreshTokenRecord:
    return RefreshTokenRecord.objects.get(token_hash=refresh_token_hash(token))


def sim_live(stack: Any, user_id: str, app: dict) -> int:
    return stack.sim.get(
        "/refresh-tokens", user_id=user_id, consumer_key=app["consumer_key"]
    )["active"]


def ledger_live(user_id: str, org: SalesforceOrg) -> int:
    return RefreshTokenRecord.objects.filter(
        salesforce_user_id=user_id, client_app=org.client_app, revoked_at__isnull=True
    ).count()


def assert_ledger_matches_simulator(
    stack: Any, tokens: list[str], user_id: str, org, app
):
    for token in tokens:
        assert record_of(token).is_live == stack.sim.token_active(token), token[-6:]
    assert ledger_live(user_id, org) == sim_live(stack, user_id, app)


def test_six_reauthorizations_the_ledger_follows_salesforce_and_revokes_catch_up(
    stack,
):
    """Revokes fail (Salesforce answers 503), so replaced tokens stay alive:
    the fifth approval fills the five, the sixth evicts the oldest in the
    simulator and in the ledger alike. Once revokes work again, beat's
    safety net revokes every replaced token: one live token is left."""
    sim = stack.sim
    org, username, user_id, app = setup_org(stack, "budget")
    sim.fault(kind="error_503", path_prefix=REVOKE_PATH)

    tokens = []
    for n in range(1, 7):
        if n == 5:
            budget = token_budget_for(
                org=SalesforceOrg.objects.get(pk=org.pk), reauthorizing=True
            )
            assert budget.live == 4 and budget.warns  # warned on the fifth
            assert "4 live tokens for integration@budget.example" in budget.warning
        tokens.append(reauthorize(org, username))
        assert_ledger_matches_simulator(stack, tokens, user_id, org, app)
    assert sim_live(stack, user_id, app) == 5

    first = record_of(tokens[0])
    assert first.revoke_reason == Reason.EVICTED
    assert first.lost_connection_of is None  # already replaced, no org lost it
    assert [record_of(t).purpose for t in tokens] == ["reauthorization"] * 6
    for token in tokens[1:5]:
        assert record_of(token).revoke_owed
        assert record_of(token).revoke_reason == Reason.REPLACED

    sim.clear_faults()
    resume_later(600)  # beat, after the task's own retries gave out
    wait_for(lambda: sim_live(stack, user_id, app) == 1, timeout=30)
    wait_for(lambda: ledger_live(user_id, org) == 1, timeout=30)
    assert_ledger_matches_simulator(stack, tokens, user_id, org, app)
    assert record_of(tokens[-1]).org_id == org.pk
    assert sim.token_active(SalesforceOrg.objects.get(pk=org.pk).get_refresh_token())
    for token in tokens[1:5]:
        record = record_of(token)
        assert record.revoked_at and record.revoke_reason == Reason.REPLACED


def test_the_sixth_approval_takes_the_orgs_own_token_and_the_org_says_so(stack):
    """Authorize at Salesforce again and again on a change with the org's
    own app: the org's token is the oldest, so the sixth approval evicts
    it. The ledger names the org, its health check finds it needs
    re-authorization, and every abandoned token is revoked in the end."""
    sim = stack.sim
    org, username, user_id, app = setup_org(stack, "evicted")
    org_token = reauthorize(org, username)
    org = SalesforceOrg.objects.get(pk=org.pk)
    sim.fault(kind="error_503", path_prefix=REVOKE_PATH)
    staged = services.connection_change_start(
        actor=Actor.system(), org=org, existing_app=org.client_app
    )
    wait_for(lambda: change(staged.pk).state == "active", timeout=30)

    tokens = [org_token]
    for _ in range(4):
        tokens.append(authorize(staged, username))
    assert_ledger_matches_simulator(stack, tokens, user_id, org, app)
    budget = token_budget_for(org=org, client_app_id=org.client_app_id)
    assert budget.live == 5
    assert budget.losing == [org.label]
    assert f"and {org.label} would lose the connection." in budget.warning

    tokens.append(authorize(staged, username))  # the sixth approval

    assert not sim.token_active(org_token)
    evicted = record_of(org_token)
    assert evicted.revoke_reason == Reason.EVICTED
    assert evicted.lost_connection_of_id == org.pk
    assert AuditEvent.objects.filter(action="org.token_evicted", org=org).count() == 1
    wait_for(
        lambda: (
            SalesforceOrg.objects.get(pk=org.pk).status
            == ConnectionStatus.NEEDS_REAUTHORIZATION
        ),
        timeout=30,
    )
    assert_ledger_matches_simulator(stack, tokens, user_id, org, app)

    sim.clear_faults()
    services.connection_change_cancel(actor=Actor.system(), change=change(staged.pk))
    resume_later(600)
    wait_for(lambda: sim_live(stack, user_id, app) == 0, timeout=30)
    wait_for(lambda: ledger_live(user_id, org) == 0, timeout=30)
    assert_ledger_matches_simulator(stack, tokens, user_id, org, app)
    for token in tokens[1:]:
        assert record_of(token).revoke_reason == Reason.ABANDONED


def test_a_token_for_the_wrong_org_is_revoked_through_the_ledger(stack):
    """Logging in to another org: nothing is stored on the org, the token
    is recorded as wrong_org and revoked, with retries, even through a
    burst of 503s that used to lose it."""
    sim = stack.sim
    org, _username, _user_id, app = setup_org(stack, "mixup")
    other = sim.create_org("mixup-other")
    stranger = "someone@mixup-other.example"
    stranger_id = sim.create_user(other["org_id"], stranger)
    staged, auth = services.reauthorization_start(actor=Actor.system(), org=org)
    # One revoke's sends all meet 503s: the task retries later.
    sim.fault(kind="error_503", path_prefix=REVOKE_PATH, count=4)
    callback = salesforce_login(auth.url, stranger, "sf-password")
    code = parse_qs(urlsplit(callback).query)["code"][0]
    services.connection_change_receive_code(change_id=staged.pk, code=code)
    wait_for(lambda: change(staged.pk).failure_code == "org_mismatch", timeout=30)

    record = RefreshTokenRecord.objects.get(salesforce_user_id=stranger_id)
    assert record.revoke_reason == Reason.WRONG_ORG and record.org is None
    wait_for(
        lambda: RefreshTokenRecord.objects.get(pk=record.pk).revoked_at, timeout=60
    )
    assert sim_live(stack, stranger_id, app) == 0
    assert RefreshTokenRecord.objects.get(pk=record.pk).revoke_token_encrypted == ""
    assert SalesforceOrg.objects.get(pk=org.pk).refresh_token_encrypted == ""


def test_a_rotating_app_keeps_one_live_token_in_the_ledger(stack):
    """Salesforce rotates the refresh token on every refresh (the app's
    policy): the health check stores the new one, the ledger marks the
    parent rotated and keeps the approval's age, and still counts one."""
    org, username, user_id, app = setup_org(stack, "rotating", rotate=True)
    approved = reauthorize(org, username)
    approval = record_of(approved)

    # The permission check after the re-authorization refreshes (and so
    # rotates) once; then two more refreshes, as a health check makes them.
    wait_for(
        lambda: PermissionCheck.objects.filter(org=org, state="done").exists(),
        timeout=30,
    )
    for _ in range(2):
        org_access_token(org_id=org.pk)

    current = SalesforceOrg.objects.get(pk=org.pk).get_refresh_token()
    rotated = record_of(current)
    assert rotated.purpose == "rotation" and rotated.org_id == org.pk
    assert rotated.approved_at == approval.approved_at
    assert record_of(approved).revoke_reason == Reason.ROTATED
    assert ledger_live(user_id, org) == sim_live(stack, user_id, app) == 1
    assert not stack.sim.token_active(approved) and stack.sim.token_active(current)
    rotations = RefreshTokenRecord.objects.filter(org=org, purpose="rotation")
    assert rotations.count() == 3
    assert rotations.filter(revoke_reason=Reason.ROTATED).count() == 2
    assert token_budget_for(org=SalesforceOrg.objects.get(pk=org.pk)).live == 1


def test_a_token_revoked_in_setup_stops_counting(stack):
    """Revoked at Salesforce behind the console's back (Setup, or an
    approval elsewhere): the next refresh is told so, and the ledger stops
    counting the token."""
    org, username, user_id, app = setup_org(stack, "setup-revoke")
    token = reauthorize(org, username)
    wait_for(
        lambda: PermissionCheck.objects.filter(org=org, state="done").exists(),
        timeout=30,
    )
    stack.sim.post(f"/orgs/{org.org_id}/users/{user_id}/revoke-tokens")

    with pytest.raises(salesforce.InvalidGrant):
        org_access_token(org_id=org.pk)  # as a health check refreshes

    assert record_of(token).revoke_reason == Reason.REVOKED_AT_SALESFORCE
    assert ledger_live(user_id, org) == sim_live(stack, user_id, app) == 0
    assert token_budget_for(org=SalesforceOrg.objects.get(pk=org.pk)).live == 0
