"""How many SMS segments a text costs, and how a phone receives it (GSM 03.38 / 3GPP 23.038).

One credit is one segment, so this count decides what a campaign reserves and charges. GSM-7
holds 160 septets in a single message and 153 per part once split (the user data header takes
the rest); characters of the extension table take two septets (escape + code). A text with any
character outside the basic and extension tables is sent as UCS-2: 70 UTF-16 units single, 67
per part, with characters outside the BMP (most emoji) taking two units.

Handsets never split an escape sequence or a surrogate pair across parts: such a character
moves whole to the next part, which then holds one unit less. :func:`count_segments` and
:func:`split_segments` share one packing routine so that they always agree.

:func:`to_gsm_lookalikes` is the "smart encoding": it replaces look-alike characters (curly
quotes, dashes, accented letters GSM lacks, Greek capitals that look Latin) by GSM-7 ones so a
stray character does not switch a whole campaign to UCS-2 and double its cost.

Everything here runs for every message on the send path: tables are built once at import and
the common cases avoid per-character Python loops.
"""

from __future__ import annotations

import math
import re
from collections.abc import Collection
from dataclasses import dataclass
from typing import Final, Literal

__all__ = [
    "GSM7_BASIC",
    "GSM7_EXTENSION",
    "GSM7_MULTI_PART",
    "GSM7_SINGLE",
    "UCS2_MULTI_PART",
    "UCS2_SINGLE",
    "Encoding",
    "SegmentInfo",
    "count_segments",
    "is_gsm7",
    "split_segments",
    "to_gsm_lookalikes",
]

Encoding = Literal["GSM-7", "UCS-2"]

GSM7_SINGLE: Final = 160
GSM7_MULTI_PART: Final = 153
UCS2_SINGLE: Final = 70
UCS2_MULTI_PART: Final = 67

# The 128 positions of the default alphabet in code order; position 0x1B is the escape to the
# extension table, not a character, so it is left out.
_BASIC_TABLE: Final = (
    "@£$¥èéùìòÇ\nØø\rÅå"
    "Δ_ΦΓΛΩΠΨΣΘΞ"
    "ÆæßÉ"
    " !\"#¤%&'()*+,-./"
    "0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNO"
    "PQRSTUVWXYZÄÖÑÜ§"
    "¿abcdefghijklmno"
    "pqrstuvwxyzäöñüà"
)

#: Characters of the GSM 03.38 default alphabet: one septet each.
GSM7_BASIC: Final[frozenset[str]] = frozenset(_BASIC_TABLE)
#: Characters of the GSM 03.38 extension table: two septets each (escape + code).
GSM7_EXTENSION: Final[frozenset[str]] = frozenset("\f^{}\\[~]|€")
_GSM7_ALL: Final = GSM7_BASIC | GSM7_EXTENSION
# A negated character class scans a string in C several times faster than building a set of
# its characters, and nearly every message is plain GSM-7.
_NOT_BASIC: Final = re.compile("[^" + "".join(map(re.escape, sorted(GSM7_BASIC))) + "]")
_NOT_GSM7: Final = re.compile("[^" + "".join(map(re.escape, sorted(_GSM7_ALL))) + "]")

_BMP_MAX: Final = "\uffff"


@dataclass(frozen=True, slots=True)
class SegmentInfo:
    """The encoding and size of one message text.

    ``units`` are septets for GSM-7 and UTF-16 code units for UCS-2. An empty text has 0
    segments: there is nothing to send, and reporting 1 would make an empty message look
    billable.
    """

    encoding: Encoding
    characters: int
    units: int
    segments: int


_EMPTY: Final = SegmentInfo(encoding="GSM-7", characters=0, units=0, segments=0)


def _count(text: str, wide: Collection[str]) -> int:
    return sum(text.count(c) for c in wide)


