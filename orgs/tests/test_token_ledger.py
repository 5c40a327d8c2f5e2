"""The token ledger and the token budget guard (SPEC §9): every refresh
token the console obtains is recorded, every revoke marks it, a sixth
approval evicts the oldest, and the guard warns at four live tokens."""

from __future__ import annotations

from datetime import timedelta
from typing import Any
from unittest import mock

import pytest
import responses
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from companies.models import AuditEvent
from connections import salesforce
from connections.models import Campaign, CampaignOrg, ConnectionChange
from connections.salesforce.urls import to_18
from connections.services import revocation
from connections.services.authorization import token_purpose
from orgs import token_ledger
from orgs.models import RefreshTokenRecord, SalesforceOrg
from orgs.selectors import token_budget_for, token_budgets_for
from orgs.tokens import org_refresh_token_store
from tests.conftest import world  # noqa: F401
from tests.factories import ExternalClientAppFactory, SalesforceOrgFactory
from vbsf import encryption
from vbsf.queue import PRIORITY_BACKGROUND

pytestmark = pytest.mark.django_db

SF_ORG = to_18("00D5g0000099999")
USER = "0055g0000012345AAA"
LOGIN = "https://ledger.my.salesforce.com"
REVOKE_URL = f"{LOGIN}/services/oauth2/revoke"
Reason = RefreshTokenRecord.RevokeReason


@pytest.fixture(autouse=True)
def sf_settings(settings: Any) -> Any:
    settings.SALESFORCE_SIMULATOR_URL = ""
    settings.SALESFORCE_MAX_RETRIES = 0
    settings.SALESFORCE_RETRY_BACKOFF = 0.0
    return settings


@pytest.fixture
def http() -> Any:
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        yield rsps


@pytest.fixture
def enqueued() -> Any:
    """Tasks the ledger sends after commit, by name and arguments."""
    with mock.patch.object(token_ledger, "enqueue_on_commit") as send:
        yield send


def connected_org(token: str = "org-token", **kwargs: Any) -> SalesforceOrg:
    org = SalesforceOrgFactory(
        org_id=SF_ORG,
        login_url=LOGIN,
        connected_as_user_id=USER,
        connected_as_username="int@ledger.example",
        refresh_token=token,
        **kwargs,
    )
    approve(token, org=org, app_id=org.client_app_id)
    return org


def approve(
    token: str,
    *,
    app_id: int | None,
    org: SalesforceOrg | None = None,
    minutes_ago: int = 0,
    **kwargs: Any,
) -> RefreshTokenRecord:
    with mock.patch.object(
        token_ledger.timezone,
        "now",
        return_value=timezone.now() - timedelta(minutes=minutes_ago),
    ):
        return token_ledger.refresh_token_record(
            token=token,
            client_app_id=app_id,
            salesforce_org_id=SF_ORG,
            user_id=USER,
            username="int@ledger.example",
            purpose=RefreshTokenRecord.Purpose.REAUTHORIZATION,
            login_url=LOGIN,
            org=org,
            **kwargs,
        )


def live_fingerprints() -> set[str]:
    return set(
        RefreshTokenRecord.objects.filter(revoked_at__isnull=True).values_list(
            "fingerprint", flat=True
        )
    )


# --- recording ---------------------------------------------------------------


def test_recording_keeps_a_fingerprint_and_a_hash_never_the_token():
    app = ExternalClientAppFactory()
    record = approve("tok-secret-1", app_id=app.pk)

    assert record.fingerprint == encryption.fingerprint("tok-secret-1")
    assert record.token_hash == token_ledger.refresh_token_hash("tok-secret-1")
    assert record.revoke_token_encrypted == ""
    assert "tok-secret-1" not in str(
        RefreshTokenRecord.objects.filter(pk=record.pk).values().get()
    )


def test_recording_the_same_token_twice_keeps_one_record():
    """A task delivered twice records once."""
    app = ExternalClientAppFactory()
    first = approve("tok-a", app_id=app.pk)
    again = approve("tok-a", app_id=app.pk)

    assert again.pk == first.pk
    assert RefreshTokenRecord.objects.count() == 1


