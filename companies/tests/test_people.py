"""Users (SPEC §10): invitations with a one-time set-password link, roles per
company, deactivation that ends sessions at once, all audited."""

from __future__ import annotations

import re
from datetime import timedelta
from unittest import mock

import pytest
from django.contrib.auth import get_user_model
from django.contrib.sessions.backends.base import SessionBase
from django.core import mail
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from companies import people, tasks
from companies.audit import Actor
from companies.models import AuditEvent, Invitation, RoleGrant
from companies.models import ConsoleSession as Session
from companies.people import (
    Roles,
    invitation_mail_send,
    roles_of,
    token_hash,
    user_deactivate,
    user_roles_set,
    users_invite,
)
from tests.factories import CompanyFactory, RoleGrantFactory, UserFactory
from vbsf.queue import enqueue_on_commit

pytestmark = pytest.mark.django_db
User = get_user_model()
GOOD_PASSWORD = "correct-horse-battery-staple-42"


@pytest.fixture(autouse=True)
def mailed_at_once(monkeypatch):
    """The worker's task runs at once, inside the test's transaction (the
    enqueue after commit is tested on its own below)."""

    def run(name, **kwargs):
        assert name == people.INVITATION_MAIL_TASK
        invitation_mail_send(**kwargs)

    monkeypatch.setattr(people, "enqueue_on_commit", run)


@pytest.fixture
def admin():
    user = UserFactory(username="alice", password="alice-pw", is_staff=True)
    RoleGrantFactory(user=user, role="administrator", company=None)
    return user


@pytest.fixture
def admin_client(admin):
    client = Client()
    client.force_login(admin)
    return client


def _link_from_mail() -> str:
    (message,) = mail.outbox
    return re.search(r"https?://\S+/invite/(\S+)/", message.body).group(0)


def _path(link: str) -> str:
    return "/" + link.split("/", 3)[3]


def test_invite_mails_a_link_from_a_task_and_keeps_only_the_token_hash(
    admin_client, monkeypatch, django_capture_on_commit_callbacks
):
    monkeypatch.setattr(people, "enqueue_on_commit", enqueue_on_commit)
    acme = CompanyFactory(name="Acme")
    with (
        mock.patch.object(tasks.send_invitation, "apply_async") as apply_async,
        django_capture_on_commit_callbacks(execute=True),
    ):
        response = admin_client.post(
            "/users/invite/",
            {"email": "New.Person@Example.com", f"company_{acme.pk}": "operator"},
        )
    assert response.status_code == 302
    invitation = Invitation.objects.get()
    # The task message carries the invitation's ID, never its token; the
    # request sent no mail.
    apply_async.assert_called_once_with(kwargs={"invitation_id": invitation.pk})
    assert not mail.outbox and invitation.mail_state == "sending"
    sending = admin_client.get("/users/").content.decode()
    assert "Sending…" in sending and 'hx-trigger="every 2s"' in sending
    assert invitation_mail_send(invitation_id=invitation.pk) == "sent"
    link = _link_from_mail()
    token = link.rstrip("/").rsplit("/", 1)[1]
    invitation.refresh_from_db()
    assert invitation.mail_state == "sent" and invitation.token_encrypted == ""
    assert invitation.email == "new.person@example.com"
    assert invitation.token_hash == token_hash(token) != token
    # Sent once: the task again (a redelivery) sends nothing more.
    assert invitation_mail_send(invitation_id=invitation.pk) == "skipped"
    assert len(mail.outbox) == 1
    assert (
        timedelta(hours=71)
        < invitation.expires_at - timezone.now()
        <= timedelta(hours=72)
    )
    event = AuditEvent.objects.get(action="user.invite")
    assert token not in str(event.before) + str(event.after) + event.summary
    assert event.after["roles"] == {"Acme": "Operator"}
    # The list shows the open invitation; the page never shows the token.
    page = admin_client.get("/users/").content.decode()
    assert "new.person@example.com" in page and token not in page
    assert "Sent " in page and 'hx-trigger="every 2s"' not in page


