"""The demo as a newcomer meets it: ``seed_demo --fleet N`` (a realistic
fleet, in bulk, matching the simulator) and a console that runs like
production (its own error pages, static files through WhiteNoise, one log
line per 403)."""

from __future__ import annotations

import json
import logging
import math
from collections import Counter
from io import StringIO
from pathlib import Path

import pytest
from django.conf import settings as django_settings
from django.contrib.auth.decorators import login_not_required
from django.core.management import call_command
from django.db import connection, transaction
from django.db.models import Count
from django.db.models.functions import Lower
from django.templatetags.static import static
from django.test import Client, RequestFactory
from django.test.utils import CaptureQueriesContext
from django.urls import path
from django.views.defaults import server_error

from companies.models import AuditEvent
from connections import demo
from connections.models import ExternalClientApp
from orgs.health import org_health_check
from orgs.models import BackupPolicy, ConnectionStatus, SalesforceOrg
from tests.sfsim_fixture import start_simulator, stop_simulator
from vbsf import urls as console_urls
from vbsf.celery import app as celery_app
from vbsf.logging import RedactSecretsFilter


@login_not_required
def _boom(request):
    raise RuntimeError("the demo's deliberate failure")


# This module is the URL configuration of the 500 test: the console's URLs
# and one view that fails.
urlpatterns = [path("boom/", _boom), *console_urls.urlpatterns]


def _seed(tmp_path: Path, **options) -> tuple[str, dict]:
    fixture = tmp_path / "sfsim.json"
    out = StringIO()
    call_command("seed_demo", fixture=str(fixture), stdout=out, **options)
    return out.getvalue(), json.loads(fixture.read_text())


def _fleet_orgs():
    return SalesforceOrg.objects.filter(org_id__startswith=demo.FLEET_ORG_ID_PREFIX)


# --- seed_demo --fleet --------------------------------------------------------


@pytest.mark.django_db
def test_a_fleet_of_200_spreads_over_20_companies_in_every_status(tmp_path):
    output, fixture = _seed(tmp_path, fleet=200)

    fleet = list(_fleet_orgs().select_related("company", "client_app"))
    assert len(fleet) == 200
    assert "added 200 orgs" in output
    assert len({org.company.name for org in fleet}) == 20
    statuses = Counter(org.status for org in fleet)
    assert set(statuses) == set(ConnectionStatus.values)
    assert statuses[ConnectionStatus.CONNECTED] >= 0.7 * len(fleet)
    assert all(
        org.status_reason for org in fleet if org.status != ConnectionStatus.CONNECTED
    )
    assert {org.org_type for org in fleet} == {
        "production",
        "sandbox",
        "developer",
        "scratch",
    }
    assert any(org.client_app.is_legacy_shared for org in fleet)
    duplicates = (
        SalesforceOrg.objects.annotate(key=Lower("alias"))
        .values("key")
        .annotate(n=Count("id"))
        .filter(n__gt=1)
    )
    assert not duplicates.exists()
    for org in fleet:  # what bulk_create skipped: the model's own validation
        org.full_clean()

    policies = BackupPolicy.objects.filter(org__in=fleet)
    assert policies.count() == 200
    assert all(
        p.org_url == p.org.login_url and p.client_app_id == p.org.client_app_id
        for p in policies.select_related("org")
    )
    assert AuditEvent.objects.filter(action="org.create", org__in=fleet).count() == 200

    # The simulator fixture holds the same orgs, with the same users, apps
    # and refresh tokens as the console.
    sim_orgs = {o["org_id"]: o for o in fixture["orgs"]}
    assert set(sim_orgs) == set(SalesforceOrg.objects.values_list("org_id", flat=True))
    apps = {a["consumer_key"]: a for o in fixture["orgs"] for a in o["apps"]}
    for org in fleet:
        sim = sim_orgs[org.org_id]
        user = next(u for u in sim["users"] if u["user_id"] == org.connected_as_user_id)
        assert user["username"] == org.connected_as_username
        app = apps[org.client_app.consumer_key]
        assert app["consumer_secret"] == org.client_app.get_consumer_secret()
        tokens = {t["token"]: t for t in sim["refresh_tokens"]}
        if org.status == ConnectionStatus.CONNECTED:
            assert user["active"]
            token = tokens[org.get_refresh_token()]
            assert token["consumer_key"] == org.client_app.consumer_key
            assert token["user_id"] == org.connected_as_user_id


