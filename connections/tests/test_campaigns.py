"""Campaigns: creation, scoping, query counts, rows and beat (SPEC §9)."""

from __future__ import annotations

import contextlib
import re
import threading
import time
from datetime import timedelta
from unittest import mock
from urllib.parse import parse_qs, urlsplit

import pytest
from django.conf import settings
from django.db import connection, transaction
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from companies.access import AccessProfile
from companies.audit import Actor
from companies.models import AuditEvent, ConsoleSession
from companies.sessions import SessionStore
from connections import services, tasks
from connections.models import (
    Campaign,
    CampaignOrg,
    ConnectionChange,
    ExternalClientApp,
)
from connections.services import campaigns as campaigns_service
from connections.services import delegation
from connections.services import finish as finish_service
from connections.services.campaigns import (
    CampaignError,
    campaign_create,
    campaign_row_skip,
    campaign_rows_change_finished,
    campaigns_expire,
)
from orgs import token_ledger
from orgs.models import RefreshTokenRecord, SalesforceOrg
from tests.factories import RoleGrantFactory, SalesforceOrgFactory, UserFactory

pytestmark = pytest.mark.django_db


def _bulk_orgs(company, n: int, start: int) -> list[int]:
    app = ExternalClientApp.objects.first()
    orgs = [
        SalesforceOrg(
            alias=f"bulk-{start + i:05d}",
            org_id=f"00D5g00001{start + i:05d}AAA"[:18],
            login_url=f"https://bulk{start + i}.my.salesforce.com",
            instance_url=f"https://bulk{start + i}.my.salesforce.com",
            company=company,
            client_app=app,
        )
        for i in range(n)
    ]
    return [o.pk for o in SalesforceOrg.objects.bulk_create(orgs)]


def _create(user, org_ids, **kwargs):
    return campaign_create(
        actor=Actor(user=user, ip_address="192.0.2.1"),
        access=AccessProfile(user),
        org_ids=org_ids,
        **kwargs,
    )


def test_operator_creates_for_own_company_only(world):
    other = SalesforceOrgFactory(company=world.acme, alias="acme-dev")
    campaign, skipped = _create(
        world.users["operator"],
        [world.acme_org.pk, other.pk, world.globex_org.pk],
        filter_query="status=failed",
    )
    assert skipped == 1
    assert sorted(campaign.rows.values_list("org_id", flat=True)) == sorted(
        [world.acme_org.pk, other.pk]
    )
    assert list(campaign.companies.all()) == [world.acme]
    assert campaign.name.startswith("Re-authorization ")
    assert abs(campaign.deadline - timezone.now() - timedelta(days=7)) < timedelta(
        minutes=1
    )
    event = AuditEvent.objects.get(action="campaign.create")
    assert event.after["orgs"] == 2
    assert event.after["skipped"] == 1
    assert event.after["filter"] == "status=failed"


@pytest.mark.parametrize("role", ["viewer", "support", "nobody"])
def test_roles_without_reauthorize_cannot_create(world, role):
    with pytest.raises(CampaignError):
        _create(world.users[role], [world.acme_org.pk])
    assert not Campaign.objects.exists()


def test_administrator_creates_for_any_company(world):
    campaign, skipped = _create(
        world.users["administrator"], [world.acme_org.pk, world.globex_org.pk]
    )
    assert skipped == 0
    assert campaign.companies.count() == 2


def test_deadline_in_the_past_is_refused(world):
    with pytest.raises(CampaignError):
        _create(
            world.users["administrator"],
            [world.acme_org.pk],
            deadline=timezone.now() - timedelta(minutes=1),
        )
    assert not Campaign.objects.exists()


def test_remembered_email_is_offered_again(world):
    first, _ = _create(world.users["administrator"], [world.acme_org.pk])
    first.rows.update(email="admin@acme.example")
    second, _ = _create(world.users["administrator"], [world.acme_org.pk])
    assert second.rows.get().email == "admin@acme.example"


def test_creation_takes_the_same_queries_for_10_and_1000_orgs(world):
    admin = world.users["administrator"]
    small = _bulk_orgs(world.acme, 10, 0)
    large = _bulk_orgs(world.acme, 1000, 100)
    counts = []
    for ids in (small, large):
        access = AccessProfile(admin)
        access.is_administrator  # grants loaded before counting  # noqa: B018
        with CaptureQueriesContext(connection) as ctx:
            campaign_create(actor=Actor(user=admin), access=access, org_ids=ids)
        counts.append(len(ctx.captured_queries))
    assert counts[0] == counts[1]
    assert CampaignOrg.objects.count() == 1010


# --- pages and links ---------------------------------------------------------


def _campaign(world, n_extra: int = 0):
    admin = world.users["administrator"]
    ids = [world.acme_org.pk, world.globex_org.pk]
    ids += [SalesforceOrgFactory(company=world.acme).pk for _ in range(n_extra)]
    campaign, _ = _create(admin, ids)
    return campaign


def _copy_link(client, campaign, row) -> str:
    response = client.post(
        f"/campaigns/{campaign.pk}/rows/{row.pk}/copy-link/", HTTP_HX_REQUEST="true"
    )
    assert response.status_code == 200
    return re.search(r"(/r/[^<\s\"]+/)", response.content.decode()).group(1)


def test_operator_sees_only_rows_of_own_companies(world):
    campaign = _campaign(world)
    page = world.client_for("operator").get(f"/campaigns/{campaign.pk}/")
    assert page.status_code == 200
    html = page.content.decode()
    assert "acme-prod" in html and "globex-prod" not in html
    assert "Re-authorize now" in html and "Send link" in html
    assert "/r/" not in html  # a link is never in the page by default


