"""Fixtures for the sfsim conformance suite.

Django-free on purpose: the suite runs with ``-p no:django`` and under the
project's pytest-django configuration alike (no test asks for a database).
"""

from __future__ import annotations

import base64
import hashlib
import re
import secrets
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from html import unescape
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from flask import Flask
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from sfsim.app import create_app
from sfsim.state import SimState

CALLBACK = "http://127.0.0.1:8000/oauth/callback/"
PASSWORD = "Demo-Passw0rd!"
REPO_ROOT = Path(__file__).resolve().parents[2]
EXAMPLE_FIXTURE = REPO_ROOT / "sfsim" / "fixtures" / "example.json"
_HIDDEN = re.compile(r"<input type='hidden' name='([^']+)' value='([^']*)'>")


def pkce_pair() -> tuple[str, str]:
    """(verifier, S256 challenge) like jsforce builds them."""
    verifier = base64.urlsafe_b64encode(secrets.token_bytes(32)).rstrip(b"=").decode()
    digest = hashlib.sha256(verifier.encode()).digest()
    return verifier, base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def hidden_fields(html: str) -> dict[str, str]:
    return {name: unescape(value) for name, value in _HIDDEN.findall(html)}


def callback_params(resp: TestResponse) -> dict[str, str]:
    """Query parameters of a redirect to the callback, decoded exactly once."""
    assert resp.status_code == 302, resp.get_data(as_text=True)
    location = resp.headers["Location"]
    assert location.startswith(CALLBACK.rstrip("/")), location
    return {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}


@dataclass
class World:
    """One production org with an admin user and an app with the VBSF scopes."""

    org_id: str
    host: str
    user_id: str
    username: str
    key: str
    secret: str


