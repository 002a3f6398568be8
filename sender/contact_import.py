"""Contact import: incremental CSV and NDJSON readers and per-row validation.

An upload can be tens of megabytes, so it is never held whole: the API feeds the body to a
reader chunk by chunk, the reader returns the rows completed so far, and
:func:`validate_rows` turns a batch of them into rows ready for the database plus rejects that
name the line and the reason. Both steps are pure, so they are tested without a server.

CSV: a header row names the columns (case and surrounding spaces ignored). ``phone`` is
required; ``first_name``, ``last_name`` and ``tags`` (separated by ``;``) are optional; any
other column whose name matches ``[a-z_][a-z0-9_]{0,31}`` is a custom field, and the rest are
ignored (and reported). Comma is the delimiter unless the header has none and has semicolons
or tabs (spreadsheets in many locales write those). Line numbers are physical lines of the
file, the header being line 1; a quoted value may span lines.

NDJSON: one object per line with ``phone``, ``first_name``, ``last_name``, ``tags`` (a list, or
a string separated by ``;``) and ``custom`` (an object); line numbers are physical lines.

An empty cell or a missing key means "not given": an import never erases what a contact
already has (names and custom values are overwritten only by non-empty ones, tags are added).
"""

from __future__ import annotations

import codecs
import csv
import io
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Final, NamedTuple

import orjson

from sender.errors import ValidationProblem
from sender.phones import REASON_EMPTY, REASON_INVALID, normalize_phone
from sender.templates import CUSTOM_NAME_PATTERN, MAX_CUSTOM_VALUE_LENGTH, MAX_NAME_LENGTH

__all__ = [
    "MAX_RECORD_CHARS",
    "MAX_REJECTS_REPORTED",
    "MAX_TAGS",
    "MAX_TAG_LENGTH",
    "CsvReader",
    "NdjsonReader",
    "RawRow",
    "Reject",
    "RejectLog",
    "StagedContact",
    "clean_tags",
    "validate_custom_name",
    "validate_rows",
]

#: Rejects listed in a response; the count covers all of them.
MAX_REJECTS_REPORTED: Final = 100
MAX_TAG_LENGTH: Final = 64
MAX_TAGS: Final = 100
#: A longer CSV record or NDJSON line is a broken file (an unclosed quote), not a contact.
MAX_RECORD_CHARS: Final = 100_000
_VALUE_SHOWN: Final = 100

_CUSTOM_NAME: Final = re.compile(CUSTOM_NAME_PATTERN)
_KNOWN_COLUMNS: Final = ("phone", "first_name", "last_name", "tags")
_NDJSON_KEYS: Final = frozenset({*_KNOWN_COLUMNS, "custom"})


class RawRow(NamedTuple):
    """One row as read, before validation; values keep their JSON types for NDJSON."""

    line: int
    phone: Any
    first_name: Any
    last_name: Any
    tags: Any
    custom: Any


class StagedContact(NamedTuple):
    """A valid row, in the column order of the staging table (``custom`` as JSON text)."""

    line: int
    phone: str
    first_name: str | None
    last_name: str | None
    tags: list[str]
    custom: str


class Reject(NamedTuple):
    line: int
    value: str
    reason: str


@dataclass(slots=True)
class RejectLog:
    """Counts every reject and keeps the first :data:`MAX_REJECTS_REPORTED` by line."""

    count: int = 0
    first: list[Reject] = field(default_factory=list)

    def add(self, rejects: Iterable[Reject]) -> None:
        for reject in rejects:
            self.count += 1
            if len(self.first) < MAX_REJECTS_REPORTED:
                self.first.append(reject)
            elif reject.line < self.first[-1].line:
                # Readers and validators report in line order separately; merging the two
                # streams keeps the earliest lines.
                self.first[-1] = reject
            else:
                continue
            self.first.sort(key=lambda r: r.line)

    def as_json(self) -> list[dict[str, Any]]:
        return [r._asdict() for r in self.first]


def _shown(value: Any) -> str:
    text = value if isinstance(value, str) else orjson.dumps(value).decode()
    return text if len(text) <= _VALUE_SHOWN else text[: _VALUE_SHOWN - 3] + "..."


def validate_custom_name(name: str) -> bool:
    return _CUSTOM_NAME.fullmatch(name) is not None


def clean_tags(raw: Any) -> list[str]:
    """Tags as stored: stripped, non-empty, unique, sorted; ``ValueError`` says what is wrong.

    ``raw`` is a list of strings or one string separated by ``;``.
    """
    if isinstance(raw, str):
        items: list[Any] = raw.split(";")
    elif isinstance(raw, list):
        items = raw
    else:
        raise ValueError("tags must be a list of strings or a ';'-separated string")
    tags: set[str] = set()
    for item in items:
        if not isinstance(item, str):
            raise ValueError("tags must be strings")
        tag = item.strip()
        if not tag:
            continue
        if len(tag) > MAX_TAG_LENGTH:
            raise ValueError(f"tag longer than {MAX_TAG_LENGTH} characters")
        if "\x00" in tag:
            raise ValueError("tag contains a NUL character")
        tags.add(tag)
    if len(tags) > MAX_TAGS:
        raise ValueError(f"more than {MAX_TAGS} tags")
    return sorted(tags)


