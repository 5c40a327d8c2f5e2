"""Verification of Salesforce OpenID Connect id_tokens (SPEC §6).

Pure: no HTTP and no Django. The caller fetches the JWKS (through
:func:`connections.salesforce.fetch_jwks`) and passes what the token must
say. Only RS256 is accepted: the algorithm comes from this module, never
from the token, so ``none`` and HS256 (signed with the public key as an
HMAC secret) cannot slip through. Salesforce's claims are ``iss``, ``sub``
(the identity URL), ``aud`` (the consumer key), ``iat``, ``exp``,
``at_hash`` and ``nonce`` (reference §3).
"""

from __future__ import annotations

import base64
import binascii
import hmac
import json
import re
import time
from collections.abc import Collection, Mapping
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

ALGORITHM = "RS256"
# Clocks of the console and Salesforce may differ a little; not more.
LEEWAY_SECONDS = 60
MAX_TOKEN_LENGTH = 16_384
MIN_KEY_BITS = 2048
_SEGMENT_RE = re.compile(r"^[A-Za-z0-9_-]+$")


class InvalidIdToken(Exception):
    """The id_token cannot be trusted; ``message`` is safe to show."""

    def __init__(self, message: str) -> None:
        self.message = message
        super().__init__(message)


def _b64decode(segment: str) -> bytes:
    # base64's own decoder silently skips characters outside the alphabet;
    # a token must be exactly what was signed.
    if not _SEGMENT_RE.match(segment):
        raise InvalidIdToken("The identity token is malformed.")
    try:
        return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))
    except (binascii.Error, ValueError):
        raise InvalidIdToken("The identity token is malformed.") from None


def _json_segment(segment: str) -> dict[str, Any]:
    try:
        value = json.loads(_b64decode(segment))
    except (UnicodeDecodeError, ValueError):
        raise InvalidIdToken("The identity token is malformed.") from None
    if not isinstance(value, dict):
        raise InvalidIdToken("The identity token is malformed.")
    return value


def _b64_int(value: object) -> int:
    if not isinstance(value, str) or not value:
        raise InvalidIdToken("The identity provider's signing key is malformed.")
    try:
        return int.from_bytes(_b64decode(value), "big")
    except InvalidIdToken:
        raise InvalidIdToken(
            "The identity provider's signing key is malformed."
        ) from None


def _public_key(jwks: Mapping[str, Any], kid: str) -> rsa.RSAPublicKey:
    keys = jwks.get("keys") if isinstance(jwks, Mapping) else None
    if not isinstance(keys, list):
        raise InvalidIdToken("The identity provider published no signing keys.")
    for jwk in keys:
        if not isinstance(jwk, dict) or jwk.get("kid") != kid:
            continue
        if jwk.get("kty") != "RSA" or jwk.get("use", "sig") != "sig":
            raise InvalidIdToken("The identity token's signing key is not usable.")
        if jwk.get("alg", ALGORITHM) != ALGORITHM:
            raise InvalidIdToken("The identity token's signing key is not usable.")
        try:
            key = rsa.RSAPublicNumbers(
                _b64_int(jwk.get("e")), _b64_int(jwk.get("n"))
            ).public_key()
        except ValueError:
            raise InvalidIdToken(
                "The identity provider's signing key is malformed."
            ) from None
        if key.key_size < MIN_KEY_BITS:
            raise InvalidIdToken("The identity token's signing key is too weak.")
        return key
    raise InvalidIdToken("The identity token was signed with an unknown key.")


def _number(claims: Mapping[str, Any], name: str) -> int:
    value = claims.get(name)
    # bool is an int subclass; "true" is not a time.
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidIdToken(f"The identity token has no valid “{name}” claim.")
    return int(value)


def _check_audience(claims: Mapping[str, Any], client_id: str) -> None:
    aud = claims.get("aud")
    audiences = [aud] if isinstance(aud, str) else aud
    if not isinstance(audiences, list) or client_id not in audiences:
        raise InvalidIdToken("The identity token was issued to another app.")
    # OIDC Core §3.1.3.7: with several audiences, the authorized party
    # must be this client.
    if len(audiences) > 1 and claims.get("azp") != client_id:
        raise InvalidIdToken("The identity token was issued to another app.")


def verify_id_token(
    token: str,
    *,
    jwks: Mapping[str, Any],
    issuers: Collection[str],
    client_id: str,
    nonce: str,
    now: float | None = None,
    leeway: int = LEEWAY_SECONDS,
) -> dict[str, Any]:
    """Verify an RS256 id_token and return its claims.

    ``issuers`` lists the acceptable ``iss`` values (compared without a
    trailing slash), ``client_id`` must be among the audiences and
    ``nonce`` must equal the token's. Raises :class:`InvalidIdToken`.
    """
    if not isinstance(token, str) or not 0 < len(token) <= MAX_TOKEN_LENGTH:
        raise InvalidIdToken("The identity token is malformed.")
    parts = token.split(".")
    if len(parts) != 3:
        raise InvalidIdToken("The identity token is malformed.")
    header_b64, payload_b64, signature_b64 = parts
    header = _json_segment(header_b64)
    if header.get("alg") != ALGORITHM:
        raise InvalidIdToken("The identity token is not signed with RS256.")
    if "crit" in header:
        # No extension is understood, so none may be critical (RFC 7515 §4.1.11).
        raise InvalidIdToken("The identity token uses unsupported extensions.")
    kid = header.get("kid")
    if not isinstance(kid, str) or not kid:
        raise InvalidIdToken("The identity token names no signing key.")
    key = _public_key(jwks, kid)
    try:
        key.verify(
            _b64decode(signature_b64),
            f"{header_b64}.{payload_b64}".encode("ascii"),
            padding.PKCS1v15(),
            hashes.SHA256(),
        )
    except InvalidSignature:
        raise InvalidIdToken("The identity token's signature is not valid.") from None

    claims = _json_segment(payload_b64)
    iss = claims.get("iss")
    accepted = {issuer.rstrip("/") for issuer in issuers}
    if not isinstance(iss, str) or iss.rstrip("/") not in accepted:
        raise InvalidIdToken("The identity token comes from an unexpected issuer.")
    _check_audience(claims, client_id)
    current = time.time() if now is None else now
    if _number(claims, "exp") <= current - leeway:
        raise InvalidIdToken("The identity token has expired.")
    if _number(claims, "iat") > current + leeway:
        raise InvalidIdToken("The identity token was issued in the future.")
    token_nonce = claims.get("nonce")
    if (
        not nonce
        or not isinstance(token_nonce, str)
        or not hmac.compare_digest(token_nonce.encode(), nonce.encode())
    ):
        raise InvalidIdToken("The identity token does not belong to this sign-in.")
    if not isinstance(claims.get("sub"), str) or not claims["sub"]:
        raise InvalidIdToken("The identity token names no user.")
    return claims
