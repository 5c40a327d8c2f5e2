"""RS256 JWT signing and JWKS export for the simulator's id_token (PyJWT).

Only what the simulator needs: one RSA key per process, RS256 signatures
with a ``kid`` header, the JWKS document served at `/id/keys`, and the OIDC
`at_hash` claim.  A verifier is included so the conformance tests can check
tokens against `/id/keys`.
"""

from __future__ import annotations

import base64
import hashlib
import threading
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

ALGORITHM = "RS256"
KEY_ID = "sfsim1"

_key_lock = threading.Lock()
_private_key: rsa.RSAPrivateKey | None = None


def b64url(data: bytes) -> str:
    """base64url without padding (RFC 7515 §2)."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


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


def jwks() -> dict[str, Any]:
    """The JWKS document listing the public half of the signing key."""
    public = RSAAlgorithm.to_jwk(private_key().public_key(), as_dict=True)
    return {
        "keys": [
            {
                "kty": "RSA",
                "n": public["n"],
                "e": public["e"],
                "alg": ALGORITHM,
                "use": "sig",
                "kid": KEY_ID,
            }
        ]
    }


def encode(claims: dict[str, Any]) -> str:
    """Sign `claims` as a compact RS256 JWT."""
    return jwt.encode(
        claims,
        private_key(),
        algorithm=ALGORITHM,
        headers={"kid": KEY_ID, "typ": "JWT"},
    )


def at_hash(access_token: str) -> str:
    """OIDC `at_hash`: base64url of the left half of SHA-256(access_token)."""
    digest = hashlib.sha256(access_token.encode("ascii")).digest()
    return b64url(digest[: len(digest) // 2])


def decode_and_verify(token: str, jwks_doc: dict[str, Any]) -> dict[str, Any]:
    """Verify an RS256 JWT's signature against a JWKS document; return its claims.

    Raises ValueError on any problem.  Only the signature is checked (the
    simulator's clock may be shifted, and the audience is the caller's to
    compare).  Used by the tests (and handy for the console's own tests) to
    prove the id_token verifies with `/id/keys`.
    """
    try:
        kid = jwt.get_unverified_header(token).get("kid")
        keys = jwt.PyJWKSet.from_dict(jwks_doc)
    except jwt.PyJWTError as exc:
        raise ValueError("malformed JWT or JWKS") from exc
    key = next((k for k in keys if k.key_id == kid), None)
    if key is None:
        raise ValueError("no matching key")
    try:
        claims: dict[str, Any] = jwt.decode(
            token,
            key,
            algorithms=[ALGORITHM],
            options={
                "verify_exp": False,
                "verify_iat": False,
                "verify_nbf": False,
                "verify_aud": False,
                "verify_iss": False,
            },
        )
    except jwt.InvalidSignatureError as exc:
        raise ValueError("bad signature") from exc
    except jwt.PyJWTError as exc:
        raise ValueError(f"invalid JWT: {exc}") from exc
    return claims