def test_viewer_reads_but_cannot_act(world):
    campaign = _campaign(world)
    row = campaign.rows.get(org=world.acme_org)
    viewer = world.client_for("viewer")
    html = viewer.get(f"/campaigns/{campaign.pk}/").content.decode()
    assert "acme-prod" in html and "Copy link" not in html
    assert (
        viewer.post(f"/campaigns/{campaign.pk}/rows/{row.pk}/skip/").status_code == 403
    )
    other = campaign.rows.get(org=world.globex_org)
    operator = world.client_for("operator")
    assert (
        operator.post(f"/campaigns/{campaign.pk}/rows/{other.pk}/skip/").status_code
        == 404
    )


def test_campaign_of_other_companies_is_not_found(world):
    campaign, _ = _create(world.users["administrator"], [world.globex_org.pk])
    assert (
        world.client_for("operator").get(f"/campaigns/{campaign.pk}/").status_code
        == 404
    )


def test_copy_link_opens_the_landing_page_without_a_session(world):
    campaign = _campaign(world)
    row = campaign.rows.get(org=world.acme_org)
    path = _copy_link(world.client_for("operator"), campaign, row)
    landing = Client().get(path)
    assert landing.status_code == 200
    html = landing.content.decode()
    assert world.acme_org.org_id in html and "Acme" in html
    assert "Log in with Salesforce" in html
    assert "Organizations" not in html  # none of the console
    row.refresh_from_db()
    assert row.state == "opened" and row.link_opened_at is not None
    event = AuditEvent.objects.get(action="campaign.link_copy")
    assert "/r/" not in str(event.after) + event.summary


INVALID = "This link is no longer valid; ask your administrator for a new one"


def _row_state(row):
    return (
        CampaignOrg.objects.filter(pk=row.pk)
        .values_list("state", "link_nonce", "browser_binding", "change_id")
        .get(),
        AuditEvent.objects.count(),
        ConnectionChange.objects.count(),
    )


def _linked_row(world):
    campaign = _campaign(world)
    row = campaign.rows.get(org=world.acme_org)
    return campaign, row, _copy_link(world.client_for("operator"), campaign, row)


def _at_salesforce(path: str) -> tuple[Client, str]:
    """A fresh browser opens the link and presses Log in with Salesforce;
    returns it and the OAuth state it is at Salesforce with."""
    browser = Client()
    browser.get(path)
    location = browser.post(path)["Location"]
    return browser, parse_qs(urlsplit(location).query)["state"][0]


def _finish(row, username="admin@acme.example"):
    change = ConnectionChange.objects.create(
        kind=ConnectionChange.Kind.REAUTHORIZE,
        org=row.org,
        company=row.company,
        client_app=row.org.client_app,
        login_url=row.org.login_url,
        state=ConnectionChange.State.APPLIED,
        new_username=username,
        created_from="198.51.100.7",
    )
    CampaignOrg.objects.filter(pk=row.pk).update(change=change, browser_binding="x")
    with transaction.atomic():
        campaign_rows_change_finished(change=change)


def _make_invalid(case, campaign, row, path, world):
    if case == "used":
        _finish(row)
    elif case == "expired":
        Campaign.objects.filter(pk=campaign.pk).update(
            deadline=timezone.now() - timedelta(seconds=1)
        )
        campaigns_expire()
    elif case == "deadline_passed":  # before beat has expired the rows
        Campaign.objects.filter(pk=campaign.pk).update(
            deadline=timezone.now() - timedelta(seconds=1)
        )
    elif case == "revoked":
        campaign_row_skip(actor=Actor(user=world.users["operator"]), row=row)
    elif case == "closed":
        Campaign.objects.filter(pk=campaign.pk).update(closed_at=timezone.now())
    elif case == "tampered":
        token = path.split("/")[2]
        value, _, signature = token.rpartition(":")
        pk, nonce_and_time = value.split(":", 1)
        path = f"/r/{int(pk) + 1}:{nonce_and_time}:{signature}/"
    elif case == "bad_signature":
        path = path[:-3] + ("A" if path[-3] != "A" else "B") + path[-2:]
    return path


@pytest.mark.parametrize(
    "case",
    ["used", "expired", "deadline_passed", "revoked", "closed", "tampered",
     "bad_signature"],
)  # fmt: skip
def test_invalid_links_answer_410_and_change_nothing(world, case):
    campaign, row, path = _linked_row(world)
    path = _make_invalid(case, campaign, row, path, world)
    before = _row_state(row)
    browser = Client()
    for response in (browser.get(path), browser.post(path)):
        assert response.status_code == 410
        assert INVALID in response.content.decode()
        assert "acme-prod" not in response.content.decode()
    assert _row_state(row) == before


def test_log_in_with_salesforce_claims_the_link_for_one_browser(world):
    _, row, path = _linked_row(world)
    first, second = Client(), Client()
    assert first.get(path).status_code == 200
    assert second.get(path).status_code == 200  # not claimed yet
    response = first.post(path, REMOTE_ADDR="198.51.100.7")
    assert response.status_code == 302
    assert response["Location"].startswith(world.acme_org.login_url)
    row.refresh_from_db()
    change = row.change
    assert change.kind == "reauthorize"
    assert change.created_by == world.users["operator"]  # the link's creator
    assert change.created_from == "198.51.100.7"
    [flow] = first.session["oauth_flows"].values()
    assert flow["purpose"] == "delegated" and flow["change"] == change.pk
    # The second browser now gets the invalid page, on GET and POST alike.
    before = _row_state(row)
    assert second.get(path).status_code == 410
    assert second.post(path).status_code == 410
    assert _row_state(row) == before
    assert first.get(path).status_code == 200  # the claiming browser still may


