"""The Salesforce client against the live simulator, over real HTTP.

One simulator process serves the module. Each test builds its own org, user
and app through the simulator's control API (``/_sim/``), then drives the
client exactly as the console does; the browser half of the OAuth flow (login
form, "Allow Access?") is played with a plain HTTP session.
"""

from __future__ import annotations

import itertools
import logging
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from html import unescape
from typing import Any
from urllib.parse import parse_qsl, urljoin, urlsplit

import pytest
import requests

from connections import salesforce as sf
from tests.sfsim_fixture import sfsim_fixture

pytestmark = pytest.mark.integration

CALLBACK = "http://localhost:8000/oauth/callback/"
PASSWORD = "correct horse battery staple"
SCOPES = ["api", "refresh_token", "id", "openid"]
PERMISSIONS = [
    "PermissionsApiEnabled",
    "PermissionsViewAllData",
    "PermissionsModifyAllData",
    "PermissionsQueryAllFiles",
]
_names = itertools.count(1)
_HIDDEN_RE = re.compile(r"<input type='hidden' name='([^']+)' value='([^']*)'>")


sim = sfsim_fixture(scope="module", name="sim")


@pytest.fixture(autouse=True)
def sf_settings(settings: Any, sim: str) -> Iterator[Any]:
    settings.SALESFORCE_SIMULATOR_URL = sim
    settings.SALESFORCE_CONNECT_TIMEOUT = 5.0
    settings.SALESFORCE_READ_TIMEOUT = 10.0
    settings.SALESFORCE_API_VERSION = "66.0"
    settings.SALESFORCE_MAX_RETRIES = 2
    settings.SALESFORCE_RETRY_BACKOFF = 0.0
    yield settings
    # Faults are global to the simulator; never leak one into the next test.
    requests.delete(f"{sim}/_sim/faults", timeout=5).raise_for_status()


def control(sim: str, method: str, path: str, **body: Any) -> Any:
    response = requests.request(
        method, f"{sim}/_sim{path}", json=body or None, timeout=10
    )
    assert response.status_code == 200, response.text
    return response.json()


@dataclass
class World:
    sim: str
    org_id: str
    login_url: str
    instance_url: str
    username: str
    user_id: str
    consumer_key: str
    consumer_secret: str

    @property
    def instance_host(self) -> str:
        return urlsplit(self.instance_url).hostname or ""


def make_world(
    sim: str,
    *,
    org: dict[str, Any] | None = None,
    permissions: list[str] | None = None,
    **app: Any,
) -> World:
    n = next(_names)
    org_body = {"name": f"Org {n}", "my_domain": f"live{n}", "org_type": "production"}
    org = control(sim, "POST", "/orgs", **(org_body | (org or {})))
    username = f"admin{n}@live{n}.example"
    user = control(
        sim,
        "POST",
        f"/orgs/{org['org_id']}/users",
        username=username,
        password=PASSWORD,
        permissions=permissions or PERMISSIONS[:3],
        license="Salesforce",
        active=True,
    )
    app_body = {
        "name": f"Backup {n}",
        "scopes": SCOPES,
        "callback_urls": [CALLBACK],
        "activation_delay_seconds": 0,
        "require_pkce": True,
        "rotate_refresh_tokens": False,
    }
    app_body.update(app)
    created = control(sim, "POST", f"/orgs/{org['org_id']}/apps", **app_body)
    return World(
        sim=sim,
        org_id=org["org_id"],
        login_url=org["login_url"],
        instance_url=org["instance_url"],
        username=username,
        user_id=user["user_id"],
        consumer_key=created["consumer_key"],
        consumer_secret=created["consumer_secret"],
    )


@pytest.fixture
def world(sim: str) -> World:
    return make_world(sim)


def submit(browser: requests.Session, page: requests.Response, **fields: str) -> Any:
    """Post a simulator form: its hidden fields plus ``fields``."""
    data = {name: unescape(value) for name, value in _HIDDEN_RE.findall(page.text)}
    data.update(fields)
    target = urljoin(page.url, "authorize")
    return browser.post(target, data=data, allow_redirects=False, timeout=10)


