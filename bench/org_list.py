"""Benchmark 1: the org list at scale, against the Django admin changelist.

10,000 orgs in 200 companies on PostgreSQL. ``/orgs/`` (first page, a status
filter, a search) is timed in-process with Django's test client as an
Administrator and as an Operator granted 20 companies; the Django admin
changelist of the same orgs (for the Operator's scenarios: filtered to the
same 20 companies) is timed in the same run, interleaved request by request.
SQL query counts of ``/orgs/`` are taken at 100 and at 10,000 orgs.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from .common import BenchEnv, Simulator, format_table, median, ratio, rounded, timed

TOTAL_ORGS = 10_000
SMALL_ORGS = 100
COMPANIES = 200
OPERATOR_COMPANIES = 20
# Company names: a word and a number, so a search for a word finds the orgs
# of ten companies (an Operator sees one of them).
WORDS = [
    "acme", "globex", "initech", "umbrella", "hooli", "stark", "wayne", "wonka",
    "tyrell", "cyberdyne", "soylent", "gringotts", "oscorp", "vandelay",
    "monarch", "aperture", "massive", "nakatomi", "duff", "krusty",
]  # fmt: skip
SEARCH_TERM = WORDS[1]
STATUS_FILTER = "failed"
ADMIN_CHANGELIST = "/admin/orgs/salesforceorg/"


@dataclass
class Scenario:
    """One page of the org list and its Django admin counterpart."""

    role: str
    name: str
    console_url: str
    admin_url: str


def _status_for(n: int) -> str:
    from orgs.models import ConnectionStatus

    cycle = [
        ConnectionStatus.FAILED,
        ConnectionStatus.NEEDS_REAUTHORIZATION,
        ConnectionStatus.URL_CHANGED,
        ConnectionStatus.PERMISSIONS_MISSING,
        ConnectionStatus.PENDING_ACTIVATION,
    ]
    return cycle[n % 20] if n % 20 < len(cycle) else ConnectionStatus.CONNECTED


def _company_slug(index: int) -> str:
    return f"{WORDS[index % len(WORDS)]}{index // len(WORDS)}"


def seed_companies_and_users() -> tuple[list[Any], Any, Any]:
    """200 companies, an Administrator and an Operator of 20 companies."""
    from django.contrib.auth import get_user_model

    from companies.models import Company, Role, RoleGrant

    companies = Company.objects.bulk_create(
        Company(
            name=f"{_company_slug(i).title()} Holdings",
            contact_emails=f"ops@{_company_slug(i)}.example",
        )
        for i in range(COMPANIES)
    )
    user_model = get_user_model()
    admin = user_model.objects.create_user("bench-admin", password=None, is_staff=True)
    RoleGrant.objects.create(user=admin, role=Role.ADMINISTRATOR, company=None)
    operator = user_model.objects.create_user("bench-operator", password=None)
    RoleGrant.objects.bulk_create(
        RoleGrant(user=operator, role=Role.OPERATOR, company=company)
        for company in companies[:OPERATOR_COMPANIES]
    )
    return companies, admin, operator


def seed_orgs(companies: list[Any], start: int, stop: int) -> None:
    """Orgs number ``start`` to ``stop - 1``, each with its own client app,
    spread round-robin over the companies; one in four is not connected."""
    from django.utils import timezone

    from connections.models import ExternalClientApp
    from connections.salesforce.urls import to_18
    from orgs.models import OrgType, SalesforceOrg
    from vbsf import encryption

    # One ciphertext for all: the list never decrypts, and 10,000 Fernet
    # encryptions would only slow the seeding down.
    secret = encryption.encrypt("bench-consumer-secret")
    fingerprint = encryption.fingerprint("bench-consumer-secret")
    now = timezone.now()
    org_types = [OrgType.PRODUCTION, OrgType.SANDBOX, OrgType.DEVELOPER]
    batch = 2000
    for low in range(start, stop, batch):
        numbers = range(low, min(stop, low + batch))
        apps = ExternalClientApp.objects.bulk_create(
            ExternalClientApp(
                name=f"eca-{n:05d}",
                consumer_key=f"3MVG9BENCH{n:075d}",
                consumer_secret_encrypted=secret,
                consumer_secret_fingerprint=fingerprint,
                scopes=["api", "refresh_token"],
            )
            for n in numbers
        )
        orgs = []
        for n, app in zip(numbers, apps, strict=True):
            company_index = n % len(companies)
            slug = _company_slug(company_index)
            org_type = org_types[n % len(org_types)]
            status = _status_for(n)
            url = f"https://{slug}-{n:05d}.my.salesforce.com"
            orgs.append(
                SalesforceOrg(
                    alias=f"{slug}-{org_type}-{n:05d}",
                    org_id=to_18(f"00D5g0000{n:06d}"),
                    org_type=org_type,
                    login_url=url,
                    instance_url=url,
                    company=companies[company_index],
                    client_app=app,
                    connected_as_username=f"backup@{slug}-{n:05d}.example",
                    connected_as_user_id=to_18(f"0055g0000{n:06d}"),
                    granted_scopes=["api", "refresh_token"],
                    # No refresh token: the fleet health check skips them.
                    status=status,
                    status_reason=""
                    if status == "connected"
                    else "Salesforce refused the refresh token (invalid grant).",
                    status_changed_at=now - timedelta(hours=n % 500),
                    last_checked_at=now - timedelta(minutes=n % 1440),
                )
            )
        SalesforceOrg.objects.bulk_create(orgs)


def scenarios(operator_company_ids: list[int]) -> list[Scenario]:
    scope = "company__id__in=" + ",".join(str(i) for i in operator_company_ids)
    out = []
    for role in ("Administrator", "Operator"):
        extra = f"&{scope}" if role == "Operator" else ""
        first = f"?{scope}" if role == "Operator" else ""
        out += [
            Scenario(role, "first page", "/orgs/", f"{ADMIN_CHANGELIST}{first}"),
            Scenario(
                role,
                f"status={STATUS_FILTER}",
                f"/orgs/?status={STATUS_FILTER}",
                f"{ADMIN_CHANGELIST}?status__exact={STATUS_FILTER}{extra}",
            ),
            Scenario(
                role,
                f"search {SEARCH_TERM!r}",
                f"/orgs/?q={SEARCH_TERM}",
                f"{ADMIN_CHANGELIST}?q={SEARCH_TERM}{extra}",
            ),
        ]
    return out


def _get(client: Any, url: str) -> Any:
    response = client.get(url)
    if response.status_code != 200:
        raise RuntimeError(f"GET {url} answered {response.status_code}")
    return response


def count_queries(client: Any, url: str) -> int:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    with CaptureQueriesContext(connection) as captured:
        _get(client, url)
    return len(captured.captured_queries)


_CONSOLE_TOTAL = re.compile(r"([\d,]+) orgs?</span>")
_ADMIN_TOTAL = re.compile(r"(\d+) Salesforce orgs?\b")


def total_matches(client: Any, url: str) -> int:
    """How many orgs a list page says match (read from the page itself, so
    both sides are known to list the same orgs)."""
    html = _get(client, url).content.decode()
    pattern = _ADMIN_TOTAL if url.startswith(ADMIN_CHANGELIST) else _CONSOLE_TOTAL
    found = pattern.findall(html)
    if not found:
        raise RuntimeError(f"GET {url}: no result count on the page")
    return int(found[-1].replace(",", ""))


def run(env: BenchEnv, simulator: Simulator) -> dict[str, Any]:
    """Seed, count queries at 100 and 10,000 orgs, time both list pages."""
    from django.test import Client

    runs = 12 if env.quick else 40
    warmup = 3
    companies, admin, operator = seed_companies_and_users()
    clients = {"Administrator": Client(), "Operator": Client()}
    clients["Administrator"].force_login(admin)
    clients["Operator"].force_login(operator)
    admin_client = clients["Administrator"]
    cases = scenarios([c.pk for c in companies[:OPERATOR_COMPANIES]])

    # Query counts at 100 orgs, then grow the fleet to 10,000.
    seed_orgs(companies, 0, SMALL_ORGS)
    for client in clients.values():  # first request warms caches, sessions
        _get(client, "/orgs/")
    queries_small = {
        (c.role, c.name): count_queries(clients[c.role], c.console_url) for c in cases
    }
    admin_queries_small = {
        (c.role, c.name): count_queries(admin_client, c.admin_url) for c in cases
    }
    seed_orgs(companies, SMALL_ORGS, TOTAL_ORGS)
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")
    queries_large = {
        (c.role, c.name): count_queries(clients[c.role], c.console_url) for c in cases
    }
    admin_queries_large = {
        (c.role, c.name): count_queries(admin_client, c.admin_url) for c in cases
    }

    results = []
    for case in cases:
        console_client = clients[case.role]
        matches = total_matches(console_client, case.console_url)
        admin_matches = total_matches(admin_client, case.admin_url)
        if matches != admin_matches:
            raise RuntimeError(
                f"{case.role} {case.name}: the console lists {matches} orgs, the "
                f"admin changelist {admin_matches}; the comparison is not fair."
            )
        for _ in range(warmup):
            _get(console_client, case.console_url)
            _get(admin_client, case.admin_url)
        console_ms, admin_ms = [], []
        # Interleaved, so drift of the machine hits both sides alike.
        for _ in range(runs):
            console_ms.append(timed(_get, console_client, case.console_url)[1])
            admin_ms.append(timed(_get, admin_client, case.admin_url)[1])
        key = (case.role, case.name)
        results.append(
            {
                "role": case.role,
                "scenario": case.name,
                "console_url": case.console_url,
                "admin_url": case.admin_url,
                "matching_orgs": matches,
                "console_median_ms": rounded(median(console_ms)),
                "admin_median_ms": rounded(median(admin_ms)),
                "ratio_to_admin": ratio(median(console_ms), median(admin_ms)),
                "queries_100": queries_small[key],
                "queries_10000": queries_large[key],
                "admin_queries_100": admin_queries_small[key],
                "admin_queries_10000": admin_queries_large[key],
            }
        )

    ratios = [r["ratio_to_admin"] for r in results]
    headline = next(
        r
        for r in results
        if r["role"] == "Administrator" and r["scenario"] == "first page"
    )
    return {
        "ratio_to_admin": max(ratios),
        "ratio_to_admin_geomean": round(
            math.exp(sum(math.log(x) for x in ratios) / len(ratios)), 3
        ),
        "queries_100": headline["queries_100"],
        "queries_10000": headline["queries_10000"],
        "same_query_count_every_scenario": all(
            r["queries_100"] == r["queries_10000"] for r in results
        ),
        "max_queries": max(r["queries_10000"] for r in results),
        "orgs": TOTAL_ORGS,
        "companies": COMPANIES,
        "operator_companies": OPERATOR_COMPANIES,
        "runs_per_url": runs,
        "scenarios": results,
        "targets": {
            "ratio_to_admin_at_most": 1.0,
            "met": max(ratios) <= 1.0
            and all(r["queries_100"] == r["queries_10000"] for r in results),
        },
    }


def table(result: dict[str, Any]) -> str:
    rows = [
        [
            r["role"],
            r["scenario"],
            r["matching_orgs"],
            r["console_median_ms"],
            r["admin_median_ms"],
            r["ratio_to_admin"],
            r["queries_100"],
            r["queries_10000"],
            f"{r['admin_queries_100']}/{r['admin_queries_10000']}",
        ]
        for r in result["scenarios"]
    ]
    return format_table(
        f"1. Org list at scale ({result['orgs']:,} orgs, {result['companies']} "
        f"companies, PostgreSQL; median of {result['runs_per_url']} requests)",
        [
            "role",
            "page",
            "orgs",
            "/orgs/ ms",
            "admin ms",
            "ratio",
            "queries@100",
            "queries@10k",
            "admin q 100/10k",
        ],
        rows,
        notes=[
            f"ratio_to_admin (worst) = {result['ratio_to_admin']}, geometric mean "
            f"{result['ratio_to_admin_geomean']}; target <= 1.0",
            "same query count at 100 and 10,000 orgs in every scenario: "
            + ("yes" if result["same_query_count_every_scenario"] else "NO"),
            f"Operator pages are compared with the admin changelist filtered to "
            f"the Operator's {result['operator_companies']} companies.",
        ],
    )