def test_a_declined_login_fails_the_row_and_may_be_retried_in_the_same_browser(world):
    _, row, path = _linked_row(world)
    browser, state = _at_salesforce(path)
    response = browser.get(
        "/oauth/callback/", {"state": state, "error": "access_denied"}
    )
    assert response.status_code == 302
    assert response["Location"] == f"/r/result/{row.pk}/"
    row.refresh_from_db()
    assert row.state == "failed" and "Access was denied" in row.last_event
    page = browser.get(response["Location"]).content.decode()
    assert "Not connected" in page and "Log in with Salesforce" in page
    assert "Organizations" not in page
    assert Client().get(f"/r/result/{row.pk}/").status_code == 410
    retry = browser.post(f"/r/result/{row.pk}/retry/")
    assert retry.status_code == 302
    assert retry["Location"].startswith(world.acme_org.login_url)


def test_connected_row_shows_the_user_and_uses_the_link_up(world):
    _, row, _ = _linked_row(world)
    _finish(row)
    row.refresh_from_db()
    assert row.state == "connected"
    assert row.connected_as_username == "admin@acme.example"
    assert row.link_nonce == "" and row.link_used_at is not None
    event = AuditEvent.objects.get(action="campaign.link_used")
    assert event.actor == world.users["operator"]
    assert event.after["salesforce_user"] == "admin@acme.example"
    assert event.after["address"] == "198.51.100.7"


def test_campaign_closes_when_every_row_is_finished(
    world, django_capture_on_commit_callbacks
):
    campaign, row, _ = _linked_row(world)
    admin = Actor(user=world.users["administrator"])
    with django_capture_on_commit_callbacks(execute=True):
        _finish(row)
    campaign.refresh_from_db()
    assert not campaign.is_closed
    with django_capture_on_commit_callbacks(execute=True) as closing:
        campaign_row_skip(actor=admin, row=campaign.rows.get(org=world.globex_org))
        # Closed once the last row's transaction commits, not inside it: no
        # lock on the campaign while a row is being finished.
        campaign.refresh_from_db()
        assert not campaign.is_closed
    assert closing
    campaign.refresh_from_db()
    assert campaign.is_closed
    # Idempotent: skipping again changes nothing.
    campaign_row_skip(actor=admin, row=campaign.rows.get(org=world.globex_org))


def test_guessing_tokens_is_throttled_per_address(world):
    browser = Client()
    codes = [browser.get(f"/r/1:guess{i}:sig/").status_code for i in range(31)]
    assert codes[:30] == [410] * 30
    assert codes[30] == 429
    assert Client(REMOTE_ADDR="192.0.2.99").get("/r/1:x:y/").status_code == 410


def test_send_link_mails_it_from_a_task_and_the_demo_page_shows_it(
    world, mailoutbox, settings, django_capture_on_commit_callbacks
):
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    campaign = _campaign(world)
    row = campaign.rows.get(org=world.acme_org)
    operator = world.client_for("operator")
    url = f"/campaigns/{campaign.pk}/rows/{row.pk}/send-link/"
    bad = operator.post(url, {f"row{row.pk}-email": "not an address"})
    assert bad.status_code == 422
    with (
        mock.patch.object(tasks.send_campaign_link, "apply_async") as apply_async,
        django_capture_on_commit_callbacks(execute=True),
    ):
        response = operator.post(url, {f"row{row.pk}-email": "sf@acme.example"})
    assert response.status_code == 302
    apply_async.assert_called_once_with(kwargs={"row_id": row.pk, "reminder": False})
    assert CampaignOrg.objects.get(pk=row.pk).state == "link_sent"
    delegation.campaign_link_mail_send(row_id=row.pk, reminder=False)
    [mail] = mailoutbox
    assert mail.to == ["sf@acme.example"]
    link = re.search(r"(/r/\S+/)", mail.body).group(1)
    assert Client().get(link).status_code == 200
    page = operator.get(f"/campaigns/{campaign.pk}/").content.decode()
    assert "Sent mail (demo)" in page and "sf@acme.example" in page
    viewer_page = world.client_for("viewer").get(f"/campaigns/{campaign.pk}/")
    assert "/r/" not in viewer_page.content.decode()
    assert CampaignOrg.objects.get(pk=row.pk).state == "opened"
    # The address is offered again in the org's next campaign.
    again, _ = _create(world.users["administrator"], [world.acme_org.pk])
    assert again.rows.get().email == "sf@acme.example"


def test_beat_reminds_at_most_once_a_day_and_expires_at_the_deadline(
    world, django_capture_on_commit_callbacks
):
    campaign = _campaign(world)
    row = campaign.rows.get(org=world.acme_org)
    with mock.patch.object(tasks.send_campaign_link, "apply_async"):
        delegation.campaign_row_link_send(
            actor=Actor(user=world.users["operator"]), row=row, email="a@acme.example"
        )
    assert delegation.campaigns_remind() == []  # sent less than a day ago
    CampaignOrg.objects.filter(pk=row.pk).update(
        link_sent_at=timezone.now() - timedelta(days=1, minutes=1)
    )
    with (
        mock.patch.object(tasks.send_campaign_link, "apply_async") as apply_async,
        django_capture_on_commit_callbacks(execute=True),
    ):
        assert delegation.campaigns_remind() == [row.pk]
        assert delegation.campaigns_remind() == []  # same day: none
    apply_async.assert_called_once_with(kwargs={"row_id": row.pk, "reminder": True})
    Campaign.objects.filter(pk=campaign.pk).update(
        deadline=timezone.now() - timedelta(seconds=1)
    )
    with django_capture_on_commit_callbacks(execute=True):
        assert campaigns_expire() == 2
        assert campaigns_expire() == 0
    campaign.refresh_from_db()
    assert campaign.is_closed
    assert set(campaign.rows.values_list("state", flat=True)) == {"expired"}


