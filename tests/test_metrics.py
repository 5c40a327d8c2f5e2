"""/metrics: Prometheus text format behind a Bearer token, parsed with the
official client's parser; counters shared through the cache."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import pytest
import redis
import responses
from django.core.cache import cache
from django.core.management import call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from prometheus_client.parser import text_string_to_metric_families

from connections.models import ConnectionChange
from connections.salesforce import transport
from orgs.models import ConnectionStatus
from tests.factories import CompanyFactory, SalesforceOrgFactory
from tests.live import private_redis, wait_for
from vbsf import metrics
from vbsf.celery import app

TOKEN = "scrape-token-for-tests-0123456789"


def _scrape(client) -> dict[str, dict[tuple, float]]:
    response = client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/plain")
    samples: dict[str, dict[tuple, float]] = {}
    for family in text_string_to_metric_families(response.content.decode()):
        for sample in family.samples:
            labels = tuple(sorted(sample.labels.items()))
            samples.setdefault(sample.name, {})[labels] = sample.value
    return samples


@pytest.fixture(autouse=True)
def no_counts_of_earlier_tests():
    # Counts wait in process memory for their flush (vbsf.metrics.counters):
    # what earlier tests of this process counted is not this test's.
    metrics.counters.clear()


@pytest.fixture
def token(settings) -> str:
    settings.METRICS_TOKEN = TOKEN
    return TOKEN


@pytest.mark.django_db
def test_metrics_do_not_exist_without_a_token(client, settings):
    settings.METRICS_TOKEN = ""
    assert client.get("/metrics").status_code == 404
    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer x").status_code == 404


@pytest.mark.django_db
@pytest.mark.parametrize(
    "header", ["", "Bearer wrong", f"Basic {TOKEN}", f"Bearer {TOKEN}x"]
)
def test_metrics_refuse_a_missing_or_wrong_token(client, token, header):
    extra = {"HTTP_AUTHORIZATION": header} if header else {}
    response = client.get("/metrics", **extra)
    assert response.status_code == 401
    assert response["WWW-Authenticate"].startswith("Bearer")
    assert b"vbsf_" not in response.content


@pytest.mark.django_db
def test_orgs_by_status_per_company(client, token):
    acme, globex = CompanyFactory(name="Acme"), CompanyFactory(name="Globex")
    SalesforceOrgFactory.create_batch(3, company=acme)
    SalesforceOrgFactory(company=acme, status=ConnectionStatus.NEEDS_REAUTHORIZATION)
    SalesforceOrgFactory(company=globex, status=ConnectionStatus.URL_CHANGED)
    orgs = _scrape(client)["vbsf_orgs"]
    assert orgs[(("company", "Acme"), ("status", "connected"))] == 3
    assert orgs[(("company", "Acme"), ("status", "needs_reauthorization"))] == 1
    assert orgs[(("company", "Globex"), ("status", "url_changed"))] == 1
    assert len(orgs) == 3


@pytest.mark.django_db
def test_salesforce_requests_by_outcome_and_task_runs(client, token):
    for outcome in (200, 200, 503, 429, 400, "ReadTimeout", "ConnectionError"):
        metrics.count_salesforce_request(outcome)
    metrics.count_task_run("orgs.tasks.check_all_orgs", "success")
    metrics.count_task_run("orgs.tasks.check_all_orgs", "failure")
    metrics.count_task_run("orgs.tasks.check_all_orgs", "failure")
    samples = _scrape(client)
    salesforce = samples["vbsf_salesforce_requests_total"]
    assert salesforce[(("outcome", "ok"),)] == 2
    assert salesforce[(("outcome", "unavailable"),)] == 1
    assert salesforce[(("outcome", "rate_limited"),)] == 1
    assert salesforce[(("outcome", "client_error"),)] == 1
    assert salesforce[(("outcome", "timeout"),)] == 1
    assert salesforce[(("outcome", "connection_error"),)] == 1
    runs = samples["vbsf_task_runs_total"]
    key = (("state", "failure"), ("task", "orgs.tasks.check_all_orgs"))
    assert runs[key] == 2
    failures = samples["vbsf_task_failures_total"]
    assert failures[(("task", "orgs.tasks.check_all_orgs"),)] == 2
    assert failures[(("task", "connections.tasks.resume_connection_changes"),)] == 0


@pytest.mark.django_db
def test_a_task_run_is_counted_by_the_signal(client, token):
    app.tasks["connections.tasks.prune_signin_attempts"].apply()
    runs = _scrape(client)["vbsf_task_runs_total"]
    key = (("state", "success"), ("task", "connections.tasks.prune_signin_attempts"))
    assert runs[key] == 1


@pytest.mark.django_db
@responses.activate
def test_the_salesforce_client_counts_each_attempt(client, token, settings):
    settings.SALESFORCE_SIMULATOR_URL = ""
    settings.SALESFORCE_RETRY_BACKOFF = 0
    url = "https://acme.my.salesforce.com/services/data/"
    responses.add(responses.GET, url, status=503)
    responses.add(responses.GET, url, json=[])
    assert transport.send("GET", url).status_code == 200
    salesforce = _scrape(client)["vbsf_salesforce_requests_total"]
    assert salesforce[(("outcome", "unavailable"),)] == 1
    assert salesforce[(("outcome", "ok"),)] == 1


@pytest.mark.django_db
def test_activation_durations_histogram(client, token):
    org = SalesforceOrgFactory()
    started = timezone.now() - timedelta(minutes=10)
    for seconds in (10, 45, 400):
        ConnectionChange.objects.create(
            kind="edit",
            org=org,
            client_app=org.client_app,
            login_url=org.login_url,
            activation_started_at=started,
            activated_at=started + timedelta(seconds=seconds),
        )
    ConnectionChange.objects.create(  # still waiting: not counted
        kind="edit", org=org, client_app=org.client_app, login_url=org.login_url
    )
    samples = _scrape(client)
    buckets = samples["vbsf_activation_duration_seconds_bucket"]
    assert buckets[(("le", "5.0"),)] == 0
    assert buckets[(("le", "15.0"),)] == 1
    assert buckets[(("le", "60.0"),)] == 2
    assert buckets[(("le", "600.0"),)] == 3
    assert buckets[(("le", "+Inf"),)] == 3
    assert samples["vbsf_activation_duration_seconds_count"][()] == 3
    assert samples["vbsf_activation_duration_seconds_sum"][()] == 455


def _database_queries(client) -> int:
    """Queries of one scrape, the database cache's own left out (on Redis
    the cache is no query at all)."""
    with CaptureQueriesContext(connection) as queries:
        _scrape(client)
    return len([q for q in queries if "vbsf_cache" not in q["sql"]])


@pytest.mark.django_db
def test_a_scrape_takes_two_queries_however_many_orgs(client, token):
    SalesforceOrgFactory()
    assert _database_queries(client) == 2
    for name in ("A", "B", "C"):
        SalesforceOrgFactory.create_batch(5, company=CompanyFactory(name=name))
    assert _database_queries(client) == 2


# --- counts wait in process memory and reach the cache in batches -----------


@pytest.fixture
def redis_cache(settings, tmp_path) -> Iterator[redis.Redis]:
    """The cache on a Redis server of this test's own, as in production."""
    with private_redis(tmp_path) as url:
        settings.CACHES = {
            "default": {
                "BACKEND": "django.core.cache.backends.redis.RedisCache",
                "LOCATION": url,
            }
        }
        try:
            yield redis.Redis.from_url(url)
        finally:
            metrics.counters.clear()


