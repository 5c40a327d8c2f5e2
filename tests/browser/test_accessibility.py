"""axe-core on every page and partial the journeys reach, as every role:
no serious or critical violation (issue 10, point 11). axe-core comes from
the axe-playwright-python package (its bundled axe.min.js): nothing is
downloaded at run time."""

from __future__ import annotations

import pytest
from axe_playwright_python.sync_playwright import Axe
from playwright.sync_api import expect

from companies.models import Company
from connections.models import Campaign, ConnectionChange, PermissionCheck
from orgs.models import BackupPolicy, SalesforceOrg

from .conftest import sign_in

pytestmark = [pytest.mark.browser]

AXE = Axe()
BLOCKING = {"serious", "critical"}


def violations(page) -> list[str]:
    results = AXE.run(page)
    return [
        f"{v['id']} ({v['impact']}): {v['help']} at "
        + ", ".join(t for n in v["nodes"] for t in n["target"])
        for v in results.response["violations"]
        if v["impact"] in BLOCKING
    ]


def pages_for(role: str) -> list[str]:
    orgs = list(SalesforceOrg.objects.order_by("pk"))
    acme = [o for o in orgs if o.company.name == "Acme Corp"]
    policy = BackupPolicy.objects.filter(org__in=acme).first()
    company = Company.objects.order_by("pk").first()
    pages = ["/", "/orgs/", "/policies/", "/orgs/?status=failed", "/no-such-page/"]
    pages += [f"/orgs/{o.pk}/" for o in acme]
    # The demo's campaign has orgs of Acme Corp: every role reads it.
    pages += ["/campaigns/", f"/campaigns/{Campaign.objects.get().pk}/"]
    if role != "viewer":
        pages += ["/orgs/queue/"]
    if role in ("administrator", "support"):
        pages += [f"/orgs/{acme[0].pk}/edit-url/"]
    if role == "administrator":
        pages += [
            "/orgs/add/",
            f"/orgs/{acme[0].pk}/edit-connection/",
            f"/orgs/{acme[0].pk}/edit-connection/permissions/",
            f"/policies/{policy.pk}/edit/",
            "/companies/",
            f"/companies/{company.pk}/",
            "/audit/",
            "/audit/?category=org&date_from=not-a-date",
        ]
    return pages


PARTIALS = [
    lambda: f"/orgs/{SalesforceOrg.objects.first().pk}/live/",
    lambda: f"/orgs/{SalesforceOrg.objects.first().pk}/row/",
    lambda: f"/orgs/{SalesforceOrg.objects.first().pk}/row/?kind=queue",
    lambda: f"/campaigns/{Campaign.objects.get().pk}/live/",
]


@pytest.mark.parametrize(
    ("username", "role"),
    [
        ("admin", "administrator"),
        ("operator", "operator"),
        ("support", "support"),
        ("viewer", "viewer"),
    ],
)
def test_every_page_is_free_of_serious_violations(
    page, live_server, demo_data, username, role
):
    sign_in(page, live_server, username)
    found: dict[str, list[str]] = {}
    checked = 0
    for path in pages_for(role):
        page.goto(f"{live_server.url}{path}")
        checked += 1
        if problems := violations(page):
            found[path] = problems
    assert checked >= 8
    assert not found, found


def test_the_login_page_and_error_pages_are_free_of_serious_violations(
    page, live_server, demo_data
):
    for path in ["/login/", "/login/?next=/orgs/"]:
        page.goto(f"{live_server.url}{path}")
        assert not violations(page), path
    page.get_by_label("Username").fill("admin")
    page.get_by_label("Password").fill("wrong")
    page.get_by_role("button", name="Log in", exact=True).click()
    assert not violations(page)


def test_partials_swapped_into_their_pages_are_free_of_serious_violations(
    page, live_server, demo_data
):
    """The htmx partials, each inside the page that shows it: the staged
    change with its progress line, a permission check, the live region."""
    org = SalesforceOrg.objects.get(alias="acme-dev")
    change = ConnectionChange.objects.get(org=org)
    PermissionCheck.objects.create(org=org, state=PermissionCheck.State.RUNNING)
    sign_in(page, live_server, "admin")
    page.goto(f"{live_server.url}/orgs/{org.pk}/")
    expect(page.get_by_role("img", name="activation window")).to_be_visible()
    assert not violations(page)
    for url in (
        f"/connections/changes/{change.pk}/status/",
        *(make() for make in PARTIALS),
    ):
        # Swap the partial into the page the way htmx does, then check.
        page.evaluate(
            """async (url) => {
                const html = await (await fetch(url)).text();
                document.querySelector('main').insertAdjacentHTML('beforeend', html);
            }""",
            f"{live_server.url}{url}",
        )
        assert not violations(page), url


def test_focus_moves_to_the_first_error_after_a_failed_submit(
    page, live_server, demo_data
):
    sign_in(page, live_server, "admin")
    org = SalesforceOrg.objects.filter(company__name="Acme Corp").first()
    page.goto(f"{live_server.url}/orgs/{org.pk}/edit-url/")
    page.get_by_label("Organization URL").fill("https://canary.example")
    page.get_by_role("button", name="Apply").click()
    expect(page.get_by_label("Organization URL")).to_be_focused()
