"""What a campaign costs its audience, without rendering one message per contact.

A message's segment count depends only on a few numbers per piece of text: is it GSM-7, how
many characters, GSM-7 septets and UTF-16 units it takes, and whether it holds a two-septet
(extension) or two-unit (astral) character. PostgreSQL keeps those numbers for every name as
a *signature* (``sms_text_sig`` in the schema: ``gsm << 30 | chars << 20 | septets << 10 |
units``), so an audience of a million contacts collapses to a few hundred groups of contacts
whose messages cost the same. :func:`estimate` prices each group once.

The price of a group is an upper bound of :func:`sender.segments.count_segments` of the
rendered message, and exact unless an escape pair or a surrogate pair straddles a part
boundary (the handset then moves it whole to the next part): every part but the last holds at
least one unit less than the nominal 153 (GSM-7) or 67 (UCS-2), so dividing by that smaller
size can only over-count. Credits are reserved with this bound and charged with the exact
count, so a reservation is never short.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Final

from sender import links
from sender.segments import (
    GSM7_EXTENSION,
    GSM7_MULTI_PART,
    GSM7_SINGLE,
    UCS2_MULTI_PART,
    UCS2_SINGLE,
    Encoding,
    is_gsm7,
)
from sender.templates import Field, Template

__all__ = [
    "AudienceCost",
    "CostGroup",
    "MessageCost",
    "TextSig",
    "decode_signature",
    "encode_signature",
    "estimate",
    "message_cost",
    "sample_short_url",
    "text_signature",
]

_BMP_MAX: Final = "\uffff"
_TEN_BITS: Final = 0x3FF


@dataclass(frozen=True, slots=True)
class TextSig:
    """The SMS-relevant size of one piece of text.

    ``septets`` counts extension characters twice and is meaningful only when ``gsm``;
    ``units`` counts astral characters twice.
    """

    gsm: bool
    chars: int
    septets: int
    units: int

    @property
    def has_extension(self) -> bool:
        return self.septets > self.chars

    @property
    def has_astral(self) -> bool:
        return self.units > self.chars

    def __add__(self, other: TextSig) -> TextSig:
        return TextSig(
            gsm=self.gsm and other.gsm,
            chars=self.chars + other.chars,
            septets=self.septets + other.septets,
            units=self.units + other.units,
        )


_NOTHING: Final = TextSig(gsm=True, chars=0, septets=0, units=0)


def decode_signature(sig: int | None) -> TextSig | None:
    """The :class:`TextSig` of a database signature; ``None`` (an empty value) stays ``None``."""
    if sig is None:
        return None
    return TextSig(
        gsm=bool(sig >> 30 & 1),
        chars=sig >> 20 & _TEN_BITS,
        septets=sig >> 10 & _TEN_BITS,
        units=sig & _TEN_BITS,
    )


def text_signature(text: str) -> TextSig | None:
    """What ``sms_text_sig`` computes in PostgreSQL, without its 1023 cap; ``None`` for ''."""
    if not text:
        return None
    chars = len(text)
    return TextSig(
        gsm=is_gsm7(text),
        chars=chars,
        septets=chars + sum(text.count(c) for c in GSM7_EXTENSION),
        units=chars + sum(1 for c in text if c > _BMP_MAX),
    )


def encode_signature(sig: TextSig) -> int:
    """The database layout of ``sig`` (values above 1023 are capped, as in SQL)."""
    return (
        int(sig.gsm) << 30
        | min(sig.chars, _TEN_BITS) << 20
        | min(sig.septets, _TEN_BITS) << 10
        | min(sig.units, _TEN_BITS)
    )


@dataclass(frozen=True, slots=True)
class MessageCost:
    """Encoding, size (septets or UTF-16 units) and segment bound of one message."""

    encoding: Encoding
    units: int
    segments: int


def _segment_bound(sig: TextSig) -> MessageCost:
    if sig.gsm:
        encoding: Encoding = "GSM-7"
        units, single, multi, wide = sig.septets, GSM7_SINGLE, GSM7_MULTI_PART, sig.has_extension
    else:
        encoding = "UCS-2"
        units, single, multi, wide = sig.units, UCS2_SINGLE, UCS2_MULTI_PART, sig.has_astral
    if units == 0:
        segments = 0
    elif units <= single:
        segments = 1
    else:
        # A part can end one unit short when a two-unit character does not fit whole.
        segments = math.ceil(units / (multi - 1 if wide else multi))
    return MessageCost(encoding=encoding, units=units, segments=segments)


@dataclass(frozen=True, slots=True)
class _Plan:
    """A template reduced to its constant part and the fields that vary per contact."""

    constant: TextSig
    #: (field key, signature of the fallback) for every field slot, in order.
    slots: tuple[tuple[str, TextSig], ...]


def sample_short_url(public_url: str) -> str:
    """A short URL with the exact length and character classes of every real one."""
    return links.short_url(public_url, "0" * links.LINK_CODE_LENGTH, "r")


def _plan(template: Template, short_url: int | str) -> _Plan:
    if isinstance(short_url, str):
        link = text_signature(short_url) or _NOTHING
    else:
        # Only a length is known: a URL of plain GSM-7 letters (as worst_case_text assumes).
        link = TextSig(gsm=True, chars=short_url, septets=short_url, units=short_url)
    constant = _NOTHING
    slots: list[tuple[str, TextSig]] = []
    for part in template.parts:
        if isinstance(part, str):
            constant += text_signature(part) or _NOTHING
        elif isinstance(part, Field):
            slots.append((part.key, text_signature(part.fallback) or _NOTHING))
        else:
            constant += link
    return _Plan(constant=constant, slots=tuple(slots))


def _cost_with(plan: _Plan, values: Mapping[str, TextSig | None]) -> MessageCost:
    total = plan.constant
    for key, fallback in plan.slots:
        value = values.get(key)
        total += fallback if value is None else value
    return _segment_bound(total)


def message_cost(
    template: Template, values: Mapping[str, str | None], short_url: int | str
) -> MessageCost:
    """The bound for one message whose fields hold ``values`` (keys as ``Template.fields``).

    ``short_url`` is a real short URL (see :func:`sample_short_url`), or only its length for
    a URL of plain GSM-7 letters. Values longer than their field's limit are cut, as
    :meth:`Template.render` does.
    """
    sigs: dict[str, TextSig | None] = {}
    for part in template.parts:
        if isinstance(part, Field) and part.key not in sigs:
            value = values.get(part.key)
            sigs[part.key] = text_signature(value[: part.max_length]) if value else None
    return _cost_with(_plan(template, short_url), sigs)


@dataclass(frozen=True, slots=True)
class CostGroup:
    """``count`` contacts whose used fields have these database signatures.

    ``signatures`` maps field keys (``first_name``, ``custom.size``) to ``sms_text_sig``
    values; a missing key or ``None`` means the field is empty (the fallback is rendered).
    """

    count: int
    signatures: Mapping[str, int | None]


@dataclass(frozen=True, slots=True)
class AudienceCost:
    """Recipients and segment bounds of a campaign: per message min and max, and the total."""

    recipients: int
    encoding: Encoding
    min: int
    max: int
    total: int


def estimate(template: Template, groups: Iterable[CostGroup], short_url: int | str) -> AudienceCost:
    """Price every group once; the encoding is UCS-2 as soon as one recipient needs it.

    ``short_url`` as in :func:`message_cost`: pass ``sample_short_url(settings.public_url)``
    so that a public URL with an extension character (``~``) is priced exactly.
    """
    plan = _plan(template, short_url)
    recipients = total = 0
    low: int | None = None
    high = 0
    ucs2 = False
    for group in groups:
        if group.count <= 0:
            continue
        values = {key: decode_signature(sig) for key, sig in group.signatures.items()}
        cost = _cost_with(plan, values)
        recipients += group.count
        total += cost.segments * group.count
        low = cost.segments if low is None else min(low, cost.segments)
        high = max(high, cost.segments)
        ucs2 = ucs2 or cost.encoding == "UCS-2"
    return AudienceCost(
        recipients=recipients,
        encoding="UCS-2" if ucs2 else "GSM-7",
        min=low or 0,
        max=high,
        total=total,
    )