def _classify(text: str) -> tuple[Encoding, int, tuple[str, ...]]:
    """Encoding, size in units and the distinct two-unit characters present in ``text``."""
    if _NOT_BASIC.search(text) is None:
        return "GSM-7", len(text), ()
    chars = set(text)
    if chars <= _GSM7_ALL:
        wide = tuple(chars & GSM7_EXTENSION)
        return "GSM-7", len(text) + _count(text, wide), wide
    # Astral characters are rare and few distinct ones appear in one text, so counting them
    # per distinct character beats walking the string.
    wide = tuple(c for c in chars if c > _BMP_MAX)
    return "UCS-2", len(text) + _count(text, wide), wide


def _part_ends(text: str, wide: tuple[str, ...], limit: int) -> list[int]:
    """End offsets of the parts when ``text`` is packed greedily into ``limit`` units per part.

    A character in ``wide`` takes two units and is never split. Greedy packing is what a
    handset does and also gives the fewest parts for an ordered split.
    """
    n = len(text)
    ends: list[int] = []
    start = 0
    while start < n:
        chunk = text[start : start + limit]
        extra = _count(chunk, wide)
        if len(chunk) + extra <= limit:
            start += len(chunk)
            ends.append(start)
            continue
        # The first (limit - extra) characters always fit: they cannot hold more wide ones
        # than the whole chunk. Only the few characters after them need a look each.
        taken = limit - extra
        used = taken + _count(chunk[:taken], wide)
        while True:
            cost = 2 if chunk[taken] in wide else 1
            if used + cost > limit:
                break
            used += cost
            taken += 1
        start += taken
        ends.append(start)
    return ends


def _limits(encoding: Encoding) -> tuple[int, int]:
    if encoding == "GSM-7":
        return GSM7_SINGLE, GSM7_MULTI_PART
    return UCS2_SINGLE, UCS2_MULTI_PART


def count_segments(text: str) -> SegmentInfo:
    """Encoding, length and exact segment count of ``text`` as it would be sent.

    ``characters`` counts Python code points. An empty text has 0 segments.
    """
    if not text:
        return _EMPTY
    encoding, units, wide = _classify(text)
    single, multi = _limits(encoding)
    if units <= single:
        segments = 1
    elif not wide:
        segments = math.ceil(units / multi)
    else:
        segments = len(_part_ends(text, wide, multi))
    return SegmentInfo(encoding=encoding, characters=len(text), units=units, segments=segments)


def split_segments(text: str) -> list[str]:
    """The parts a phone receives for ``text``, in order; ``[]`` for an empty text.

    ``len(split_segments(t)) == count_segments(t).segments`` for every ``t``, and the parts
    joined give back ``t``.
    """
    if not text:
        return []
    encoding, units, wide = _classify(text)
    single, multi = _limits(encoding)
    if units <= single:
        return [text]
    parts: list[str] = []
    start = 0
    for end in _part_ends(text, wide, multi):
        parts.append(text[start:end])
        start = end
    return parts


def is_gsm7(text: str) -> bool:
    """True when every character of ``text`` is in the GSM-7 basic or extension table."""
    return _NOT_GSM7.search(text) is None


