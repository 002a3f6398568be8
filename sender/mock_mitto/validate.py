"""Field validation of the mock, answering Mitto's ``responseCode`` values.

Kept separate from the handlers so the rules read like the table in ``mitto-api.md``. The
regular expressions are compiled once: these checks run for every message of a benchmark. The
GSM 03.38 tables and part sizes are :mod:`sender.segments`'s; the mock counts parts its own way
(units over the part size, see :func:`gsm_segments`).
"""

from __future__ import annotations

import re
from typing import Final

from sender.segments import (
    GSM7_EXTENSION,
    GSM7_MULTI_PART,
    GSM7_SINGLE,
    UCS2_MULTI_PART,
    UCS2_SINGLE,
    is_gsm7,
)

OK: Final = 0
INTERNAL_ERROR: Final = 1
INVALID_TYPE: Final = 2
EMPTY_MESSAGE: Final = 3
TEXT_INVALID_FOR_ENCODING: Final = 4
EMPTY_SENDER: Final = 5
INVALID_SENDER: Final = 6
EMPTY_RECEIVER: Final = 7
INVALID_RECEIVER: Final = 8
CHARSET_ERROR: Final = 9

RESPONSE_TEXTS: Final[dict[int, str]] = {
    OK: "SMS sent",
    INTERNAL_ERROR: "Internal error",
    INVALID_TYPE: "Invalid type",
    EMPTY_MESSAGE: "Empty message",
    TEXT_INVALID_FOR_ENCODING: "Text invalid for the encoding",
    EMPTY_SENDER: "Empty sender",
    INVALID_SENDER: "Invalid sender",
    EMPTY_RECEIVER: "Empty receiver",
    INVALID_RECEIVER: "Invalid receiver",
    CHARSET_ERROR: "Character set error",
}

# Characters of the GSM 03.38 extension table take two septets (escape + code).
_GSM_EXT_CHAR: Final = re.compile("[" + re.escape("".join(sorted(GSM7_EXTENSION))) + "]")
_NOT_HEX: Final = re.compile("[^0-9A-Fa-f]")

_NUMERIC_SENDER: Final = re.compile(r"\d{3,14}")
_ALPHA_SENDER: Final = re.compile(r"[A-Za-z0-9 ]{3,11}")
_RECEIVER: Final = re.compile(r"\d{6,15}")

#: Accepted spellings of ``type`` (some docs say ``Byte`` for ``Binary``).
_TYPES: Final[dict[str, str]] = {
    "gsm": "GSM",
    "unicode": "Unicode",
    "binary": "Binary",
    "byte": "Binary",
    "auto": "auto",
}


def gsm_segments(text: str) -> int:
    """Segments of a GSM-7 text: 160 septets in one part, 153 per part when split.

    Septets over the part size: unlike :func:`sender.segments.count_segments`, the mock does
    not move an escape sequence that straddles two parts to the next one.
    """
    septets = len(text) + len(_GSM_EXT_CHAR.findall(text))
    return _parts(septets, GSM7_SINGLE, GSM7_MULTI_PART)


def ucs2_segments(text: str) -> int:
    """Segments of a UCS-2 text: 70 units in one part, 67 per part; astral chars take two."""
    units = len(text.encode("utf-16-le")) // 2
    return _parts(units, UCS2_SINGLE, UCS2_MULTI_PART)


def _parts(units: int, single: int, multi: int) -> int:
    return 1 if units <= single else -(-units // multi)


def check_content(sender: str, text: str, type_: str | None) -> tuple[int, str, int]:
    """Validate the request-wide fields: ``(responseCode, encoding, segments)``."""
    if type_ is None:
        encoding = "GSM"
    else:
        found = _TYPES.get(type_.lower())
        if found is None:
            return INVALID_TYPE, "", 0
        encoding = found
    if not text:
        return EMPTY_MESSAGE, encoding, 0
    if not sender:
        return EMPTY_SENDER, encoding, 0
    if _NUMERIC_SENDER.fullmatch(sender) is None and _ALPHA_SENDER.fullmatch(sender) is None:
        return INVALID_SENDER, encoding, 0
    if encoding == "GSM":
        if not is_gsm7(text):
            return TEXT_INVALID_FOR_ENCODING, encoding, 0
        return OK, encoding, gsm_segments(text)
    if encoding == "auto":
        if is_gsm7(text):
            return OK, "GSM", gsm_segments(text)
        return OK, "Unicode", ucs2_segments(text)
    if encoding == "Unicode":
        return OK, encoding, ucs2_segments(text)
    # Binary: the text carries hex octets; 140 octets in one part, 134 per part.
    if len(text) % 2 or _NOT_HEX.search(text) is not None:
        return CHARSET_ERROR, encoding, 0
    octets = len(text) // 2
    return OK, encoding, 1 if octets <= 140 else -(-octets // 134)


def check_receiver(to: str, invalid_pattern: re.Pattern[str] | None) -> int:
    """Validate one ``to``: 0, or the responseCode for an empty or invalid receiver."""
    if not to:
        return EMPTY_RECEIVER
    if _RECEIVER.fullmatch(to) is None:
        return INVALID_RECEIVER
    if invalid_pattern is not None and invalid_pattern.search(to) is not None:
        return INVALID_RECEIVER
    return OK