def test_a_refused_invitation_mail_is_said_on_the_users_page(admin, admin_client):
    with mock.patch.object(
        people, "send_mail", side_effect=OSError("Connection refused")
    ):
        invitation = users_invite(
            actor=Actor(user=admin), email="bo@example.com", roles=Roles(True)
        )
    invitation.refresh_from_db()
    assert invitation.mail_state == "failed" and invitation.token_encrypted == ""
    page = admin_client.get("/users/").content.decode()
    assert "Not sent: Connection refused." in page
    assert "invite again" in page


def test_a_revoked_invitation_is_not_mailed(admin, monkeypatch):
    monkeypatch.setattr(people, "enqueue_on_commit", lambda name, **kwargs: None)
    invitation = users_invite(
        actor=Actor(user=admin), email="bo@example.com", roles=Roles(True)
    )
    Invitation.objects.filter(pk=invitation.pk).update(revoked_at=timezone.now())
    assert invitation_mail_send(invitation_id=invitation.pk) == "skipped"
    assert not mail.outbox
    assert Invitation.objects.get(pk=invitation.pk).token_encrypted == ""


def test_the_invite_page_names_the_configured_link_lifetime(admin_client, settings):
    settings.INVITATION_HOURS = 24
    page = admin_client.get("/users/invite/").content.decode()
    assert "valid once for 24 hours" in page


def test_invite_needs_a_role_and_a_new_address(admin_client, admin):
    response = admin_client.post("/users/invite/", {"email": "x@example.com"})
    assert response.status_code == 422
    assert "Give the new user a role" in response.content.decode()
    admin.email = "alice@example.com"
    admin.save()
    response = admin_client.post(
        "/users/invite/", {"email": "ALICE@example.com", "administrator": "on"}
    )
    assert response.status_code == 422
    assert "already has a console user" in response.content.decode()
    assert not Invitation.objects.exists() and not mail.outbox


def test_a_new_invitation_revokes_the_open_one(admin):
    first = users_invite(
        actor=Actor(user=admin), email="bo@example.com", roles=Roles(True, {})
    )
    users_invite(actor=Actor(user=admin), email="bo@example.com", roles=Roles(True, {}))
    first.refresh_from_db()
    assert first.revoked_at is not None
    old_link = _path(
        re.search(r"https?://\S+/invite/\S+/", mail.outbox[0].body).group(0)
    )
    assert Client().get(old_link).status_code == 404


def test_accepting_sets_a_validated_password_once(admin):
    acme = CompanyFactory(name="Acme")
    users_invite(
        actor=Actor(user=admin),
        email="bo@example.com",
        roles=Roles(companies={acme.pk: "support"}),
    )
    link = _path(_link_from_mail())
    client = Client()
    page = client.get(link)
    assert page.status_code == 200
    assert "bo@example.com" in page.content.decode()
    # The form posts back to the page itself: the token is not in the HTML.
    assert link.split("/")[2] not in page.content.decode()
    weak = client.post(link, {"new_password1": "bo", "new_password2": "bo"})
    assert weak.status_code == 422
    assert "too short" in weak.content.decode()
    done = client.post(
        link, {"new_password1": GOOD_PASSWORD, "new_password2": GOOD_PASSWORD}
    )
    assert done.status_code == 302 and done["Location"] == "/login/"
    user = User.objects.get(username="bo@example.com")
    assert user.check_password(GOOD_PASSWORD) and user.is_active
    assert roles_of(user) == Roles(companies={acme.pk: "support"})
    assert AuditEvent.objects.filter(action="user.invite_accept", actor=user).exists()
    # Single use.
    again = client.post(
        link, {"new_password1": GOOD_PASSWORD, "new_password2": GOOD_PASSWORD}
    )
    assert again.status_code == 404
    assert Client().login(username="bo@example.com", password=GOOD_PASSWORD)


def test_expired_links_are_refused(admin):
    users_invite(actor=Actor(user=admin), email="bo@example.com", roles=Roles(True))
    Invitation.objects.update(expires_at=timezone.now() - timedelta(seconds=1))
    response = Client().get(_path(_link_from_mail()))
    assert response.status_code == 404
    assert "expired" in response.content.decode()


