"""The worker's side of one delegated link in a constant number of SQL
queries (SPEC §9; issue 12's benchmark: 200 links at once on one worker),
against the live simulator: the code exchange, the re-authorization's
apply, its permission check and the old token's revoke.

The cache is in memory here, as Redis is in production: cache round trips
are no SQL there. Inside the test's transaction every ``atomic`` block is a
SAVEPOINT and its RELEASE, counted here; in production they are BEGIN and
COMMIT."""

from __future__ import annotations

from urllib.parse import urlsplit

import pytest
from django.test import Client

from companies.models import AuditEvent
from connections.models import CampaignOrg, ConnectionChange, PermissionCheck
from connections.services import authorization, revocation, verification
from orgs.models import RefreshTokenRecord
from tests.factories import CompanyFactory
from tests.integration.test_delegated_links import copied_link, failed_org, operator_of
from tests.simclient import salesforce_login

pytestmark = pytest.mark.integration

# The exchange task, which applies a re-authorization itself. Lock the
# change and wipe its code (4, with the savepoint pair); the ledger's
# write-ahead: look the token up, insert it (with its own savepoint pair),
# lock the user's live tokens (7); keep the token and apply, in one
# transaction: lock the change with its creator, claim the token, the app's
# scopes, lock the org; the ledger (2 updates); save the org and the change;
# audit; the permission check; the campaign row (lock, save, audit); the
# savepoint pair (15); once committed, the campaign's close if no row is
# left open (one update, no lock).
EXCHANGE_QUERIES = 27
# Permission check: the check, the org, the result, the org's status.
CHECK_QUERIES = 6
# Revoke: the change, then mark it and the ledger revoked.
REVOKE_QUERIES = 5


@pytest.fixture
def link(settings, sim, db):
    settings.CACHES = {
        "default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}
    }
    settings.SALESFORCE_SIMULATOR_URL = sim.base_url
    settings.PUBLIC_URL = "http://testserver"
    stack = type("Stack", (), {"sim": sim, "url": settings.PUBLIC_URL})
    company = CompanyFactory(name="Initech")
    org = failed_org(stack, "initech-q", company)
    user, _ = operator_of(company)
    row, path = copied_link(user, org)
    browser = Client()
    assert browser.get(path).status_code == 200
    go = browser.post(path)
    back = urlsplit(
        salesforce_login(go["Location"], "admin@initech-q.example", "sf-password")
    )
    assert browser.get(f"{back.path}?{back.query}").status_code == 302
    change = ConnectionChange.objects.get(org=org, state="exchanging")
    return row, change


def test_one_link_costs_the_worker_a_constant_number_of_queries(
    link, django_assert_num_queries, django_capture_on_commit_callbacks
):
    row, change = link
    with (
        django_assert_num_queries(EXCHANGE_QUERIES),
        django_capture_on_commit_callbacks(execute=True),
    ):
        assert authorization.connection_change_exchange(change_id=change.pk) == (
            "applied"
        )
    check = PermissionCheck.objects.get(org_id=row.org_id)
    with django_assert_num_queries(CHECK_QUERIES):
        assert verification.permission_check_run(check_id=check.pk) == "done"
    with django_assert_num_queries(REVOKE_QUERIES):
        assert revocation.revoke_old_token(change_id=change.pk) == "revoked"

    # Everything the fewer queries must still do.
    row = CampaignOrg.objects.select_related("campaign").get(pk=row.pk)
    assert row.state == CampaignOrg.State.CONNECTED
    assert row.connected_as_username == "admin@initech-q.example"
    assert row.campaign.is_closed
    used = AuditEvent.objects.get(action="campaign.link_used")
    assert used.org_id == row.org_id and used.company_id == row.company_id
    reauthorized = AuditEvent.objects.get(action="org.reauthorize")
    assert reauthorized.actor == row.link_created_by
    record = RefreshTokenRecord.objects.get(
        purpose=RefreshTokenRecord.Purpose.DELEGATED_LINK
    )
    assert record.org_id == row.org_id and record.revoked_at is None
    assert record.revoke_token_encrypted == "" and not record.revoke_reason
    assert record.salesforce_username == "admin@initech-q.example"
    assert PermissionCheck.objects.get(pk=check.pk).backup_ok