@pytest.mark.django_db
def test_seeding_a_fleet_twice_adds_nothing_and_a_larger_one_the_difference(
    tmp_path,
):
    _seed(tmp_path, fleet=30)
    counts = (SalesforceOrg.objects.count(), ExternalClientApp.objects.count())

    output, _ = _seed(tmp_path, fleet=30)
    assert "all 30 orgs exist already" in output
    assert (SalesforceOrg.objects.count(), ExternalClientApp.objects.count()) == counts

    output, _ = _seed(tmp_path, fleet=45)
    assert "added 15 orgs" in output
    assert _fleet_orgs().count() == 45

    # `make demo` runs seed_demo without --fleet: the simulator must still
    # know the fleet, or its health checks would all fail.
    _, fixture = _seed(tmp_path)
    fleet_ids = set(_fleet_orgs().values_list("org_id", flat=True))
    assert fleet_ids <= {o["org_id"] for o in fixture["orgs"]}


@pytest.mark.django_db
def test_a_taken_alias_gets_a_number_instead_of_failing(tmp_path):
    _seed(tmp_path)
    first = demo.fleet(1)[0]
    taken = SalesforceOrg.objects.get(alias="acme-prod")
    SalesforceOrg.objects.filter(pk=taken.pk).update(alias=first.alias.upper())

    _seed(tmp_path, fleet=5)
    assert SalesforceOrg.objects.get(org_id=first.org_id).alias == f"{first.alias}-2"


class _Undo(Exception):
    pass


def _fleet_queries(tmp_path: Path, size: int) -> list[str]:
    """The SQL of `seed_demo --fleet size`, rolled back afterwards."""
    with CaptureQueriesContext(connection) as queries:
        try:
            with transaction.atomic():
                _seed(tmp_path, fleet=size)
                raise _Undo
        except _Undo:
            pass
    return [q["sql"] for q in queries.captured_queries]


def _insert_statements(model, rows: int) -> int:
    """How many INSERTs Django needs for a bulk_create of ``rows`` rows: one
    on PostgreSQL, a few on SQLite (999 variables per statement)."""
    fields = [f for f in model._meta.concrete_fields if not f.primary_key]
    per_statement = connection.ops.bulk_batch_size(fields, [None] * rows)
    return math.ceil(rows / max(per_statement, 1))


@pytest.mark.django_db
def test_the_fleet_takes_the_same_queries_for_50_orgs_as_for_200(tmp_path):
    _seed(tmp_path)  # the small demo first: its few orgs are not the fleet
    small, large = _fleet_queries(tmp_path, 50), _fleet_queries(tmp_path, 200)

    def split(sqls):
        inserts = [s for s in sqls if s.lstrip().upper().startswith("INSERT")]
        return len(inserts), len(sqls) - len(inserts)

    (small_inserts, small_other), (large_inserts, large_other) = (
        split(small),
        split(large),
    )
    # Lookups, savepoints and company creation do not depend on N at all.
    assert large_other == small_other
    # Four bulk inserts per batch (apps, orgs, policies, audit events); only
    # the database's own statement size splits them.
    own_apps = {n: sum(not o.shared_app for o in demo.fleet(n)) for n in (50, 200)}
    extra = sum(
        _insert_statements(model, rows[200]) - _insert_statements(model, rows[50])
        for model, rows in [
            (ExternalClientApp, own_apps),
            (SalesforceOrg, {50: 50, 200: 200}),
            (BackupPolicy, {50: 50, 200: 200}),
            (AuditEvent, {50: 50, 200: 200}),
        ]
    )
    assert large_inserts - small_inserts == extra
    assert len(large) < 200  # far from one query per org


@pytest.mark.integration
@pytest.mark.django_db
def test_health_checks_against_the_simulator_agree_with_the_seeded_statuses(
    tmp_path, settings
):
    _, fixture = _seed(tmp_path, fleet=60)
    process, sim_url = start_simulator(fixture=fixture)
    settings.SALESFORCE_SIMULATOR_URL = sim_url
    settings.SALESFORCE_RETRY_BACKOFF = 0.0
    try:
        seeded = {org.pk: org for org in SalesforceOrg.objects.all()}
        for pk in seeded:
            org_health_check(org_id=pk)
    finally:
        stop_simulator(process)

    checked = {org.pk: org for org in SalesforceOrg.objects.all()}
    kept = (
        ConnectionStatus.CONNECTED,
        ConnectionStatus.NEEDS_REAUTHORIZATION,
        ConnectionStatus.URL_CHANGED,
        ConnectionStatus.PERMISSIONS_MISSING,
    )
    for pk, before in seeded.items():
        after = checked[pk]
        if before.status in kept:
            assert after.status == before.status, (before.alias, after.status_reason)
        if before.status == ConnectionStatus.URL_CHANGED:
            assert after.suggested_url == before.suggested_url
        if before.status == ConnectionStatus.NEEDS_REAUTHORIZATION:
            assert after.status_reason == before.status_reason
        # Failed orgs failed for a passing reason, and pending ones are
        # active by now: the check finds both connected.
        if before.status in (
            ConnectionStatus.FAILED,
            ConnectionStatus.PENDING_ACTIVATION,
        ):
            assert after.status == ConnectionStatus.CONNECTED


