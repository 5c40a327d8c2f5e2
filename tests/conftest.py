"""Shared fixtures: named personas, one per role (healthchecks style).

Acme is the company every persona works in; Globex is one only the
Administrator sees, so cross-company access can be tested.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import pytest
from django.test import Client

from companies.models import Company

from .factories import (
    BackupPolicyFactory,
    CompanyFactory,
    RoleGrantFactory,
    SalesforceOrgFactory,
    UserFactory,
)

ROLES = ["administrator", "operator", "support", "viewer"]


@dataclass
class World:
    acme: Company
    globex: Company
    acme_org: object
    globex_org: object
    users: dict[str, object]

    def client_for(self, role: str) -> Client:
        client = Client()
        client.force_login(self.users[role])
        return client


@pytest.fixture
def world(db) -> World:
    acme = CompanyFactory(name="Acme")
    globex = CompanyFactory(name="Globex")
    acme_org = SalesforceOrgFactory(company=acme, alias="acme-prod")
    globex_org = SalesforceOrgFactory(company=globex, alias="globex-prod")
    BackupPolicyFactory(org=acme_org)
    BackupPolicyFactory(org=globex_org)
    users = {}
    admin = UserFactory(username="alice", is_staff=True)
    RoleGrantFactory(user=admin, role="administrator", company=None)
    users["administrator"] = admin
    for role, name in [("operator", "olga"), ("support", "sam"), ("viewer", "vera")]:
        user = UserFactory(username=name)
        RoleGrantFactory(user=user, role=role, company=acme)
        users[role] = user
    users["nobody"] = UserFactory(username="nora")
    return World(acme, globex, acme_org, globex_org, users)


def pytest_collection_modifyitems(config, items):
    # Tests that drive live processes run last, after the fast unit tests.
    def weight(item):
        if item.get_closest_marker("browser"):
            return 2
        if item.get_closest_marker("integration"):
            return 1
        return 0

    items.sort(key=weight)


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    if os.environ.get("VBSF_STRICT_TESTS") == "true":
        skipped = terminalreporter.stats.get("skipped", [])
        if skipped:
            terminalreporter.write_line(
                f"VBSF_STRICT_TESTS: {len(skipped)} test(s) skipped; CI allows none.",
                red=True,
            )


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session, exitstatus):
    if os.environ.get("VBSF_STRICT_TESTS") == "true":
        reporter = session.config.pluginmanager.get_plugin("terminalreporter")
        if reporter and reporter.stats.get("skipped"):
            session.exitstatus = 1


# Live processes (simulator, Celery worker) for integration and browser tests.
from tests.live import sim, sim_url, stack, worker  # noqa: E402, F401


@pytest.fixture(autouse=True)
def fresh_cache():
    """Each test starts with an empty cache: on Redis (CI) sign-in throttle
    counters and rate limits would otherwise leak from one test to the next
    (the database cache is rolled back with each test's transaction)."""
    from django.conf import settings
    from django.core.cache import cache

    if "DatabaseCache" not in settings.CACHES["default"]["BACKEND"]:
        cache.clear()
