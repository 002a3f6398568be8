"""Phone number normalization to E.164."""

from __future__ import annotations

import phonenumbers
import pytest
from hypothesis import given
from hypothesis import strategies as st

from sender import phones
from sender.phones import (
    PhoneResult,
    is_valid_region,
    normalize_phone,
    to_provider_msisdn,
)


def accepted(e164: str) -> PhoneResult:
    return PhoneResult(e164=e164, reason=None)


def rejected(reason: str) -> PhoneResult:
    return PhoneResult(e164=None, reason=reason)


@pytest.mark.parametrize(
    ("raw", "region", "e164"),
    [
        ("6912345678", "GR", "+306912345678"),  # Greek mobile, national format
        ("691 234 5678", "GR", "+306912345678"),
        ("+30 691-234-5678", None, "+306912345678"),
        ("+30 (691) 234.5678", "US", "+306912345678"),
        ("0030 691 234 5678", None, "+306912345678"),
        ("0030-6912345678", "GR", "+306912345678"),
        ("306912345678", None, "+306912345678"),  # international digits without the plus
        ("306912345678", "GR", "+306912345678"),
        ("306912345678", "US", "+306912345678"),  # not a US number: read as international
        ("210 234 5678", "GR", "+302102345678"),  # Athens landline
        ("(201) 555-0123", "US", "+12015550123"),
        ("+44 7911 123456", "GR", "+447911123456"),  # valid in another region than the default
        ("07911 123456", "GB", "+447911123456"),
        ("\t+306912345678\n", None, "+306912345678"),
        ("6912345678", "gr", "+306912345678"),
    ],
)
def test_accepted_numbers(raw: str, region: str | None, e164: str) -> None:
    result = normalize_phone(raw, region)
    assert result == accepted(e164)
    assert result.ok


@pytest.mark.parametrize(
    ("raw", "region", "reason"),
    [
        ("", None, "empty"),
        ("  - ", "GR", "empty"),
        ("12", "GR", "not a valid phone number"),
        ("12", None, "not a valid phone number"),
        ("+1", None, "not a valid phone number"),
        ("0030", None, "not a valid phone number"),
        ("69123456ab", "GR", "contains letters"),
        ("call me", None, "contains letters"),
        ("+30 691 234 5678 ext. 12", None, "contains letters"),
        ("+999 123 4567", None, "unknown country code"),
        ("+30 691 234", None, "too short"),
        ("+30 691 234 5678 9012 345", None, "too long"),
        ("+30 691 234 5678 9012 3456 7890", None, "too long"),
        ("69123456789012", "GR", "too long"),
        ("++306912345678", None, "not a valid phone number"),
        ("69123+45678", "GR", "not a valid phone number"),
        ("+30 6912#45678", None, "not a valid phone number"),
        ("07911 123456", "GR", "not a valid phone number"),  # UK national format, Greek store
        ("+30 69123456789", None, "not a valid phone number"),
    ],
)
def test_rejected_numbers(raw: str, region: str | None, reason: str) -> None:
    result = normalize_phone(raw, region)
    assert result == rejected(reason)
    assert not result.ok


def test_reasons_are_the_documented_set() -> None:
    from sender import phones

    assert {
        phones.REASON_EMPTY,
        phones.REASON_CONTAINS_LETTERS,
        phones.REASON_INVALID,
        phones.REASON_UNKNOWN_COUNTRY_CODE,
        phones.REASON_TOO_SHORT,
        phones.REASON_TOO_LONG,
    } == {
        "empty",
        "contains letters",
        "not a valid phone number",
        "unknown country code",
        "too short",
        "too long",
    }


def test_unknown_default_region_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="unknown phone region"):
        normalize_phone("6912345678", "XX")


def test_provider_msisdn_drops_the_plus() -> None:
    assert to_provider_msisdn("+306912345678") == "306912345678"


@pytest.mark.parametrize("bad", ["306912345678", "+30 691", "", "+", "+３０６９"])
def test_provider_msisdn_rejects_non_e164(bad: str) -> None:
    with pytest.raises(ValueError, match=r"not an E\.164 number"):
        to_provider_msisdn(bad)


def test_valid_regions() -> None:
    assert is_valid_region("GR")
    assert is_valid_region("US")
    assert not is_valid_region("gr")
    assert not is_valid_region("XX")
    assert not is_valid_region("")


# The fast path (numbers built from clean digits) must agree with the full parser everywhere.


def _parser_only(raw: str, region: str | None) -> phones.PhoneResult:
    """normalize_phone's documented reading, with every number going through the parser."""
    digits = raw.lstrip("+")
    international = raw.startswith("+")
    if not international and digits.startswith("00"):
        international, digits = True, digits[2:]
    if len(digits) < 5:
        return phones.PhoneResult(e164=None, reason=phones.REASON_INVALID)
    if international or region is None:
        return phones._parse("+" + digits, None)
    national = phones._parse(digits, region)
    if national.ok:
        return national
    fallback = phones._parse("+" + digits, None)
    return fallback if fallback.ok else national


_REGIONS = sorted(phonenumbers.SUPPORTED_REGIONS)


@given(
    region=st.sampled_from(_REGIONS),
    kind=st.sampled_from(
        [phonenumbers.PhoneNumberType.MOBILE, phonenumbers.PhoneNumberType.FIXED_LINE]
    ),
    tail=st.integers(min_value=0, max_value=999),
    form=st.sampled_from(
        ["e164", "national_digits", "international_digits", "trunk_zero", "idd_00"]
    ),
)
def test_fast_path_agrees_with_the_parser_on_real_numbers(
    region: str, kind: int, tail: int, form: str
) -> None:
    example = phonenumbers.example_number_for_type(region, kind)
    if example is None:
        return
    national = str(example.national_number)
    national = national[: -len(str(tail))] + str(tail) if len(national) > 3 else national
    code = str(example.country_code)
    raw = {
        "e164": f"+{code}{national}",
        "national_digits": national,
        "international_digits": f"{code}{national}",
        "trunk_zero": f"0{national}",
        "idd_00": f"00{code}{national}",
    }[form]
    if len(raw.lstrip("+")) < 5:
        return  # rejected before either path runs
    phones._normalize.cache_clear()
    assert phones.normalize_phone(raw, region) == _parser_only(raw, region)


@given(
    digits=st.text(alphabet="0123456789", min_size=5, max_size=16),
    plus=st.booleans(),
    region=st.sampled_from([*_REGIONS[:40], None]),
)
def test_fast_path_agrees_with_the_parser_on_any_digits(
    digits: str, plus: bool, region: str | None
) -> None:
    raw = ("+" if plus else "") + digits
    phones._normalize.cache_clear()
    assert phones.normalize_phone(raw, region) == _parser_only(raw, region)
