"""`python -m sfsim` as a real process, over real HTTP with `requests`."""

from __future__ import annotations

import re
import time
from concurrent.futures import ThreadPoolExecutor
from html import unescape
from urllib.parse import parse_qs, urlsplit

import pytest
import requests

from .conftest import CALLBACK, PASSWORD, LiveSim

pytestmark = pytest.mark.integration  # a real process over real HTTP

ACME = "acme.my.salesforce.com"
ADMIN = "admin@acme.example"


def test_full_flow_over_http(live_sim: LiveSim) -> None:
    base = live_sim.url
    http = requests.Session()
    assert http.get(f"{base}/_sim/health", timeout=5).json() == {"ok": True}
    org = http.get(f"{base}/_sim/orgs", timeout=5).json()["orgs"][0]
    app = http.post(
        f"{base}/_sim/orgs/{org['org_id']}/apps",
        json={"name": "Live", "scopes": ["full", "refresh_token", "openid"],
              "callback_urls": [CALLBACK]},
        timeout=5,
    ).json()  # fmt: skip
    key, secret = app["consumer_key"], app["consumer_secret"]

    # Browser half: login page, then approval, then the redirect to the console.
    authorize = f"{base}/h/{ACME}/services/oauth2/authorize"
    page = http.get(
        authorize,
        params={"response_type": "code", "client_id": key, "redirect_uri": CALLBACK,
                "state": "live"},
        timeout=5,
    )  # fmt: skip
    assert page.status_code == 200 and "Login | Salesforce" in page.text
    form = {
        n: unescape(v)
        for n, v in re.findall(
            r"<input type='hidden' name='([^']+)' value='([^']*)'>", page.text
        )
    }
    form.update(username=ADMIN, pw=PASSWORD)
    approval = http.post(authorize, data=form, timeout=5, allow_redirects=False)
    assert "Allow Access?" in approval.text
    form = {
        n: unescape(v)
        for n, v in re.findall(
            r"<input type='hidden' name='([^']+)' value='([^']*)'>", approval.text
        )
    }
    form["decision"] = "Allow"
    redirect = http.post(authorize, data=form, timeout=5, allow_redirects=False)
    assert redirect.status_code == 302
    query = parse_qs(urlsplit(redirect.headers["Location"]).query)
    assert query["state"] == ["live"]

    token = http.post(
        f"{base}/h/{ACME}/services/oauth2/token",
        data={"grant_type": "authorization_code", "code": query["code"][0], "client_id": key,
              "client_secret": secret, "redirect_uri": CALLBACK},
        timeout=5,
    )  # fmt: skip
    body = token.json()
    assert token.status_code == 200 and body["instance_url"] == f"https://{ACME}"
    rest = http.get(
        f"{base}/h/{ACME}/services/data/v66.0/query",
        params={"q": "SELECT PermissionsApiEnabled FROM UserPermissionAccess"},
        headers={"Authorization": f"Bearer {body['access_token']}"},
        timeout=5,
    )
    assert rest.json()["records"][0]["PermissionsApiEnabled"] is True
    assert rest.headers["Sforce-Limit-Info"].startswith("api-usage=")

    # The demo seeder's pre-issued refresh token from the example fixture.
    seeded = http.post(
        f"{base}/h/login.salesforce.com/services/oauth2/token",
        data={"grant_type": "refresh_token", "client_id": org["apps"][0]["consumer_key"],
              "client_secret": "DEMO" + "0" * 56 + "ACME",
              "refresh_token": "5Aep861DEMO.acme.refresh.token.for.demo.seeding.only." + "0" * 34},
        timeout=5,
    )  # fmt: skip
    assert seeded.status_code == 200

    log = live_sim.log_path.read_text()
    assert "/services/oauth2/token" in log
    for secret_value in (
        secret,
        body["access_token"],
        body["refresh_token"],
        query["code"][0],
    ):
        assert secret_value not in log


def test_serves_concurrent_slow_requests(live_sim: LiveSim) -> None:
    base = live_sim.url
    requests.post(f"{base}/_sim/config", json={"latency_ms": 300}, timeout=5)

    def call(_: int) -> int:
        return requests.get(f"{base}/h/{ACME}/services/data/", timeout=10).status_code

    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=64) as pool:
        statuses = list(pool.map(call, range(64)))
    elapsed = time.monotonic() - started
    assert statuses == [200] * 64
    assert elapsed < 3.0, f"64 x 300 ms took {elapsed:.1f}s: requests are serialised"


def test_timeout_fault_makes_the_client_time_out(live_sim: LiveSim) -> None:
    base = live_sim.url
    requests.post(
        f"{base}/_sim/faults",
        json={"kind": "timeout", "latency_ms": 2000, "count": 1},
        timeout=5,
    )
    started = time.monotonic()
    try:
        requests.get(f"{base}/h/{ACME}/services/data/", timeout=0.3)
    except requests.Timeout:
        pass
    else:  # pragma: no cover - the point of the test
        raise AssertionError("expected a client timeout")
    assert time.monotonic() - started < 1.5
    assert requests.get(f"{base}/h/{ACME}/services/data/", timeout=5).status_code == 200
