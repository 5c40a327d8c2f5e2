"""A planted secret run through every journey appears nowhere it should not:
HTML pages, error pages, log lines, audit rows, Celery messages, the raw
database (it is only there encrypted)."""

from __future__ import annotations

import json
import logging
import re
from urllib.parse import parse_qs, urlsplit

import pytest
from celery.signals import before_task_publish
from django.db import connection
from django.test import Client

from companies.access import AccessProfile
from companies.audit import Actor
from companies.models import AuditEvent, NotificationChannel, RoleGrant
from connections.models import CampaignOrg, ConnectionChange, PermissionCheck
from connections.services.campaigns import campaign_create
from orgs.models import RefreshTokenRecord, SalesforceOrg, UrlVerification
from orgs.tasks import check_org_health
from tests.factories import CompanyFactory, UserFactory
from tests.integration.test_delegated_links import log_in_through, mailed_link
from tests.integration.test_keep_connected import _org
from tests.live import mailed, wait_for
from tests.simclient import salesforce_login
from tests.webhook_receiver import webhook_receiver
from vbsf import encryption

pytestmark = pytest.mark.integration

PLANTED_SECRET = "PlantedConsumerSecret0123456789abcdef"
ACCESS_TOKEN_RE = re.compile(r"00D\w{12,15}![\w.]{8,}")


class Recorder:
    """Everything the console emitted during the sweep."""

    def __init__(self) -> None:
        self.html: list[str] = []
        self.messages: list[str] = []

    def client(self, user) -> Client:
        recorder = self

        class RecordingClient(Client):
            def request(self, **request):
                response = super().request(**request)
                if not getattr(response, "streaming", False):
                    recorder.html.append(response.content.decode(errors="replace"))
                else:
                    recorder.html.append(
                        b"".join(response.streaming_content).decode(errors="replace")
                    )
                return response

        client = RecordingClient()
        client.force_login(user)
        return client


@pytest.fixture
def recorder():
    recorder = Recorder()

    def capture(body=None, headers=None, **kwargs):
        recorder.messages.append(json.dumps([body, headers], default=str))

    before_task_publish.connect(capture, weak=False)
    yield recorder
    before_task_publish.disconnect(capture)


def _raw_database() -> str:
    dump = []
    with connection.cursor() as cursor:
        for table in connection.introspection.table_names():
            cursor.execute(f"SELECT * FROM {connection.ops.quote_name(table)}")
            dump.append(repr(cursor.fetchall()))
    return "\n".join(dump)


