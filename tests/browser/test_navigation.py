"""Each demo role signs in and sees the navigation its role allows."""

from __future__ import annotations

import pytest

from .conftest import sign_in

pytestmark = pytest.mark.browser

NAVIGATION = {
    "admin": {"Dashboard", "Organizations", "Policies", "Companies", "Audit", "Admin"},
    "operator": {"Dashboard", "Organizations", "Policies"},
    "support": {"Dashboard", "Organizations", "Policies"},
    "viewer": {"Dashboard", "Organizations", "Policies"},
}
ROLE_LABEL = {
    "admin": "Administrator",
    "operator": "Operator",
    "support": "Support",
    "viewer": "Viewer",
}


@pytest.mark.parametrize("username", sorted(NAVIGATION))
def test_each_role_sees_its_navigation(page, live_server, demo_data, username):
    sign_in(page, live_server, username)
    nav = page.get_by_role("navigation", name="Main")
    links = {
        text.strip().split("\n")[0]
        for text in nav.get_by_role("link").all_inner_texts()
    }
    assert {link for link in links if not link[-1].isdigit()} >= NAVIGATION[username]
    hidden = {"Companies", "Audit", "Admin"} - NAVIGATION[username]
    assert not (hidden & links)
    assert ROLE_LABEL[username] in page.locator("header .who").inner_text()
    # The dashboard shows orgs by status.
    assert page.get_by_role("heading", name="Dashboard").is_visible()


def test_viewer_sees_only_acme_orgs_and_no_admin_pages(page, live_server, demo_data):
    sign_in(page, live_server, "viewer")
    page.get_by_role("link", name="Organizations").click()
    rows = page.locator("table.data tbody tr").all_inner_texts()
    assert rows and all("Acme Corp" in row for row in rows)
    response = page.goto(f"{live_server.url}/companies/")
    assert response.status == 403


def test_wrong_password_gets_a_clear_message(page, live_server, demo_data):
    page.goto(f"{live_server.url}/login/")
    page.get_by_label("Username").fill("admin")
    page.get_by_label("Password").fill("nope")
    page.get_by_role("button", name="Log in").click()
    assert (
        page.get_by_role("alert")
        .inner_text()
        .startswith("Please enter a correct username and password")
    )


def test_admin_filters_orgs_by_status(page, live_server, demo_data):
    sign_in(page, live_server, "admin")
    page.goto(f"{live_server.url}/orgs/")
    page.get_by_label("Status").select_option("failed")
    page.get_by_role("button", name="Filter").click()
    rows = page.locator("table.data tbody tr").all_inner_texts()
    assert len(rows) == 1 and "initech-prod" in rows[0]
    page.screenshot(path=str(demo_data.parent / "orgs.png"), full_page=True)
