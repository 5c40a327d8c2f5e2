"""Every form, fed over-long, unicode, control-character and wrong-typed
values: never a server error, and a refused input changes nothing."""

from __future__ import annotations

import pytest

from companies.models import AuditEvent, Company
from connections.models import ConnectionChange
from orgs.models import BackupPolicy, SalesforceOrg, UrlVerification

NASTY = [
    "x" * 5000,
    "\x00\x01\x02",
    "\u202e\u200b\ufeff",
    "😀" * 40,
    "<script>alert(1)</script>",
    "' OR 1=1 --",
    "-1",
    "99999999999999999999999",
    "\r\nSet-Cookie: a=b",
    "https://evil.example/",
    "",
]


def _state() -> tuple:
    org = SalesforceOrg.objects.order_by("pk").values().first()
    policy = BackupPolicy.objects.order_by("pk").values().first()
    return (
        Company.objects.count(),
        list(Company.objects.order_by("pk").values_list("name", "contact_emails")),
        AuditEvent.objects.count(),
        ConnectionChange.objects.count(),
        UrlVerification.objects.count(),
        org,
        policy,
    )


def _forms(world) -> list[tuple[str, list[str], dict]]:
    org, company, policy = world.acme_org, world.acme, world.acme_org.backup_policy
    return [
        ("/companies/", ["name", "contact_emails"], {}),
        (f"/companies/{company.pk}/", ["name", "contact_emails"], {}),
        (f"/companies/{company.pk}/move-orgs/", ["to_company", "orgs"], {}),
        (f"/orgs/{org.pk}/settings/", ["alias", "is_identity_provider", "version"], {}),
        (f"/orgs/{org.pk}/edit-url/", ["new_url"], {}),
        (
            f"/orgs/{org.pk}/edit-connection/",
            [
                "credentials-consumer_key",
                "credentials-consumer_secret",
                "credentials-app_name",
            ],
            {"save_credentials": "1"},
        ),
        (
            f"/orgs/{org.pk}/edit-connection/",
            ["existing_app"],
            {"use_existing_app": "1"},
        ),
        (
            f"/orgs/{org.pk}/edit-connection/",
            ["app-choice", "app-change", "app-version"],
            {f"connection_wizard_{org.pk}-current_step": "app"},
        ),
        (
            "/orgs/add/",
            [
                "credentials-login_url",
                "credentials-org_type",
                "credentials-consumer_key",
                "credentials-consumer_secret",
            ],
            {"save_credentials": "1"},
        ),
        (
            f"/policies/{policy.pk}/edit/",
            ["name", "schedule", "enabled", "include_files", "retention_days"],
            {"save_policy": "1"},
        ),
        (
            "/orgs/bulk/",
            ["orgs", "action", "filter_query", "source", "all_matching"],
            {"action": "check_now", "orgs": str(org.pk), "source": "list"},
        ),
    ]


@pytest.mark.parametrize("value", NASTY, ids=lambda v: repr(v[:12]))
def test_every_form_survives_nasty_values(world, value):
    client = world.client_for("administrator")
    for url, fields, extra in _forms(world):
        for field in fields:
            before = _state()
            data = {**extra, field: value}
            response = client.post(url, data)
            # A POST answers with a redirect, or with the form and its
            # errors as a 422: never a 200 page (Back would resubmit it).
            assert response.status_code in (302, 422), (url, field)
            if response.status_code == 422:
                assert _state() == before, (url, field)


@pytest.mark.parametrize(
    "query",
    [
        "/orgs/?status=%00&company=abc&q=" + "x" * 3000,
        "/orgs/?page=-1&legacy=maybe",
        "/orgs/?company=99999999999999999999999",
        "/audit/?company=-5&action=%ff%fe&org=%00",
        "/audit/export.csv?company=1e9",
        "/orgs/?q=%F0%9F%98%80%E2%80%AE",
    ],
)
def test_filters_survive_nasty_query_strings(world, query):
    response = world.client_for("administrator").get(query)
    assert response.status_code == 200


def test_a_list_where_one_value_is_expected_is_refused_cleanly(world):
    client = world.client_for("administrator")
    before = _state()
    response = client.post("/companies/", {"name": ["A Co", "B Co"]})
    assert response.status_code in (302, 422)
    if response.status_code == 422:
        assert _state() == before


@pytest.mark.parametrize(
    "url",
    [
        "/orgs/99999999999999999999999/",
        "/orgs/99999999999999999999999/edit-connection/",
        "/companies/99999999999999999999999/",
        "/connections/changes/99999999999999999999999/status/",
        "/orgs/-1/",
    ],
)
def test_huge_or_negative_ids_in_urls_are_not_found(world, url):
    assert world.client_for("administrator").get(url).status_code == 404
