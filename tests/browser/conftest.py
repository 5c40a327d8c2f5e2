"""Real Chromium through Playwright, against Django's live server.

Debian's chromium is used through ``executable_path``; nothing is
downloaded. ``make test`` installs it when missing (or stops with the
command to run) and sets VBSF_STRICT_TESTS=true, under which a missing
Chromium fails the run instead of skipping it; only a bare ``pytest``
without that variable skips.
"""

from __future__ import annotations

import os
import shutil

import pytest

from tests.live import missing_dependency

# Playwright's sync API runs an event loop in this thread; the tests only
# touch the database between browser steps, never concurrently.
os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")

CHROMIUM_CANDIDATES = ["/usr/bin/chromium", "/usr/bin/chromium-browser"]


def _chromium_path() -> str | None:
    if path := os.environ.get("VBSF_CHROMIUM"):
        return path
    for candidate in CHROMIUM_CANDIDATES:
        if os.path.exists(candidate):
            return candidate
    return shutil.which("chromium")


@pytest.fixture(scope="session")
def browser():
    path = _chromium_path()
    if path is None:
        missing_dependency(
            "Debian's chromium is not installed (apt-get install chromium)"
        )
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=path,
            headless=True,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
            ],
        )
        yield browser
        browser.close()


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.set_default_timeout(15_000)
    yield page
    context.close()


@pytest.fixture
def demo_data(transactional_db, tmp_path):
    from django.core.management import call_command

    call_command("seed_demo", fixture=str(tmp_path / "sfsim.json"))
    return tmp_path / "sfsim.json"


def sign_in(page, server, username: str, password: str = "demo") -> None:
    base = server.url
    page.goto(f"{base}/login/")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Log in", exact=True).click()
    page.wait_for_url(f"{base}/")


@pytest.fixture
def admin_user(transactional_db):
    """The Administrator "admin" (password "demo") of the browser journeys."""
    from companies.models import RoleGrant
    from tests.factories import UserFactory

    user = UserFactory(username="admin", password="demo", is_staff=True)
    RoleGrant.objects.create(user=user, role="administrator", company=None)
    return user
