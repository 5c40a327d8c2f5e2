"""The journeys the soak drives, over HTTP, as a person in a browser would.

Each journey is a function ``(Console, Target) -> str`` that returns what it
achieved (for the journal) or raises :class:`JourneyError`. ``JOURNEYS``
lists them with their weights; a new journey is one function and one line
there. Nothing here imports Django: the journeys run inside Locust (gevent)
and talk to the console and the simulator only over HTTP.
"""

from __future__ import annotations

import random
import re
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urljoin

import requests

from tests.simclient import Sim, salesforce_login

from .forms import Form, find_form

SF_PASSWORD = "sf-password"
POLL_SECONDS = 1.0


class JourneyError(RuntimeError):
    """A journey could not go on; the message says at which step."""


@dataclass
class Target:
    """One org as the journeys know it: console id and simulator facts."""

    pk: int
    org_id: str
    username: str
    company: str
    extra: dict[str, Any] = field(default_factory=dict)


class Console:
    """A signed-in browser session on the console (absolute URLs)."""

    def __init__(self, http: requests.Session, base_url: str, *, named: bool) -> None:
        self.http = http
        self.base_url = base_url.rstrip("/")
        self.named = named  # Locust groups URLs by name

    def url(self, path: str) -> str:
        return urljoin(self.base_url + "/", path.lstrip("/"))

    def _kw(self, name: str) -> dict[str, Any]:
        return {"name": name} if self.named and name else {}

    def get(self, path: str, name: str = "", **kw: Any) -> requests.Response:
        return self.http.get(self.url(path), timeout=30, **self._kw(name), **kw)

    def post(
        self, path: str, data: dict[str, str], name: str = "", **kw: Any
    ) -> requests.Response:
        return self.http.post(
            self.url(path), data=data, timeout=30, **self._kw(name), **kw
        )

    def page(self, path: str, name: str = "") -> requests.Response:
        response = self.get(path, name)
        if response.status_code != 200:
            raise JourneyError(f"GET {name or path} answered {response.status_code}")
        return response

    def submit(
        self,
        response: requests.Response,
        form: Form,
        overrides: dict[str, str] | None = None,
        *,
        button: str = "",
        text: str = "",
        name: str = "",
        follow: bool = True,
    ) -> requests.Response:
        press = form.button(button, text) if (button or text) else None
        target = urljoin(response.url, form.action) if form.action else response.url
        data = form.data(overrides, press=press)
        if not self.named:
            return self.http.post(target, data=data, timeout=30, allow_redirects=follow)
        # An action that is not a step (Verify permissions) answers with the
        # page itself, as a 422 like any POST answered with its form.
        with self.http.post(
            target,
            data=data,
            timeout=30,
            allow_redirects=follow,
            catch_response=True,
            **self._kw(name),
        ) as answer:
            if answer.status_code < 400 or answer.status_code == 422:
                answer.success()
        return answer

    def sign_in(self, username: str, password: str) -> None:
        page = self.page("/login/", "/login/")
        form = find_form(page.text, action="") or None
        if form is None:
            raise JourneyError("no sign-in form")
        done = self.submit(
            page, form, {"username": username, "password": password}, name="/login/"
        )
        if "/login/" in done.url:
            raise JourneyError("sign-in refused")


def wait_until(
    check: Callable[[], Any], *, timeout: float, what: str, interval: float = 1.0
) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if result := check():
            return result
        time.sleep(interval)
    raise JourneyError(f"timed out waiting for {what}")


def polls(page: str) -> bool:
    return 'hx-trigger="every' in page


def salesforce_callback(console: Console, authorize_url: str, username: str) -> str:
    """Log in at the simulator and follow its redirect back to the console."""
    try:
        callback = salesforce_login(authorize_url, username, SF_PASSWORD)
    except (AssertionError, requests.RequestException) as exc:
        raise JourneyError(f"Salesforce login failed: {str(exc)[:120]}") from None
    landed = console.get(callback, "/oauth/callback/")
    if landed.status_code != 200:
        raise JourneyError(f"callback answered {landed.status_code}")
    return landed.url


def wait_live(console: Console, target: Target, timeout: float = 45) -> str:
    """Poll the org's live part as the page does, until work is done."""

    def settled() -> str | None:
        live = console.get(f"/orgs/{target.pk}/live/", "/orgs/[id]/live/")
        return live.text if live.status_code == 200 and not polls(live.text) else None

    return wait_until(settled, timeout=timeout, what="the org page to settle")


# --- journeys ---------------------------------------------------------------


