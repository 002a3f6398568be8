"""Phone number normalization to E.164."""

from __future__ import annotations

import pytest

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