class Sim:
    """Thin helpers over the Flask test client; every call is real HTTP-shaped."""

    def __init__(self, client: FlaskClient, state: SimState) -> None:
        self.client = client
        self.state = state

    # control API ------------------------------------------------------------
    def ctl(self, method: str, path: str, json: Any = None, status: int = 200) -> Any:
        resp = self.client.open(f"/_sim{path}", method=method, json=json)
        assert resp.status_code == status, resp.get_data(as_text=True)
        return resp.get_json()

    def org(
        self, my_domain: str = "acme", org_type: str = "production", **kw: Any
    ) -> dict:
        body = {"name": kw.pop("name", my_domain.title()), "my_domain": my_domain}
        body.update(org_type=org_type, **kw)
        return self.ctl("POST", "/orgs", body)

    def user(self, org_id: str, username: str, **kw: Any) -> dict:
        body = {"username": username, "password": kw.pop("password", PASSWORD), **kw}
        return self.ctl("POST", f"/orgs/{org_id}/users", body)

    def app(self, org_id: str, **kw: Any) -> dict:
        body = {
            "name": "Backup",
            "scopes": ["full", "refresh_token", "offline_access", "openid", "api"],
            "callback_urls": [CALLBACK],
            **kw,
        }
        return self.ctl("POST", f"/orgs/{org_id}/apps", body)

    def advance(self, seconds: float) -> None:
        self.ctl("POST", "/clock", {"advance_seconds": seconds})

    # browser half of the flow ----------------------------------------------
    def authorize(self, host: str, key: str, **params: Any) -> TestResponse:
        query = {"response_type": "code", "client_id": key, "redirect_uri": CALLBACK}
        query.update(params)
        return self.client.get(
            f"/h/{host}/services/oauth2/authorize", query_string=query
        )

    def login(
        self,
        host: str,
        key: str,
        username: str,
        password: str = PASSWORD,
        **params: Any,
    ) -> TestResponse:
        page = self.authorize(host, key, **params)
        assert page.status_code == 200, page.get_data(as_text=True)
        form = hidden_fields(page.get_data(as_text=True))
        form.update(sfsim_step="login", username=username, pw=password)
        return self.client.post(f"/h/{host}/services/oauth2/authorize", data=form)

    def decide(self, host: str, approval: TestResponse, decision: str) -> TestResponse:
        html = approval.get_data(as_text=True)
        assert "Allow Access?" in html
        form = hidden_fields(html)
        form["sfsim_step"] = "approve"
        form["sfsim_ticket"] = re.search(r"name='sfsim_ticket' value='([^']+)'", html)[
            1
        ]
        form["decision"] = decision
        return self.client.post(f"/h/{host}/services/oauth2/authorize", data=form)

    def code(self, host: str, key: str, username: str, **params: Any) -> str:
        resp = self.login(host, key, username, **params)
        if resp.status_code == 200:
            resp = self.decide(host, resp, "Allow")
        return callback_params(resp)["code"]

    # token endpoint ------------------------------------------------------------
    def token(self, host: str, **form: Any) -> TestResponse:
        return self.client.post(f"/h/{host}/services/oauth2/token", data=form)

    def exchange(
        self, host: str, key: str, secret: str, code: str, **extra: Any
    ) -> TestResponse:
        form = {
            "grant_type": "authorization_code",
            "code": code,
            "client_id": key,
            "client_secret": secret,
            "redirect_uri": CALLBACK,
            **extra,
        }
        return self.token(host, **form)

    def refresh(
        self, host: str, key: str, secret: str, refresh_token: str
    ) -> TestResponse:
        return self.token(
            host,
            grant_type="refresh_token",
            refresh_token=refresh_token,
            client_id=key,
            client_secret=secret,
        )

    def tokens(self, world: World, **params: Any) -> dict[str, Any]:
        """Full web-server flow for the world's user; the token JSON."""
        code = self.code(world.host, world.key, world.username, **params)
        resp = self.exchange(world.host, world.key, world.secret, code)
        assert resp.status_code == 200, resp.get_data(as_text=True)
        return resp.get_json()

    def rest(
        self, host: str, token: str | None, path: str, **query: Any
    ) -> TestResponse:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return self.client.get(
            f"/h/{host}/services/data/v66.0{path}", headers=headers, query_string=query
        )

    def soql(self, host: str, token: str, q: str) -> TestResponse:
        return self.rest(host, token, "/query", q=q)


@pytest.fixture
def state() -> SimState:
    return SimState()


@pytest.fixture
def app(state: SimState) -> Flask:
    return create_app(state)


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


@pytest.fixture
def sim(client: FlaskClient, state: SimState) -> Sim:
    return Sim(client, state)


@pytest.fixture
def world(sim: Sim) -> World:
    org = sim.org("acme")
    user = sim.user(org["org_id"], "admin@acme.example")
    app = sim.app(org["org_id"])
    return World(
        org_id=org["org_id"],
        host="acme.my.salesforce.com",
        user_id=user["user_id"],
        username="admin@acme.example",
        key=app["consumer_key"],
        secret=app["consumer_secret"],
    )


@dataclass
class LiveSim:
    url: str
    log_path: Path


@pytest.fixture
def live_sim(tmp_path: Path) -> Iterator[LiveSim]:
    """`python -m sfsim` on a free port, seeded with the example fixture.

    stderr goes to a file (a pipe nobody reads could fill up and block the
    server) so tests can check what it logged.
    """
    log_path = tmp_path / "sfsim.log"
    with open(log_path, "w") as log_file:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "sfsim",
                "--port",
                "0",
                "--fixture",
                str(EXAMPLE_FIXTURE),
            ],
            cwd=REPO_ROOT,
            stdout=subprocess.PIPE,
            stderr=log_file,
            text=True,
        )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()  # blocks until the server listens (or dies)
        match = re.fullmatch(r"sfsim listening on (http://127\.0\.0\.1:\d+)\n", line)
        assert match, f"unexpected first line {line!r}"
        yield LiveSim(match[1], log_path)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