def test_campaign_page_takes_the_same_queries_for_10_and_1000_rows(world):
    admin = world.users["administrator"]
    small, _ = _create(admin, _bulk_orgs(world.acme, 10, 0))
    large, _ = _create(admin, _bulk_orgs(world.acme, 1000, 100))
    operator = world.client_for("operator")
    counts = []
    for campaign in (small, large):
        operator.get(f"/campaigns/{campaign.pk}/")  # session warmed up
        with CaptureQueriesContext(connection) as ctx:
            response = operator.get(f"/campaigns/{campaign.pk}/")
        assert response.status_code == 200
        counts.append(len(ctx.captured_queries))
    assert counts[0] == counts[1]
    live = operator.get(f"/campaigns/{large.pk}/live/?page=20")
    assert live.status_code == 200 and "Page 20 of 20" in live.content.decode()


NASTY = [
    "x" * 5000,
    "\x00\x01\x02",
    "\u202e\u200b\ufeff",
    "<script>alert(1)</script>@x.example",
    "a@b.example\r\nBcc: victim@example.com",
    "' OR 1=1 --",
    "",
]


@pytest.mark.parametrize("value", NASTY)
def test_send_link_refuses_nasty_addresses_and_changes_nothing(world, value):
    campaign = _campaign(world)
    row = campaign.rows.get(org=world.acme_org)
    before = _row_state(row)
    response = world.client_for("operator").post(
        f"/campaigns/{campaign.pk}/rows/{row.pk}/send-link/",
        {f"row{row.pk}-email": value},
    )
    assert response.status_code == 422
    assert _row_state(row) == before
    assert CampaignOrg.objects.get(pk=row.pk).email == ""


@pytest.mark.parametrize(
    "url",
    [
        "/campaigns/99999999999999999999999/",
        "/campaigns/-1/",
        "/r/result/99999999999999999999999/",
    ],
)
def test_huge_or_negative_ids_are_not_found(world, url):
    assert world.client_for("administrator").get(url).status_code in (404, 410)


def test_an_overlong_token_is_just_invalid(world):
    response = Client().get("/r/" + "A" * 5000 + "/")
    assert response.status_code == 410


def test_reauthorize_now_logs_the_console_user_in_and_links_the_change(world):
    campaign = _campaign(world)
    row = campaign.rows.get(org=world.acme_org)
    operator = world.client_for("operator")
    response = operator.post(f"/campaigns/{campaign.pk}/rows/{row.pk}/reauthorize/")
    assert response.status_code == 302
    assert response["Location"].startswith(world.acme_org.login_url)
    [flow] = operator.session["oauth_flows"].values()
    assert flow["purpose"] == "reauthorize"
    assert flow["back"] == f"/campaigns/{campaign.pk}/"
    row.refresh_from_db()
    change = row.change
    assert change.created_by == world.users["operator"]
    ConnectionChange.objects.filter(pk=change.pk).update(
        state="applied", new_username="olga@acme.example"
    )
    change.refresh_from_db()
    with transaction.atomic():
        campaign_rows_change_finished(change=change)
    row.refresh_from_db()
    assert row.state == "connected"
    assert row.connected_as_username == "olga@acme.example"
    assert not AuditEvent.objects.filter(action="campaign.link_used").exists()


@pytest.mark.django_db(transaction=True)
def test_two_links_finishing_at_once_close_the_campaign(world, monkeypatch):
    """Both rows are saved (not committed) before either checks whether the
    campaign is done: the close runs after each commit, so the one committed
    last sees both rows finished. On SQLite the writers are serialized anyway
    (the barrier times out); on PostgreSQL, as in CI, they really overlap."""
    campaign, _ = _create(
        world.users["administrator"], [world.acme_org.pk, world.globex_org.pk]
    )
    changes = []
    for row in campaign.rows.all():
        change = ConnectionChange.objects.create(
            kind="reauthorize",
            org=row.org,
            client_app=row.org.client_app,
            login_url=row.org.login_url,
            state="applied",
            new_username=f"admin-{row.pk}@example.com",
        )
        CampaignOrg.objects.filter(pk=row.pk).update(change=change)
        changes.append(change)
    both_saved = threading.Barrier(2, timeout=3)
    original = campaigns_service.campaign_row_event

    def event_then_wait(row, text, **fields):
        original(row, text, **fields)
        with contextlib.suppress(threading.BrokenBarrierError):
            both_saved.wait()

    monkeypatch.setattr(campaigns_service, "campaign_row_event", event_then_wait)
    errors = []

    def finish(change):
        try:
            with transaction.atomic():
                campaign_rows_change_finished(change=change)
        except Exception as exc:  # reported below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=finish, args=(c,)) for c in changes]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert not errors
    assert set(campaign.rows.values_list("state", flat=True)) == {"connected"}
    campaign.refresh_from_db()
    assert campaign.is_closed


def test_a_new_link_for_a_claimed_row_revokes_the_earlier_one(world):
    campaign, row, path = _linked_row(world)
    first, state = _at_salesforce(path)
    first.get("/oauth/callback/", {"state": state, "error": "access_denied"})
    assert CampaignOrg.objects.get(pk=row.pk).state == "failed"
    again = _copy_link(world.client_for("operator"), campaign, row)
    assert again != path
    assert Client().get(path).status_code == 410  # the claimed link is revoked
    assert first.get(f"/r/result/{row.pk}/").status_code == 410
    second = Client()
    assert second.get(again).status_code == 200
    assert second.post(again).status_code == 302


