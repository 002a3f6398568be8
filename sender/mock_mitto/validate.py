"""Field validation of the mock, answering Mitto's ``responseCode`` values.

Kept separate from the handlers so the rules read like the table in ``mitto-api.md``. The
regular expressions are compiled once: these checks run for every message of a benchmark.
"""

from __future__ import annotations

import re
from typing import Final

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

# GSM 03.38: the basic table (without ESC) and the extension table, whose characters take two
# septets.
_GSM_BASIC: Final = (
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
_GSM_EXTENSION: Final = "^{}\\[~]|€\f"
_NOT_GSM: Final = re.compile("[^" + re.escape(_GSM_BASIC + _GSM_EXTENSION) + "]")
_GSM_EXT_CHAR: Final = re.compile("[" + re.escape(_GSM_EXTENSION) + "]")
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
    """Segments of a GSM-7 text: 160 septets in one part, 153 per part when split."""
    septets = len(text) + len(_GSM_EXT_CHAR.findall(text))
    return 1 if septets <= 160 else -(-septets // 153)


def ucs2_segments(text: str) -> int:
    """Segments of a UCS-2 text: 70 units in one part, 67 per part; astral chars take two."""
    units = len(text.encode("utf-16-le")) // 2
    return 1 if units <= 70 else -(-units // 67)


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
        if _NOT_GSM.search(text) is not None:
            return TEXT_INVALID_FOR_ENCODING, encoding, 0
        return OK, encoding, gsm_segments(text)
    if encoding == "auto":
        if _NOT_GSM.search(text) is None:
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