def test_unknown_links_are_throttled_per_address(settings, admin):
    settings.INVITE_MAX_FAILURES_PER_ADDRESS = 3
    users_invite(actor=Actor(user=admin), email="bo@example.com", roles=Roles(True))
    client = Client()
    for n in range(3):
        assert client.get(f"/invite/guess-{n}/").status_code == 404
    assert client.get("/invite/guess-4/").status_code == 429
    # Even the right link waits now: guessing is not worth it.
    assert client.get(_path(_link_from_mail())).status_code == 429
    other = Client(REMOTE_ADDR="198.51.100.7")
    assert other.get(_path(_link_from_mail())).status_code == 200


def test_roles_are_replaced_and_audited(admin_client):
    acme, globex = CompanyFactory(name="Acme"), CompanyFactory(name="Globex")
    bob = UserFactory(username="bob")
    RoleGrantFactory(user=bob, role="viewer", company=acme)
    response = admin_client.post(
        f"/users/{bob.pk}/",
        {f"company_{acme.pk}": "operator", f"company_{globex.pk}": "viewer"},
    )
    assert response.status_code == 302
    assert roles_of(bob) == Roles(companies={acme.pk: "operator", globex.pk: "viewer"})
    event = AuditEvent.objects.get(action="user.roles")
    assert event.before["roles"] == {"Acme": "Viewer"}
    assert event.after["roles"] == {"Acme": "Operator", "Globex": "Viewer"}
    bad = admin_client.post(f"/users/{bob.pk}/", {f"company_{acme.pk}": "owner"})
    assert bad.status_code == 422
    assert "Pick one of the listed roles" in bad.content.decode()


def test_the_last_administrator_stays(admin, admin_client):
    with pytest.raises(Exception, match="last Administrator"):
        user_roles_set(actor=Actor(user=admin), user=admin, roles=Roles())
    response = admin_client.post(f"/users/{admin.pk}/", {})
    assert response.status_code == 422
    assert "last Administrator" in response.content.decode()
    assert RoleGrant.objects.filter(user=admin, company=None).exists()
    response = admin_client.post(f"/users/{admin.pk}/deactivate/", follow=True)
    assert "You cannot deactivate yourself" in response.content.decode()
    admin.refresh_from_db()
    assert admin.is_active
    other = UserFactory(username="root", is_superuser=True)
    with pytest.raises(Exception, match="last Administrator"):
        # A superuser who is deactivated leaves nobody else.
        User.objects.filter(pk=admin.pk).update(is_active=False)
        user_deactivate(actor=Actor(user=admin), user=other)


def test_deactivation_ends_sessions_at_once(admin_client):
    bob = UserFactory(username="bob", password="bob-pw")
    RoleGrantFactory(user=bob, role="viewer", company=CompanyFactory())
    bob_browser = Client()
    assert bob_browser.login(username="bob", password="bob-pw")
    assert bob_browser.get("/orgs/").status_code == 200
    assert Session.objects.count() == 2
    response = admin_client.post(f"/users/{bob.pk}/deactivate/", follow=True)
    assert "1 session(s) ended" in response.content.decode()
    assert Session.objects.count() == 1  # only the Administrator's
    assert bob_browser.get("/orgs/")["Location"].startswith("/login/")
    assert not Client().login(username="bob", password="bob-pw")
    event = AuditEvent.objects.get(action="user.deactivate")
    assert event.after == {"active": False, "sessions_ended": 1}
    admin_client.post(f"/users/{bob.pk}/reactivate/")
    assert AuditEvent.objects.filter(action="user.reactivate").exists()
    assert Client().login(username="bob", password="bob-pw")


def test_deactivation_finds_the_sessions_by_user_without_decoding_any(admin):
    """Each session row names its user: ending Bob's reads no one else's."""
    bob = UserFactory(username="bob", password="bob-pw")
    browsers = [Client() for _ in range(3)]
    for i, browser in enumerate(browsers):
        UserFactory(username=f"u{i}", password="pw")
        assert browser.login(username=f"u{i}", password="pw")
    assert Client().login(username="bob", password="bob-pw")
    assert Client().login(username="bob", password="bob-pw")
    assert Session.objects.filter(user_id=bob.pk).count() == 2
    with (
        mock.patch.object(SessionBase, "decode", side_effect=AssertionError),
        CaptureQueriesContext(connection) as queries,
    ):
        assert user_deactivate(actor=Actor(user=admin), user=bob) == 2
    assert Session.objects.count() == 3
    assert len(queries) <= 7  # lock, checks, update, one delete, audit