# Look-alike replacements. Only characters that read the same (or as their unaccented letter)
# are listed; the GSM tables already hold é è ù ì ò Ç Ø ø Å å Ä Ö Ñ Ü ä ö ñ ü à É ß Æ æ and
# the Greek capitals Δ Φ Γ Λ Ω Π Ψ Σ Θ Ξ, which are kept as they are.
_LOOKALIKES: Final[dict[str, str]] = {
    # Quotes and apostrophes.
    "\u2018": "'",  # left single quotation mark
    "\u2019": "'",  # right single quotation mark
    "\u201a": "'",  # single low-9 quotation mark
    "\u201b": "'",  # single high-reversed-9 quotation mark
    "\u2032": "'",  # prime
    "\u02bc": "'",  # modifier letter apostrophe
    "\u00b4": "'",  # acute accent
    "`": "'",  # grave accent: ASCII, but not in the GSM table
    "\u201c": '"',  # left double quotation mark
    "\u201d": '"',  # right double quotation mark
    "\u201e": '"',  # double low-9 quotation mark
    "\u201f": '"',  # double high-reversed-9 quotation mark
    "\u2033": '"',  # double prime
    "\u00ab": '"',  # left-pointing double angle quotation mark
    "\u00bb": '"',  # right-pointing double angle quotation mark
    # Dashes and hyphens.
    "\u2010": "-",  # hyphen
    "\u2011": "-",  # non-breaking hyphen
    "\u2012": "-",  # figure dash
    "\u2013": "-",  # en dash
    "\u2014": "-",  # em dash
    "\u2015": "-",  # horizontal bar
    "\u2212": "-",  # minus sign
    "\u2026": "...",  # horizontal ellipsis
    # Spaces.
    "\t": " ",
    "\u00a0": " ",  # no-break space
    "\u2002": " ",  # en space
    "\u2003": " ",  # em space
    "\u2007": " ",  # figure space
    "\u2009": " ",  # thin space
    "\u202f": " ",  # narrow no-break space
    # Invisible characters that only force UCS-2.
    "\u00ad": "",  # soft hyphen
    "\u200b": "",  # zero width space
    "\u2060": "",  # word joiner
    "\ufeff": "",  # zero width no-break space (BOM)
    # Latin letters with accents GSM lacks.
    "á": "a",
    "â": "a",
    "ã": "a",
    "ā": "a",
    "ç": "c",
    "ê": "e",
    "ë": "e",
    "ē": "e",
    "í": "i",
    "î": "i",
    "ï": "i",
    "ī": "i",
    "ó": "o",
    "ô": "o",
    "õ": "o",
    "ō": "o",
    "ú": "u",
    "û": "u",
    "ū": "u",
    "ý": "y",
    "ÿ": "y",
    "Á": "A",
    "À": "A",
    "Â": "A",
    "Ã": "A",
    "Ā": "A",
    "È": "E",
    "Ê": "E",
    "Ë": "E",
    "Ē": "E",
    "Í": "I",
    "Ì": "I",
    "Î": "I",
    "Ï": "I",
    "Ī": "I",
    "Ó": "O",
    "Ò": "O",
    "Ô": "O",
    "Õ": "O",
    "Ō": "O",
    "Ú": "U",
    "Ù": "U",
    "Û": "U",
    "Ū": "U",
    "Ý": "Y",
    # Greek capitals that look like Latin ones (the others are in the GSM table), so text in
    # Greek capitals stays GSM-7.
    "Α": "A",
    "Β": "B",
    "Ε": "E",
    "Ζ": "Z",
    "Η": "H",
    "Ι": "I",
    "Κ": "K",
    "Μ": "M",
    "Ν": "N",
    "Ο": "O",
    "Ρ": "P",
    "Τ": "T",
    "Υ": "Y",
    "Χ": "X",
    # Greek capitals with tonos or dialytika: the accent is dropped, as Greek capitals are
    # customarily written without it.
    "Ά": "A",
    "Έ": "E",
    "Ή": "H",
    "Ί": "I",
    "Ό": "O",
    "Ύ": "Y",
    "Ώ": "Ω",
    "Ϊ": "I",
    "Ϋ": "Y",
}
_LOOKALIKE_TABLE: Final = str.maketrans(_LOOKALIKES)
_LOOKALIKE_ASCII: Final = frozenset(c for c in _LOOKALIKES if c.isascii())


def to_gsm_lookalikes(text: str) -> str:
    """``text`` with look-alike characters replaced by GSM-7 ones; all others are kept.

    The result is GSM-7 only if every other character already was; check with
    :func:`is_gsm7` or :func:`count_segments`.
    """
    if text.isascii() and _LOOKALIKE_ASCII.isdisjoint(text):
        return text
    return text.translate(_LOOKALIKE_TABLE)
