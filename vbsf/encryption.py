"""Secrets at rest: consumer secrets and OAuth tokens.

Ciphertexts are ``v1:<key id>:<Fernet token>``. The key ID is derived from
the key itself, so a ciphertext names the key that opens it and rotation can
tell, without decrypting, which rows still need re-encryption. Keys come from
``VBSF_ENCRYPTION_KEYS`` (newest first) and never from ``SECRET_KEY``.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass

from cryptography.fernet import Fernet, InvalidToken
from django.conf import settings

PREFIX = "v1"


class SecretUnavailable(Exception):
    """A stored secret cannot be decrypted with the configured keys.

    The message names the key ID and never includes the ciphertext.
    """


class EncryptionNotConfigured(SecretUnavailable):
    pass


@dataclass(frozen=True)
class _Key:
    key_id: str
    fernet: Fernet


def key_id_for(raw_key: str) -> str:
    return hashlib.sha256(raw_key.encode()).hexdigest()[:8]


def _keys() -> list[_Key]:
    raw_keys: list[str] = list(getattr(settings, "ENCRYPTION_KEYS", []))
    if not raw_keys:
        raise EncryptionNotConfigured(
            "No encryption key is configured (VBSF_ENCRYPTION_KEYS)."
        )
    keys = []
    for raw in raw_keys:
        try:
            keys.append(_Key(key_id_for(raw), Fernet(raw.encode())))
        except (ValueError, TypeError):
            raise EncryptionNotConfigured(
                f"Encryption key {key_id_for(raw)} in VBSF_ENCRYPTION_KEYS is not a "
                "valid Fernet key (32 url-safe base64-encoded bytes)."
            ) from None
    return keys


def current_key_id() -> str:
    return _keys()[0].key_id


def encrypt(plaintext: str) -> str:
    if not isinstance(plaintext, str) or plaintext == "":
        raise ValueError("Only a non-empty string can be encrypted.")
    key = _keys()[0]
    token = key.fernet.encrypt(plaintext.encode()).decode()
    return f"{PREFIX}:{key.key_id}:{token}"


def key_id_of(ciphertext: str) -> str | None:
    parts = ciphertext.split(":", 2)
    if len(parts) != 3 or parts[0] != PREFIX:
        return None
    return parts[1]


def decrypt(ciphertext: str) -> str:
    parts = ciphertext.split(":", 2)
    if len(parts) != 3 or parts[0] != PREFIX:
        raise SecretUnavailable("The stored secret is not in a known format.")
    _, key_id, token = parts
    for key in _keys():
        if key.key_id == key_id:
            try:
                return key.fernet.decrypt(token.encode()).decode()
            except InvalidToken:
                raise SecretUnavailable(
                    f"The stored secret does not decrypt with key {key_id}: the key "
                    "or the ciphertext was changed."
                ) from None
    raise SecretUnavailable(
        f"The stored secret was encrypted with key {key_id}, which is not in "
        "VBSF_ENCRYPTION_KEYS. Add that key back (after the newest) to read it."
    )


def needs_rotation(ciphertext: str) -> bool:
    return bool(ciphertext) and key_id_of(ciphertext) != current_key_id()


def reencrypt(ciphertext: str) -> str:
    return encrypt(decrypt(ciphertext))


def fingerprint(secret: str) -> str:
    """A short, stable, non-reversible label for a secret, safe to display.

    Keyed with a constant label so the value is not a bare SHA-256 that could
    be looked up; secrets here are long random strings, so 8 hex characters
    identify them without revealing anything useful.
    """
    digest = hmac.new(b"vbsf-fingerprint-v1", secret.encode(), hashlib.sha256)
    return digest.hexdigest()[:8]