def test_user_list_queries_do_not_grow_with_users(admin_client):
    def count() -> int:
        with CaptureQueriesContext(connection) as queries:
            assert admin_client.get("/users/").status_code == 200
        return len(queries)

    company = CompanyFactory()
    few = count()
    for _ in range(15):
        RoleGrantFactory(user=UserFactory(), role="viewer", company=company)
    assert count() == few


def test_a_revoked_invitation_link_is_refused(admin, admin_client):
    result = users_invite(
        actor=Actor(user=admin), email="bo@example.com", roles=Roles(True)
    )
    response = admin_client.post(f"/users/invitations/{result.pk}/revoke/", follow=True)
    assert "The invitation of bo@example.com is revoked." in response.content.decode()
    assert Client().get(_path(_link_from_mail())).status_code == 404
    assert AuditEvent.objects.filter(action="user.invite_revoke").count() == 1
    again = admin_client.post(f"/users/invitations/{result.pk}/revoke/", follow=True)
    assert "was already used or revoked" in again.content.decode()
    assert AuditEvent.objects.filter(action="user.invite_revoke").count() == 1


def test_beat_sends_a_lost_invitation_mail_and_wipes_ended_ones(admin, monkeypatch):
    sent = []
    monkeypatch.setattr(people, "enqueue_on_commit", lambda name, **kwargs: None)
    monkeypatch.setattr(
        people, "enqueue_now", lambda name, **kwargs: sent.append((name, kwargs))
    )
    lost = users_invite(
        actor=Actor(user=admin), email="lo@example.com", roles=Roles(True)
    )
    ended = users_invite(
        actor=Actor(user=admin), email="en@example.com", roles=Roles(True)
    )
    assert people.invitations_mail_resume() == 0  # too recent: its task may run yet
    long_ago = timezone.now() - timedelta(minutes=3)
    Invitation.objects.update(created_at=long_ago)
    Invitation.objects.filter(pk=ended.pk).update(expires_at=long_ago)
    assert people.invitations_mail_resume() == 1
    assert sent == [(people.INVITATION_MAIL_TASK, {"invitation_id": lost.pk})]
    assert Invitation.objects.get(pk=ended.pk).token_encrypted == ""
    assert Invitation.objects.get(pk=lost.pk).token_encrypted != ""


def test_revoking_an_invitation_wipes_its_unmailed_token(
    admin, admin_client, monkeypatch
):
    monkeypatch.setattr(people, "enqueue_on_commit", lambda name, **kwargs: None)
    first = users_invite(
        actor=Actor(user=admin), email="bo@example.com", roles=Roles(True)
    )
    assert Invitation.objects.get(pk=first.pk).token_encrypted != ""
    second = users_invite(
        actor=Actor(user=admin), email="bo@example.com", roles=Roles(True)
    )
    assert Invitation.objects.get(pk=first.pk).token_encrypted == ""  # replaced
    admin_client.post(f"/users/invitations/{second.pk}/revoke/")
    assert Invitation.objects.get(pk=second.pk).token_encrypted == ""


def test_an_invitation_whose_key_is_gone_says_so(admin, admin_client, monkeypatch):
    monkeypatch.setattr(people, "enqueue_on_commit", lambda name, **kwargs: None)
    invitation = users_invite(
        actor=Actor(user=admin), email="bo@example.com", roles=Roles(True)
    )
    Invitation.objects.filter(pk=invitation.pk).update(token_encrypted="v1:zz:garbage")
    assert invitation_mail_send(invitation_id=invitation.pk) == "failed"
    assert not mail.outbox
    page = admin_client.get("/users/").content.decode()
    assert "Not sent: the console can no longer read" in page
