"""Codes for tracked links and unsubscribe links, and the short URLs that carry them.

A code names one recipient and one link of its campaign's message, and is signed so that
nobody can click or unsubscribe on behalf of another recipient by editing a URL. It has a fixed
length so that the worst-case length of a message (and thus its segment count) is known before
any code exists:

    7 chars   recipient id in base62, zero-padded (ids below 62**7, about 3.5e12)
    1 char    link index in base62; ``UNSUBSCRIBE_INDEX`` marks the unsubscribe link
    4 chars   base62 of a truncated HMAC-SHA256 over recipient id and link index

Only the alphabet ``0-9A-Za-z`` is used: URL-safe and all in the GSM-7 basic table.
"""

from __future__ import annotations

import hmac
import re
from typing import Final, Literal

__all__ = [
    "LINK_CODE_LENGTH",
    "MAX_RECIPIENT_ID",
    "UNSUBSCRIBE_INDEX",
    "decode_link_code",
    "encode_link_code",
    "short_url",
    "short_url_length",
]

_ALPHABET: Final = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
_VALUES: Final[dict[str, int]] = {c: i for i, c in enumerate(_ALPHABET)}
_BASE: Final = len(_ALPHABET)

_ID_CHARS: Final = 7
_MAC_CHARS: Final = 4
LINK_CODE_LENGTH: Final = _ID_CHARS + 1 + _MAC_CHARS
#: Recipient ids must be below this to fit the code.
MAX_RECIPIENT_ID: Final = _BASE**_ID_CHARS - 1
#: The link index reserved for the unsubscribe link; tracked links use 0 .. UNSUBSCRIBE_INDEX-1.
UNSUBSCRIBE_INDEX: Final = _BASE - 1

_MAC_MODULUS: Final = _BASE**_MAC_CHARS
_CODE_RE: Final = re.compile(rf"[0-9A-Za-z]{{{LINK_CODE_LENGTH}}}")


def _base62(value: int, width: int) -> str:
    digits = []
    for _ in range(width):
        value, digit = divmod(value, _BASE)
        digits.append(_ALPHABET[digit])
    return "".join(reversed(digits))


def _mac(recipient_id: int, link_index: int, secret: bytes) -> str:
    digest = hmac.digest(secret, f"{recipient_id}:{link_index}".encode(), "sha256")
    return _base62(int.from_bytes(digest[:8], "big") % _MAC_MODULUS, _MAC_CHARS)


def encode_link_code(recipient_id: int, link_index: int, secret: bytes) -> str:
    """The signed code of link ``link_index`` in the message of recipient ``recipient_id``.

    Raises ``ValueError`` when the id or index does not fit the code or the secret is empty.
    """
    if not 0 <= recipient_id <= MAX_RECIPIENT_ID:
        raise ValueError(f"recipient id out of range for a link code: {recipient_id}")
    if not 0 <= link_index <= UNSUBSCRIBE_INDEX:
        raise ValueError(f"link index out of range for a link code: {link_index}")
    if not secret:
        raise ValueError("the link secret must not be empty")
    return (
        _base62(recipient_id, _ID_CHARS)
        + _ALPHABET[link_index]
        + _mac(recipient_id, link_index, secret)
    )


def decode_link_code(code: str, secret: bytes) -> tuple[int, int] | None:
    """``(recipient_id, link_index)`` of a code made by :func:`encode_link_code`.

    ``None`` for anything malformed or not signed with ``secret``.
    """
    if not secret or _CODE_RE.fullmatch(code) is None:
        return None
    recipient_id = 0
    for char in code[:_ID_CHARS]:
        recipient_id = recipient_id * _BASE + _VALUES[char]
    link_index = _VALUES[code[_ID_CHARS]]
    expected = _mac(recipient_id, link_index, secret)
    if not hmac.compare_digest(expected, code[_ID_CHARS + 1 :]):
        return None
    return recipient_id, link_index


def short_url(base_url: str, code: str, kind: Literal["r", "u"]) -> str:
    """The public URL of a code: ``{base_url}/r/{code}`` (tracked link) or ``/u/`` (unsubscribe).

    A trailing slash on ``base_url`` is ignored (URL types often add one).
    """
    return f"{base_url.rstrip('/')}/{kind}/{code}"


def short_url_length(base_url: str) -> int:
    """Length of every :func:`short_url` under ``base_url``, whatever the code and kind."""
    return len(base_url.rstrip("/")) + len("/r/") + LINK_CODE_LENGTH
