"""The outcome writer: buffers recipient outcomes and writes them to PostgreSQL in bulk.

Send tasks call ``add`` (no I/O, no await); a background task flushes every
``flush_interval_s`` or as soon as ``flush_max_rows`` are waiting, with one COPY and a few
set-based statements per flush (``sender.db.outcomes``). A failed flush keeps its rows and is
retried with backoff, so a PostgreSQL restart loses nothing; if the process dies with rows
buffered, those recipients stay ``sending`` with a request stamp and the sweeper settles them
as ``unknown``, which is what they are.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable

from sender.db.outcomes import OutcomeRow, write_outcomes
from sender.db.pool import Pool

log = logging.getLogger("sender.outcomes")

AppliedCallback = Callable[[dict[int, int]], Awaitable[None]]
FlushObserver = Callable[[int, float], None]


class OutcomeWriter:
    def __init__(
        self,
        pool: Pool,
        *,
        flush_interval_s: float = 0.1,
        flush_max_rows: int = 2000,
        on_applied: AppliedCallback | None = None,
        observe_flush: FlushObserver | None = None,
    ) -> None:
        self._pool = pool
        self._interval = flush_interval_s
        self._max_rows = flush_max_rows
        self._on_applied = on_applied
        self._observe_flush = observe_flush
        self._buffer: list[OutcomeRow] = []
        self._wakeup = asyncio.Event()
        self._flush_lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self.rows_written = 0
        self.flushes = 0

    @property
    def pending(self) -> int:
        return len(self._buffer)

    def add(self, row: OutcomeRow) -> None:
        self._buffer.append(row)
        if len(self._buffer) >= self._max_rows:
            self._wakeup.set()

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="outcome-writer")

    async def _run(self) -> None:
        while not self._closing:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wakeup.wait(), timeout=self._interval)
            self._wakeup.clear()
            await self.flush()

    async def flush(self) -> None:
        """Write everything buffered so far; returns when it is committed."""
        async with self._flush_lock:
            while self._buffer:
                rows = self._buffer[: self._max_rows * 2]
                applied = await self._write_with_retry(rows)
                del self._buffer[: len(rows)]
                if applied and self._on_applied is not None:
                    try:
                        await self._on_applied(applied)
                    except Exception:
                        log.exception("outcome callback failed")

    async def _write_with_retry(self, rows: list[OutcomeRow]) -> dict[int, int]:
        delay = 0.1
        while True:
            started = time.perf_counter()
            try:
                applied = await write_outcomes(self._pool, rows)
            except Exception as exc:
                log.warning(
                    "outcome flush failed; retrying",
                    extra={"rows": len(rows), "error": f"{type(exc).__name__}: {exc}"},
                )
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
                continue
            elapsed = time.perf_counter() - started
            self.rows_written += len(rows)
            self.flushes += 1
            if self._observe_flush is not None:
                self._observe_flush(len(rows), elapsed)
            return applied

    async def close(self, timeout_s: float = 20.0) -> None:
        """Stop the background loop after a final flush (bounded by ``timeout_s``)."""
        self._closing = True
        self._wakeup.set()
        if self._task is not None:
            try:
                await asyncio.wait_for(self._task, timeout=timeout_s)
            except TimeoutError:
                log.error(
                    "outcome writer did not finish in time", extra={"rows": len(self._buffer)}
                )
            self._task = None
        try:
            await asyncio.wait_for(self.flush(), timeout=timeout_s)
        except TimeoutError:
            log.error(
                "outcomes left unwritten at shutdown; the sweeper will settle them",
                extra={"rows": len(self._buffer)},
            )
