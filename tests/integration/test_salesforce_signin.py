"""Log in with Salesforce end to end: Django's test client as the browser,
the live simulator as Salesforce, a real worker exchanging the code."""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from django.test import Client

from companies.models import AuditEvent
from connections.models import SalesforceIdentityLink, SignInAttempt
from orgs.models import SalesforceOrg
from tests.factories import (
    CompanyFactory,
    ExternalClientAppFactory,
    RoleGrantFactory,
    SalesforceOrgFactory,
    UserFactory,
)
from tests.live import wait_for
from tests.simclient import salesforce_login
from vbsf import encryption

pytestmark = pytest.mark.integration

SF_PASSWORD = "sf-password"


@dataclass
class IdP:
    org: SalesforceOrg
    app: dict[str, str]
    sf_org_id: str
    sf_user_id: str
    sf_username: str
    user: Any


def identity_provider(stack: Any, *, name: str = "idp", link: bool = True) -> IdP:
    """A sign-in org in the simulator and the console, with a linked user."""
    sim = stack.sim
    created = sim.create_org(name)
    sf_username = f"jane@{name}.example"
    sf_user_id = sim.create_user(created["org_id"], sf_username, SF_PASSWORD)
    app = sim.create_app(
        created["org_id"],
        stack.url + "/oauth/callback/",
        name=f"{name}-signin",
        scopes=["openid", "id", "api", "refresh_token"],
    )
    org = SalesforceOrgFactory(
        alias=f"{name}-prod",
        org_id=created["org_id"],
        login_url=created["login_url"],
        instance_url=created["instance_url"],
        company=CompanyFactory(name=f"{name.title()} Co"),
        client_app=ExternalClientAppFactory(
            consumer_key=app["consumer_key"], consumer_secret=app["consumer_secret"]
        ),
        is_identity_provider=True,
    )
    user = UserFactory(username=f"jane-{name}", password="console-pw")
    RoleGrantFactory(user=user, role="viewer", company=org.company)
    if link:
        SalesforceIdentityLink.objects.create(
            user=user,
            org=org,
            salesforce_user_id=sf_user_id,
            salesforce_username=sf_username,
        )
    return IdP(org, app, created["org_id"], sf_user_id, sf_username, user)


def _start(client: Client) -> tuple[str, SignInAttempt]:
    response = client.post("/login/salesforce/")
    assert response.status_code == 302
    attempt = SignInAttempt.objects.latest("pk")
    return response["Location"], attempt


def _callback_path(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.path}?{parts.query}"


def _poll(client: Client, url: str) -> Any:
    """GET the wait page until it stops saying "Checking"."""

    def settled() -> Any:
        response = client.get(url)
        if response.status_code != 200 or b"Checking your sign-in" not in (
            response.content
        ):
            return response
        return None

    return wait_for(settled, timeout=30)


def _signed_in_user_id(client: Client) -> int | None:
    value = client.session.get("_auth_user_id")
    return int(value) if value else None


def _sign_in(client: Client, idp: IdP, *, decision: str = "Allow") -> Any:
    authorize_url, attempt = _start(client)
    callback = salesforce_login(authorize_url, idp.sf_username, SF_PASSWORD, decision)
    response = client.get(_callback_path(callback))
    return attempt, response


def test_a_linked_salesforce_user_signs_in(stack: Any) -> None:
    idp = identity_provider(stack)
    client = Client()
    login_page = client.get("/login/").content.decode()
    assert "Log in with Salesforce" in login_page

    authorize_url, attempt = _start(client)
    query = parse_qs(urlsplit(authorize_url).query)
    assert authorize_url.startswith(stack.sim.base_url + "/h/idp.my.salesforce.com/")
    assert query["scope"] == ["openid id"]
    assert query["prompt"] == ["login"] and query["code_challenge_method"] == ["S256"]
    assert query["nonce"] == [attempt.nonce]
    assert query["redirect_uri"] == [stack.url + "/oauth/callback/"]
    # The PKCE verifier is kept encrypted and matches the S256 challenge.
    verifier = encryption.decrypt(attempt.code_verifier_encrypted)
    assert verifier not in attempt.code_verifier_encrypted
    digest = hashlib.sha256(verifier.encode()).digest()
    challenge = base64.urlsafe_b64encode(digest).rstrip(b"=").decode()
    assert query["code_challenge"] == [challenge]

    stack.sim.clear_requests()
    callback = salesforce_login(authorize_url, idp.sf_username, SF_PASSWORD)
    response = client.get(_callback_path(callback))
    wait_url = f"/login/salesforce/wait/{attempt.pk}/"
    assert response.status_code == 302 and response["Location"] == wait_url
    assert response["Referrer-Policy"] == "no-referrer"

    response = _poll(client, wait_url)
    assert response.status_code == 302 and response["Location"] == "/"
    assert _signed_in_user_id(client) == idp.user.pk
    assert client.get("/").status_code == 200

    attempt.refresh_from_db()
    assert attempt.state == SignInAttempt.State.SUCCEEDED
    assert attempt.user == idp.user and attempt.consumed_at is not None
    assert attempt.code_encrypted == "" and attempt.code_verifier_encrypted == ""
    event = AuditEvent.objects.get(action="auth.salesforce_signin")
    assert event.outcome == "success" and event.actor == idp.user
    assert event.after["salesforce_user_id"] == idp.sf_user_id
    paths = [r["path"] for r in stack.sim.requests()]
    assert "/services/oauth2/token" in paths and "/id/keys" in paths
    # The console keeps no Salesforce tokens from a sign-in.
    wait_for(
        lambda: "/services/oauth2/revoke" in [r["path"] for r in stack.sim.requests()]
    )

    # Nothing secret reaches the worker's log.
    code = parse_qs(urlsplit(callback).query)["code"][0]
    log = stack.worker.output()
    assert code not in log and verifier not in log and attempt.nonce not in log

    # Single use: polling again keeps this browser signed in; another
    # browser cannot use the attempt at all.
    again = client.get(wait_url)
    assert again.status_code == 302 and again["Location"] == "/"
    assert Client().get(wait_url).status_code == 404
    assert SignInAttempt.objects.filter(pk=attempt.pk).get().consumed_at == (
        attempt.consumed_at
    )


