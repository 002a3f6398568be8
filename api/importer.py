"""The contact import pipeline: body stream -> reader -> validation -> COPY -> one upsert.

Normalizing phone numbers is CPU work (``phonenumbers`` takes ~50 µs a number), so the
batches of a big upload are validated in worker processes: the event loop keeps serving other
requests during an import, and reading, validating and copying overlap. A small upload (up to
``INLINE_MAX_ROWS`` rows) is validated in place and never starts a process.

Workers are started on first use and stopped with the app. They are spawned (not forked), so
the program's main module must be safe to import, as ``multiprocessing`` requires
(``if __name__ == "__main__":``); the ``sender`` command is.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing
import os
from collections import deque
from collections.abc import AsyncIterator
from concurrent.futures import Executor, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any, Final

from aiohttp import web

from api.keys import DB, SETTINGS
from sender.contact_import import (
    CsvReader,
    NdjsonReader,
    RawRow,
    Reject,
    RejectLog,
    StagedContact,
    validate_rows,
)
from sender.db import contacts as contacts_db
from sender.errors import ProblemError

log = logging.getLogger("api.importer")

#: Rows per validation task and COPY: big enough to amortize both, small enough to overlap.
BATCH_ROWS: Final = 5_000
#: An upload this small is validated in the event loop (a few milliseconds of work).
INLINE_MAX_ROWS: Final = 2_000
_READ_CHUNK_BYTES: Final = 256 * 1024
_MAX_WORKERS: Final = 4


class _Workers:
    """A process pool created on first use (most apps never import a big file)."""

    def __init__(self) -> None:
        self._executor: ProcessPoolExecutor | None = None

    @property
    def started(self) -> bool:
        return self._executor is not None

    @property
    def size(self) -> int:
        return max(1, min(_MAX_WORKERS, os.cpu_count() or 1))

    def get(self) -> Executor:
        if self._executor is None:
            # spawn: a fork of a process running an event loop and asyncpg pools is unsafe.
            self._executor = ProcessPoolExecutor(
                max_workers=self.size, mp_context=multiprocessing.get_context("spawn")
            )
        return self._executor

    def shutdown(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=True, cancel_futures=True)
            self._executor = None

    def discard(self) -> None:
        """Drop a pool whose worker died, so that the next import starts a fresh one."""
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
            self._executor = None


WORKERS = web.AppKey("contact_import_workers", _Workers)


async def _worker_pool(app: web.Application) -> AsyncIterator[None]:
    app[WORKERS] = _Workers()
    try:
        yield
    finally:
        await asyncio.to_thread(app[WORKERS].shutdown)


def setup(app: web.Application) -> None:
    app.cleanup_ctx.append(_worker_pool)


def _too_large(limit: int) -> ProblemError:
    return ProblemError(
        f"request body is larger than {limit} bytes",
        status=413,
        code="payload_too_large",
        title="Content Too Large",
    )


Validated = tuple[list[StagedContact], list[Reject]]


class _Pipeline:
    """One import: batches go out to validation in order and come back to COPY in order."""

    def __init__(self, workers: _Workers, session: contacts_db.ContactImport, region: str):
        self.workers = workers
        self.session = session
        self.region = region
        self.rejects = RejectLog()
        self.pending: list[RawRow] = []
        self._in_flight: deque[asyncio.Future[Validated]] = deque()
        self._batches = 0

    async def add(self, rows: list[RawRow], rejects: list[Reject]) -> None:
        self.rejects.add(rejects)
        self.pending.extend(rows)
        while len(self.pending) >= BATCH_ROWS:
            self._submit(self.pending[:BATCH_ROWS], final=False)
            del self.pending[:BATCH_ROWS]
            # Copy finished batches while the workers validate the next ones; the bound keeps
            # memory flat whatever the upload's size.
            await self._drain(keep=self.workers.size)

    async def finish(self, rows: list[RawRow], rejects: list[Reject]) -> None:
        self.rejects.add(rejects)
        self.pending.extend(rows)
        self._submit(self.pending, final=True)
        self.pending = []
        await self._drain(keep=0)

    def _submit(self, rows: list[RawRow], *, final: bool) -> None:
        loop = asyncio.get_running_loop()
        if final and self._batches == 0 and len(rows) <= INLINE_MAX_ROWS:
            future: asyncio.Future[Validated] = loop.create_future()
            future.set_result(validate_rows(rows, self.region))
        else:
            future = loop.run_in_executor(self.workers.get(), validate_rows, rows, self.region)
        self._in_flight.append(future)
        self._batches += 1

    async def _drain(self, keep: int) -> None:
        while len(self._in_flight) > keep:
            try:
                staged, bad = await self._in_flight.popleft()
            except BrokenProcessPool:
                log.error("a contact import worker died; the pool is restarted")
                self.workers.discard()
                raise
            self.rejects.add(bad)
            await self.session.stage(staged)

    def abandon(self) -> None:
        """After a failure: stop waiting for the batches still out."""
        for future in self._in_flight:
            if not future.done():
                future.cancel()
            elif not future.cancelled():
                future.exception()  # retrieved: the error that matters is already raised
        self._in_flight.clear()


async def run_import(request: web.Request, store_id: int, *, csv: bool) -> dict[str, Any]:
    """Import the request body into ``store_id``'s contacts; the response members."""
    limit = request.app[SETTINGS].max_body_bytes
    if request.content_length is not None and request.content_length > limit:
        raise _too_large(limit)
    pool = request.app[DB]
    region = await contacts_db.store_region(pool, store_id)
    reader = CsvReader() if csv else NdjsonReader()
    async with contacts_db.import_session(pool, store_id) as session:
        pipeline = _Pipeline(request.app[WORKERS], session, region)
        try:
            received = 0
            async for chunk in request.content.iter_chunked(_READ_CHUNK_BYTES):
                received += len(chunk)
                if received > limit:
                    raise _too_large(limit)
                rows = reader.feed(chunk)
                await pipeline.add(rows, reader.rejects)
                reader.rejects.clear()
            rows = reader.finish()
            await pipeline.finish(rows, reader.rejects)
        finally:
            pipeline.abandon()
        counts = await session.apply()
    rejects = pipeline.rejects
    return {
        "inserted": counts.inserted,
        "updated": counts.updated,
        "unchanged": counts.unchanged,
        "duplicates": counts.duplicates,
        "rejected": rejects.count,
        "rejects": rejects.as_json(),
        "ignored_columns": reader.ignored_columns,
    }