def test_the_sixth_approval_evicts_the_oldest_and_names_the_org_that_lost_it(
    enqueued,
):
    org = connected_org("org-token")
    RefreshTokenRecord.objects.update(approved_at=timezone.now() - timedelta(hours=1))
    for n in range(4):
        approve(f"other-{n}", app_id=org.client_app_id, minutes_ago=50 - n)
    assert len(live_fingerprints()) == 5
    assert not RefreshTokenRecord.objects.filter(revoked_at__isnull=False).exists()

    approve("sixth", app_id=org.client_app_id)

    evicted = RefreshTokenRecord.objects.get(revoked_at__isnull=False)
    assert evicted.fingerprint == encryption.fingerprint("org-token")
    assert evicted.revoke_reason == Reason.EVICTED
    assert evicted.lost_connection_of == org
    assert len(live_fingerprints()) == 5
    event = AuditEvent.objects.get(action="org.token_evicted")
    assert event.org_id == org.pk and "sixth time" in event.summary
    enqueued.assert_any_call("orgs.tasks.check_org_health", org_id=org.pk)


def test_eviction_counts_per_user_and_app():
    org = connected_org()
    other_app = ExternalClientAppFactory()
    for n in range(6):
        approve(f"other-app-{n}", app_id=other_app.pk)

    assert RefreshTokenRecord.objects.get(org=org).revoked_at is None
    assert (
        RefreshTokenRecord.objects.filter(
            client_app=other_app, revoked_at__isnull=True
        ).count()
        == 5
    )


def test_a_rotated_token_keeps_the_age_of_its_approval(enqueued):
    """Salesforce evicts by approval age; a rotation is no new approval."""
    org = connected_org("first")
    parent = RefreshTokenRecord.objects.get(org=org)

    rotated = token_ledger.refresh_token_rotated(
        org=org,
        parent_fingerprint=parent.fingerprint,
        token="first-rotated",
        stored=True,
    )

    parent.refresh_from_db()
    assert parent.revoke_reason == Reason.ROTATED and parent.revoked_at is not None
    assert rotated.approved_at == parent.approved_at
    assert rotated.purpose == RefreshTokenRecord.Purpose.ROTATION
    assert rotated.revoke_requested_at is None
    enqueued.assert_not_called()


def test_a_rotation_that_lost_to_a_newer_token_is_revoked(enqueued):
    org = connected_org("first")
    rotated = token_ledger.refresh_token_rotated(
        org=org,
        parent_fingerprint=encryption.fingerprint("first"),
        token="orphan",
        stored=False,
    )

    assert rotated.revoke_reason == Reason.ABANDONED
    assert rotated.get_revoke_token() == "orphan"
    enqueued.assert_called_once_with(
        "connections.tasks.revoke_refresh_token",
        record_id=rotated.pk,
        priority=PRIORITY_BACKGROUND,
    )


def test_an_exchange_is_written_ahead_and_claimed_by_the_change():
    """Between Salesforce's answer and the change keeping the token, the
    token is owed a revoke: a worker killed there leaves it to beat."""
    app = ExternalClientAppFactory()
    record = token_ledger.refresh_token_pending(
        token="exchanged",
        client_app_id=app.pk,
        salesforce_org_id=SF_ORG,
        user_id=USER,
        purpose=RefreshTokenRecord.Purpose.EDIT_CONNECTION,
        login_url=LOGIN,
    )
    assert record.revoke_owed and record.get_revoke_token() == "exchanged"

    assert token_ledger.refresh_token_claim(token="exchanged", username="u@x.example")

    record.refresh_from_db()
    assert not record.revoke_owed and record.revoke_token_encrypted == ""
    assert record.salesforce_username == "u@x.example"
    assert record.is_live


def test_a_token_evicted_before_the_change_kept_it_is_not_claimed():
    app = ExternalClientAppFactory()
    record = approve("doomed", app_id=app.pk)
    RefreshTokenRecord.objects.filter(pk=record.pk).update(
        revoked_at=timezone.now(), revoke_reason=Reason.EVICTED
    )
    assert not token_ledger.refresh_token_claim(token="doomed")


