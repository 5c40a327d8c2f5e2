"""Verification of Salesforce OpenID Connect id_tokens (SPEC §6).

Pure: no HTTP and no Django. The caller fetches the JWKS (through
:func:`connections.salesforce.fetch_jwks`) and passes what the token must
say. The cryptography (base64url and JSON of the segments, the RSA key from
its JWK, the RS256 signature) is PyJWT's; this module decides the rules.
Only RS256 is accepted: the algorithm list comes from this module, never
from the token, so ``none`` and HS256 (signed with the public key as an
HMAC secret) cannot slip through. Salesforce's claims are ``iss``, ``sub``
(the identity URL), ``aud`` (the consumer key), ``iat``, ``exp``,
``at_hash`` and ``nonce`` (reference §3).
"""

from __future__ import annotations

import hmac
import time
from collections.abc import Collection, Mapping
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.exceptions import InvalidSubjectError
from jwt.types import Options

ALGORITHM = "RS256"
# Clocks of the console and Salesforce may differ a little; not more.
LEEWAY_SECONDS = 60
MAX_TOKEN_LENGTH = 16_384
MIN_KEY_BITS = 2048
# PyJWT checks the signature, the issuer and the audience; the time claims
# are checked here, against ``now`` and with the types this module accepts.
_DECODE_OPTIONS: Options = {
    "verify_signature": True,
    "verify_iss": True,
    "verify_aud": True,
    "verify_exp": False,
    "verify_iat": False,
    "verify_nbf": False,
    "enforce_minimum_key_length": True,
}

MALFORMED = "The identity token is malformed."
KEY_MALFORMED = "The identity provider's signing key is malformed."
KEY_UNUSABLE = "The identity token's signing key is not usable."
OTHER_APP = "The identity token was issued to another app."
UNEXPECTED_ISSUER = "The identity token comes from an unexpected issuer."


class InvalidIdToken(Exception):
    """The id_token cannot be trusted; ``message`` is safe to show."""

    def __init__(self, message: str) -> None:
        self.message = message
        super().__init__(message)


def _header(token: str) -> dict[str, Any]:
    """The token's (unverified) JOSE header, checked before any key is used."""
    try:
        header = jwt.get_unverified_header(token)
    except jwt.DecodeError:
        raise InvalidIdToken(MALFORMED) from None
    except jwt.InvalidTokenError:
        # PyJWT refuses a critical extension it does not implement (and a kid
        # that is not a string) while reading the header.
        raise InvalidIdToken(
            "The identity token uses unsupported extensions."
        ) from None
    if header.get("alg") != ALGORITHM:
        raise InvalidIdToken("The identity token is not signed with RS256.")
    if "crit" in header:
        # No extension is understood, so none may be critical (RFC 7515 §4.1.11).
        raise InvalidIdToken("The identity token uses unsupported extensions.")
    return header


def _signing_key(jwks: Mapping[str, Any], kid: str) -> jwt.PyJWK:
    """The JWKS entry named ``kid`` (the first one), as an RS256 public key."""
    keys = jwks.get("keys") if isinstance(jwks, Mapping) else None
    if not isinstance(keys, list):
        raise InvalidIdToken("The identity provider published no signing keys.")
    jwk = next((k for k in keys if isinstance(k, dict) and k.get("kid") == kid), None)
    if jwk is None:
        raise InvalidIdToken("The identity token was signed with an unknown key.")
    if jwk.get("kty") != "RSA" or jwk.get("use", "sig") != "sig":
        raise InvalidIdToken(KEY_UNUSABLE)
    if jwk.get("alg", ALGORITHM) != ALGORITHM:
        raise InvalidIdToken(KEY_UNUSABLE)
    # Only the public members: whatever else the entry carries (a private
    # exponent by mistake, say) plays no part in verification.
    public = {name: jwk[name] for name in ("kty", "kid", "n", "e") if name in jwk}
    try:
        key = jwt.PyJWK(public, algorithm=ALGORITHM)
    except jwt.PyJWTError:
        raise InvalidIdToken(KEY_MALFORMED) from None
    if not isinstance(key.key, rsa.RSAPublicKey):
        raise InvalidIdToken(KEY_UNUSABLE)
    if key.key.key_size < MIN_KEY_BITS:
        raise InvalidIdToken("The identity token's signing key is too weak.")
    return key


def _accepted_issuers(issuers: Collection[str]) -> frozenset[str]:
    """Each issuer with and without its trailing slash (compared as one)."""
    bare = {issuer.rstrip("/") for issuer in issuers}
    return frozenset(bare | {f"{issuer}/" for issuer in bare})


def _decode(
    token: str, key: jwt.PyJWK, *, issuers: Collection[str], client_id: str
) -> dict[str, Any]:
    try:
        claims: dict[str, Any] = jwt.decode(
            token,
            key,
            algorithms=[ALGORITHM],
            options=_DECODE_OPTIONS,
            audience=client_id,
            issuer=_accepted_issuers(issuers),
        )
    except jwt.InvalidSignatureError:
        raise InvalidIdToken("The identity token's signature is not valid.") from None
    except jwt.InvalidAlgorithmError:
        raise InvalidIdToken("The identity token is not signed with RS256.") from None
    except jwt.InvalidKeyError:
        raise InvalidIdToken("The identity token's signing key is too weak.") from None
    except jwt.InvalidIssuerError:
        raise InvalidIdToken(UNEXPECTED_ISSUER) from None
    except jwt.InvalidAudienceError:
        raise InvalidIdToken(OTHER_APP) from None
    except jwt.MissingRequiredClaimError as missing:
        raise InvalidIdToken(
            UNEXPECTED_ISSUER if missing.claim == "iss" else OTHER_APP
        ) from None
    except InvalidSubjectError:
        raise InvalidIdToken("The identity token names no user.") from None
    except jwt.DecodeError:
        raise InvalidIdToken(MALFORMED) from None
    except jwt.PyJWTError:
        raise InvalidIdToken("The identity token cannot be verified.") from None
    return claims


def _number(claims: Mapping[str, Any], name: str) -> int:
    value = claims.get(name)
    # bool is an int subclass; "true" is not a time.
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidIdToken(f"The identity token has no valid “{name}” claim.")
    return int(value)


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
        raise InvalidIdToken(MALFORMED)
    kid = _header(token).get("kid")
    if not isinstance(kid, str) or not kid:
        raise InvalidIdToken("The identity token names no signing key.")
    key = _signing_key(jwks, kid)
    claims = _decode(token, key, issuers=issuers, client_id=client_id)

    # OIDC Core §3.1.3.7: with several audiences, the authorized party
    # must be this client.
    aud = claims.get("aud")
    if isinstance(aud, list) and len(aud) > 1 and claims.get("azp") != client_id:
        raise InvalidIdToken(OTHER_APP)
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
