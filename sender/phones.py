"""Phone numbers: normalization to E.164 and the form the provider expects.

Contacts arrive in every shape ("+30 691 234 5678", "0030-691-2345678", "6912345678" for a
Greek store, "306912345678" from a spreadsheet that ate the plus). :func:`normalize_phone` turns
them into E.164 with ``phonenumbers`` or says why not, with a reason string from a fixed set
that clients match on:

    "empty", "contains letters", "not a valid phone number", "unknown country code",
    "too short", "too long"

Landlines are accepted: a valid number is a valid number, and whether it can receive SMS is
the provider's answer to give.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Final

import phonenumbers
from phonenumbers import NumberParseException, PhoneNumber, PhoneNumberFormat, ValidationResult

__all__ = [
    "REASON_CONTAINS_LETTERS",
    "REASON_EMPTY",
    "REASON_INVALID",
    "REASON_TOO_LONG",
    "REASON_TOO_SHORT",
    "REASON_UNKNOWN_COUNTRY_CODE",
    "PhoneResult",
    "is_valid_region",
    "normalize_phone",
    "to_provider_msisdn",
]

REASON_EMPTY: Final = "empty"
REASON_CONTAINS_LETTERS: Final = "contains letters"
REASON_INVALID: Final = "not a valid phone number"
REASON_UNKNOWN_COUNTRY_CODE: Final = "unknown country code"
REASON_TOO_SHORT: Final = "too short"
REASON_TOO_LONG: Final = "too long"

# Below this many digits the input is no phone number anywhere; calling it "too short" would
# suggest that a digit or two were missing.
_MIN_DIGITS: Final = 5

# Separators people type or spreadsheets add; removed before parsing.
_SEPARATORS: Final = str.maketrans(dict.fromkeys("-.()\u2010\u2011\u2012\u2013\u2014\u2212"))

_PARSE_REASONS: Final[dict[int, str]] = {
    NumberParseException.INVALID_COUNTRY_CODE: REASON_UNKNOWN_COUNTRY_CODE,
    NumberParseException.NOT_A_NUMBER: REASON_INVALID,
    NumberParseException.TOO_SHORT_AFTER_IDD: REASON_TOO_SHORT,
    NumberParseException.TOO_SHORT_NSN: REASON_TOO_SHORT,
    NumberParseException.TOO_LONG: REASON_TOO_LONG,
}
_POSSIBLE_REASONS: Final[dict[int, str]] = {
    ValidationResult.INVALID_COUNTRY_CODE: REASON_UNKNOWN_COUNTRY_CODE,
    ValidationResult.TOO_SHORT: REASON_TOO_SHORT,
    ValidationResult.TOO_LONG: REASON_TOO_LONG,
}


@dataclass(frozen=True, slots=True)
class PhoneResult:
    """A normalized number (``e164``) or the reason it was rejected (``reason``)."""

    e164: str | None
    reason: str | None

    @property
    def ok(self) -> bool:
        return self.e164 is not None


def _rejected(reason: str) -> PhoneResult:
    return PhoneResult(e164=None, reason=reason)


def _valid_e164(country_code: int, national: str) -> PhoneResult | None:
    """The fast path for clean digits: build the number directly instead of parsing text.

    ``phonenumbers.parse`` costs about 27 us a number; a contact import validates hundreds of
    thousands. A national part that begins with 0 or with the region's trunk prefix (or that
    fails validation) returns None and takes the full parse, so results never differ: the
    shortcut only answers where the parser would read the same country code and digits.
    """
    if not national or national[0] == "0":
        return None
    region = phonenumbers.region_code_for_country_code(country_code)
    metadata = phonenumbers.PhoneMetadata.metadata_for_region_or_calling_code(country_code, region)
    if metadata is None:
        return None
    prefix = metadata.national_prefix_for_parsing or metadata.national_prefix
    if prefix and national.startswith(prefix):
        return None
    number = PhoneNumber(country_code=country_code, national_number=int(national))
    if not phonenumbers.is_valid_number(number):
        return None
    return PhoneResult(e164=f"+{country_code}{national}", reason=None)


def _fast_international(digits: str) -> PhoneResult | None:
    # Country codes are prefix-free (at most one of the first three prefixes is one) and
    # never start with 0.
    if digits[0] == "0":
        return None
    for length in (1, 2, 3):
        code = int(digits[:length])
        if code in phonenumbers.COUNTRY_CODE_TO_REGION_CODE:
            return _valid_e164(code, digits[length:])
    return None


def _parse(number: str, region: str | None) -> PhoneResult:
    try:
        parsed: PhoneNumber = phonenumbers.parse(number, region)
    except NumberParseException as exc:
        return _rejected(_PARSE_REASONS.get(exc.error_type, REASON_INVALID))
    if phonenumbers.is_valid_number(parsed):
        return PhoneResult(
            e164=phonenumbers.format_number(parsed, PhoneNumberFormat.E164), reason=None
        )
    possible = phonenumbers.is_possible_number_with_reason(parsed)
    return _rejected(_POSSIBLE_REASONS.get(possible, REASON_INVALID))


def normalize_phone(raw: str, default_region: str | None = None) -> PhoneResult:
    """``raw`` in E.164 (``+306912345678``), or the reason it is not a phone number.

    Whitespace, dashes, dots and parentheses are ignored; a leading ``00`` means ``+``.
    Without ``+``, the number is read in the national format of ``default_region`` (ISO 3166
    alpha-2) and, when that gives no valid number or there is no region, as international
    digits whose plus was lost. Raises ``ValueError`` for a region the library does not know.
    """
    region = default_region.upper() if default_region else None
    if region is not None and not is_valid_region(region):
        raise ValueError(f"unknown phone region: {default_region!r}")
    return _normalize(raw, region)


# The same numbers come back on every import and with every campaign; parsing is the
# expensive part, so results are kept (they are immutable).
@functools.lru_cache(maxsize=16384)
def _normalize(raw: str, region: str | None) -> PhoneResult:
    text = "".join(raw.split()).translate(_SEPARATORS)
    if not text:
        return _rejected(REASON_EMPTY)
    if any(c.isalpha() for c in text):
        return _rejected(REASON_CONTAINS_LETTERS)
    international = text.startswith("+")
    digits = text[1:] if international else text
    if not (digits.isascii() and digits.isdigit()):
        return _rejected(REASON_INVALID)
    if not international and digits.startswith("00"):
        international, digits = True, digits[2:]
    if len(digits) < _MIN_DIGITS:
        return _rejected(REASON_INVALID)
    if international or region is None:
        return _fast_international(digits) or _parse("+" + digits, None)
    fast = _valid_e164(phonenumbers.country_code_for_region(region), digits)
    if fast is not None:
        return fast
    national = _parse(digits, region)
    if national.ok:
        return national
    # Spreadsheets drop the leading plus: accept the digits as international when they make
    # a valid number that way, but report the national reading's problem otherwise.
    fallback = _parse("+" + digits, None)
    return fallback if fallback.ok else national


def to_provider_msisdn(e164: str) -> str:
    """The number as Mitto wants it: E.164 digits without the leading ``+``."""
    digits = e164[1:]
    if not (e164.startswith("+") and digits.isascii() and digits.isdigit()):
        raise ValueError(f"not an E.164 number: {e164!r}")
    return digits


def is_valid_region(code: str) -> bool:
    """True for an ISO 3166 alpha-2 region code (upper case) that ``phonenumbers`` knows."""
    return code in phonenumbers.SUPPORTED_REGIONS
