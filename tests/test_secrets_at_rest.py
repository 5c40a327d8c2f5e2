"""Secrets are encrypted at rest, rotatable, write-only and never shown."""

from __future__ import annotations

import pytest
from cryptography.fernet import Fernet
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection

from connections.encrypted_fields import ENCRYPTED_FIELDS
from connections.models import ExternalClientApp
from orgs.models import SalesforceOrg
from vbsf import encryption

from .factories import ExternalClientAppFactory, SalesforceOrgFactory

PLANTED_SECRET = "planted-consumer-secret-7f3a9c"
PLANTED_TOKEN = "5Aep861planted.refresh.token.e1d2c3"


def _raw_rows() -> str:
    with connection.cursor() as cursor:
        dump = []
        for table in ("connections_externalclientapp", "orgs_salesforceorg"):
            cursor.execute(f"SELECT * FROM {table}")
            dump.append(repr(cursor.fetchall()))
    return "\n".join(dump)


@pytest.fixture
def planted(db):
    app = ExternalClientAppFactory(consumer_secret=PLANTED_SECRET)
    org = SalesforceOrgFactory(client_app=app, refresh_token=PLANTED_TOKEN)
    return app, org


def test_raw_database_rows_hold_no_planted_secret(planted):
    raw = _raw_rows()
    assert PLANTED_SECRET not in raw
    assert PLANTED_TOKEN not in raw
    app, org = planted
    app.refresh_from_db()
    org.refresh_from_db()
    assert app.get_consumer_secret() == PLANTED_SECRET
    assert org.get_refresh_token() == PLANTED_TOKEN


def test_ciphertexts_name_their_key(planted, settings):
    app, _ = planted
    key_id = encryption.key_id_for(settings.ENCRYPTION_KEYS[0])
    assert app.consumer_secret_encrypted.startswith(f"v1:{key_id}:")


def test_repr_and_str_show_no_secret(planted):
    app, org = planted
    for text in (repr(app), str(app), repr(org), str(org)):
        assert PLANTED_SECRET not in text and PLANTED_TOKEN not in text
        assert "v1:" not in text


def test_a_missing_key_raises_a_clear_domain_error(planted, settings):
    app, _ = planted
    settings.ENCRYPTION_KEYS = [Fernet.generate_key().decode()]
    with pytest.raises(encryption.SecretUnavailable) as caught:
        ExternalClientApp.objects.get(pk=app.pk).get_consumer_secret()
    message = str(caught.value)
    assert "not in VBSF_ENCRYPTION_KEYS" in message
    assert app.consumer_secret_encrypted.split(":")[2] not in message


def test_a_tampered_ciphertext_raises_a_clear_domain_error(planted):
    app, _ = planted
    prefix, key_id, token = app.consumer_secret_encrypted.split(":", 2)
    app.consumer_secret_encrypted = f"{prefix}:{key_id}:{token[:-4]}AAAA"
    with pytest.raises(encryption.SecretUnavailable, match="does not decrypt"):
        app.get_consumer_secret()


def test_an_invalid_configured_key_is_reported(settings):
    settings.ENCRYPTION_KEYS = ["not-a-fernet-key"]
    with pytest.raises(encryption.EncryptionNotConfigured, match="not a valid"):
        encryption.encrypt("x")


def test_rotation_reencrypts_everything_and_a_second_run_changes_nothing(
    planted, settings, capsys
):
    old_key = settings.ENCRYPTION_KEYS[0]
    new_key = Fernet.generate_key().decode()
    settings.ENCRYPTION_KEYS = [new_key, old_key]
    call_command("rotate_encryption_keys")
    assert "Re-encrypted 2 secret(s)" in capsys.readouterr().out
    call_command("rotate_encryption_keys")
    assert "Re-encrypted 0 secret(s)" in capsys.readouterr().out
    # The old key can now be dropped.
    settings.ENCRYPTION_KEYS = [new_key]
    app, org = planted
    assert ExternalClientApp.objects.get(pk=app.pk).get_consumer_secret() == (
        PLANTED_SECRET
    )
    assert SalesforceOrg.objects.get(pk=org.pk).get_refresh_token() == PLANTED_TOKEN


def test_rotation_reports_rows_it_cannot_decrypt_and_leaves_them(planted, settings):
    settings.ENCRYPTION_KEYS = [Fernet.generate_key().decode()]
    app, _ = planted
    before = ExternalClientApp.objects.get(pk=app.pk).consumer_secret_encrypted
    with pytest.raises(CommandError, match="could not be decrypted"):
        call_command("rotate_encryption_keys")
    assert ExternalClientApp.objects.get(pk=app.pk).consumer_secret_encrypted == before


def test_every_encrypted_field_is_rotated():
    from django.apps import apps

    found = {
        (model._meta.label, field.name)
        for model in apps.get_models()
        for field in model._meta.fields
        if field.name.endswith("_encrypted")
    }
    assert found == set(ENCRYPTED_FIELDS)


def test_admin_never_renders_a_secret_and_blank_keeps_it(world, planted):
    app, org = planted
    client = world.client_for("administrator")
    for url in (
        f"/admin/connections/externalclientapp/{app.pk}/change/",
        f"/admin/orgs/salesforceorg/{org.pk}/change/",
        "/admin/connections/externalclientapp/",
    ):
        body = client.get(url).content.decode()
        assert PLANTED_SECRET not in body and PLANTED_TOKEN not in body
        assert "v1:" not in body
    response = client.post(
        f"/admin/connections/externalclientapp/{app.pk}/change/",
        {
            "name": "renamed",
            "consumer_key": app.consumer_key,
            "scopes": '["api"]',
            "consumer_secret": "",
        },
    )
    assert response.status_code == 302
    app.refresh_from_db()
    assert app.name == "renamed"
    assert app.get_consumer_secret() == PLANTED_SECRET


def test_admin_sets_a_new_secret_when_one_is_typed(world, planted):
    app, _ = planted
    client = world.client_for("administrator")
    client.post(
        f"/admin/connections/externalclientapp/{app.pk}/change/",
        {
            "name": app.name,
            "consumer_key": app.consumer_key,
            "scopes": '["api"]',
            "consumer_secret": "brand-new-secret",
        },
    )
    app.refresh_from_db()
    assert app.get_consumer_secret() == "brand-new-secret"
    assert app.consumer_secret_fingerprint == encryption.fingerprint("brand-new-secret")