def test_planted_secrets_appear_nowhere(stack, recorder, caplog):
    caplog.set_level(logging.DEBUG)
    sim = stack.sim
    org, created, _user_id, old_token = _org(stack, "sweep")
    admin = UserFactory(username="sweeper", is_staff=True)
    RoleGrant.objects.create(user=admin, role="administrator", company=None)
    client = recorder.client(admin)
    secrets: set[str] = {old_token}

    # Edit Connection with a planted consumer secret.
    sim.create_user(created["org_id"], "new@sweep.example")
    app = sim.create_app(
        created["org_id"],
        stack.url + "/oauth/callback/",
        name="sweep-new",
        consumer_secret=PLANTED_SECRET,
    )
    assert app["consumer_secret"] == PLANTED_SECRET
    secrets.add(PLANTED_SECRET)
    wizard = f"/orgs/{org.pk}/edit-connection/"
    client.get(wizard)
    client.post(
        wizard,
        {
            "credentials-consumer_key": app["consumer_key"],
            "credentials-consumer_secret": PLANTED_SECRET,
            "save_credentials": "1",
        },
    )
    change = ConnectionChange.objects.get(org=org, kind="edit")
    wait_for(lambda: ConnectionChange.objects.get(pk=change.pk).state == "active")
    client.get(wizard)
    client.get(f"/connections/changes/{change.pk}/status/")
    response = client.post(f"/connections/changes/{change.pk}/authorize/")
    callback = salesforce_login(
        response["Location"], "new@sweep.example", "sf-password"
    )
    code = parse_qs(urlsplit(callback).query)["code"][0]
    secrets.add(code)
    client.get(urlsplit(callback).path + "?" + urlsplit(callback).query)
    wait_for(lambda: ConnectionChange.objects.get(pk=change.pk).state == "authorized")
    wait_for(
        lambda: PermissionCheck.objects.filter(change=change, state="done").exists()
    )
    prefix = f"connection_wizard_{org.pk}"
    steps = [
        {"choice": "new", "change": change.pk, "version": org.version},
        {"check": PermissionCheck.objects.filter(change=change).latest("pk").pk},
        {"company": org.company_id},
        {},
    ]
    for name, data in zip(
        ["app", "permissions", "company", "summary"], steps, strict=True
    ):
        payload = {f"{prefix}-current_step": name}
        payload |= {f"{name}-{k}": v for k, v in data.items()}
        client.post(wizard, payload)
    org.refresh_from_db()
    assert org.client_app.consumer_key == app["consumer_key"]
    new_token = org.get_refresh_token()
    secrets.add(new_token)
    wait_for(lambda: not sim.token_active(old_token))

    # Re-authorize, health check, URL change, permission check.
    response = client.post(f"/orgs/{org.pk}/reauthorize/")
    callback = salesforce_login(
        response["Location"], "new@sweep.example", "sf-password"
    )
    secrets.add(parse_qs(urlsplit(callback).query)["code"][0])
    client.get(urlsplit(callback).path + "?" + urlsplit(callback).query)
    wait_for(
        lambda: SalesforceOrg.objects.get(pk=org.pk).get_refresh_token() != new_token
    )
    secrets.add(SalesforceOrg.objects.get(pk=org.pk).get_refresh_token())
    check_org_health.apply_async(kwargs={"org_id": org.pk})
    client.post(f"/orgs/{org.pk}/verify-permissions/")
    client.post(
        f"/orgs/{org.pk}/edit-url/",
        {"new_url": "https://nowhere-sweep.my.salesforce.com"},
    )
    wait_for(lambda: not UrlVerification.objects.filter(state="running").exists())
    wait_for(lambda: not PermissionCheck.objects.filter(state="running").exists())

    # Every page a user could open, and the error pages.
    for url in [
        "/",
        "/orgs/",
        f"/orgs/{org.pk}/",
        wizard,
        "/orgs/queue/",
        "/policies/",
        f"/policies/{org.backup_policy.pk}/edit/",
        "/audit/",
        "/audit/export.csv",
        "/companies/",
        f"/orgs/{org.pk}/edit-url/",
        "/orgs/999999/",
        "/healthz",
        "/admin/",
        f"/admin/orgs/salesforceorg/{org.pk}/change/",
        f"/admin/connections/externalclientapp/{org.client_app_id}/change/",
        "/admin/connections/externalclientapp/",
        "/admin/companies/auditevent/",
        "/admin/orgs/refreshtokenrecord/",
        *[
            f"/admin/orgs/refreshtokenrecord/{pk}/change/"
            for pk in RefreshTokenRecord.objects.values_list("pk", flat=True)
        ],
        "/oauth/callback/?code=x&state=forged",
    ]:
        client.get(url)

    worker_log = stack.worker.output()
    # factory_boy logs the test's own set-up values; the console's are kept.
    logs = "\n".join(
        r.getMessage() for r in caplog.records if not r.name.startswith("factory")
    )
    audit = json.dumps(list(AuditEvent.objects.values()), default=str)
    raw = _raw_database()
    places = {
        "html": "\n".join(recorder.html),
        "logs": logs,
        "worker log": worker_log,
        "audit": audit,
        "celery messages": "\n".join(recorder.messages),
        "raw database": raw,
    }
    assert len(recorder.html) > 20 and recorder.messages
    # The token ledger recorded the tokens this journey obtained.
    assert RefreshTokenRecord.objects.filter(revoked_at__isnull=False).exists()
    for where, text in places.items():
        for secret in secrets:
            assert secret not in text, f"a planted secret leaked into the {where}"
        assert not ACCESS_TOKEN_RE.search(text), f"an access token leaked into {where}"


def test_authorize_back_parameter_cannot_redirect_elsewhere(stack):
    org, *_ = _org(stack, "backparam")
    admin = UserFactory(username="backer", is_staff=True)
    RoleGrant.objects.create(user=admin, role="administrator", company=None)
    client = Client()
    client.force_login(admin)
    change = ConnectionChange.objects.create(
        kind="reauthorize",
        org=org,
        client_app=org.client_app,
        login_url=org.login_url,
        state="active",
    )
    response = client.post(
        f"/connections/changes/{change.pk}/authorize/",
        {"back": "https://evil.example/steal"},
    )
    state = parse_qs(urlsplit(response["Location"]).query)["state"][0]
    flow = client.session["oauth_flows"][state]
    assert flow["back"].startswith("/orgs/")


