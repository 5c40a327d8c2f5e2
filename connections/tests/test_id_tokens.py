"""id_token verification with keys generated here (no HTTP, no database)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from typing import Any

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from connections.salesforce.id_tokens import InvalidIdToken, verify_id_token

ISSUER = "https://acme.my.salesforce.com"
CLIENT_ID = "3MVG9-console-sign-in-app"
NONCE = "n-0S6_WzA2Mj"
NOW = 1_800_000_000
SUB = "https://login.salesforce.com/id/00D36000000arMLEAY/00536000000IigRAAS"


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def b64_json(value: dict[str, Any]) -> str:
    return b64(json.dumps(value).encode())


@pytest.fixture(scope="module")
def key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def other_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def jwk(key: rsa.RSAPrivateKey, kid: str = "k1", **extra: Any) -> dict[str, Any]:
    numbers = key.public_key().public_numbers()

    def as_b64(n: int) -> str:
        return b64(n.to_bytes((n.bit_length() + 7) // 8, "big"))

    return {"kty": "RSA", "kid": kid, "use": "sig", "alg": "RS256"} | {
        "n": as_b64(numbers.n),
        "e": as_b64(numbers.e),
        **extra,
    }


def claims(**overrides: Any) -> dict[str, Any]:
    base = {
        "iss": ISSUER,
        "sub": SUB,
        "aud": CLIENT_ID,
        "iat": NOW - 5,
        "exp": NOW + 300,
        "at_hash": "abc",
        "nonce": NONCE,
    }
    base.update(overrides)
    return {k: v for k, v in base.items() if v is not None}


def sign(
    key: rsa.RSAPrivateKey,
    payload: dict[str, Any],
    header: dict[str, Any] | None = None,
) -> str:
    head = b64_json(header or {"kid": "k1", "typ": "JWT", "alg": "RS256"})
    body = b64_json(payload)
    signature = key.sign(f"{head}.{body}".encode(), padding.PKCS1v15(), hashes.SHA256())
    return f"{head}.{body}.{b64(signature)}"


def verify(token: str, jwks: dict[str, Any], **overrides: Any) -> dict[str, Any]:
    kwargs: dict[str, Any] = {
        "jwks": jwks,
        "issuers": {ISSUER, "https://login.salesforce.com"},
        "client_id": CLIENT_ID,
        "nonce": NONCE,
        "now": NOW,
    }
    return verify_id_token(token, **(kwargs | overrides))


@pytest.fixture
def jwks(key: rsa.RSAPrivateKey) -> dict[str, Any]:
    return {"keys": [jwk(key, kid="old"), jwk(key)]}


def test_a_good_token_returns_its_claims(key, jwks) -> None:
    result = verify(sign(key, claims()), jwks)
    assert result["sub"] == SUB and result["nonce"] == NONCE


def test_the_generic_login_host_is_an_accepted_issuer(key, jwks) -> None:
    token = sign(key, claims(iss="https://login.salesforce.com/"))
    assert verify(token, jwks)["iss"] == "https://login.salesforce.com/"


def test_an_audience_list_with_this_client_and_azp_is_accepted(key, jwks) -> None:
    token = sign(key, claims(aud=[CLIENT_ID, "other"], azp=CLIENT_ID))
    assert verify(token, jwks)["azp"] == CLIENT_ID


def assert_refused(token: str, jwks: dict[str, Any], text: str, **kw: Any) -> None:
    with pytest.raises(InvalidIdToken) as caught:
        verify(token, jwks, **kw)
    assert text in caught.value.message


def test_it_rejects_a_token_signed_by_another_key(other_key, jwks) -> None:
    assert_refused(sign(other_key, claims()), jwks, "signature is not valid")


def test_it_rejects_a_tampered_payload(key, jwks) -> None:
    head, _, signature = sign(key, claims()).split(".")
    forged = b64_json(claims(sub=SUB.replace("IigRAAS", "XXXXAAA")))
    assert_refused(f"{head}.{forged}.{signature}", jwks, "signature is not valid")


def test_it_rejects_an_unknown_kid(key, jwks) -> None:
    token = sign(key, claims(), {"kid": "rotated-away", "alg": "RS256"})
    assert_refused(token, jwks, "unknown key")


def test_it_rejects_a_missing_kid(key, jwks) -> None:
    assert_refused(sign(key, claims(), {"alg": "RS256"}), jwks, "names no signing key")


def test_it_rejects_alg_none(jwks) -> None:
    token = f"{b64_json({'kid': 'k1', 'alg': 'none'})}.{b64_json(claims())}."
    assert_refused(token, jwks, "not signed with RS256")


def test_it_rejects_hs256_signed_with_the_public_key(key, jwks) -> None:
    # The classic confusion attack: the public key used as an HMAC secret.
    head = b64_json({"kid": "k1", "alg": "HS256"})
    body = b64_json(claims())
    secret = json.dumps(jwks["keys"][1]).encode()
    mac = hmac.new(secret, f"{head}.{body}".encode(), hashlib.sha256).digest()
    assert_refused(f"{head}.{body}.{b64(mac)}", jwks, "not signed with RS256")


def test_it_rejects_a_key_published_for_another_algorithm(key) -> None:
    jwks = {"keys": [jwk(key, alg="RS512")]}
    assert_refused(sign(key, claims()), jwks, "not usable")


def test_it_rejects_a_weak_key() -> None:
    weak = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    assert_refused(sign(weak, claims()), {"keys": [jwk(weak)]}, "too weak")


def test_it_rejects_critical_header_extensions(key, jwks) -> None:
    token = sign(key, claims(), {"kid": "k1", "alg": "RS256", "crit": ["exp"]})
    assert_refused(token, jwks, "unsupported extensions")


def test_it_rejects_another_audience(key, jwks) -> None:
    assert_refused(sign(key, claims(aud="3MVG9-other-app")), jwks, "another app")


def test_it_rejects_several_audiences_without_azp(key, jwks) -> None:
    token = sign(key, claims(aud=[CLIENT_ID, "3MVG9-other-app"]))
    assert_refused(token, jwks, "another app")


def test_it_rejects_another_issuer(key, jwks) -> None:
    token = sign(key, claims(iss="https://evil.my.salesforce.com"))
    assert_refused(token, jwks, "unexpected issuer")


def test_it_rejects_a_missing_issuer(key, jwks) -> None:
    assert_refused(sign(key, claims(iss=None)), jwks, "unexpected issuer")


def test_it_rejects_another_nonce(key, jwks) -> None:
    assert_refused(
        sign(key, claims(nonce="replayed")), jwks, "does not belong to this sign-in"
    )


def test_it_rejects_a_missing_nonce(key, jwks) -> None:
    token = sign(key, claims(nonce=None))
    assert_refused(token, jwks, "does not belong to this sign-in")


def test_it_rejects_an_empty_expected_nonce(key, jwks) -> None:
    token = sign(key, claims(nonce=""))
    assert_refused(token, jwks, "does not belong to this sign-in", nonce="")


def test_it_rejects_an_expired_token(key, jwks) -> None:
    token = sign(key, claims(iat=NOW - 1000, exp=NOW - 61))
    assert_refused(token, jwks, "expired")


def test_a_token_just_expired_passes_within_the_leeway(key, jwks) -> None:
    token = sign(key, claims(iat=NOW - 1000, exp=NOW - 30))
    assert verify(token, jwks)["exp"] == NOW - 30


def test_it_rejects_a_token_issued_in_the_future(key, jwks) -> None:
    assert_refused(sign(key, claims(iat=NOW + 600)), jwks, "in the future")


@pytest.mark.parametrize("value", [None, "soon", True])
def test_it_rejects_a_missing_or_odd_expiry(key, jwks, value) -> None:
    assert_refused(sign(key, claims(exp=value)), jwks, "“exp”")


def test_it_rejects_a_missing_subject(key, jwks) -> None:
    assert_refused(sign(key, claims(sub=None)), jwks, "names no user")


@pytest.mark.parametrize(
    "token",
    [
        "",
        "a.b",
        "a.b.c.d",
        "!!!.e30.sig",
        "e30.e30.sig",  # a header without alg
        "W10.e30.sig",  # a JSON array, not an object
        "x" * 20_000,
    ],
)
def test_it_rejects_malformed_tokens(token, jwks) -> None:
    with pytest.raises(InvalidIdToken):
        verify(token, jwks)


def test_it_rejects_a_token_with_characters_outside_base64url(key, jwks) -> None:
    head, body, signature = sign(key, claims()).split(".")
    assert_refused(f"{head}.{body}.{signature[:10]}+/{signature[10:]}", jwks, "")


@pytest.mark.parametrize("jwks", [{}, {"keys": "nope"}, {"keys": [{"kid": "k1"}]}])
def test_it_rejects_an_unusable_jwks(key, jwks) -> None:
    with pytest.raises(InvalidIdToken):
        verify(sign(key, claims()), jwks)


def test_it_verifies_the_simulators_tokens() -> None:
    """The simulator's signer and this verifier agree on the format."""
    from sfsim import jwt

    token = jwt.encode(claims())
    header = json.loads(base64.urlsafe_b64decode(token.split(".")[0] + "=="))
    result = verify(token, jwt.jwks())
    assert header["alg"] == "RS256" and result["aud"] == CLIENT_ID


def test_it_rejects_another_key_using_the_simulators_kid(other_key) -> None:
    """A forger who copies the published kid still needs the private key."""
    from sfsim import jwt

    forged = sign(other_key, claims(), {"kid": jwt.KEY_ID, "alg": "RS256"})
    assert_refused(forged, jwt.jwks(), "signature is not valid")


def test_it_rejects_a_kid_that_is_not_a_string(key, jwks) -> None:
    with pytest.raises(InvalidIdToken):
        verify(sign(key, claims(), {"kid": 1, "alg": "RS256"}), jwks)
