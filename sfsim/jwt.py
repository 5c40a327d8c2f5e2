"""Minimal RS256 JWT signing and JWKS export for the simulator's id_token.

Only what the simulator needs: one RSA key per process, RS256 signatures,
the JWKS document served at `/id/keys`, and the OIDC `at_hash` claim.  A
verifier is included so the conformance tests can check tokens without a
third-party JWT library.
"""

from __future__ import annotations

import base64
import hashlib
import json
import threading
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

KEY_ID = "sfsim1"

_key_lock = threading.Lock()
_private_key: rsa.RSAPrivateKey | None = None


def b64url(data: bytes) -> str:
    """base64url without padding (RFC 7515 §2)."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(text: str) -> bytes:
    """Inverse of :func:`b64url`, tolerant of missing padding."""
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def private_key() -> rsa.RSAPrivateKey:
    """The process-wide signing key, generated on first use.

    One key per process (not per app instance) because generating a 2048-bit
    key costs tens of milliseconds and the test suite builds many apps.
    """
    global _private_key
    with _key_lock:
        if _private_key is None:
            _private_key = rsa.generate_private_key(
                public_exponent=65537, key_size=2048
            )
        return _private_key


def _int_b64(value: int) -> str:
    return b64url(value.to_bytes((value.bit_length() + 7) // 8, "big"))


def jwks() -> dict[str, Any]:
    """The JWKS document listing the public half of the signing key."""
    numbers = private_key().public_key().public_numbers()
    return {
        "keys": [
            {
                "kty": "RSA",
                "n": _int_b64(numbers.n),
                "e": _int_b64(numbers.e),
                "alg": "RS256",
                "use": "sig",
                "kid": KEY_ID,
            }
        ]
    }


def encode(claims: dict[str, Any]) -> str:
    """Sign `claims` as a compact RS256 JWT."""
    header = {"kid": KEY_ID, "typ": "JWT", "alg": "RS256"}
    signing_input = ".".join(
        b64url(json.dumps(part, separators=(",", ":")).encode("utf-8"))
        for part in (header, claims)
    )
    signature = private_key().sign(
        signing_input.encode("ascii"), padding.PKCS1v15(), hashes.SHA256()
    )
    return f"{signing_input}.{b64url(signature)}"


def at_hash(access_token: str) -> str:
    """OIDC `at_hash`: base64url of the left half of SHA-256(access_token)."""
    digest = hashlib.sha256(access_token.encode("ascii")).digest()
    return b64url(digest[: len(digest) // 2])


def decode_and_verify(token: str, jwks_doc: dict[str, Any]) -> dict[str, Any]:
    """Verify an RS256 JWT against a JWKS document and return its claims.

    Raises ValueError on any problem.  Used by the tests (and handy for the
    console's own tests) to prove the id_token verifies with `/id/keys`.
    """
    try:
        header_b64, payload_b64, sig_b64 = token.split(".")
        header = json.loads(b64url_decode(header_b64))
    except (ValueError, json.JSONDecodeError) as exc:
        raise ValueError("malformed JWT") from exc
    if header.get("alg") != "RS256":
        raise ValueError("unexpected alg")
    for key in jwks_doc.get("keys", []):
        if key.get("kid") != header.get("kid"):
            continue
        public = rsa.RSAPublicNumbers(
            int.from_bytes(b64url_decode(key["e"]), "big"),
            int.from_bytes(b64url_decode(key["n"]), "big"),
        ).public_key()
        try:
            public.verify(
                b64url_decode(sig_b64),
                f"{header_b64}.{payload_b64}".encode("ascii"),
                padding.PKCS1v15(),
                hashes.SHA256(),
            )
        except InvalidSignature as exc:
            raise ValueError("bad signature") from exc
        claims: dict[str, Any] = json.loads(b64url_decode(payload_b64))
        return claims
    raise ValueError("no matching key")
