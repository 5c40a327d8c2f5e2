"""Salesforce record IDs, consumer keys, secrets and opaque tokens.

Salesforce IDs are 15 case-sensitive characters; the 18-character form adds a
3-character checksum so that case-insensitive systems can tell them apart
(reference §8).  Some public mocks emit invalid checksums, so everything here
*generates* valid ones and validates what it is given.
"""

from __future__ import annotations

import base64
import re
import secrets
import string

_CHECKSUM_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZ012345"
_ALNUM = string.ascii_letters + string.digits
# Characters an access token payload may hold: sfdx-core's regex for opaque
# access tokens is `(00D\w{12,15})![.\w]*`, so no '-' or '+' in there.
_TOKEN_CHARS = _ALNUM + "._"

ID15_RE = re.compile(r"^[a-zA-Z0-9]{15}$")
ID18_RE = re.compile(r"^[a-zA-Z0-9]{18}$")

PREFIX_ORG = "00D"
PREFIX_USER = "005"
PREFIX_PROFILE = "00e"
PREFIX_PERMISSION_SET = "0PS"
PREFIX_PERMISSION_SET_ASSIGNMENT = "0Pa"
PREFIX_USER_LICENSE = "100"


def checksum(id15: str) -> str:
    """Return the 3-character checksum suffix of a 15-character ID.

    Each 5-character chunk becomes a 5-bit number whose bit *j* is set when
    character *j* is an upper-case letter; that number indexes the alphabet.
    """
    if not ID15_RE.match(id15):
        raise ValueError("a Salesforce ID has 15 alphanumeric characters")
    return "".join(
        _CHECKSUM_ALPHABET[
            sum(
                1 << j for j, c in enumerate(id15[k * 5 : k * 5 + 5]) if "A" <= c <= "Z"
            )
        ]
        for k in range(3)
    )


def to18(sf_id: str) -> str:
    """Normalise a 15- or 18-character ID to its 18-character form.

    An 18-character ID must carry the correct checksum (compared
    case-insensitively, as Salesforce does), otherwise ValueError.
    """
    if ID15_RE.match(sf_id):
        return sf_id + checksum(sf_id)
    if ID18_RE.match(sf_id):
        base = sf_id[:15]
        if checksum(base) != sf_id[15:].upper():
            raise ValueError("bad checksum in 18-character Salesforce ID")
        return base + checksum(base)
    raise ValueError("a Salesforce ID has 15 or 18 alphanumeric characters")


def to15(sf_id: str) -> str:
    """The case-sensitive 15-character core of an ID (sfdx-core `trimTo15`)."""
    return sf_id[:15]


def same_id(a: str, b: str) -> bool:
    """Compare two IDs the way Salesforce does: on their first 15 characters."""
    return bool(a) and bool(b) and to15(a) == to15(b)


def is_valid_id(sf_id: str, prefix: str | None = None) -> bool:
    """True if `sf_id` is a well-formed 15/18 ID (with the given key prefix)."""
    try:
        to18(sf_id)
    except ValueError:
        return False
    return prefix is None or sf_id.startswith(prefix)


def new_id(prefix: str) -> str:
    """A fresh, random, checksum-valid 18-character ID with `prefix`.

    Shaped like real ones: key prefix, a 2-character pod/instance part, a run
    of zeros, then the record number.
    """
    pod = secrets.choice(string.digits) + secrets.choice(string.ascii_lowercase)
    tail = "".join(secrets.choice(_ALNUM) for _ in range(5))
    id15 = f"{prefix}{pod}00000{tail}"
    return id15 + checksum(id15)


def new_consumer_key() -> str:
    """A consumer key that looks like a real one: `3MVG9` + 80 characters."""
    return "3MVG9" + "".join(secrets.choice(_TOKEN_CHARS) for _ in range(80))


def new_consumer_secret() -> str:
    """A 64-character upper-case hex consumer secret, like Salesforce issues."""
    return secrets.token_hex(32).upper()


def new_access_token(org_id: str) -> str:
    """An opaque access token: 15-char org ID, `!`, then a random payload."""
    payload = "".join(secrets.choice(_TOKEN_CHARS) for _ in range(96))
    return f"{to15(org_id)}!AQ0AQ{payload}"


def new_refresh_token() -> str:
    """An opaque refresh token shaped like the real `5Aep861...` ones."""
    return "5Aep861" + "".join(secrets.choice(_TOKEN_CHARS) for _ in range(80))


def new_auth_code() -> str:
    """An authorization code; base64 text ending in `==` like real codes.

    Real codes are URL-encoded on the callback and often end in `%3D%3D`; the
    padding (and any '+' or '/') makes clients prove they decode exactly once.
    """
    # 64 random bytes -> 88 base64 chars ending with '=='.
    return "aPrx" + base64.b64encode(secrets.token_bytes(64)).decode("ascii")


def new_opaque(nbytes: int = 24) -> str:
    """A URL-safe random string for internal handles (login tickets)."""
    return secrets.token_urlsafe(nbytes)
