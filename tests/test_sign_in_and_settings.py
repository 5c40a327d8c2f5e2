"""Sign-in, throttling, and settings that refuse unsafe production values."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def test_every_page_needs_sign_in(client, db):
    response = client.get("/orgs/")
    assert response.status_code == 302
    assert response["Location"] == "/login/?next=/orgs/"


def test_sign_in_and_out(world, client):
    world.users["viewer"].set_password("right-password")
    world.users["viewer"].save()
    response = client.post(
        "/login/", {"username": "vera", "password": "right-password"}
    )
    assert response.status_code == 302
    assert client.get("/").status_code == 200
    assert client.get("/logout/").status_code == 405  # logout is POST only
    client.post("/logout/")
    assert client.get("/").status_code == 302


def test_open_redirect_through_next_is_refused(world, client):
    world.users["viewer"].set_password("pw2")
    world.users["viewer"].save()
    response = client.post(
        "/login/?next=https://evil.example/", {"username": "vera", "password": "pw2"}
    )
    assert response["Location"] == "/"


def test_login_is_throttled_after_repeated_failures(world, client, settings):
    settings.LOGIN_MAX_FAILURES = 3
    for _ in range(3):
        response = client.post("/login/", {"username": "vera", "password": "wrong"})
        assert (
            "Please enter a correct username and password" in response.content.decode()
        )
    # Even the right password is refused while locked out.
    world.users["viewer"].set_password("pw3")
    world.users["viewer"].save()
    response = client.post("/login/", {"username": "vera", "password": "pw3"})
    assert "Too many failed sign-in attempts" in response.content.decode()
    assert client.get("/").status_code == 302


def _run_settings(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    clean = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("VBSF_") and k != "DJANGO_ALLOW_ASYNC_UNSAFE"
    }
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env=clean | env,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({}, "VBSF_SECRET_KEY is missing"),
        ({"VBSF_SECRET_KEY": "change-me"}, "VBSF_SECRET_KEY is missing"),
        ({"VBSF_SECRET_KEY": "k" * 50}, "VBSF_ENCRYPTION_KEYS is missing"),
        (
            {"VBSF_SECRET_KEY": "k" * 50, "VBSF_ENCRYPTION_KEYS": "change-me"},
            "VBSF_ENCRYPTION_KEYS is missing",
        ),
        ({"VBSF_DEBUG": "maybe"}, "VBSF_DEBUG must be true or false"),
    ],
)
def test_production_refuses_to_start_without_real_keys(env, message):
    result = _run_settings(env, "check")
    assert result.returncode != 0
    assert message in result.stderr


def test_check_deploy_passes_with_production_like_values(tmp_path):
    from cryptography.fernet import Fernet

    env = {
        "VBSF_SECRET_KEY": "a-long-random-production-secret-key-0123456789-abcdef",
        "VBSF_ENCRYPTION_KEYS": Fernet.generate_key().decode(),
        "VBSF_ALLOWED_HOSTS": "console.example.com",
        "VBSF_PUBLIC_URL": "https://console.example.com",
        "VBSF_DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}",
    }
    result = _run_settings(env, "check", "--deploy", "--fail-level", "WARNING")
    assert result.returncode == 0, result.stderr + result.stdout