# --- the token budget guard (SPEC §9) ------------------------------------------

BUDGET_USER = "0055g0000012345AAA"


def _live_tokens(org, n: int) -> None:
    """The console holds ``n`` live tokens for the org's user and app."""
    SalesforceOrg.objects.filter(pk=org.pk).update(
        connected_as_user_id=BUDGET_USER, connected_as_username="int@acme.example"
    )
    for i in range(n):
        token_ledger.refresh_token_record(
            token=f"live-{org.pk}-{i}",
            client_app_id=org.client_app_id,
            salesforce_org_id=org.org_id,
            user_id=BUDGET_USER,
            username="int@acme.example",
            purpose=RefreshTokenRecord.Purpose.REAUTHORIZATION,
            login_url=org.login_url,
        )


BUDGET_WARNING = "The console already holds 4 live tokens for int@acme.example"


def test_reauthorize_now_past_four_live_tokens_needs_the_warning_read(world):
    campaign = _campaign(world)
    row = campaign.rows.get(org=world.acme_org)
    _live_tokens(world.acme_org, 3)
    operator = world.client_for("operator")
    page = operator.get(f"/campaigns/{campaign.pk}/").content.decode()
    assert "live tokens" not in page  # three: no warning yet
    _live_tokens(world.acme_org, 4)
    page = operator.get(f"/campaigns/{campaign.pk}/").content.decode()
    assert BUDGET_WARNING in page and "Re-authorize anyway" in page
    url = f"/campaigns/{campaign.pk}/rows/{row.pk}/reauthorize/"

    stopped = operator.post(url, {"page": "1"})

    assert stopped.status_code == 302
    assert stopped["Location"] == f"/campaigns/{campaign.pk}/"
    assert not ConnectionChange.objects.exists()
    assert CampaignOrg.objects.get(pk=row.pk).change_id is None
    page = operator.get(stopped["Location"]).content.decode()
    assert "Choose “Re-authorize anyway” to go on." in page

    confirmed = operator.post(url, {"token_budget_confirmed": "1"})

    assert confirmed.status_code == 302
    assert "/services/oauth2/authorize" in confirmed["Location"]
    assert CampaignOrg.objects.get(pk=row.pk).change.kind == "reauthorize"


def test_the_guard_is_not_offered_to_whom_may_not_act(world):
    campaign = _campaign(world)
    _live_tokens(world.acme_org, 4)
    html = world.client_for("viewer").get(f"/campaigns/{campaign.pk}/")
    assert "live tokens" not in html.content.decode()


def test_the_link_page_shows_nothing_of_the_token_budget(world):
    """The person with the link sees no count and no other org (the guard
    is the console user's, on the campaign row, before the link goes out)."""
    _, _, path = _linked_row(world)
    _live_tokens(world.acme_org, 5)
    html = Client().get(path).content.decode()
    assert "acme-prod" in html
    for leak in ("live tokens", "token budget", "int@acme.example", "would lose"):
        assert leak not in html.lower()


def test_campaign_page_budgets_take_one_query_for_10_and_1000_rows(world):
    admin = world.users["administrator"]
    counts = []
    for n, start in ((10, 0), (1000, 100)):
        ids = _bulk_orgs(world.acme, n, start)
        campaign, _ = _create(admin, ids)
        SalesforceOrg.objects.filter(pk__in=ids).update(
            connected_as_user_id=BUDGET_USER
        )
        _live_tokens(SalesforceOrg.objects.get(pk=ids[0]), 4)
        operator = world.client_for("operator")
        operator.get(f"/campaigns/{campaign.pk}/")  # session warmed up
        with CaptureQueriesContext(connection) as ctx:
            response = operator.get(f"/campaigns/{campaign.pk}/")
        assert BUDGET_WARNING in response.content.decode()
        ledger = [q for q in ctx.captured_queries if "refreshtokenrecord" in q["sql"]]
        assert len(ledger) == 1
        counts.append(len(ctx.captured_queries))
    assert counts[0] == counts[1]


def test_the_link_page_never_writes_the_token_into_its_html(world):
    _, _, path = _linked_row(world)
    token = path.split("/")[2]
    browser = Client()
    html = browser.get(path).content.decode()
    assert "Log in with Salesforce" in html
    assert token not in html
    # The form posts to the page's own address (the address bar's token).
    assert browser.post(path).status_code == 302


def test_opening_links_stores_no_session_until_a_valid_one(world):
    """Guessing links writes nothing: no session row, no cookie. A valid
    link gives the browser its secret in a new session key, so a session id
    planted beforehand (fixation) does not carry the claim."""
    _, row, path = _linked_row(world)
    browser = Client()
    before = ConsoleSession.objects.count()
    assert browser.get("/r/1:guess:sig/").status_code == 410
    assert browser.post("/r/1:guess:sig/").status_code == 410
    assert ConsoleSession.objects.count() == before
    assert settings.SESSION_COOKIE_NAME not in browser.cookies
    planted = SessionStore()
    planted["seen"] = True
    planted.save()
    browser.cookies[settings.SESSION_COOKIE_NAME] = planted.session_key
    assert browser.get(path).status_code == 200
    assert browser.session.session_key != planted.session_key
    assert not ConsoleSession.objects.filter(session_key=planted.session_key).exists()
    assert browser.post(path).status_code == 302
    claimed = CampaignOrg.objects.get(pk=row.pk).browser_binding
    assert claimed == delegation.browser_binding(browser.session["delegated_browser"])