def test_finish_replacing_the_org_token_owes_its_revoke():
    org = connected_org("old")
    approve("new", app_id=org.client_app_id)

    replaced_fingerprint = org.refresh_token_fingerprint
    org_refresh_token_store(org=org, token="new")
    org.save()
    token_ledger.refresh_token_kept(token="new", org=org)
    token_ledger.refresh_token_owed_by_fingerprint(
        fingerprint=replaced_fingerprint, reason=Reason.REPLACED, org=org
    )

    old = RefreshTokenRecord.objects.get(fingerprint=encryption.fingerprint("old"))
    assert old.revoke_owed and old.revoke_reason == Reason.REPLACED
    new = RefreshTokenRecord.objects.get(fingerprint=encryption.fingerprint("new"))
    assert new.org == org and new.is_live and not new.revoke_owed


# --- the revoke queue ----------------------------------------------------------


def owed(token: str, enqueued: Any) -> RefreshTokenRecord:
    app = ExternalClientAppFactory()
    return approve(token, app_id=app.pk, revoke_reason=Reason.WRONG_ORG)


def test_a_held_token_is_revoked_and_wiped(http, enqueued):
    record = owed("wrong-org-token", enqueued)
    enqueued.assert_called_once_with(
        "connections.tasks.revoke_refresh_token",
        record_id=record.pk,
        priority=PRIORITY_BACKGROUND,
    )
    http.post(REVOKE_URL, status=200)

    assert revocation.token_record_revoke(record_id=record.pk) == "revoked"

    record.refresh_from_db()
    assert record.revoked_at is not None and record.revoke_reason == Reason.WRONG_ORG
    assert record.revoke_token_encrypted == ""
    assert http.calls[0].request.body == "token=wrong-org-token"
    assert revocation.token_record_revoke(record_id=record.pk) == "skipped"


def test_a_failed_revoke_keeps_the_token_and_the_error_for_the_retry(http, enqueued):
    record = owed("unlucky", enqueued)
    http.post(REVOKE_URL, status=503, body="down")

    with pytest.raises(salesforce.SalesforceError):
        revocation.token_record_revoke(record_id=record.pk)

    record.refresh_from_db()
    assert record.revoke_owed and record.get_revoke_token() == "unlucky"
    assert record.last_error and "unlucky" not in record.last_error


def test_beat_resends_a_lost_revoke_then_gives_up_with_an_audit_event(enqueued):
    record = owed("lost", enqueued)
    with mock.patch.object(revocation, "enqueue_now") as send:
        assert revocation.token_records_revoke_resume() == 0  # just sent
        RefreshTokenRecord.objects.filter(pk=record.pk).update(
            revoke_requested_at=timezone.now() - timedelta(minutes=6)
        )
        assert revocation.token_records_revoke_resume() == 1
        assert revocation.token_records_revoke_resume() == 0  # waits again
        send.assert_called_once_with(
            "connections.tasks.revoke_refresh_token",
            record_id=record.pk,
            priority=PRIORITY_BACKGROUND,
        )
        RefreshTokenRecord.objects.filter(pk=record.pk).update(
            revoke_requested_at=timezone.now() - timedelta(minutes=6),
            revoke_attempts=revocation.MAX_REVOKE_ATTEMPTS - 1,
        )
        assert revocation.token_records_revoke_resume() == 0
    event = AuditEvent.objects.get(action="refresh_token.revoke_failed")
    assert "Setup" in event.summary and "lost" not in event.summary


def test_a_change_revoking_its_replaced_token_marks_the_ledger(http):
    org = connected_org("replaced-by-finish")
    change = ConnectionChange.objects.create(
        kind=ConnectionChange.Kind.REAUTHORIZE,
        org=org,
        client_app=org.client_app,
        login_url=LOGIN,
        state=ConnectionChange.State.APPLIED,
    )
    change.hold_for_revocation(encryption.encrypt("replaced-by-finish"))
    change.save()
    http.post(REVOKE_URL, status=200)

    assert revocation.revoke_old_token(change_id=change.pk) == "revoked"

    record = RefreshTokenRecord.objects.get(org=org)
    assert record.revoked_at is not None