def test_htmx_polls_get_a_client_side_redirect(stack: Any) -> None:
    idp = identity_provider(stack, name="htmx")
    client = Client()
    attempt, response = _sign_in(client, idp)
    wait_url = response["Location"]
    wait_for(
        lambda: (
            SignInAttempt.objects.get(pk=attempt.pk).state
            != SignInAttempt.State.EXCHANGING
        )
    )
    response = client.get(wait_url, headers={"HX-Request": "true"})
    assert response.status_code == 200 and response["HX-Redirect"] == "/"
    assert _signed_in_user_id(client) == idp.user.pk


def test_an_unlinked_salesforce_user_is_refused(stack: Any) -> None:
    idp = identity_provider(stack, name="unlinked", link=False)
    client = Client()
    _, response = _sign_in(client, idp)
    response = _poll(client, response["Location"])
    assert response.status_code == 200
    body = response.content.decode()
    assert (
        "This Salesforce user is not linked to a console user. Ask an Administrator "
        "to link it." in body
    )
    assert 'href="/login/"' in body
    assert _signed_in_user_id(client) is None
    event = AuditEvent.objects.get(action="auth.salesforce_signin")
    assert event.outcome == "failure" and event.actor is None


def test_an_inactive_console_user_is_refused(stack: Any) -> None:
    idp = identity_provider(stack, name="inactive")
    type(idp.user).objects.filter(pk=idp.user.pk).update(is_active=False)
    client = Client()
    _, response = _sign_in(client, idp)
    response = _poll(client, response["Location"])
    assert "Your console user is inactive" in response.content.decode()
    assert _signed_in_user_id(client) is None


def test_forged_and_replayed_states_are_refused(stack: Any) -> None:
    idp = identity_provider(stack, name="replay")
    client = Client()
    authorize_url, attempt = _start(client)
    callback = salesforce_login(authorize_url, idp.sf_username, SF_PASSWORD)
    code = parse_qs(urlsplit(callback).query)["code"][0]

    forged = client.get("/oauth/callback/", {"code": code, "state": "forged"})
    assert forged.status_code == 403
    # Another browser session cannot use this browser's state.
    assert Client().get(_callback_path(callback)).status_code == 403
    attempt.refresh_from_db()
    assert attempt.state == SignInAttempt.State.STARTED

    assert client.get(_callback_path(callback)).status_code == 302
    assert client.get(_callback_path(callback)).status_code == 403
    _poll(client, f"/login/salesforce/wait/{attempt.pk}/")
    assert _signed_in_user_id(client) == idp.user.pk


def test_access_denied_at_salesforce_goes_back_to_sign_in(stack: Any) -> None:
    idp = identity_provider(stack, name="denied")
    client = Client()
    attempt, response = _sign_in(client, idp, decision="Deny")
    assert response.status_code == 302 and response["Location"] == "/login/"
    page = client.get("/login/").content.decode()
    assert "The sign-in was cancelled at Salesforce." in page
    attempt.refresh_from_db()
    assert attempt.state == SignInAttempt.State.REFUSED
    assert attempt.code_verifier_encrypted == ""
    event = AuditEvent.objects.get(action="auth.salesforce_signin")
    assert event.outcome == "failure" and event.after["error"] == "access_denied"
    assert _signed_in_user_id(client) is None


def test_a_nonce_mismatch_is_refused(stack: Any) -> None:
    idp = identity_provider(stack, name="nonce")
    client = Client()
    authorize_url, attempt = _start(client)
    SignInAttempt.objects.filter(pk=attempt.pk).update(nonce="tampered-nonce")
    callback = salesforce_login(authorize_url, idp.sf_username, SF_PASSWORD)
    response = _poll(client, client.get(_callback_path(callback))["Location"])
    body = response.content.decode()
    assert "does not belong to this sign-in" in body
    assert _signed_in_user_id(client) is None
    attempt.refresh_from_db()
    assert attempt.state == SignInAttempt.State.REFUSED


def test_without_an_identity_provider_there_is_no_salesforce_sign_in(
    stack: Any,
) -> None:
    client = Client()
    assert "Log in with Salesforce" not in client.get("/login/").content.decode()
    assert client.post("/login/salesforce/").status_code == 404
    assert client.get("/login/salesforce/wait/1/").status_code == 404