def browse(console: Console, target: Target, sim: Sim) -> str:
    """Org list (filters, search, pages), operator queue, one org."""
    console.page("/orgs/", "/orgs/")
    console.page("/orgs/?status=needs_reauthorization", "/orgs/?status")
    console.page(f"/orgs/?q={target.company.split()[0]}", "/orgs/?q")
    console.page("/orgs/queue/", "/orgs/queue/")
    console.page(f"/orgs/{target.pk}/", "/orgs/[id]/")
    return "browsed"


def health_check(console: Console, target: Target, sim: Sim) -> str:
    """Check now on the org page, then watch it finish."""
    page = console.page(f"/orgs/{target.pk}/", "/orgs/[id]/")
    form = find_form(page.text, action=f"/orgs/{target.pk}/check/")
    if form is None:
        raise JourneyError("no Check now button")
    done = console.submit(page, form, name="/orgs/[id]/check/")
    if done.status_code != 200:
        raise JourneyError(f"Check now answered {done.status_code}")
    wait_live(console, target)
    return "checked"


def reauthorize(console: Console, target: Target, sim: Sim) -> str:
    """Re-authorize connection: Salesforce login, callback, applied."""
    page = console.page(f"/orgs/{target.pk}/", "/orgs/[id]/")
    form = find_form(page.text, action=f"/orgs/{target.pk}/reauthorize/")
    if form is None:
        raise JourneyError("no Re-authorize button")
    sent = console.submit(page, form, name="/orgs/[id]/reauthorize/", follow=False)
    if sent.status_code != 302 or "/services/oauth2/authorize" not in sent.headers.get(
        "Location", ""
    ):
        raise JourneyError(f"Re-authorize answered {sent.status_code}")
    salesforce_callback(console, sent.headers["Location"], target.username)
    wait_live(console, target, timeout=60)
    return "reauthorized"


def url_fix(console: Console, target: Target, sim: Sim) -> str:
    """Salesforce moves the org (enhanced domains); Edit organization URL."""
    moved = sim.post(f"/orgs/{target.org_id}/enhanced-domains", {})
    new_url = moved["new_url"]
    page = console.page(f"/orgs/{target.pk}/edit-url/", "/orgs/[id]/edit-url/")
    form = find_form(page.text, text="Apply")
    if form is None:
        raise JourneyError("no Edit organization URL form")
    done = console.submit(page, form, {"new_url": new_url}, text="Apply", name="edit")
    if done.status_code != 200:
        raise JourneyError(f"Apply answered {done.status_code}")

    def verified() -> bool:
        page = console.get(f"/orgs/{target.pk}/edit-url/", "/orgs/[id]/edit-url/")
        return page.status_code == 200 and not polls(page.text)

    wait_until(verified, timeout=60, what="the URL check")
    return f"url -> {new_url}"