# --- the guard -----------------------------------------------------------------


def test_the_guard_counts_live_tokens_and_warns_at_four():
    org = connected_org("org-token", alias="ledger-prod")
    for n in range(2):
        approve(f"pending-revoke-{n}", app_id=org.client_app_id)
    budget = token_budget_for(org=org)
    assert budget is not None
    assert (budget.live, budget.warns, budget.warning) == (3, False, "")

    approve("fourth", app_id=org.client_app_id)
    budget = token_budget_for(org=org)

    assert budget.live == 4 and budget.warns
    assert budget.warning == (
        "The console already holds 4 live tokens for int@ledger.example with "
        "this app. Salesforce keeps five: this approval makes five, and the "
        "next will revoke the oldest, and ledger-prod would lose the connection "
        "then."
    )
    # Re-authorizing replaces the org's own token: it loses nothing.
    again = token_budget_for(org=org, reauthorizing=True)
    assert again.losing == [] and again.warning.endswith("revoke the oldest.")


def test_the_guard_names_no_org_when_the_oldest_token_is_already_replaced():
    org = connected_org("org-token")
    RefreshTokenRecord.objects.update(approved_at=timezone.now())
    for n in range(3):
        approve(f"old-{n}", app_id=org.client_app_id, minutes_ago=30 - n)
    budget = token_budget_for(org=org)
    assert budget.live == 4 and budget.losing == []


def test_the_guard_counts_a_token_the_ledger_never_saw():
    """An org connected before the ledger existed still holds a token."""
    org = SalesforceOrgFactory(
        org_id=SF_ORG, connected_as_user_id=USER, refresh_token="unrecorded"
    )
    for n in range(3):
        approve(f"recorded-{n}", app_id=org.client_app_id)

    budget = token_budget_for(org=org)
    assert budget.live == 4 and budget.losing == [org.label]


def test_the_guard_needs_a_connected_as_user_and_an_app():
    assert token_budget_for(org=SalesforceOrgFactory(connected_as_user_id="")) is None


def test_revoked_tokens_do_not_count():
    org = connected_org()
    for n in range(4):
        approve(f"gone-{n}", app_id=org.client_app_id)
    RefreshTokenRecord.objects.exclude(org=org).update(revoked_at=timezone.now())
    assert token_budget_for(org=org).live == 1


# --- the org page --------------------------------------------------------------


def page_queries(client: Any, org: SalesforceOrg) -> tuple[int, str]:
    with CaptureQueriesContext(connection) as ctx:
        response = client.get(f"/orgs/{org.pk}/")
    assert response.status_code == 200
    return len(ctx.captured_queries), response.content.decode()


def test_the_org_page_shows_the_live_token_count_in_constant_queries(world):  # noqa: F811
    org = world.acme_org
    SalesforceOrg.objects.filter(pk=org.pk).update(
        org_id=SF_ORG, connected_as_user_id=USER
    )
    org.refresh_from_db()
    approve("the-org-token", app_id=org.client_app_id, org=org)
    client = world.client_for("operator")

    few, page = page_queries(client, org)
    assert "Live tokens for" in page and "1 of 5" in page
    assert "Salesforce keeps five" not in page

    for n in range(3):
        approve(f"more-{n}", app_id=org.client_app_id)
    many, page = page_queries(client, org)
    assert "4 of 5" in page
    assert "The console already holds 4 live tokens" in page
    assert many == few


