"""Salesforce ID checksums and credential shapes (reference §8, §3)."""

from __future__ import annotations

import re

import pytest

from sfsim import ids

# Reference §8 test vectors; the first two match real tokens.
VECTORS = [
    ("00D36000000arML", "00D36000000arMLEAY"),
    ("00536000000IigR", "00536000000IigRAAS"),
    ("00Dx0000000BV7z", "00Dx0000000BV7zEAG"),
    ("005x00000012Q9P", "005x00000012Q9PAAU"),
    ("a0D30000001n7Pi", "a0D30000001n7PiEAI"),  # not the gist's wrong "EAC"
]


@pytest.mark.parametrize(("id15", "id18"), VECTORS)
def test_checksum_vectors(id15: str, id18: str) -> None:
    assert ids.to18(id15) == id18
    assert ids.to18(id18) == id18


def test_checksum_is_case_insensitive_but_must_be_right() -> None:
    assert ids.to18("00D36000000arMLeay") == "00D36000000arMLEAY"
    with pytest.raises(ValueError):
        ids.to18("00D36000000arMLEAC")
    with pytest.raises(ValueError):
        ids.to18("00D36000000arM")


def test_ids_compare_on_first_15_characters() -> None:
    assert ids.same_id("00D36000000arML", "00D36000000arMLEAY")
    assert not ids.same_id("00D36000000arml", "00D36000000arMLEAY")


@pytest.mark.parametrize("prefix", ["00D", "005", "0PS", "0Pa", "00e"])
def test_generated_ids_have_prefix_and_valid_checksum(prefix: str) -> None:
    for _ in range(50):
        value = ids.new_id(prefix)
        assert len(value) == 18 and value.startswith(prefix)
        assert ids.to18(value[:15]) == value


def test_credentials_look_like_real_ones() -> None:
    key = ids.new_consumer_key()
    assert key.startswith("3MVG9") and len(key) == 85
    assert re.fullmatch(r"[0-9A-F]{64}", ids.new_consumer_secret())
    access = ids.new_access_token("00D36000000arMLEAY")
    # sfdx-core's opaque access token regex.
    assert re.fullmatch(r"(00D\w{12,15})![.\w]*", access)
    assert access.startswith("00D36000000arML!")
    assert ids.new_refresh_token().startswith("5Aep861")
    assert ids.new_auth_code().endswith("==")
