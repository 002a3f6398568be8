"""The mock's record of every message it accepted, in memory and optionally in an NDJSON file.

Tests and benchmarks compare this record with what the sender believes it sent, so it must be
exact: one entry per accepted message, in arrival order, and ``duplicates`` counts accepted
messages whose ``(to, reference)`` pair had already been accepted (a missing reference counts
as the pair ``(to, None)``). Entries are stored as plain tuples, not dicts or named tuples,
because a benchmark can record millions of them: a plain tuple of strings and numbers is
untracked by the cyclic garbage collector, which otherwise walks every entry on each full
collection and slows the mock down as the record grows.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any, NamedTuple

import orjson

#: The stored form of a :class:`Message` (same fields, same order).
RawMessage = tuple[str, str, str, str, str | None, str, int, bool, str | None, float]


class Message(NamedTuple):
    """One accepted message as the mock received it."""

    id: str
    to: str
    sender: str
    text: str
    reference: str | None
    type: str
    segments: int
    test: bool
    callback: str | None
    received_at: float  # Unix time; rendered as ISO 8601 on output

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "to": self.to,
            "from": self.sender,
            "text": self.text,
            "reference": self.reference,
            "type": self.type,
            "segments": self.segments,
            "test": self.test,
            "callback": self.callback,
            "received_at": iso_timestamp(self.received_at),
        }


def iso_timestamp(unix_s: float) -> str:
    """ISO 8601 in UTC with a ``Z`` suffix, as Mitto writes its timestamps."""
    return dt.datetime.fromtimestamp(unix_s, dt.UTC).isoformat().replace("+00:00", "Z")


class MessageLog:
    """Accepted messages, the set of seen ``(to, reference)`` pairs and the optional file."""

    def __init__(self, path: Path | None = None) -> None:
        self.path = path
        self._messages: list[RawMessage] = []
        self.duplicates = 0
        self._pairs: set[tuple[str, str | None]] = set()
        self._file: IO[bytes] | None = None
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._file = path.open("ab")

    def add(self, message: RawMessage) -> None:
        """Record one accepted message (build it in :class:`Message` field order)."""
        self._messages.append(message)
        pair = (message[1], message[4])
        if pair in self._pairs:
            self.duplicates += 1
        else:
            self._pairs.add(pair)
        if self._file is not None:
            # Buffered: the server flushes every few hundred milliseconds and on shutdown, so
            # the hot path costs one memcpy, not one syscall.
            self._file.write(orjson.dumps(Message._make(message).as_dict()) + b"\n")

    def __len__(self) -> int:
        return len(self._messages)

    def __getitem__(self, index: int) -> Message:
        return Message._make(self._messages[index])

    def messages(self) -> list[Message]:
        """A snapshot of the record, in arrival order."""
        return [Message._make(m) for m in self._messages]

    def iter_ndjson(self, chunk_lines: int = 1000) -> Iterator[bytes]:
        """The record as NDJSON chunks of up to ``chunk_lines`` lines (a snapshot)."""
        snapshot = self._messages[:]
        for start in range(0, len(snapshot), chunk_lines):
            yield b"".join(
                orjson.dumps(Message._make(m).as_dict()) + b"\n"
                for m in snapshot[start : start + chunk_lines]
            )

    def timeline(
        self, bucket_s: float = 0.1, window_s: float = 0.1, since: float | None = None
    ) -> dict[str, Any]:
        """Arrival counts over time, for benchmarks: cheap even for millions of messages.

        ``buckets`` counts messages per ``bucket_s`` from ``start`` (the first arrival, or
        ``since``); ``max_in_window`` is the largest number that arrived within any sliding
        window of ``window_s`` seconds (a window starts at some arrival).
        """
        times = [m[9] for m in self._messages if since is None or m[9] >= since]
        times.sort()
        if not times:
            return {"count": 0, "first": None, "last": None, "start": since,
                    "bucket_s": bucket_s, "buckets": [], "window_s": window_s,
                    "max_in_window": 0}  # fmt: skip
        start = times[0] if since is None else since
        buckets = [0] * (int((times[-1] - start) / bucket_s) + 1)
        for t in times:
            buckets[int((t - start) / bucket_s)] += 1
        best = 0
        lo = 0
        for hi, t in enumerate(times):
            while t - times[lo] >= window_s:
                lo += 1
            if hi - lo + 1 > best:
                best = hi - lo + 1
        return {
            "count": len(times),
            "first": times[0],
            "last": times[-1],
            "start": start,
            "bucket_s": bucket_s,
            "buckets": buckets,
            "window_s": window_s,
            "max_in_window": best,
        }

    def reset(self) -> None:
        """Forget everything, the file's content included."""
        self._messages = []
        self._pairs = set()
        self.duplicates = 0
        if self._file is not None:
            self._file.seek(0)
            self._file.truncate()

    def flush(self) -> None:
        if self._file is not None:
            self._file.flush()

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