def test_the_wizard_warns_before_authorize_at_salesforce(world):  # noqa: F811
    org = world.acme_org
    SalesforceOrg.objects.filter(pk=org.pk).update(
        org_id=SF_ORG, connected_as_user_id=USER, connected_as_username="int@acme"
    )
    org.refresh_from_db()
    ConnectionChange.objects.create(
        kind=ConnectionChange.Kind.EDIT,
        org=org,
        company=org.company,
        client_app=org.client_app,
        login_url=org.login_url,
        started_version=org.version,
        state=ConnectionChange.State.ACTIVE,
    )
    client = world.client_for("administrator")
    url = f"/orgs/{org.pk}/edit-connection/app/"
    for n in range(3):
        approve(f"wizard-{n}", app_id=org.client_app_id)
    page = client.get(url).content.decode()
    assert "Authorize at Salesforce" in page
    assert "Salesforce keeps five" not in page

    approve("wizard-fourth", app_id=org.client_app_id)
    page = client.get(url).content.decode()

    assert "The console already holds 4 live tokens for int@acme" in page
    assert page.index("Salesforce keeps five") < page.index("Authorize at Salesforce")


def test_a_token_obtained_through_a_delegated_link_says_so():
    org = connected_org()
    change = ConnectionChange.objects.create(
        kind=ConnectionChange.Kind.REAUTHORIZE,
        org=org,
        client_app=org.client_app,
        login_url=LOGIN,
        state=ConnectionChange.State.EXCHANGING,
    )
    assert token_purpose(change) == RefreshTokenRecord.Purpose.REAUTHORIZATION
    campaign = Campaign.objects.create(name="Rotation", deadline=timezone.now())
    CampaignOrg.objects.create(
        campaign=campaign,
        org=org,
        company=org.company,
        change=change,
        browser_binding="bound-to-the-link-browser",
    )
    assert token_purpose(change) == RefreshTokenRecord.Purpose.DELEGATED_LINK


def test_budgets_of_many_orgs_take_one_query(django_assert_num_queries):
    """For a campaign's rows: the same answers as one org at a time."""
    org = connected_org("first-org-token", alias="ledger-prod")
    for n in range(3):
        approve(f"extra-{n}", app_id=org.client_app_id)
    other = SalesforceOrgFactory(
        connected_as_user_id="0055g0000054321AAA", refresh_token="other-token"
    )
    bare = SalesforceOrgFactory(connected_as_user_id="")

    with django_assert_num_queries(1):
        budgets = token_budgets_for(orgs=[org, other, bare])

    assert set(budgets) == {org.pk, other.pk}
    assert budgets[org.pk] == token_budget_for(org=org, reauthorizing=True)
    assert budgets[org.pk].live == 4 and budgets[org.pk].warns
    assert budgets[other.pk].live == 1 and not budgets[other.pk].warns


@pytest.mark.django_db(transaction=True)
def test_the_migration_records_the_tokens_orgs_already_hold():
    """GIVEN orgs connected before the ledger WHEN migration 0006 runs THEN
    each stored token is a live record of its org, user and app."""
    before = [("orgs", "0005_salesforce_url_check")]
    executor = MigrationExecutor(connection)
    latest = executor.loader.graph.leaf_nodes()
    executor.migrate(before)
    try:
        old = executor.loader.project_state(before).apps
        Company = old.get_model("companies", "Company")
        App = old.get_model("connections", "ExternalClientApp")
        Org = old.get_model("orgs", "SalesforceOrg")
        app = App.objects.create(name="old", consumer_key="3MVG9old")
        org = Org.objects.create(
            alias="before-ledger",
            org_id=SF_ORG,
            company=Company.objects.create(name="Acme"),
            login_url=LOGIN,
            client_app=app,
            connected_as_user_id=USER,
            connected_as_username="int@ledger.example",
            refresh_token_encrypted=encryption.encrypt("held-before"),
            refresh_token_fingerprint=encryption.fingerprint("held-before"),
        )
        Org.objects.create(
            alias="no-token",
            org_id="00D5g0000088888AAA",
            company=org.company,
            login_url=LOGIN,
        )
        MigrationExecutor(connection).migrate(latest)
    finally:
        MigrationExecutor(connection).migrate(latest)
    (record,) = RefreshTokenRecord.objects.all()
    assert record.org_id == org.pk and record.client_app_id == app.pk
    assert record.token_hash == token_ledger.refresh_token_hash("held-before")
    assert record.purpose == "existing" and record.is_live
    assert token_budget_for(org=SalesforceOrg.objects.get(pk=org.pk)).live == 1