def test_a_double_click_on_log_in_with_salesforce_keeps_the_browser(world):
    _, row, path = _linked_row(world)
    browser = Client()
    browser.get(path)
    # The second click leaves before the first one's answer (and cookie).
    cookie = browser.cookies[settings.SESSION_COOKIE_NAME].value
    first = browser.post(path)
    browser.cookies[settings.SESSION_COOKIE_NAME] = cookie
    second = browser.post(path)
    assert first.status_code == second.status_code == 302
    assert second["Location"].startswith(world.acme_org.login_url)
    changes = ConnectionChange.objects.filter(org=world.acme_org).order_by("pk")
    assert [c.state for c in changes] == ["rolled_back", "active"]
    assert CampaignOrg.objects.get(pk=row.pk).change == changes.last()


def test_copy_link_refused_in_the_page_reloads_it_with_the_reason(world):
    """htmx would follow a redirect inside its request and put the whole
    campaign page into the row: it is told to load the page instead."""
    campaign, row, _ = _linked_row(world)
    campaign_row_skip(actor=Actor(user=world.users["operator"]), row=row)
    operator = world.client_for("operator")
    response = operator.post(
        f"/campaigns/{campaign.pk}/rows/{row.pk}/copy-link/",
        {"page": "1"},
        HTTP_HX_REQUEST="true",
    )
    assert response.status_code == 200
    assert response["HX-Redirect"] == f"/campaigns/{campaign.pk}/"
    assert response.content == b""
    page = operator.get(response["HX-Redirect"]).content.decode()
    assert "acme-prod is already skipped in this campaign." in page


def test_edit_connection_finished_connects_the_orgs_unfinished_rows(world):
    """Finish of Edit Connection gives the org a new app and user: its row
    in an open campaign needs nobody any more, and its link stops working."""
    campaign, row, path = _linked_row(world)
    admin = Actor(user=world.users["administrator"])
    change = services.connection_change_start(
        actor=admin,
        org=world.acme_org,
        consumer_key="3MVG9" + "k" * 80,
        consumer_secret="a-secret-value",
    )
    change.set_secret("new_refresh_token", "edited-token")
    change.new_username, change.new_user_id = "edit@acme.example", BUDGET_USER
    change.state = ConnectionChange.State.AUTHORIZED
    change.save()

    services.connection_change_apply(actor=admin, change=change, company=world.acme)

    row = CampaignOrg.objects.get(pk=row.pk)
    assert row.state == "connected"
    assert row.connected_as_username == "edit@acme.example"
    assert row.change == change and row.link_nonce == ""
    assert Client().get(path).status_code == 410
    assert not Campaign.objects.get(pk=campaign.pk).is_closed  # globex's row waits


def _revoke(case, world, campaign, row):
    operator = Actor(user=world.users["operator"])
    if case == "skip":
        campaign_row_skip(actor=operator, row=row)
    elif case == "expire":
        Campaign.objects.filter(pk=campaign.pk).update(
            deadline=timezone.now() - timedelta(seconds=1)
        )
        campaigns_expire()
    else:  # a new link for the row goes to someone else
        delegation.campaign_row_link_copy(actor=operator, row=row)


@pytest.mark.parametrize("case", ["skip", "expire", "new_link"])
def test_a_link_revoked_while_its_person_is_at_salesforce_changes_nothing(world, case):
    """The login the link started ends with the link: the code that comes
    back is refused, and nothing reaches the org."""
    campaign, row, path = _linked_row(world)
    browser, state = _at_salesforce(path)
    _revoke(case, world, campaign, row)
    change = ConnectionChange.objects.get(org=world.acme_org)
    assert change.state == "rolled_back"
    browser.get("/oauth/callback/", {"state": state, "code": "aPrx.code"})
    change.refresh_from_db()
    assert change.state == "rolled_back" and change.code_encrypted == ""


@pytest.mark.parametrize("case", ["skip", "expire", "new_link"])
def test_a_link_revoked_after_the_exchange_keeps_the_org_and_revokes_the_token(
    world, case
):
    campaign, row, path = _linked_row(world)
    browser = Client()
    browser.get(path)
    browser.post(path)
    change = CampaignOrg.objects.get(pk=row.pk).change
    change.set_secret("new_refresh_token", "delegated-token")
    change.new_username, change.new_user_id = "someone@acme.example", BUDGET_USER
    change.state = ConnectionChange.State.AUTHORIZED
    change.save()
    before = SalesforceOrg.objects.get(pk=world.acme_org.pk).refresh_token_fingerprint
    _revoke(case, world, campaign, row)
    assert services.reauthorization_apply(change_id=change.pk) == "skipped"
    org = SalesforceOrg.objects.get(pk=world.acme_org.pk)
    assert org.refresh_token_fingerprint == before
    assert org.connected_as_username != "someone@acme.example"
    change.refresh_from_db()
    assert change.state == "rolled_back" and not change.has_new_token


def test_skipping_a_row_the_console_user_is_re_authorizing_leaves_his_login(world):
    campaign = _campaign(world)
    row = campaign.rows.get(org=world.acme_org)
    operator = world.client_for("operator")
    operator.post(f"/campaigns/{campaign.pk}/rows/{row.pk}/reauthorize/")
    campaign_row_skip(actor=Actor(user=world.users["operator"]), row=row)
    assert CampaignOrg.objects.get(pk=row.pk).change.state == "active"


def test_a_declined_login_of_a_revoked_link_does_not_fail_the_new_one(world):
    campaign, row, path = _linked_row(world)
    browser, state = _at_salesforce(path)
    _revoke("new_link", world, campaign, row)
    browser.get("/oauth/callback/", {"state": state, "error": "access_denied"})
    fresh = CampaignOrg.objects.get(pk=row.pk)
    assert fresh.state == "opened" and fresh.change is None