def browser_login(
    url: str, username: str, *, decision: str = "Allow"
) -> dict[str, str]:
    """Play the user: open the authorize URL, log in, answer the approval
    page; return the parameters of the redirect to the console callback."""
    browser = requests.Session()
    page = browser.get(url, allow_redirects=False, timeout=10)
    assert page.status_code == 200, page.text
    assert "name='pw'" in page.text
    answer = submit(browser, page, username=username, pw=PASSWORD)
    if answer.status_code == 200:  # "Allow Access?" (first approval)
        assert "Allow Access?" in answer.text
        answer = submit(browser, answer, decision=decision)
    assert answer.status_code == 302, answer.text
    location = answer.headers["Location"]
    assert location.startswith(CALLBACK)
    return dict(parse_qsl(urlsplit(location).query))


def authorize(
    world: World, **options: Any
) -> tuple[sf.AuthorizationRequest, dict[str, str]]:
    request = sf.start_authorization(
        login_url=world.login_url,
        client_id=world.consumer_key,
        redirect_uri=CALLBACK,
        scopes=SCOPES,
        **options,
    )
    return request, browser_login(request.url, world.username)


def connect(world: World) -> sf.TokenSet:
    request, callback = authorize(world)
    assert callback["state"] == request.state
    return sf.exchange_code(
        login_url=world.login_url,
        client_id=world.consumer_key,
        client_secret=world.consumer_secret,
        code=callback["code"],
        redirect_uri=CALLBACK,
        code_verifier=request.code_verifier,
        expected_org_id=world.org_id,
        required_scopes=["api", "refresh_token"],
    )


def logged(sim: str, host: str, path_prefix: str) -> list[dict[str, Any]]:
    reply = requests.get(
        f"{sim}/_sim/requests",
        params={"host": host, "path_prefix": path_prefix},
        timeout=10,
    )
    return list(reply.json()["requests"])


# --- The whole flow ---------------------------------------------------------


