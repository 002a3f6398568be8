"""Query parameters of list endpoints: opaque cursors, page sizes, path ids.

A cursor is the base64url text of ``c1.<id>`` (the last id of the previous page). Clients must
treat it as opaque; the version prefix lets its content change without breaking old links.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Collection
from typing import Final

from aiohttp import web

from sender.errors import NotFound, ProblemError

DEFAULT_LIMIT: Final = 50
MAX_LIMIT: Final = 500
_MAX_ID: Final = 2**63 - 1
_CURSOR_TEXT: Final = re.compile(r"c1\.([0-9]{1,19})")


def encode_cursor(last_id: int) -> str:
    return base64.urlsafe_b64encode(f"c1.{last_id}".encode()).rstrip(b"=").decode()


def _invalid_cursor() -> ProblemError:
    return ProblemError(
        "the cursor is not one this API gave out; start again without it", code="invalid_cursor"
    )


def decode_cursor(cursor: str) -> int:
    """The id in ``cursor``; 400 ``invalid_cursor`` for anything this API did not make."""
    if not cursor or len(cursor) > 64:
        raise _invalid_cursor()
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        match = _CURSOR_TEXT.fullmatch(raw.decode("ascii"))
    except (binascii.Error, ValueError):
        raise _invalid_cursor() from None
    if match is None or int(match.group(1)) > _MAX_ID:
        raise _invalid_cursor()
    # Decoding is lenient about trailing bits; only the canonical spelling is accepted, so
    # every position has exactly one cursor.
    if encode_cursor(int(match.group(1))) != cursor:
        raise _invalid_cursor()
    return int(match.group(1))


def invalid_parameter(name: str, detail: str) -> ProblemError:
    return ProblemError(f"{name}: {detail}", code="invalid_parameter", parameter=name)


def page_limit(request: web.Request) -> int:
    raw = request.query.get("limit")
    if raw is None:
        return DEFAULT_LIMIT
    if not raw.isascii() or not raw.isdigit() or not 1 <= int(raw) <= MAX_LIMIT:
        raise invalid_parameter("limit", f"must be an integer from 1 to {MAX_LIMIT}")
    return int(raw)


def page_cursor(request: web.Request) -> int | None:
    raw = request.query.get("cursor")
    return None if raw is None else decode_cursor(raw)


def choice_param(request: web.Request, name: str, allowed: Collection[str]) -> str | None:
    raw = request.query.get(name)
    if raw is not None and raw not in allowed:
        raise invalid_parameter(name, f"must be one of {', '.join(allowed)}")
    return raw


def path_id(request: web.Request, name: str = "id") -> int:
    """A numeric id from the path; anything else (or one too large for the database) names no
    resource: 404, never a 500."""
    raw = request.match_info[name]
    if raw.isascii() and raw.isdigit() and 0 < int(raw) <= _MAX_ID:
        return int(raw)
    raise NotFound("no such resource")