def _calls(client: redis.Redis, command: str) -> int:
    return client.info("commandstats").get(f"cmdstat_{command}", {}).get("calls", 0)


@pytest.mark.django_db
def test_counts_reach_redis_in_one_round_trip_per_flush(
    client, token, redis_cache, monkeypatch
):
    monkeypatch.setattr(metrics.counters, "flush_seconds", 3600)
    metrics.counters.flush()  # the clock of the batch starts now
    for outcome in [200] * 50 + [503, 503, "ReadTimeout"]:
        metrics.count_salesforce_request(outcome)
    for _ in range(4):
        metrics.count_task_run("orgs.tasks.check_all_orgs", "success")
    # Nothing went to Redis yet: 57 counts are 3 numbers in memory.
    assert _calls(redis_cache, "incrby") == _calls(redis_cache, "incr") == 0
    assert cache.get(metrics.KEY_PREFIX + "salesforce:ok") is None

    metrics.counters.flush()
    assert _calls(redis_cache, "exec") == 1  # one MULTI/EXEC round trip
    assert _calls(redis_cache, "incrby") == 4  # one per counter
    assert metrics.counters.pending() == {}
    metrics.count_salesforce_request(200)  # counted after the flush
    samples = _scrape(client)  # the scrape adds this process's counts first
    salesforce = samples["vbsf_salesforce_requests_total"]
    assert salesforce[(("outcome", "ok"),)] == 51
    assert salesforce[(("outcome", "unavailable"),)] == 2
    assert salesforce[(("outcome", "timeout"),)] == 1
    runs = samples["vbsf_task_runs_total"]
    assert runs[(("state", "success"), ("task", "orgs.tasks.check_all_orgs"))] == 4