def _text(value: Any, name: str, limit: int) -> str | None:
    """A stripped text value or None when not given; ``ValueError`` for a bad one."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise ValueError(f"{name} must be a string")
    text = value.strip() if isinstance(value, str) else str(value)
    if not text:
        return None
    if len(text) > limit:
        raise ValueError(f"{name} longer than {limit} characters")
    if "\x00" in text:
        raise ValueError(f"{name} contains a NUL character")
    return text


def _custom(raw: Any) -> dict[str, str]:
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise ValueError("custom must be an object")
    out: dict[str, str] = {}
    for key, value in raw.items():
        if not validate_custom_name(key):
            raise ValueError(f"invalid custom field name {_shown(key)}")
        text = _text(value, f"custom field {key}", MAX_CUSTOM_VALUE_LENGTH)
        if text is not None:
            out[key] = text
    return out


def _phone(raw: Any, region: str) -> tuple[str | None, str]:
    """(E.164, '') or (None, reason)."""
    if raw is None:
        return None, REASON_EMPTY
    if isinstance(raw, bool) or not isinstance(raw, str | int):
        return None, REASON_INVALID
    result = normalize_phone(str(raw), region)
    return result.e164, result.reason or ""


def validate_rows(rows: list[RawRow], region: str) -> tuple[list[StagedContact], list[Reject]]:
    """Normalize phones (``region`` for national numbers) and check every field of ``rows``.

    A row is rejected for its first problem; ``value`` is the offending value as given.
    """
    staged: list[StagedContact] = []
    rejects: list[Reject] = []
    for row in rows:
        phone, reason = _phone(row.phone, region)
        if phone is None:
            rejects.append(Reject(row.line, _shown(row.phone or ""), reason))
            continue
        bad: Any = None
        try:
            bad = row.first_name
            first_name = _text(row.first_name, "first_name", MAX_NAME_LENGTH)
            bad = row.last_name
            last_name = _text(row.last_name, "last_name", MAX_NAME_LENGTH)
            bad = row.tags
            tags = clean_tags(row.tags) if row.tags is not None else []
            bad = row.custom
            custom = _custom(row.custom)
        except ValueError as exc:
            rejects.append(Reject(row.line, _shown(bad), str(exc)))
            continue
        staged.append(
            StagedContact(
                row.line, phone, first_name, last_name, tags, orjson.dumps(custom).decode()
            )
        )
    return staged, rejects


def _empty_body() -> ValidationProblem:
    return ValidationProblem("the body holds no contacts", code="empty_body")


def _too_long(line: int) -> ValidationProblem:
    return ValidationProblem(
        f"the record starting at line {line} is longer than {MAX_RECORD_CHARS} characters "
        "(an unclosed quote?)",
        code="record_too_long",
        line=line,
    )


class CsvReader:
    """Feed CSV bytes in any chunking; get the complete rows back as they are found."""

    def __init__(self) -> None:
        self._decoder = codecs.getincrementaldecoder("utf-8-sig")()
        self._carry = ""
        self._lines_done = 0
        self._delimiter = ","
        self._header: list[str] | None = None
        self._phone = self._first = self._last = self._tags = -1
        self._custom: list[tuple[int, str]] = []
        self.ignored_columns: list[str] = []
        self.rejects: list[Reject] = []

    def feed(self, data: bytes) -> list[RawRow]:
        try:
            text = self._carry + self._decoder.decode(data)
        except UnicodeDecodeError:
            raise self._bad_encoding() from None
        cut = _complete_records_end(text)
        self._carry = text[cut:]
        if len(self._carry) > MAX_RECORD_CHARS:
            raise _too_long(self._lines_done + 1)
        return self._parse(text[:cut])

    def finish(self) -> list[RawRow]:
        try:
            text = self._carry + self._decoder.decode(b"", final=True)
        except UnicodeDecodeError:
            raise self._bad_encoding() from None
        self._carry = ""
        if not text.endswith("\n"):
            text += "\n"
        if _complete_records_end(text) < len(text):
            line = self._lines_done + 1
            raise ValidationProblem(
                f"the quoted value starting at line {line} is never closed",
                code="malformed_csv",
                line=line,
            )
        rows = self._parse(text) if text.strip() else []
        if self._header is None:
            raise _empty_body()
        return rows

    def _bad_encoding(self) -> ValidationProblem:
        line = self._lines_done + self._carry.count("\n") + 1
        return ValidationProblem(
            f"the body is not valid UTF-8 (near line {line})", code="invalid_encoding", line=line
        )

    def _parse(self, text: str) -> list[RawRow]:
        if not text:
            return []
        if self._header is None:
            first_line = text.split("\n", 1)[0]
            if "," not in first_line:
                if ";" in first_line:
                    self._delimiter = ";"
                elif "\t" in first_line:
                    self._delimiter = "\t"
        reader = csv.reader(io.StringIO(text, newline="\n"), delimiter=self._delimiter)
        base = self._lines_done
        rows: list[RawRow] = []
        consumed = 0
        try:
            for record in reader:
                line = base + consumed + 1
                consumed = reader.line_num
                if not record:
                    continue  # a blank line
                if self._header is None:
                    self._set_header(record)
                else:
                    row = self._row(line, record)
                    if row is not None:
                        rows.append(row)
        except csv.Error as exc:
            raise ValidationProblem(
                f"line {base + consumed + 1} is not valid CSV: {exc}",
                code="malformed_csv",
                line=base + consumed + 1,
            ) from None
        self._lines_done = base + text.count("\n")
        return rows

    def _set_header(self, record: list[str]) -> None:
        names = [name.strip().lower() for name in record]
        seen: set[str] = set()
        for name in names:
            if name and name in seen:
                raise ValidationProblem(
                    f"the column {name!r} appears twice in the header", code="duplicate_column"
                )
            seen.add(name)
        if "phone" not in seen:
            raise ValidationProblem(
                "the CSV header has no 'phone' column", code="missing_phone_column"
            )
        self._header = names
        for index, name in enumerate(names):
            if name == "phone":
                self._phone = index
            elif name == "first_name":
                self._first = index
            elif name == "last_name":
                self._last = index
            elif name == "tags":
                self._tags = index
            elif validate_custom_name(name):
                self._custom.append((index, name))
            else:
                self.ignored_columns.append(record[index])

    def _row(self, line: int, record: list[str]) -> RawRow | None:
        assert self._header is not None
        width = len(self._header)
        if len(record) > width:
            self.rejects.append(
                Reject(line, _shown(self._delimiter.join(record)), f"more than {width} fields")
            )
            return None
        # Tools often drop trailing empty cells; a short row is read as if they were there.
        if len(record) < width:
            record = record + [""] * (width - len(record))
        custom = {name: record[index] for index, name in self._custom if record[index]}
        return RawRow(
            line,
            record[self._phone],
            record[self._first] if self._first >= 0 else None,
            record[self._last] if self._last >= 0 else None,
            record[self._tags] if self._tags >= 0 else None,
            custom,
        )


def _complete_records_end(text: str) -> int:
    """Offset just after the last newline that ends a CSV record (quotes balanced)."""
    last_newline = text.rfind("\n")
    if last_newline < 0:
        return 0
    if '"' not in text:
        return last_newline + 1
    # Inside a quoted value a newline belongs to the value; quotes ("" escapes included) come
    # in pairs outside of one, so the parity of the quote count says where records end.
    end = 0
    inside = False
    pos = 0
    while (newline := text.find("\n", pos)) >= 0:
        if text.count('"', pos, newline) % 2:
            inside = not inside
        pos = newline + 1
        if not inside:
            end = pos
    return end


class NdjsonReader:
    """Feed NDJSON bytes in any chunking; get one row per complete non-blank line."""

    def __init__(self) -> None:
        self.ignored_columns: list[str] = []
        self._carry = b""
        self._lines_done = 0
        self._rows_seen = False
        self.rejects: list[Reject] = []

    def feed(self, data: bytes) -> list[RawRow]:
        if self._lines_done == 0 and not self._carry and data.startswith(codecs.BOM_UTF8):
            data = data[len(codecs.BOM_UTF8) :]
        data = self._carry + data
        cut = data.rfind(b"\n") + 1
        self._carry = data[cut:]
        if len(self._carry) > MAX_RECORD_CHARS:
            raise _too_long(self._lines_done + 1)
        return self._parse(data[:cut].split(b"\n")[:-1])

    def finish(self) -> list[RawRow]:
        rows = self._parse([self._carry]) if self._carry else []
        self._carry = b""
        if not self._rows_seen:
            raise _empty_body()
        return rows

    def _parse(self, lines: list[bytes]) -> list[RawRow]:
        rows: list[RawRow] = []
        for raw in lines:
            self._lines_done += 1
            line = self._lines_done
            if not raw.strip():
                continue
            self._rows_seen = True
            try:
                obj = orjson.loads(raw)
            except orjson.JSONDecodeError:
                shown = _shown(raw.decode("utf-8", "replace").strip())
                self.rejects.append(Reject(line, shown, "not valid JSON"))
                continue
            if not isinstance(obj, dict):
                self.rejects.append(Reject(line, _shown(obj), "not a JSON object"))
                continue
            unknown = [key for key in obj if key not in _NDJSON_KEYS]
            if unknown:
                self.rejects.append(Reject(line, _shown(unknown[0]), "unknown field"))
                continue
            rows.append(
                RawRow(
                    line,
                    obj.get("phone"),
                    obj.get("first_name"),
                    obj.get("last_name"),
                    obj.get("tags"),
                    obj.get("custom"),
                )
            )
        return rows