def edit_connection(console: Console, target: Target, sim: Sim) -> str:
    """The whole wizard with a new external client app, to Finish."""
    app = sim.create_app(
        target.org_id,
        console.url("/oauth/callback/"),
        name=f"soak-{secrets.token_hex(3)}",
        activation_delay_seconds=random.choice([0, 2, 5]),
    )
    step = f"/orgs/{target.pk}/edit-connection/"
    page = console.page(step, "/orgs/[id]/edit-connection/")
    if cancel := find_form(page.text, button="cancel_change"):
        page = console.submit(page, cancel, button="cancel_change", name="cancel")
    form = find_form(page.text, button="save_credentials")
    if form is None:
        raise JourneyError("no credentials form on step 1")
    page = console.submit(
        page,
        form,
        {
            "credentials-consumer_key": app["consumer_key"],
            "credentials-consumer_secret": app["consumer_secret"],
            "credentials-app_name": app["name"],
        },
        button="save_credentials",
        name="/orgs/[id]/edit-connection/app/",
    )
    app_url = page.url

    def authorize_form() -> tuple[requests.Response, Form] | None:
        current = console.get(app_url, "/orgs/[id]/edit-connection/app/")
        found = find_form(current.text, text="Authorize at Salesforce")
        if "✗" in current.text and "change-status" in current.text and not found:
            raise JourneyError("the change failed")
        return (current, found) if found else None

    current, form = wait_until(authorize_form, timeout=90, what="activation")
    sent = console.submit(current, form, name="/connections/authorize/", follow=False)
    if sent.status_code != 302:
        raise JourneyError(f"Authorize answered {sent.status_code}")
    salesforce_callback(console, sent.headers["Location"], target.username)

    def authorized() -> requests.Response | None:
        current = console.get(app_url, "/orgs/[id]/edit-connection/app/")
        return current if "Authorized as" in current.text else None

    page = wait_until(authorized, timeout=60, what="the code exchange")
    form = find_form(page.text, form_id="app-step")
    page = console.submit(page, form, {"app-choice": "new"}, text="Next", name="next")
    form = find_form(page.text, button="verify_permissions")
    if form is None:
        raise JourneyError(f"not on the permissions step: {page.url}")
    page = console.submit(page, form, button="verify_permissions", name="verify")
    perms_url = page.url if "/permissions/" in page.url else app_url

    def checked() -> requests.Response | None:
        current = console.get(perms_url, "/orgs/[id]/edit-connection/permissions/")
        return current if not polls(current.text) else None

    page = wait_until(checked, timeout=60, what="the permission check")
    for step_name in ("permissions", "company"):
        form = find_form(page.text, text="Next")
        if form is None:
            raise JourneyError(f"no Next on the {step_name} step")
        page = console.submit(page, form, text="Next", name="next")
    form = find_form(page.text, text="Finish")
    if form is None:
        raise JourneyError("no Finish on the summary")
    done = console.submit(page, form, text="Finish", name="finish")
    if not done.url.rstrip("/").endswith(f"/orgs/{target.pk}"):
        raise JourneyError(f"Finish landed on {done.url}")
    if "is connected with the new settings" not in done.text:
        message = re.search(r'role="alert"[^>]*>([^<]{0,160})', done.text)
        raise JourneyError(f"Finish refused: {message.group(1) if message else '?'}")
    return f"applied {app['consumer_key']}"


def campaign(console: Console, target: Target, sim: Sim) -> str:
    """Start a re-authorization campaign for the org from the org list, copy
    its delegated link, and let the customer's Salesforce admin use it in
    another browser, without a console sign-in."""
    page = console.page(f"/orgs/?q={target.extra.get('alias', '')}", "/orgs/?q")
    form = find_form(page.text, form_id="bulk")
    if form is None or not form.has_button("action", "re-authorization campaign"):
        raise JourneyError("no Start re-authorization campaign on the org list")
    started = console.submit(
        page,
        form,
        {"orgs": str(target.pk)},
        button="action",
        text="re-authorization campaign",
        name="/orgs/bulk/",
    )
    # Started, the browser lands on the campaign's page.
    if started.status_code != 200 or not re.search(r"/campaigns/\d+/$", started.url):
        raise JourneyError(f"the campaign was not started ({started.url})")
    page = started
    form = find_form(page.text, action="/copy-link/")
    if form is None:
        raise JourneyError("no Copy link on the campaign page")
    copied = console.submit(page, form, name="/campaigns/[id]/rows/[id]/copy-link/")
    link = re.search(r'<code id="link-text-\d+"[^>]*>([^<]+)</code>', copied.text)
    if link is None:
        raise JourneyError("Copy link showed no link")
    # The customer's admin: another browser, no console session.
    person = requests.Session()
    landing = person.get(link.group(1), timeout=30)
    form = find_form(landing.text, text="Log in with Salesforce")
    if landing.status_code != 200 or form is None:
        raise JourneyError(f"the link answered {landing.status_code}")
    sent = person.post(
        urljoin(landing.url, form.action),
        data=form.data(),
        timeout=30,
        allow_redirects=False,
    )
    if sent.status_code != 302:
        raise JourneyError(f"Log in with Salesforce answered {sent.status_code}")
    try:
        callback = salesforce_login(
            sent.headers["Location"], target.username, SF_PASSWORD
        )
    except (AssertionError, requests.RequestException) as exc:
        raise JourneyError(f"Salesforce login failed: {str(exc)[:120]}") from None
    result = person.get(callback, timeout=30)

    def connected() -> bool:
        current = person.get(result.url, timeout=30)
        return "Connected as" in current.text and not polls(current.text)

    wait_until(connected, timeout=60, what="the delegated re-authorization")
    return "connected through a delegated link"


# name -> (journey, weight, needs an org of its own)
JOURNEYS: dict[str, tuple[Callable[[Console, Target, Sim], str], int, bool]] = {
    "browse": (browse, 4, False),
    "health_check": (health_check, 3, True),
    "reauthorize": (reauthorize, 2, True),
    "url_fix": (url_fix, 1, True),
    "edit_connection": (edit_connection, 2, True),
    "campaign": (campaign, 1, True),
}
