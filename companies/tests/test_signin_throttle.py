"""Issue 11, points 1 to 3: one throttled sign-in for the console and the
admin site; throttling per username at an address, per username and per
address; the client's address from the trusted proxy hops only."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.conf import settings as django_settings
from django.test import Client, RequestFactory

from companies import signin_throttle
from companies.audit import client_ip
from companies.models import AuditEvent
from tests.factories import RoleGrantFactory, UserFactory

pytestmark = pytest.mark.django_db

ROOT = Path(__file__).resolve().parents[2]
A, B = "198.51.100.1", "198.51.100.2"
LOCKED = "Too many failed sign-in attempts"


@pytest.fixture
def limits(settings):
    settings.LOGIN_MAX_FAILURES = 2  # N: a username at one address
    settings.LOGIN_MAX_FAILURES_PER_USERNAME = 4  # M: a username anywhere
    settings.LOGIN_MAX_FAILURES_PER_ADDRESS = 6  # K: an address, any username
    settings.LOGIN_LOCKOUT_SECONDS = 900
    return settings


@pytest.fixture
def alice(db):
    user = UserFactory(username="alice", password="alice-password", is_staff=True)
    RoleGrantFactory(user=user, role="administrator", company=None)
    return user


@pytest.fixture
def vera(db):
    return UserFactory(username="vera", password="vera-password")


def sign_in(address: str, username: str, password: str = "wrong", **headers: str):
    return Client(REMOTE_ADDR=address, **headers).post(
        "/login/", {"username": username, "password": password}
    )


def signed_in(response) -> bool:
    return response.status_code == 302


def refused(response) -> bool:
    return response.status_code == 422 and LOCKED in response.content.decode()


def lockouts() -> list[AuditEvent]:
    return list(AuditEvent.objects.filter(action="auth.signin_lockout").order_by("pk"))


# 1. The admin site's login is the console's.


def test_the_admin_login_page_sends_to_the_console_login(alice):
    response = Client().get("/admin/login/?next=/admin/auth/user/")
    assert response.status_code == 302
    assert response["Location"] == "/login/?next=/admin/auth/user/"
    response = Client().get("/admin/login/")
    assert response["Location"] == "/login/?next=/admin/"


def test_the_admin_login_tries_no_password(alice, limits):
    for _ in range(2):
        sign_in(A, "alice")
    client = Client(REMOTE_ADDR=A)
    # Locked out on /login/; the admin's form used to take the password.
    response = client.post(
        "/admin/login/", {"username": "alice", "password": "alice-password"}
    )
    assert response.status_code == 302
    assert response["Location"].startswith("/login/")
    assert "_auth_user_id" not in client.session
    assert client.get("/admin/").status_code == 302
    events = AuditEvent.objects.filter(action__startswith="auth.")
    assert events.count() == 2  # the two failures on /login/, nothing else


def test_an_administrator_signs_in_to_the_admin_through_the_console(alice):
    client = Client(REMOTE_ADDR=A)
    response = client.get("/admin/", follow=True)
    assert response.redirect_chain[-1][0] == "/login/?next=/admin/"
    response = client.post(
        "/login/?next=/admin/", {"username": "alice", "password": "alice-password"}
    )
    assert response["Location"] == "/admin/"
    assert client.get("/admin/").status_code == 200
    [event] = AuditEvent.objects.filter(action="auth.password_signin")
    assert event.outcome == "success" and event.ip_address == A


def test_admin_password_guesses_are_throttled(alice, limits):
    # Guesses for the admin site go through /login/: locked after N.
    client = Client(REMOTE_ADDR=A)
    for _ in range(2):
        client.post("/login/?next=/admin/", {"username": "alice", "password": "x"})
    response = client.post(
        "/login/?next=/admin/", {"username": "alice", "password": "alice-password"}
    )
    assert refused(response)
    assert client.get("/admin/").status_code == 302


# 2. Per username at an address, per username, per address.


def test_a_failing_address_does_not_lock_the_account_elsewhere(alice, limits):
    for _ in range(2):
        assert sign_in(A, "alice").status_code == 422
    assert refused(sign_in(A, "alice", "alice-password"))
    assert signed_in(sign_in(B, "alice", "alice-password"))
    [lockout] = lockouts()
    assert lockout.after["locked"] == ["username", "address"]
    assert lockout.after["rules"] == ["username_at_address"]
    assert lockout.ip_address == A


def test_one_accounts_failures_do_not_lock_others_at_the_address(alice, vera, limits):
    for _ in range(2):
        sign_in(A, "vera")
    assert refused(sign_in(A, "vera", "vera-password"))
    assert signed_in(sign_in(A, "alice", "alice-password"))


def test_the_username_is_throttled_case_insensitively(alice, limits):
    sign_in(A, "Alice")
    sign_in(A, " ALICE")
    assert refused(sign_in(A, "alice", "alice-password"))


def test_a_username_is_locked_after_failures_from_many_addresses(alice, limits):
    for address in ["203.0.113.1", "203.0.113.2"]:
        for _ in range(2):
            sign_in(address, "alice")
    # Four failures from two addresses: the username is locked everywhere.
    assert refused(sign_in(B, "alice", "alice-password"))
    [lockout] = lockouts()
    assert lockout.after["locked"] == ["username"]
    assert lockout.after["rules"] == ["username"]


def test_an_address_is_locked_after_failures_across_usernames(vera, limits):
    for name in ["ann", "bob", "cy", "dee", "eve"]:
        sign_in(A, name)
    # Five failures at A, one per username: vera at A is still tried.
    assert signed_in(sign_in(A, "vera", "vera-password"))
    sign_in(A, "fay")
    assert refused(sign_in(A, "vera", "vera-password"))
    assert signed_in(sign_in(B, "vera", "vera-password"))
    [lockout] = lockouts()
    assert lockout.after["locked"] == ["address"]
    assert lockout.after["rules"] == ["address"]


def test_a_success_clears_only_the_username_at_the_address(alice, vera, settings):
    settings.LOGIN_MAX_FAILURES = 2
    settings.LOGIN_MAX_FAILURES_PER_USERNAME = 4
    settings.LOGIN_MAX_FAILURES_PER_ADDRESS = 3
    sign_in(A, "alice")
    assert signed_in(sign_in(A, "alice", "alice-password"))
    sign_in(A, "alice")  # one failure for the pair again, not two
    assert signed_in(sign_in(A, "alice", "alice-password"))
    # The address's failures stay counted: a known password cannot reset an
    # attack from the same address.
    sign_in(A, "bob")
    assert refused(sign_in(A, "vera", "vera-password"))


def test_refused_attempts_are_not_counted(alice, limits):
    for _ in range(2):
        sign_in(A, "alice")
    for _ in range(10):
        assert refused(sign_in(A, "alice"))
    # Ten refusals at A added nothing to the username's count (2 of 4).
    sign_in(B, "alice")
    assert signed_in(sign_in("203.0.113.7", "alice", "alice-password"))


def test_the_lockout_slides_with_the_oldest_failure(alice, limits, monkeypatch):
    clock = [1_000_000.0]
    monkeypatch.setattr(signin_throttle, "now", lambda: clock[0])
    sign_in(A, "alice")
    clock[0] += 300
    sign_in(A, "alice")
    response = sign_in(A, "alice", "alice-password")
    assert refused(response)
    assert "Wait 10 minutes" in response.content.decode()
    clock[0] += 599
    assert "Wait 1 minute and" in sign_in(A, "alice").content.decode()
    clock[0] += 1  # the first failure is now 900 seconds old
    assert signed_in(sign_in(A, "alice", "alice-password"))


def test_an_incomplete_form_is_neither_throttled_nor_audited(alice, limits):
    for _ in range(5):
        response = sign_in(A, "alice", "")
        assert response.status_code == 422 and LOCKED not in response.content.decode()
    assert not AuditEvent.objects.filter(action__startswith="auth.").exists()
    assert signed_in(sign_in(A, "alice", "alice-password"))


def test_keys_separate_rules_usernames_and_addresses():
    key = signin_throttle.cache_key
    pair, user, address = signin_throttle.RULES
    assert key(user, "Alice ", A) == key(user, "alice", B)
    assert key(pair, "ALICE", A) == key(pair, "alice", A) != key(pair, "alice", B)
    assert key(user, A, None) != key(address, "x", A)
    assert len({key(rule, "alice", A) for rule in signin_throttle.RULES}) == 3


@pytest.mark.parametrize(
    "env",
    [
        {"VBSF_LOGIN_MAX_FAILURES": "20"},  # not below the username's 20
        {"VBSF_LOGIN_MAX_FAILURES_PER_ADDRESS": "5"},  # not above the pair's 5
        {"VBSF_LOGIN_MAX_FAILURES": "0"},
    ],
)
def test_settings_refuse_limits_that_lock_out_others(env):
    clean = {k: v for k, v in os.environ.items() if not k.startswith("VBSF_")}
    result = subprocess.run(
        [sys.executable, "manage.py", "check"],
        cwd=ROOT,
        env=clean | {"VBSF_DEBUG": "true"} | env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    assert "VBSF_LOGIN_MAX_FAILURES must be at least 1 and below" in result.stderr


# 3. The client's address behind a proxy.


def _request(forwarded: str | None = None, remote: str = "10.0.0.2"):
    meta = {"REMOTE_ADDR": remote}
    if forwarded is not None:
        meta["HTTP_X_FORWARDED_FOR"] = forwarded
    return RequestFactory().get("/", **meta)


@pytest.mark.parametrize(
    ("hops", "forwarded", "expected"),
    [
        (1, "203.0.113.9", "203.0.113.9"),
        # The client wrote the left part; the proxy appended the right one.
        (1, "6.6.6.6, 203.0.113.9", "203.0.113.9"),
        (2, "6.6.6.6, 203.0.113.9, 192.0.2.80", "203.0.113.9"),
        (2, "203.0.113.9", "10.0.0.2"),  # fewer values than proxies
        (1, "203.0.113.9, not-an-address", "10.0.0.2"),
        (1, "203.0.113.9, 203.0.113.9:443", "10.0.0.2"),
        (1, "", "10.0.0.2"),
        (1, None, "10.0.0.2"),
        (1, "2001:DB8::1", "2001:db8::1"),
        (1, "::ffff:203.0.113.9", "203.0.113.9"),
        (1, "fe80::1%eth0", "10.0.0.2"),
    ],
)
def test_behind_a_proxy_the_address_is_the_trusted_hop(
    settings, hops, forwarded, expected
):
    settings.TRUST_X_FORWARDED_FOR = True
    settings.TRUSTED_PROXY_HOPS = hops
    assert client_ip(_request(forwarded)) == expected


def test_without_a_proxy_forwarded_for_is_ignored(settings):
    settings.TRUST_X_FORWARDED_FOR = False
    assert client_ip(_request("203.0.113.9")) == "10.0.0.2"
    assert client_ip(_request(remote="")) is None


def test_trusted_proxy_hops_defaults_to_one_and_refuses_zero():
    assert django_settings.TRUSTED_PROXY_HOPS == 1
    clean = {k: v for k, v in os.environ.items() if not k.startswith("VBSF_")}
    result = subprocess.run(
        [sys.executable, "manage.py", "check"],
        cwd=ROOT,
        env=clean | {"VBSF_DEBUG": "true", "VBSF_TRUSTED_PROXY_HOPS": "0"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0 and "VBSF_TRUSTED_PROXY_HOPS" in result.stderr


def test_behind_a_proxy_the_throttle_and_the_trail_use_the_client(
    alice, limits, settings
):
    settings.TRUST_X_FORWARDED_FOR = True
    proxy = "10.0.0.2"
    # A rewrites the left part of the header on every try: no escape.
    for forged in ["1.1.1.1", "2.2.2.2", "3.3.3.3"]:
        sign_in(proxy, "alice", HTTP_X_FORWARDED_FOR=f"{forged}, {A}")
    [lockout] = lockouts()
    assert lockout.ip_address == A
    # B, behind the same proxy, is another address to the throttle.
    response = sign_in(proxy, "alice", "alice-password", HTTP_X_FORWARDED_FOR=B)
    assert signed_in(response)
    success = AuditEvent.objects.get(action="auth.password_signin", outcome="success")
    assert success.ip_address == B