def test_a_link_issued_anew_records_its_own_opening(world):
    campaign, row, path = _linked_row(world)
    _at_salesforce(path)  # a first browser claims it
    again = _copy_link(world.client_for("operator"), campaign, row)
    assert Client(REMOTE_ADDR="203.0.113.9").get(again).status_code == 200
    opened = AuditEvent.objects.filter(action="campaign.link_open").order_by("pk")
    assert [e.after["address"] for e in opened] == ["127.0.0.1", "203.0.113.9"]


def test_retries_are_throttled_with_the_link_requests(world):
    _, row, path = _linked_row(world)
    browser, state = _at_salesforce(path)  # two requests of the 30
    browser.get("/oauth/callback/", {"state": state, "error": "access_denied"})
    retry = f"/r/result/{row.pk}/retry/"
    codes = [browser.post(retry).status_code for _ in range(29)]
    assert codes[:28] == [302] * 28 and codes[28] == 429
    assert ConnectionChange.objects.filter(org=world.acme_org).count() == 29


def test_a_double_click_on_send_link_mails_once(
    world, django_capture_on_commit_callbacks
):
    campaign = _campaign(world)
    row = campaign.rows.get(org=world.acme_org)
    operator = world.client_for("operator")
    url = f"/campaigns/{campaign.pk}/rows/{row.pk}/send-link/"
    with (
        mock.patch.object(tasks.send_campaign_link, "apply_async") as apply_async,
        django_capture_on_commit_callbacks(execute=True),
    ):
        for _ in range(2):
            response = operator.post(url, {f"row{row.pk}-email": "sf@acme.example"})
            assert response.status_code == 302
    apply_async.assert_called_once()
    assert AuditEvent.objects.filter(action="campaign.link_send").count() == 1
    # Another address, or the same one a minute later, is sent again.
    with (
        mock.patch.object(tasks.send_campaign_link, "apply_async") as apply_async,
        django_capture_on_commit_callbacks(execute=True),
    ):
        operator.post(url, {f"row{row.pk}-email": "other@acme.example"})
        CampaignOrg.objects.filter(pk=row.pk).update(
            link_sent_at=timezone.now() - timedelta(minutes=1)
        )
        operator.post(url, {f"row{row.pk}-email": "other@acme.example"})
    assert apply_async.call_count == 2


def test_re_authorize_now_comes_back_to_the_rows_page(world):
    campaign = _campaign(world)
    row = campaign.rows.get(org=world.acme_org)
    operator = world.client_for("operator")
    url = f"/campaigns/{campaign.pk}/rows/{row.pk}/reauthorize/"
    operator.post(url, {"page": "3"})
    [flow] = operator.session["oauth_flows"].values()
    assert flow["back"] == f"/campaigns/{campaign.pk}/?page=3"


