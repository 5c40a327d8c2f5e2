"""Where secrets are stored encrypted, for key rotation.

Every model field holding a ciphertext is listed here; a test checks that
no ``*_encrypted`` field is missing from the list.
"""

from __future__ import annotations

from django.apps import apps

ENCRYPTED_FIELDS: list[tuple[str, str]] = [
    ("connections.ExternalClientApp", "consumer_secret_encrypted"),
    ("orgs.SalesforceOrg", "refresh_token_encrypted"),
    ("connections.ConnectionChange", "code_verifier_encrypted"),
    ("connections.ConnectionChange", "code_encrypted"),
    ("connections.ConnectionChange", "new_refresh_token_encrypted"),
    ("connections.ConnectionChange", "old_refresh_token_encrypted"),
    ("connections.SignInAttempt", "code_verifier_encrypted"),
    ("connections.SignInAttempt", "code_encrypted"),
    ("orgs.RefreshTokenRecord", "revoke_token_encrypted"),
    ("connections.CampaignOrg", "demo_mail_encrypted"),
    ("companies.NotificationChannel", "secret_encrypted"),
    ("companies.NotificationChannel", "url_encrypted"),
    ("companies.Invitation", "token_encrypted"),
]


def encrypted_fields() -> list[tuple[type, str]]:
    return [(apps.get_model(label), field) for label, field in ENCRYPTED_FIELDS]