def test_the_whole_connection_lifecycle(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    request, callback = authorize(world)
    # The browser was sent to the simulator, under the real-looking host.
    assert request.url.startswith(
        f"{world.sim}/h/{urlsplit(world.login_url).hostname}/"
    )
    assert callback["state"] == request.state

    tokens = sf.exchange_code(
        login_url=world.login_url,
        client_id=world.consumer_key,
        client_secret=world.consumer_secret,
        code=callback["code"],
        redirect_uri=CALLBACK,
        code_verifier=request.code_verifier,
        expected_org_id=world.org_id,
        required_scopes=["api", "refresh_token"],
    )
    assert tokens.org_id == world.org_id
    assert tokens.user_id == world.user_id
    assert tokens.instance_url == world.instance_url
    assert tokens.refresh_token
    assert {"api", "refresh_token"} <= tokens.scopes
    assert tokens.signature  # and it was verified

    identity = sf.get_identity(
        identity_url=tokens.identity_url, access_token=tokens.access_token
    )
    assert (identity.user_id, identity.org_id) == (world.user_id, world.org_id)
    assert identity.username == world.username
    assert identity.active is True

    info = sf.userinfo(login_url=world.login_url, access_token=tokens.access_token)
    assert info["user_id"] == world.user_id

    user = sf.fetch_user(
        instance_url=tokens.instance_url,
        access_token=tokens.access_token,
        user_id=tokens.user_id,
    )
    assert user["username"] == world.username
    assert user["is_active"] is True
    assert user["license_name"] == "Salesforce"

    permissions = sf.fetch_user_permissions(
        instance_url=tokens.instance_url,
        access_token=tokens.access_token,
        fields=PERMISSIONS,
    )
    assert permissions == {
        "PermissionsApiEnabled": True,
        "PermissionsViewAllData": True,
        "PermissionsModifyAllData": True,
        "PermissionsQueryAllFiles": False,
    }
    assert permissions.unknown_fields == frozenset()

    rows = sf.query(
        instance_url=tokens.instance_url,
        access_token=tokens.access_token,
        soql=f"SELECT Id, Username FROM User WHERE Id = '{world.user_id}'",
    )
    assert [row["Username"] for row in rows] == [world.username]

    org = sf.check_org(
        instance_url=tokens.instance_url,
        access_token=tokens.access_token,
        expected_org_id=world.org_id,
    )
    assert org["Id"] == world.org_id
    assert org["org_type"] == "production"
    assert "DailyApiRequests" in sf.get_limits(
        instance_url=tokens.instance_url, access_token=tokens.access_token
    )
    assert sf.list_api_versions(instance_url=tokens.instance_url)[-1] >= "66.0"

    refreshed = sf.refresh(
        login_url=world.login_url,
        client_id=world.consumer_key,
        client_secret=world.consumer_secret,
        refresh_token=tokens.refresh_token or "",
        expected_org_id=world.org_id,
    )
    assert refreshed.refresh_token is None  # no rotation for this app
    assert refreshed.access_token != tokens.access_token
    sf.get_identity(
        identity_url=refreshed.identity_url, access_token=refreshed.access_token
    )

    sf.revoke(login_url=world.login_url, token=tokens.refresh_token or "")
    # Revoking twice is fine: the token is already dead.
    sf.revoke(login_url=world.login_url, token=tokens.refresh_token or "")
    with pytest.raises(sf.InvalidGrant) as caught:
        sf.refresh(
            login_url=world.login_url,
            client_id=world.consumer_key,
            client_secret=world.consumer_secret,
            refresh_token=tokens.refresh_token or "",
        )
    assert caught.value.description == "expired access/refresh token"
    assert caught.value.permanent is True
    secrets = [tokens.access_token, tokens.refresh_token, refreshed.access_token]
    secrets += [world.consumer_secret, callback["code"], request.code_verifier]
    assert not [s for s in secrets if s and s in caplog.text]
    assert "salesforce POST" in caplog.text


def test_a_code_works_once(world: World) -> None:
    request, callback = authorize(world)
    kwargs = {
        "login_url": world.login_url,
        "client_id": world.consumer_key,
        "client_secret": world.consumer_secret,
        "code": callback["code"],
        "redirect_uri": CALLBACK,
        "code_verifier": request.code_verifier,
    }
    sf.exchange_code(**kwargs)
    with pytest.raises(sf.InvalidGrant) as caught:
        sf.exchange_code(**kwargs)
    assert caught.value.description == "expired authorization code"


def test_a_wrong_verifier_is_invalid_grant_as_on_the_wire(world: World) -> None:
    _, callback = authorize(world)
    with pytest.raises(sf.InvalidGrant) as caught:
        sf.exchange_code(
            login_url=world.login_url,
            client_id=world.consumer_key,
            client_secret=world.consumer_secret,
            code=callback["code"],
            redirect_uri=CALLBACK,
            code_verifier=sf.new_pkce_pair()[0],
        )
    assert caught.value.description == "invalid code verifier"


def test_tokens_of_another_org_are_refused(sim: str, world: World) -> None:
    other = make_world(sim)
    request, callback = authorize(world)
    with pytest.raises(sf.OrgMismatch) as caught:
        sf.exchange_code(
            login_url=world.login_url,
            client_id=world.consumer_key,
            client_secret=world.consumer_secret,
            code=callback["code"],
            redirect_uri=CALLBACK,
            code_verifier=request.code_verifier,
            expected_org_id=other.org_id,
        )
    assert caught.value.actual_org_id == world.org_id


def test_rotated_refresh_tokens_work_once(sim: str) -> None:
    world = make_world(sim, rotate_refresh_tokens=True)
    tokens = connect(world)
    kwargs = {
        "login_url": world.login_url,
        "client_id": world.consumer_key,
        "client_secret": world.consumer_secret,
    }
    rotated = sf.refresh(refresh_token=tokens.refresh_token or "", **kwargs)
    assert rotated.refresh_token and rotated.refresh_token != tokens.refresh_token
    with pytest.raises(sf.InvalidGrant):
        sf.refresh(refresh_token=tokens.refresh_token or "", **kwargs)


def test_a_denied_authorization(world: World) -> None:
    request = sf.start_authorization(
        login_url=world.login_url,
        client_id=world.consumer_key,
        redirect_uri=CALLBACK,
        scopes=SCOPES,
    )
    callback = browser_login(request.url, world.username, decision="Deny")
    assert callback["state"] == request.state
    error = sf.error_from_callback(
        error=callback["error"], description=callback.get("error_description", "")
    )
    assert isinstance(error, sf.AccessDenied)


def test_a_bad_consumer_key_at_authorize(world: World) -> None:
    request = sf.start_authorization(
        login_url=world.login_url,
        client_id="3MVG9-no-such-key",
        redirect_uri=CALLBACK,
        scopes=SCOPES,
    )
    page = requests.get(request.url, allow_redirects=False, timeout=10)
    assert page.status_code == 400
    params = dict(parse_qsl(page.text))
    error = sf.error_from_callback(
        error=params["error"], description=params["error_description"]
    )
    assert isinstance(error, sf.InvalidClient)


def test_permission_fields_unknown_to_the_org(sim: str, world: World) -> None:
    control(
        sim,
        "POST",
        f"/orgs/{world.org_id}",
        unavailable_permission_fields=["PermissionsQueryAllFiles"],
    )
    tokens = connect(world)
    result = sf.fetch_user_permissions(
        instance_url=tokens.instance_url,
        access_token=tokens.access_token,
        fields=PERMISSIONS,
    )
    assert result["PermissionsQueryAllFiles"] is False
    assert result["PermissionsApiEnabled"] is True
    assert result.unknown_fields == {"PermissionsQueryAllFiles"}


# --- Activation of new credentials ---------------------------------------------


def test_probe_activation_follows_the_activation_delay(sim: str) -> None:
    world = make_world(sim, activation_delay_seconds=600)
    kwargs = {"login_url": world.login_url, "client_id": world.consumer_key}
    probe = sf.probe_activation(client_secret=world.consumer_secret, **kwargs)
    assert probe is sf.ActivationProbe.NOT_ACTIVE
    control(sim, "POST", "/clock", advance_seconds=601)
    assert (
        sf.probe_activation(client_secret=world.consumer_secret, **kwargs)
        is sf.ActivationProbe.ACTIVE
    )
    assert (
        sf.probe_activation(client_secret="not-the-secret", **kwargs)
        is sf.ActivationProbe.WRONG_SECRET
    )


# --- Hosts and faults ------------------------------------------------------------


def test_unknown_hosts_are_unreachable(sim: str) -> None:
    with pytest.raises(sf.HostUnreachable):
        sf.list_api_versions(instance_url="https://no-such-org.my.salesforce.com")


def test_an_org_moved_by_enhanced_domains(sim: str, world: World) -> None:
    tokens = connect(world)
    moved = control(sim, "POST", f"/orgs/{world.org_id}/enhanced-domains")
    assert moved["new_url"] != world.instance_url
    with pytest.raises(sf.HostUnreachable):
        sf.check_org(
            instance_url=world.instance_url,
            access_token=tokens.access_token,
            expected_org_id=world.org_id,
        )
    # The next refresh names the new instance URL; it is validated and used.
    refreshed = sf.refresh(
        login_url="https://login.salesforce.com",
        client_id=world.consumer_key,
        client_secret=world.consumer_secret,
        refresh_token=tokens.refresh_token or "",
    )
    assert refreshed.instance_url == moved["new_url"]
    row = sf.check_org(
        instance_url=refreshed.instance_url,
        access_token=refreshed.access_token,
        expected_org_id=world.org_id,
    )
    assert row["Id"] == world.org_id


def test_503_is_retried_a_bounded_number_of_times(sim: str, world: World) -> None:
    tokens = connect(world)
    path = "/services/data/v66.0/limits"
    control(
        sim,
        "POST",
        "/faults",
        kind="error_503",
        host=world.instance_host,
        path_prefix=path,
    )
    with pytest.raises(sf.TransientError):
        sf.get_limits(
            instance_url=tokens.instance_url, access_token=tokens.access_token
        )
    assert len(logged(sim, world.instance_host, path)) == 3
    # A short outage is ridden out.
    requests.delete(f"{sim}/_sim/faults", timeout=5)
    control(
        sim,
        "POST",
        "/faults",
        kind="error_503",
        host=world.instance_host,
        path_prefix=path,
        count=2,
    )
    sf.get_limits(instance_url=tokens.instance_url, access_token=tokens.access_token)
    assert len(logged(sim, world.instance_host, path)) == 6


def test_a_code_exchange_is_not_retried(sim: str, world: World) -> None:
    request, callback = authorize(world)
    login_host = urlsplit(world.login_url).hostname or ""
    path = "/services/oauth2/token"
    before = len(logged(sim, login_host, path))
    control(
        sim,
        "POST",
        "/faults",
        kind="error_503",
        host=login_host,
        path_prefix=path,
        count=1,
    )
    with pytest.raises(sf.TransientError):
        sf.exchange_code(
            login_url=world.login_url,
            client_id=world.consumer_key,
            client_secret=world.consumer_secret,
            code=callback["code"],
            redirect_uri=CALLBACK,
            code_verifier=request.code_verifier,
        )
    assert len(logged(sim, login_host, path)) == before + 1


def test_a_timeout_fails_within_the_read_timeout(
    sim: str, world: World, sf_settings: Any
) -> None:
    tokens = connect(world)
    sf_settings.SALESFORCE_READ_TIMEOUT = 0.5
    sf_settings.SALESFORCE_MAX_RETRIES = 1
    control(
        sim,
        "POST",
        "/faults",
        kind="timeout",
        host=world.instance_host,
        path_prefix="/services/data",
        latency_ms=3000,
    )
    started = time.monotonic()
    with pytest.raises(sf.TransientError) as caught:
        sf.get_limits(
            instance_url=tokens.instance_url, access_token=tokens.access_token
        )
    assert caught.value.code == "timeout"
    # Two attempts of 0.5 s each, not the 3 s the server would take.
    assert time.monotonic() - started < 2.5


def test_a_revoked_session_is_reported(sim: str, world: World) -> None:
    tokens = connect(world)
    sf.revoke(login_url=world.login_url, token=tokens.access_token)
    with pytest.raises(sf.SessionInvalid):
        sf.get_identity(
            identity_url=tokens.identity_url, access_token=tokens.access_token
        )
    with pytest.raises(sf.SessionInvalid):
        sf.get_limits(
            instance_url=tokens.instance_url, access_token=tokens.access_token
        )


def test_a_sandbox_org(sim: str) -> None:
    world = make_world(sim, org={"org_type": "sandbox", "sandbox_name": "uat"})
    assert world.instance_host.endswith(".sandbox.my.salesforce.com")
    tokens = connect(world)
    # Sandbox identity URLs live on test.salesforce.com.
    assert tokens.identity_url.startswith("https://test.salesforce.com/id/")
    row = sf.check_org(
        instance_url=tokens.instance_url,
        access_token=tokens.access_token,
        expected_org_id=world.org_id,
    )
    assert row["org_type"] == "sandbox"


def test_an_app_without_the_api_scope(sim: str) -> None:
    world = make_world(sim, scopes=["id", "refresh_token"])
    with pytest.raises(sf.MissingScope) as caught:
        connect(world)  # requires api and refresh_token
    assert caught.value.missing == {"api"}
    request, callback = authorize(world)
    tokens = sf.exchange_code(
        login_url=world.login_url,
        client_id=world.consumer_key,
        client_secret=world.consumer_secret,
        code=callback["code"],
        redirect_uri=CALLBACK,
        code_verifier=request.code_verifier,
    )
    with pytest.raises(sf.MissingScope) as caught:
        sf.get_limits(
            instance_url=tokens.instance_url, access_token=tokens.access_token
        )
    assert caught.value.missing == {"api"}


def test_a_user_without_api_access(sim: str) -> None:
    world = make_world(sim, permissions=["PermissionsViewAllData"])
    tokens = connect(world)
    with pytest.raises(sf.PermissionMissing) as caught:
        sf.get_limits(
            instance_url=tokens.instance_url, access_token=tokens.access_token
        )
    assert caught.value.code == "API_DISABLED_FOR_ORG"


def test_a_deactivated_user(sim: str, world: World) -> None:
    tokens = connect(world)
    control(sim, "POST", f"/orgs/{world.org_id}/users/{world.user_id}", active=False)
    with pytest.raises(sf.InactiveUser):
        sf.refresh(
            login_url=world.login_url,
            client_id=world.consumer_key,
            client_secret=world.consumer_secret,
            refresh_token=tokens.refresh_token or "",
        )


def test_the_daily_api_limit(sim: str, world: World) -> None:
    tokens = connect(world)
    path = "/services/data/v66.0/limits"
    control(
        sim, "POST", "/faults", kind="request_limit", host=world.instance_host, count=1
    )
    with pytest.raises(sf.RateLimited) as caught:
        sf.get_limits(
            instance_url=tokens.instance_url, access_token=tokens.access_token
        )
    assert caught.value.permanent is False
    # Not blindly retried.
    assert len(logged(sim, world.instance_host, path)) == 1


def test_a_refresh_that_moves_the_org(sim: str, world: World) -> None:
    tokens = connect(world)
    login_host = urlsplit(world.login_url).hostname
    control(sim, "POST", "/faults", kind="instance_url_change", host=login_host)
    refreshed = sf.refresh(
        login_url=world.login_url,
        client_id=world.consumer_key,
        client_secret=world.consumer_secret,
        refresh_token=tokens.refresh_token or "",
        expected_org_id=world.org_id,
    )
    assert refreshed.instance_url != tokens.instance_url
    assert refreshed.instance_url.endswith(".my.salesforce.com")
    sf.check_org(
        instance_url=refreshed.instance_url,
        access_token=refreshed.access_token,
        expected_org_id=world.org_id,
    )