@pytest.mark.django_db(transaction=True)
def test_skip_while_the_links_login_is_applied_waits_instead_of_deadlocking(
    world, monkeypatch
):
    """The apply locks the change, the org, then the rows; a row action
    takes them in the same order. On PostgreSQL, as in CI, the two really
    overlap (without that order one of them dies of a deadlock); on SQLite
    the writers are serialized anyway."""
    _, row, path = _linked_row(world)
    _at_salesforce(path)
    change = CampaignOrg.objects.get(pk=row.pk).change
    change.set_secret("new_refresh_token", "delegated-token")
    change.new_username, change.new_user_id = "someone@acme.example", BUDGET_USER
    change.state = ConnectionChange.State.AUTHORIZED
    change.save()
    applying, skipping = threading.Event(), threading.Event()
    original = finish_service.campaign_rows_change_finished

    def rows_after_the_skip_started(**kwargs):
        applying.set()  # the change and the org are locked by now
        skipping.wait(timeout=5)
        time.sleep(0.5)  # the skip is waiting on its first lock
        original(**kwargs)

    monkeypatch.setattr(
        finish_service, "campaign_rows_change_finished", rows_after_the_skip_started
    )
    outcomes: dict[str, object] = {}

    def apply():
        try:
            outcomes["apply"] = services.reauthorization_apply(change_id=change.pk)
        except Exception as exc:  # reported below
            outcomes["apply"] = exc
        finally:
            connection.close()

    def skip():
        applying.wait(timeout=5)
        skipping.set()
        try:
            campaign_row_skip(actor=Actor(user=world.users["operator"]), row=row)
            outcomes["skip"] = "skipped"
        except Exception as exc:  # reported below
            outcomes["skip"] = exc
        finally:
            connection.close()

    threads = [threading.Thread(target=apply), threading.Thread(target=skip)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert outcomes["apply"] == "applied"
    assert isinstance(outcomes["skip"], CampaignError), outcomes["skip"]
    assert CampaignOrg.objects.get(pk=row.pk).state == "connected"


def test_an_org_moved_to_another_company_leaves_the_operators_campaign(world):
    """Rows follow their org's company: after a move, the Operator of the
    company the org left neither sees nor acts on its row (404), and the
    link's page names the org's company now."""
    campaign, _ = _create(world.users["administrator"], [world.acme_org.pk])
    row = campaign.rows.get()
    path = _copy_link(world.client_for("operator"), campaign, row)
    SalesforceOrg.objects.filter(pk=world.acme_org.pk).update(company=world.globex)
    operator = world.client_for("operator")
    html = operator.get(f"/campaigns/{campaign.pk}/").content.decode()
    assert "acme-prod" not in html
    assert 'data-count="total">0<' in html
    for action in ("reauthorize", "copy-link", "skip"):
        url = f"/campaigns/{campaign.pk}/rows/{row.pk}/{action}/"
        assert operator.post(url).status_code == 404
    assert not ConnectionChange.objects.exists()
    landing = Client().get(path).content.decode()
    assert "Globex" in landing and "Acme" not in landing
    # Globex's Operator, who may re-authorize it now, finds the row.
    globex_operator = UserFactory(username="gina")
    RoleGrantFactory(user=globex_operator, role="operator", company=world.globex)
    globex = Client()
    globex.force_login(globex_operator)
    html = globex.get(f"/campaigns/{campaign.pk}/").content.decode()
    assert "acme-prod" in html and "Re-authorize now" in html


# --- name and deadline --------------------------------------------------------


def _settings(client, campaign, name, deadline):
    return client.post(
        f"/campaigns/{campaign.pk}/settings/",
        {"name": name, "deadline": deadline},
    )


def _local(when) -> str:
    return timezone.localtime(when).strftime("%Y-%m-%dT%H:%M")


def test_an_administrator_renames_a_campaign_and_moves_its_deadline(world):
    campaign = _campaign(world)
    admin = world.client_for("administrator")
    page = admin.get(f"/campaigns/{campaign.pk}/").content.decode()
    assert "Change name or deadline" in page
    later = (timezone.now() + timedelta(days=20)).replace(second=0, microsecond=0)
    response = _settings(admin, campaign, "  Rotation of March  ", _local(later))
    assert response.status_code == 302
    campaign.refresh_from_db()
    assert campaign.name == "Rotation of March" and campaign.deadline == later
    event = AuditEvent.objects.get(action="campaign.update")
    assert event.actor == world.users["administrator"]
    assert event.after == {
        "campaign": campaign.pk,
        "name": "Rotation of March",
        "deadline": later.isoformat(),
    }
    assert event.before["name"] != "Rotation of March"
    assert "“Rotation of March”" in event.summary
    # The same values again change nothing and audit nothing.
    assert (
        _settings(admin, campaign, "Rotation of March", _local(later)).status_code
        == 302
    )
    assert AuditEvent.objects.filter(action="campaign.update").count() == 1


@pytest.mark.parametrize(
    ("name", "days", "typed", "message"),
    [
        ("", 3, None, "This field is required."),
        ("x" * 121, 3, None, "at most 120 characters"),
        ("Fine", -1, None, "Choose a deadline in the future."),
        ("Fine", 91, None, "Choose a deadline within 90 days."),
        ("Fine", 3, "next tuesday", "Enter a valid date/time."),
        ("Fine", 3, "2026-13-45T99:99", "Enter a valid date/time."),
    ],
)
def test_bad_name_or_deadline_gets_a_clear_message_and_changes_nothing(
    world, name, days, typed, message
):
    campaign = _campaign(world)
    before = (campaign.name, campaign.deadline)
    when = typed or _local(timezone.now() + timedelta(days=days))
    response = _settings(world.client_for("administrator"), campaign, name, when)
    assert response.status_code == 422
    assert message in response.content.decode()
    campaign.refresh_from_db()
    assert (campaign.name, campaign.deadline) == before
    assert not AuditEvent.objects.filter(action="campaign.update").exists()


def test_only_who_may_reauthorize_in_every_company_changes_a_campaign(world):
    both = _campaign(world)  # Acme and Globex; the operator is Acme's only
    operator = world.client_for("operator")
    assert (
        "Change name or deadline"
        not in operator.get(f"/campaigns/{both.pk}/").content.decode()
    )
    later = _local(timezone.now() + timedelta(days=10))
    refused = _settings(operator, both, "Mine now", later)
    assert refused.status_code == 422
    assert "Operator of every company" in refused.content.decode()
    both.refresh_from_db()
    assert both.name != "Mine now"
    assert (
        _settings(world.client_for("viewer"), both, "Viewer's", later).status_code
        == 403
    )
    acme_only, _ = _create(world.users["operator"], [world.acme_org.pk])
    assert _settings(operator, acme_only, "Acme March", later).status_code == 302
    acme_only.refresh_from_db()
    assert acme_only.name == "Acme March"


def test_a_closed_campaign_keeps_its_name_and_deadline(world):
    campaign = _campaign(world)
    Campaign.objects.filter(pk=campaign.pk).update(closed_at=timezone.now())
    admin = world.client_for("administrator")
    assert (
        "Change name or deadline"
        not in admin.get(f"/campaigns/{campaign.pk}/").content.decode()
    )
    later = _local(timezone.now() + timedelta(days=10))
    response = _settings(admin, campaign, "Too late", later)
    assert response.status_code == 422
    assert "This campaign is closed" in response.content.decode()
    campaign.refresh_from_db()
    assert campaign.name != "Too late"


def test_a_rename_alone_keeps_the_deadline_to_the_second(world):
    campaign = _campaign(world)  # deadline: now + 7 days, seconds and all
    stored = campaign.deadline
    assert stored.second or stored.microsecond
    admin = world.client_for("administrator")
    assert _settings(admin, campaign, "Renamed", _local(stored)).status_code == 302
    campaign.refresh_from_db()
    assert campaign.name == "Renamed" and campaign.deadline == stored
    event = AuditEvent.objects.get(action="campaign.update")
    assert "deadline" not in event.summary
    assert event.after["deadline"] == event.before["deadline"]


def test_an_operator_may_not_change_a_campaign_whose_org_moved_away(world):
    campaign, _ = _create(world.users["operator"], [world.acme_org.pk])
    SalesforceOrg.objects.filter(pk=world.acme_org.pk).update(company=world.globex)
    later = _local(timezone.now() + timedelta(days=10))
    refused = _settings(world.client_for("operator"), campaign, "Still mine", later)
    assert refused.status_code in (404, 422)
    campaign.refresh_from_db()
    assert campaign.name != "Still mine"
