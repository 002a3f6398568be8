"""Delivery reports from the mock: scheduled per accepted message, sent after a delay.

Reports wait in a heap keyed by due time; one dispatcher task pops the due ones and sends each
in its own task, at most ``dlr.concurrency`` at once, through the server's one ClientSession.
A report goes to the message's ``callback`` or else to ``dlr.url``, as a JSON body (POST) or a
query string (GET), with the fields of ``mitto-api.md``: msgid, reference, to, status,
errorcode, timestamp. Duplicates and reordering are produced at scheduling time (a second
copy, a random extra delay within ``reorder_window_ms``); a failed report is retried a few
times with back-off, as a real provider would.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

import aiohttp
import orjson
from yarl import URL

from sender.mock_mitto.config import DlrConfig
from sender.mock_mitto.record import iso_timestamp

log = logging.getLogger(__name__)

#: The provider error code each status carries; 0 means delivered.
ERROR_CODES: Final[dict[str, int]] = {
    "Delivered": 0,
    "Undelivered": 1,
    "Expired": 2,
    "Rejected": 3,
    "Unknown": 4,
}
_JSON_HEADERS: Final = {"Content-Type": "application/json"}
_RETRY_BASE_S: Final = 0.5
_TIMEOUT: Final = aiohttp.ClientTimeout(total=10, sock_connect=3)


@dataclass(slots=True)
class Report:
    """One delivery report on its way to ``url``."""

    url: str
    method: str
    fields: dict[str, str | int | None]
    attempt: int = 1


@dataclass(slots=True)
class DlrStats:
    sent: int = 0  # reports the receiver answered with 2xx/3xx/4xx (4xx is not retried)
    failed: int = 0  # reports given up after max_attempts
    retried: int = 0
    duplicated: int = 0  # extra copies scheduled by p_duplicate


class DlrSender:
    """Schedules and sends delivery reports; ``start`` and ``close`` bracket its life."""

    def __init__(self, config: Callable[[], DlrConfig], rng: random.Random | None = None) -> None:
        self._config = config
        self._rng = rng or random.Random()
        self._heap: list[tuple[float, int, Report]] = []
        self._seq = itertools.count()
        self._wake = asyncio.Event()
        self._slot_free = asyncio.Event()
        self._inflight: set[asyncio.Task[None]] = set()
        self._session: aiohttp.ClientSession | None = None
        self._runner: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.stats = DlrStats()

    @property
    def pending(self) -> int:
        """Reports scheduled and not yet sent (in flight included)."""
        return len(self._heap) + len(self._inflight)

    async def start(self, session: aiohttp.ClientSession) -> None:
        """Start dispatching through ``session`` (owned by the caller, closed after us)."""
        self._loop = asyncio.get_running_loop()
        self._session = session
        self._runner = asyncio.create_task(self._run(), name="mock-mitto-dlr")

    async def close(self) -> None:
        if self._runner is not None:
            self._runner.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._runner
            self._runner = None
        await self._cancel_inflight()
        self._session = None

    async def clear(self) -> None:
        """Drop every scheduled report and stop those in flight (``/_mock/reset``)."""
        self._heap.clear()
        await self._cancel_inflight()
        self.stats = DlrStats()

    def schedule(self, msgid: str, to: str, reference: str | None, url: str) -> None:
        """Schedule the report(s) for one accepted message."""
        cfg = self._config()
        rng = self._rng
        statuses = list(cfg.mix)
        status = rng.choices(statuses, weights=[cfg.mix[s] for s in statuses])[0]
        delay_s = cfg.delay_ms / 1000.0
        window_s = cfg.reorder_window_ms / 1000.0
        if cfg.reorder:
            delay_s += rng.random() * window_s
        fields: dict[str, str | int | None] = {
            "msgid": msgid,
            "reference": reference,
            "to": to,
            "status": status,
            "errorcode": ERROR_CODES[status],
            "timestamp": iso_timestamp(time.time() + delay_s),
        }
        self._push(delay_s, Report(url, cfg.method, fields))
        if cfg.p_duplicate > 0 and rng.random() < cfg.p_duplicate:
            self.stats.duplicated += 1
            # A copy a little later, or anywhere in the window when reordering.
            extra_s = rng.random() * window_s if cfg.reorder else 0.001
            self._push(delay_s + extra_s, Report(url, cfg.method, dict(fields)))

    def _push(self, delay_s: float, report: Report) -> None:
        assert self._loop is not None, "DlrSender.start() was not called"
        entry = (self._loop.time() + delay_s, next(self._seq), report)
        heapq.heappush(self._heap, entry)
        if self._heap[0] is entry:
            # Only a new earliest report can shorten the dispatcher's sleep.
            self._wake.set()

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            if not self._heap:
                self._wake.clear()
                await self._wake.wait()
                continue
            wait_s = self._heap[0][0] - loop.time()
            if wait_s > 0:
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), wait_s)
                continue
            if len(self._inflight) >= self._config().concurrency:
                self._slot_free.clear()
                await self._slot_free.wait()
                continue
            report = heapq.heappop(self._heap)[2]
            task = asyncio.create_task(self._deliver(report))
            self._inflight.add(task)
            task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._inflight.discard(task)
        self._slot_free.set()

    async def _deliver(self, report: Report) -> None:
        assert self._session is not None
        try:
            if report.method == "GET":
                query = {k: str(v) for k, v in report.fields.items() if v is not None}
                url = URL(report.url).extend_query(query)
                async with self._session.get(url, timeout=_TIMEOUT) as resp:
                    await resp.read()
                    status = resp.status
            else:
                body = orjson.dumps(report.fields)
                async with self._session.post(
                    report.url, data=body, headers=_JSON_HEADERS, timeout=_TIMEOUT
                ) as resp:
                    await resp.read()
                    status = resp.status
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            self._retry(report, repr(exc))
            return
        if status >= 500:
            self._retry(report, f"HTTP {status}")
        else:
            self.stats.sent += 1

    def _retry(self, report: Report, reason: str) -> None:
        if report.attempt >= self._config().max_attempts:
            self.stats.failed += 1
            log.warning("delivery report to %s given up: %s", report.url, reason)
            return
        self.stats.retried += 1
        delay_s = _RETRY_BASE_S * 2 ** (report.attempt - 1)
        report.attempt += 1
        self._push(delay_s, report)

    async def _cancel_inflight(self) -> None:
        tasks = list(self._inflight)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