def test_a_token_typed_in_the_admin_is_recorded_and_the_replaced_one_revoked(
    world,  # noqa: F811
    enqueued,
):
    org = world.acme_org
    SalesforceOrg.objects.filter(pk=org.pk).update(
        org_id=SF_ORG, connected_as_user_id=USER
    )
    org.refresh_from_db()
    org_refresh_token_store(org=org, token="typed-before")
    org.save()
    client = world.client_for("administrator")
    page = client.get(f"/admin/orgs/salesforceorg/{org.pk}/change/")
    data = {
        k: v for k, v in page.context["adminform"].form.initial.items() if v is not None
    }
    data |= {
        "company": org.company_id,
        "client_app": org.client_app_id,
        "granted_scopes": "[]",
        "refresh_token": "typed-after",
    }

    response = client.post(f"/admin/orgs/salesforceorg/{org.pk}/change/", data)

    assert response.status_code == 302, response.context["adminform"].form.errors
    new = RefreshTokenRecord.objects.get(
        token_hash=token_ledger.refresh_token_hash("typed-after")
    )
    assert new.org == org and new.is_live and not new.revoke_owed
    old = RefreshTokenRecord.objects.get(
        token_hash=token_ledger.refresh_token_hash("typed-before")
    )
    assert (
        old.revoke_reason == Reason.REPLACED
        and old.get_revoke_token() == "typed-before"
    )
    enqueued.assert_called_once_with(
        "connections.tasks.revoke_refresh_token",
        record_id=old.pk,
        priority=PRIORITY_BACKGROUND,
    )


def test_reauthorize_past_four_live_tokens_needs_the_warning_read(world):  # noqa: F811
    org = world.acme_org
    SalesforceOrg.objects.filter(pk=org.pk).update(
        org_id=SF_ORG, connected_as_user_id=USER, connected_as_username="int@acme"
    )
    org.refresh_from_db()
    for n in range(4):
        approve(f"live-{n}", app_id=org.client_app_id)
    client = world.client_for("operator")
    url = f"/orgs/{org.pk}/reauthorize/"

    stopped = client.post(url)

    assert stopped.status_code == 302 and stopped["Location"] == f"/orgs/{org.pk}/"
    assert not ConnectionChange.objects.filter(org=org).exists()
    page = client.get(stopped["Location"]).content.decode()
    assert "Choose “Re-authorize anyway” to go on." in page
    assert 'name="token_budget_confirmed"' in page

    confirmed = client.post(url, {"token_budget_confirmed": "1"})

    assert confirmed.status_code == 302
    assert "/services/oauth2/authorize" in confirmed["Location"]
    assert ConnectionChange.objects.filter(org=org, kind="reauthorize").count() == 1


def test_a_revoke_goes_to_the_org_s_current_host_after_its_url_moved(http, enqueued):
    """The soak found revokes resent to a My Domain host that Edit
    organization URL had since replaced: ten 404s, then "revoke it in Setup"."""
    org = connected_org("held-by-org")
    record = approve(
        "moved-away", org=org, app_id=org.client_app_id, revoke_reason=Reason.REPLACED
    )
    moved = "https://ledger-new.my.salesforce.com"
    SalesforceOrg.objects.filter(pk=org.pk).update(login_url=moved)
    http.post(f"{moved}/services/oauth2/revoke", status=200)

    assert revocation.token_record_revoke(record_id=record.pk) == "revoked"
    assert http.calls[0].request.url.startswith(moved)

    change = ConnectionChange.objects.create(
        kind=ConnectionChange.Kind.REAUTHORIZE,
        org=org,
        company=org.company,
        client_app=org.client_app,
        login_url=LOGIN,
        started_version=org.version,
        old_refresh_token_encrypted=encryption.encrypt("replaced-before-move"),
    )
    assert revocation.revoke_old_token(change_id=change.pk) == "revoked"
    assert http.calls[1].request.url.startswith(moved)