def test_delegated_link_tokens_stay_out_of_logs_audit_messages_and_database(
    stack, recorder, caplog
):
    """A link token is shown on purpose only in the answer to "Copy link",
    in the mail, and (demo mail backends) in the mail shown to users who
    may act on the row; nowhere else."""
    caplog.set_level(logging.DEBUG)
    org, created, *_ = _org(stack, "sweeplink")
    stack.sim.create_user(created["org_id"], "admin@sweeplink.example")
    operator = UserFactory(username="linker")
    RoleGrant.objects.create(user=operator, role="operator", company=org.company)
    viewer = UserFactory(username="looker")
    RoleGrant.objects.create(user=viewer, role="viewer", company=org.company)
    campaign, _ = campaign_create(
        actor=Actor(user=operator), access=AccessProfile(operator), org_ids=[org.pk]
    )
    row = campaign.rows.get()
    console = recorder.client(operator)
    console.post(
        f"/campaigns/{campaign.pk}/rows/{row.pk}/send-link/",
        {f"row{row.pk}-email": "it@sweeplink.example"},
    )
    link = mailed_link("it@sweeplink.example")
    token = link.split("/")[2]
    copied = console.post(
        f"/campaigns/{campaign.pk}/rows/{row.pk}/copy-link/", HTTP_HX_REQUEST="true"
    ).content.decode()
    assert link in copied
    log_in_through(link, Client(), "admin@sweeplink.example")
    wait_for(lambda: CampaignOrg.objects.get(pk=row.pk).state == "connected")
    assert Client().get(link).status_code == 410  # logged by django.request
    assert Client().get(link[:-3] + "xx/").status_code == 410
    viewer_page = recorder.client(viewer).get(f"/campaigns/{campaign.pk}/")
    assert token not in viewer_page.content.decode()
    logs = "\n".join(
        r.getMessage() for r in caplog.records if not r.name.startswith("factory")
    )
    assert "/r/[redacted]/" in logs
    places = {
        "logs": logs,
        "worker log": stack.worker.output(),
        "audit": json.dumps(list(AuditEvent.objects.values()), default=str),
        "celery messages": "\n".join(recorder.messages),
        "raw database": _raw_database(),
    }
    assert recorder.messages
    for where, text in places.items():
        assert token not in text, f"a link token leaked into the {where}"
        assert token.split(":")[-1] not in text, f"a link signature in the {where}"


def test_webhook_secret_shows_once_and_invite_token_nowhere(stack, recorder, caplog):
    """The webhook secret is on one page, the one after it is made, and
    nowhere else; the invitation token only in the email."""
    caplog.set_level(logging.DEBUG)
    company = CompanyFactory(name="Swept Co")
    admin = UserFactory(username="sweeper", is_staff=True)
    RoleGrant.objects.create(user=admin, role="administrator", company=None)
    client = recorder.client(admin)
    with webhook_receiver() as receiver:
        saved = client.post(
            f"/settings/notifications/{company.pk}/",
            {
                "contact_emails": "ops@swept.example",
                "webhook_url": receiver.url,
                "webhook_enabled": "on",
            },
        )
        client.get(saved["Location"])
        client.get(saved["Location"])
        client.post(f"/settings/notifications/{company.pk}/test/")
        wait_for(lambda: receiver.requests)
        hook_url = receiver.url
    secret = encryption.decrypt(NotificationChannel.objects.get().secret_encrypted)

    client.post("/users/invite/", {"email": "new@swept.example", "administrator": "on"})
    # Mailed by the worker: the token is in that mail, encrypted on the
    # invitation until then, and wiped after.
    link = re.search(
        r"http\S+/invite/(\S+)/", mailed("new@swept.example", r"http\S+/invite/\S+/")
    )
    token = link.group(1)
    invitee = recorder.client(admin)
    invitee.logout()
    invitee.get(urlsplit(link.group(0)).path)
    password = "sweep-harbour-lantern-93"
    invitee.post(
        urlsplit(link.group(0)).path,
        {"new_password1": password, "new_password2": password},
    )
    invitee.get(urlsplit(link.group(0)).path)  # spent: 404, logged
    for url in ["/users/", "/audit/", "/audit/export.csv", "/settings/sign-in/"]:
        client.get(url)

    logs = "\n".join(
        r.getMessage() for r in caplog.records if not r.name.startswith("factory")
    )
    places = {
        "logs": logs,
        "worker log": stack.worker.output(),
        "audit": json.dumps(list(AuditEvent.objects.values()), default=str),
        "celery messages": "\n".join(recorder.messages),
        "raw database": _raw_database(),
    }
    assert recorder.messages and "Not Found: /invite/[redacted]/" in logs
    for where, text in places.items():
        assert secret not in text, f"the webhook secret leaked into the {where}"
        assert token not in text, f"the invitation token leaked into the {where}"
        # A webhook URL is a credential too (Slack's path is its key).
        assert hook_url not in text, f"the webhook URL leaked into the {where}"
    assert sum(secret in html for html in recorder.html) == 1
    assert not any(hook_url in html for html in recorder.html)
    assert not any(token in html for html in recorder.html)