# --- Like production: error pages, logging, static files ----------------------


def test_the_suite_runs_with_debug_off():
    assert django_settings.DEBUG is False


@pytest.mark.django_db
def test_an_unknown_url_answers_the_consoles_404_page(world):
    response = Client().get("/no-such-page/")
    assert response.status_code == 404
    assert "404.html" in [t.name for t in response.templates]
    page = response.content.decode()
    assert "Page not found" in page
    assert "css/console.css" in page  # the console's layout, not Django's page
    assert "Sign in" in page

    response = world.client_for("viewer").get("/orgs/999999/")
    assert response.status_code == 404
    page = response.content.decode()
    assert "Search organizations" in page
    assert "Signed in as" in page


def _console_handler() -> logging.Handler:
    return next(h for h in logging.getLogger().handlers if h.get_name() == "console")


@pytest.mark.django_db
def test_a_403_logs_one_line_without_a_traceback(world, caplog):
    caplog.set_level(logging.INFO)
    response = world.client_for("viewer").get("/companies/")
    assert response.status_code == 403
    assert "You cannot do that" in response.content.decode()

    records = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(records) == 1
    (record,) = records
    assert record.name == "django.request"
    assert record.levelno == logging.WARNING
    assert record.exc_info is None
    assert record.getMessage() == "Forbidden (Permission denied): /companies/"
    assert "Traceback" not in caplog.text
    line = _console_handler().format(record)
    assert "\n" not in line
    # runserver's own access line would repeat it.
    assert not logging.getLogger("django.server").isEnabledFor(logging.WARNING)


@pytest.mark.django_db
def test_a_suspicious_request_logs_one_line_too(caplog):
    response = Client().get("/login/", HTTP_HOST="evil.example")
    assert response.status_code == 400
    (record,) = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert record.name == "django.security.DisallowedHost"
    handler = _console_handler()
    assert handler.filter(record)
    assert "\n" not in handler.format(record)


@pytest.mark.django_db
def test_a_500_logs_its_traceback_and_shows_the_consoles_page(settings, caplog):
    settings.ROOT_URLCONF = __name__
    response = Client(raise_request_exception=False).get("/boom/")
    assert response.status_code == 500
    page = response.content.decode()
    assert "Something went wrong" in page
    assert "css/console.css" in page
    assert "the demo's deliberate failure" not in page

    (record,) = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert record.name == "django.request"
    assert record.exc_info is not None
    assert "Traceback" in _console_handler().format(record)


def test_the_500_page_needs_no_request_context():
    # Django's server_error view renders without context processors.
    response = server_error(RequestFactory().get("/"))
    page = response.content.decode()
    assert response.status_code == 500
    assert "Something went wrong" in page
    assert "What to do next" in page
    assert "Signed in as" not in page


def test_every_log_handler_redacts_secrets():
    configured = django_settings.LOGGING["handlers"]
    assert all("redact" in h.get("filters", []) for h in configured.values())
    assert any(isinstance(f, RedactSecretsFilter) for f in _console_handler().filters)
    # Django's default handlers (one printed tracebacks twice in debug mode)
    # are gone: every record goes through the console handler.
    assert logging.getLogger("django").handlers == []
    assert logging.getLogger("django.server").handlers == []
    # Nor may the Celery worker replace the console handler with its own.
    assert celery_app.conf.worker_hijack_root_logger is False


@pytest.mark.django_db
def test_static_files_are_served_by_whitenoise_with_debug_off(tmp_path, settings):
    middleware = django_settings.MIDDLEWARE
    assert middleware.index("whitenoise.middleware.WhiteNoiseMiddleware") == (
        middleware.index("django.middleware.security.SecurityMiddleware") + 1
    )
    # As `make demo` and the Docker image do: collectstatic into STATIC_ROOT
    # with the production storage (hashed, compressed names).
    settings.STATIC_ROOT = tmp_path / "staticfiles"
    settings.STORAGES = {
        **settings.STORAGES,
        "staticfiles": {
            "BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"
        },
    }
    settings.STATICFILES_FINDERS = [
        "django.contrib.staticfiles.finders.FileSystemFinder"
    ]
    call_command("collectstatic", interactive=False, verbosity=0)

    url = static("vendor/htmx.min.js")
    assert url != "/static/vendor/htmx.min.js"  # hashed
    client = Client()
    login_page = client.get("/login/").content.decode()
    assert url in login_page
    response = client.get(url)
    assert response.status_code == 200
    body = b"".join(response.streaming_content)
    source = Path(django_settings.BASE_DIR) / "static" / "vendor" / "htmx.min.js"
    assert body == source.read_bytes()
    assert "immutable" in response["Cache-Control"]
    assert client.get("/static/vendor/no-such-file.js").status_code == 404
