"""Signed codes for tracked and unsubscribe links."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sender.links import (
    LINK_CODE_LENGTH,
    MAX_RECIPIENT_ID,
    UNSUBSCRIBE_INDEX,
    decode_link_code,
    encode_link_code,
    short_url,
    short_url_length,
)
from sender.segments import GSM7_BASIC

SECRET = b"link-secret-for-tests"
IDS = st.integers(min_value=0, max_value=MAX_RECIPIENT_ID)
INDEXES = st.integers(min_value=0, max_value=UNSUBSCRIBE_INDEX)


def test_constants() -> None:
    assert LINK_CODE_LENGTH == 12
    assert UNSUBSCRIBE_INDEX == 61
    assert MAX_RECIPIENT_ID == 62**7 - 1


@given(IDS, INDEXES)
def test_roundtrip(recipient_id: int, link_index: int) -> None:
    code = encode_link_code(recipient_id, link_index, SECRET)
    assert decode_link_code(code, SECRET) == (recipient_id, link_index)


@given(IDS, INDEXES)
def test_fixed_length_url_safe_gsm_alphabet(recipient_id: int, link_index: int) -> None:
    code = encode_link_code(recipient_id, link_index, SECRET)
    assert len(code) == LINK_CODE_LENGTH
    assert code.isascii()
    assert code.isalnum()
    assert set(code) <= GSM7_BASIC


def test_codes_are_deterministic_and_distinct() -> None:
    assert encode_link_code(42, 0, SECRET) == encode_link_code(42, 0, SECRET)
    codes = {encode_link_code(i, j, SECRET) for i in range(50) for j in range(3)}
    assert len(codes) == 150


def test_unsubscribe_index_roundtrips() -> None:
    code = encode_link_code(7, UNSUBSCRIBE_INDEX, SECRET)
    assert decode_link_code(code, SECRET) == (7, UNSUBSCRIBE_INDEX)


def test_other_secret_rejected() -> None:
    code = encode_link_code(123456, 2, SECRET)
    assert decode_link_code(code, b"another-secret") is None


@given(IDS, INDEXES, st.integers(min_value=0, max_value=LINK_CODE_LENGTH - 1), st.data())
def test_edited_code_rejected(
    recipient_id: int, link_index: int, position: int, data: st.DataObject
) -> None:
    code = encode_link_code(recipient_id, link_index, SECRET)
    alphabet = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
    replacement = data.draw(st.sampled_from(alphabet.replace(code[position], "")))
    forged = code[:position] + replacement + code[position + 1 :]
    decoded = decode_link_code(forged, SECRET)
    # A 4-character MAC can collide by chance (1 in 62**4); a collision must still decode to
    # another, consistently signed recipient and link, never to garbage.
    assert decoded is None or encode_link_code(*decoded, SECRET) == forged


def test_forged_code_for_another_recipient_rejected() -> None:
    genuine = encode_link_code(1000, 0, SECRET)
    other = encode_link_code(1001, 0, SECRET)
    assert decode_link_code(other[:8] + genuine[8:], SECRET) is None


@pytest.mark.parametrize(
    "code",
    [
        "",
        "0000001",
        "00000010ABCDE",
        "00000010ABC",
        "0000001-ABCD",
        "0000001 ABCD",
        "00000010ABC\n",
        "０000010ABCD",
    ],
)
def test_malformed_codes_rejected(code: str) -> None:
    assert decode_link_code(code, SECRET) is None


def test_wrong_length_rejected() -> None:
    code = encode_link_code(99, 1, SECRET)
    assert decode_link_code(code[:-1], SECRET) is None
    assert decode_link_code(code + "0", SECRET) is None
    assert decode_link_code("0" + code, SECRET) is None


@pytest.mark.parametrize(
    ("recipient_id", "link_index"),
    [(-1, 0), (MAX_RECIPIENT_ID + 1, 0), (1, -1), (1, UNSUBSCRIBE_INDEX + 1)],
)
def test_out_of_range_rejected(recipient_id: int, link_index: int) -> None:
    with pytest.raises(ValueError, match="out of range"):
        encode_link_code(recipient_id, link_index, SECRET)


def test_empty_secret_refused() -> None:
    with pytest.raises(ValueError, match="secret"):
        encode_link_code(1, 0, b"")
    code = encode_link_code(1, 0, SECRET)
    assert decode_link_code(code, b"") is None


def test_short_urls() -> None:
    code = encode_link_code(5, 0, SECRET)
    assert short_url("https://s.example", code, "r") == f"https://s.example/r/{code}"
    assert short_url("https://s.example/", code, "u") == f"https://s.example/u/{code}"
    for base in ("https://s.example", "https://s.example/", "http://127.0.0.1:8080/t"):
        assert short_url_length(base) == len(short_url(base, code, "r"))
        assert short_url_length(base) == len(short_url(base, code, "u"))
