"""A worker killed with SIGKILL in the middle of a delegated link's code
exchange (SPEC §9): the campaign row is never connected with a half-stored
token; once beat's safety net has ended the exchange, the row is failed
with the reason and the same browser logs in again through its link."""

from __future__ import annotations

from urllib.parse import urlsplit

import pytest
from django.test import Client

from companies.models import RoleGrant
from connections.models import CampaignOrg
from orgs.models import SalesforceOrg
from tests.factories import CompanyFactory, UserFactory
from tests.faults.flows import TOKEN_PATH, fault, kill_mid_call, resume_later
from tests.integration.test_delegated_links import (
    copied_link,
    failed_org,
    retry_until_connected,
)
from tests.simclient import salesforce_login

pytestmark = pytest.mark.integration


def test_killed_mid_exchange_the_row_stays_retryable(fault_stack):
    sim = fault_stack.sim
    company = CompanyFactory(name="Crashco")
    org = failed_org(fault_stack, "crash-link", company)
    user = UserFactory(username="olga-crash")
    RoleGrant.objects.create(user=user, role="operator", company=company)
    row, link = copied_link(user, org)
    before = SalesforceOrg.objects.get(pk=org.pk).refresh_token_fingerprint

    browser = Client()
    browser.get(link)
    go = browser.post(link)
    callback = urlsplit(
        salesforce_login(go["Location"], "admin@crash-link.example", "sf-password")
    )
    slow = fault(sim, kind="latency", path_prefix=TOKEN_PATH, latency_ms=1500, count=1)
    result = browser.get(f"{callback.path}?{callback.query}")["Location"]
    kill_mid_call(fault_stack, slow)
    fault_stack.workers.restart()

    # Nothing half-stored: the row waits, the org keeps its old token.
    stuck = CampaignOrg.objects.get(pk=row.pk)
    assert stuck.state == "opened" and stuck.change.state == "exchanging"
    assert SalesforceOrg.objects.get(pk=org.pk).refresh_token_fingerprint == before
    assert "completing the connection" in browser.get(result).content.decode()

    assert resume_later(600) == 1
    failed = CampaignOrg.objects.get(pk=row.pk)
    assert failed.state == "failed" and "interrupted" in failed.last_event
    assert failed.link_nonce  # the link still works, in this browser only
    page = browser.get(result).content.decode()
    assert "interrupted" in page and "Log in with Salesforce" in page
    assert Client().get(link).status_code == 410

    retry_until_connected(browser, row, "admin@crash-link.example")
    fresh = SalesforceOrg.objects.get(pk=org.pk)
    assert fresh.refresh_token_fingerprint != before
    assert sim.token_active(fresh.get_refresh_token())