@pytest.mark.django_db
def test_a_quiet_process_flushes_its_counts_within_seconds(redis_cache, monkeypatch):
    monkeypatch.setattr(metrics.counters, "flush_seconds", 0.3)
    metrics.counters.flush()
    metrics.count_salesforce_request(200)
    metrics.count_salesforce_request(200)
    assert metrics.counters.pending() == {metrics.KEY_PREFIX + "salesforce:ok": 2}
    # No further count comes: the timer thread adds them.
    assert wait_for(lambda: cache.get(metrics.KEY_PREFIX + "salesforce:ok"), 5) == 2
    assert metrics.counters.pending() == {}


@pytest.mark.django_db
def test_a_cache_outage_keeps_the_counts_for_the_next_flush(
    redis_cache, monkeypatch, settings
):
    monkeypatch.setattr(metrics.counters, "flush_seconds", 3600)
    port = redis_cache.connection_pool.connection_kwargs["port"]
    settings.CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": "redis://127.0.0.1:1/0",  # nothing listens there
        }
    }
    metrics.count_salesforce_request(200)
    metrics.counters.flush()  # fails quietly
    assert metrics.counters.pending() == {metrics.KEY_PREFIX + "salesforce:ok": 1}
    settings.CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": f"redis://127.0.0.1:{port}/0",
        }
    }
    metrics.counters.flush()
    assert cache.get(metrics.KEY_PREFIX + "salesforce:ok") == 1


@pytest.mark.django_db
def test_with_the_database_cache_counts_wait_outside_the_callers_transaction(
    client, token, monkeypatch, settings
):
    """The demo's database cache: a flush due inside a transaction waits
    (a rollback would lose it) until a count outside it or a scrape."""
    # The database cache whatever the run's (CI's is Redis), and its table,
    # which the test database only has when it was made under that cache.
    settings.CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.db.DatabaseCache",
            "LOCATION": "vbsf_cache",
        }
    }
    call_command("createcachetable", verbosity=0)
    monkeypatch.setattr(metrics.counters, "flush_seconds", 0)
    key = metrics.KEY_PREFIX + "salesforce:ok"
    metrics.count_salesforce_request(200)  # in the test's transaction
    assert metrics.counters.pending() == {key: 1}
    assert cache.get(key) is None
    assert _scrape(client)["vbsf_salesforce_requests_total"][(("outcome", "ok"),)] == 1
    assert metrics.counters.pending() == {}
