"""Kept access tokens: a healthy org's check is one Salesforce request.

Salesforce is mocked with ``responses``; the cache is the configured one
(the database cache here, Redis in CI), except where queries are counted.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any
from unittest import mock

import pytest
import responses
from django.core.cache import cache
from django.db import connection
from django.test.utils import CaptureQueriesContext

from connections import salesforce
from orgs import tasks
from orgs.health import org_health_check, orgs_health_check
from orgs.models import ConnectionStatus, SalesforceOrg
from orgs.tokens import (
    access_token_cache_key,
    org_access_token,
    org_cached_access_token,
    org_refresh_token_store,
)
from tests.factories import SalesforceOrgFactory
from vbsf import encryption

pytestmark = pytest.mark.django_db

USER_ID = "00536000000IigRAAS"
ACCESS = "00D5g0000000001!SENTINEL-access-token"
FRESH = "00D5g0000000001!SENTINEL-fresh-access-token"
QUERY = re.compile(r"https://[^/]+/services/data/v66\.0/query.*")
TOKEN = re.compile(r"https://[^/]+/services/oauth2/token")
EXPIRED = [{"message": "Session expired or invalid", "errorCode": "INVALID_SESSION_ID"}]


@pytest.fixture(autouse=True)
def sf_settings(settings: Any) -> Any:
    settings.SALESFORCE_SIMULATOR_URL = ""
    settings.SALESFORCE_API_VERSION = "66.0"
    settings.SALESFORCE_RETRY_BACKOFF = 0.0
    settings.ACCESS_TOKEN_CACHE_SECONDS = 900
    return settings


@pytest.fixture
def http() -> Iterator[responses.RequestsMock]:
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        yield rsps


def token_body(org: SalesforceOrg, access: str = FRESH, **extra: Any) -> dict:
    return {
        "access_token": access,
        "instance_url": org.instance_url,
        "id": f"https://login.salesforce.com/id/{org.org_id}/{USER_ID}",
        "token_type": "Bearer",
        "issued_at": "1511895199410",
        "scope": "api refresh_token",
        **extra,
    }


def organization(org: SalesforceOrg) -> dict:
    row = {"Id": org.org_id, "Name": "Acme", "OrganizationType": "Enterprise Edition"}
    return {"totalSize": 1, "done": True, "records": [row]}


def bearer(call: Any) -> str:
    return call.request.headers["Authorization"].removeprefix("Bearer ")


def connected_org(**kwargs: Any) -> SalesforceOrg:
    return SalesforceOrgFactory(refresh_token="SENTINEL-refresh-token", **kwargs)


def keep(org: SalesforceOrg, http: responses.RequestsMock, access: str = ACCESS):
    """Refresh once through the console, which keeps the access token."""
    http.add(responses.POST, TOKEN, json=token_body(org, access))
    org_access_token(org_id=org.pk)
    http.reset()


# --- the client ---------------------------------------------------------------


def test_an_expired_session_is_its_own_error(http: responses.RequestsMock) -> None:
    http.add(responses.GET, QUERY, status=401, json=EXPIRED)
    with pytest.raises(salesforce.SessionInvalid) as caught:
        salesforce.query(
            instance_url="https://acme.my.salesforce.com",
            access_token=ACCESS,
            soql="SELECT Id FROM Organization",
        )
    assert caught.value.code == "INVALID_SESSION_ID"
    assert not caught.value.permanent
    assert not isinstance(caught.value, salesforce.TRANSIENT_ERRORS)
    assert ACCESS not in caught.value.message


def test_a_token_without_the_api_scope_is_not_an_expired_session(
    http: responses.RequestsMock,
) -> None:
    body = [
        {
            "message": "This session is not valid for use with the REST API",
            "errorCode": "INVALID_SESSION_ID",
        }
    ]
    http.add(responses.GET, QUERY, status=401, json=body)
    with pytest.raises(salesforce.MissingScope) as caught:
        salesforce.query(
            instance_url="https://acme.my.salesforce.com",
            access_token=ACCESS,
            soql="SELECT Id FROM Organization",
        )
    assert not isinstance(caught.value, salesforce.SessionInvalid)


# --- keeping the token ----------------------------------------------------------


def test_a_refresh_keeps_the_access_token_encrypted_per_org_and_refresh_token(
    http: responses.RequestsMock,
) -> None:
    org = connected_org()
    keep(org, http)

    key = access_token_cache_key(org.pk, org.refresh_token_fingerprint)
    stored = cache.get(key)
    assert ACCESS not in stored and stored.startswith("v1:")
    assert ACCESS in encryption.decrypt(stored)
    assert org_cached_access_token(org).access_token == ACCESS
    assert ACCESS not in repr(org_cached_access_token(org))


def test_nothing_is_kept_when_the_setting_is_zero(
    http: responses.RequestsMock, settings: Any
) -> None:
    settings.ACCESS_TOKEN_CACHE_SECONDS = 0
    org = connected_org()
    keep(org, http)
    assert org_cached_access_token(org) is None


def test_a_replaced_refresh_token_drops_the_kept_access_token(
    http: responses.RequestsMock,
) -> None:
    org = connected_org()
    keep(org, http)
    old_key = access_token_cache_key(org.pk, org.refresh_token_fingerprint)

    org_refresh_token_store(org=org, token="SENTINEL-new-connection")
    org.save()

    assert cache.get(old_key) is None
    assert org_cached_access_token(org) is None


def test_a_rotated_refresh_token_is_saved_and_the_token_kept_under_it(
    http: responses.RequestsMock,
) -> None:
    org = connected_org()
    http.add(
        responses.POST,
        TOKEN,
        json=token_body(org, refresh_token="SENTINEL-rotated-refresh"),
    )
    org_access_token(org_id=org.pk)

    org.refresh_from_db()
    assert org.get_refresh_token() == "SENTINEL-rotated-refresh"
    assert org_cached_access_token(org).access_token == FRESH


# --- the health check --------------------------------------------------------


def test_a_healthy_org_with_a_kept_token_is_one_request(
    http: responses.RequestsMock,
) -> None:
    org = connected_org()
    keep(org, http)
    http.add(responses.GET, QUERY, json=organization(org))

    assert org_health_check(org_id=org.pk) == ConnectionStatus.CONNECTED

    assert len(http.calls) == 1
    assert bearer(http.calls[0]) == ACCESS


def test_an_expired_kept_token_is_refreshed_once_and_the_call_repeated(
    http: responses.RequestsMock,
) -> None:
    org = connected_org()
    keep(org, http)
    http.add(responses.GET, QUERY, status=401, json=EXPIRED)
    http.add(responses.POST, TOKEN, json=token_body(org, FRESH))
    http.add(responses.GET, QUERY, json=organization(org))

    assert org_health_check(org_id=org.pk) == ConnectionStatus.CONNECTED

    calls = [
        (c.request.method, bearer(c) if "query" in c.request.url else "")
        for c in http.calls
    ]
    assert calls == [("GET", ACCESS), ("POST", ""), ("GET", FRESH)]
    assert org_cached_access_token(org).access_token == FRESH


def test_a_session_refused_right_after_a_refresh_is_not_refreshed_again(
    http: responses.RequestsMock,
) -> None:
    org = connected_org()
    keep(org, http)
    http.add(responses.GET, QUERY, status=401, json=EXPIRED)
    http.add(responses.POST, TOKEN, json=token_body(org, FRESH))

    assert org_health_check(org_id=org.pk) == ConnectionStatus.FAILED

    assert [c.request.method for c in http.calls] == ["GET", "POST", "GET"]
    org.refresh_from_db()
    assert "session" in org.status_reason.lower()
    assert org_cached_access_token(org) is None


def test_a_revoked_refresh_token_behind_an_expired_session_needs_reauthorization(
    http: responses.RequestsMock,
) -> None:
    org = connected_org()
    keep(org, http)
    http.add(responses.GET, QUERY, status=401, json=EXPIRED)
    http.add(
        responses.POST,
        TOKEN,
        status=400,
        json={
            "error": "invalid_grant",
            "error_description": "expired access/refresh token",
        },
    )

    assert org_health_check(org_id=org.pk) == ConnectionStatus.NEEDS_REAUTHORIZATION
    assert len(http.calls) == 2  # permanent: no retry


def test_a_token_kept_for_a_previous_connection_is_never_sent(
    http: responses.RequestsMock,
) -> None:
    org = connected_org()
    keep(org, http, access=ACCESS)
    # Finish or a re-authorization stores another refresh token; the old
    # entry is put back as if a stale worker had written it.
    stale = cache.get(access_token_cache_key(org.pk, org.refresh_token_fingerprint))
    old_fingerprint = org.refresh_token_fingerprint
    org_refresh_token_store(org=org, token="SENTINEL-new-connection")
    org.save()
    cache.set(access_token_cache_key(org.pk, old_fingerprint), stale, 60)
    http.add(responses.POST, TOKEN, json=token_body(org, FRESH))
    http.add(responses.GET, QUERY, json=organization(org))

    assert org_health_check(org_id=org.pk) == ConnectionStatus.CONNECTED
    assert [c.request.method for c in http.calls] == ["POST", "GET"]
    assert bearer(http.calls[1]) == FRESH


def test_a_moved_org_is_found_through_a_refresh(
    http: responses.RequestsMock,
) -> None:
    org = connected_org()
    keep(org, http)
    # The old host is gone (a My Domain change): not Salesforce's JSON 404.
    http.add(responses.GET, QUERY, status=404, body="gone")
    moved = token_body(org, FRESH, instance_url="https://acme-2.my.salesforce.com")
    http.add(responses.POST, TOKEN, json=moved)

    assert org_health_check(org_id=org.pk) == ConnectionStatus.URL_CHANGED
    org.refresh_from_db()
    assert org.suggested_url == "https://acme-2.my.salesforce.com"


# --- the beat's batches ---------------------------------------------------------


def test_a_batch_in_the_steady_state_costs_two_queries_whatever_its_size(
    http: responses.RequestsMock, settings: Any
) -> None:
    """Loading the orgs and recording them, once per batch (the cache is
    in memory here so that only the database is counted)."""
    settings.CACHES = {
        "default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}
    }
    counts = []
    for size in (1, 5):
        orgs = [connected_org() for _ in range(size)]
        for org in orgs:
            keep(org, http)
        for org in orgs:
            query = f"{org.instance_url}/services/data/v66.0/query"
            http.add(responses.GET, query, json=organization(org))
        with CaptureQueriesContext(connection) as queries:
            assert orgs_health_check(org_ids=[o.pk for o in orgs]) == []
        counts.append(len(queries))
        assert len(http.calls) == size
        http.reset()
    assert counts == [2, 2]


def test_a_single_check_in_the_steady_state_costs_two_queries(
    http: responses.RequestsMock, settings: Any, django_assert_num_queries: Any
) -> None:
    settings.CACHES = {
        "default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}
    }
    org = connected_org()
    keep(org, http)
    http.add(responses.GET, QUERY, json=organization(org))
    with django_assert_num_queries(2):  # load the org, record the check
        org_health_check(org_id=org.pk)


def test_a_batch_records_each_outcome_and_hands_transient_failures_back(
    http: responses.RequestsMock,
) -> None:
    healthy, flaky, revoked = connected_org(), connected_org(), connected_org()
    SalesforceOrg.objects.filter(pk=healthy.pk).update(
        status=ConnectionStatus.FAILED, status_reason="earlier outage"
    )
    for org in (healthy, flaky, revoked):
        keep(org, http)
    http.add(responses.GET, QUERY, json=organization(healthy))
    http.add(responses.GET, QUERY, status=503, body="<html>down</html>")
    http.add(responses.GET, QUERY, status=503, body="<html>down</html>")
    http.add(responses.GET, QUERY, status=503, body="<html>down</html>")
    http.add(responses.GET, QUERY, status=401, json=EXPIRED)
    http.add(
        responses.POST,
        TOKEN,
        status=400,
        json={"error": "invalid_grant", "error_description": "expired"},
    )

    retry = orgs_health_check(org_ids=[healthy.pk, flaky.pk, revoked.pk, 999_999])

    assert retry == [flaky.pk]
    statuses = dict(SalesforceOrg.objects.values_list("pk", "status"))
    assert statuses[healthy.pk] == ConnectionStatus.CONNECTED
    assert statuses[revoked.pk] == ConnectionStatus.NEEDS_REAUTHORIZATION


def test_the_batch_task_retries_a_transient_failure_as_its_own_check() -> None:
    with (
        mock.patch.object(tasks.health, "orgs_health_check", return_value=[7]),
        mock.patch.object(tasks.check_org_health, "apply_async") as apply_async,
    ):
        tasks.check_orgs_health(org_ids=[6, 7, 8])
    (call,) = apply_async.call_args_list
    assert call.kwargs["kwargs"] == {"org_id": 7}
    # The batch was the first attempt: the org keeps MAX_HEALTH_RETRIES more.
    assert call.kwargs["retries"] == 1


def test_the_beat_fans_out_batches_of_ids() -> None:
    orgs = [connected_org() for _ in range(tasks.HEALTH_CHECK_BATCH + 1)]
    with mock.patch.object(tasks.check_orgs_health, "apply_async") as apply_async:
        assert tasks.check_all_orgs(spread=False) == len(orgs)
    batches = [c.kwargs["kwargs"]["org_ids"] for c in apply_async.call_args_list]
    assert batches == [
        [o.pk for o in orgs[: tasks.HEALTH_CHECK_BATCH]],
        [orgs[-1].pk],
    ]


def test_a_refresh_uses_the_token_stored_now_not_the_one_loaded_before(
    http: responses.RequestsMock,
) -> None:
    """GIVEN a batch loaded the org WHEN another refresh rotated its token
    before this one got the lock THEN the rotated token is sent."""
    org = connected_org()
    loaded_earlier = SalesforceOrg.objects.get(pk=org.pk)
    org_refresh_token_store(org=org, token="SENTINEL-rotated-meanwhile")
    org.save()
    http.add(responses.POST, TOKEN, json=token_body(org))

    org_access_token(org_id=org.pk, org=loaded_earlier)

    (call,) = http.calls
    assert "refresh_token=SENTINEL-rotated-meanwhile" in call.request.body
