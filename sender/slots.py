"""The process-wide in-flight cap, taken before recipients are claimed.

A batch job takes slots first and claims only as many recipients as it holds slots, so the
recipients a daemon has claimed but not yet answered never exceed ``SENDER_MAX_IN_FLIGHT``,
however many batch jobs run: nothing claimed waits long enough for the sweeper to mistake it
for a crash. ``take`` waits for a useful number of slots (``at_least``) so that claims stay
chunk-sized instead of trickling one recipient at a time.
"""

from __future__ import annotations

import asyncio
from collections import deque


class SlotPool:
    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError("capacity must be at least 1")
        self.capacity = capacity
        self.free = capacity
        self._waiters: deque[tuple[int, asyncio.Future[None]]] = deque()

    @property
    def used(self) -> int:
        return self.capacity - self.free

    async def take(self, up_to: int, at_least: int = 1) -> int:
        """Take between ``at_least`` and ``up_to`` slots (waiting for ``at_least``); the count."""
        want = max(1, min(at_least, up_to, self.capacity))
        if self._waiters or self.free < want:
            future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            entry = (want, future)
            self._waiters.append(entry)
            try:
                await future
            except BaseException:
                if entry in self._waiters:
                    self._waiters.remove(entry)
                elif future.done() and not future.cancelled():
                    # Woken and cancelled at once: pass the wake-up on.
                    self._wake()
                raise
        granted = min(up_to, self.free)
        self.free -= granted
        self._wake()
        return granted

    def give(self, count: int = 1) -> None:
        if count <= 0:
            return
        self.free = min(self.capacity, self.free + count)
        self._wake()

    def _wake(self) -> None:
        # FIFO: the first waiter is woken once enough slots are free for it.
        while self._waiters:
            want, future = self._waiters[0]
            if future.done():
                self._waiters.popleft()
                continue
            if self.free < want:
                return
            self._waiters.popleft()
            future.set_result(None)
            return
