"""The process-wide in-flight cap, taken before recipients are claimed.

A batch job takes slots first and claims only as many recipients as it holds slots, so the
recipients a daemon has claimed but not yet answered never exceed the pool's capacity
(``SENDER_MAX_IN_FLIGHT`` plus the batch sender's claim-ahead headroom), however many batch
jobs run: nothing claimed waits long enough for the sweeper to mistake it for a crash.
``take`` waits for a useful number of slots (``at_least``) so that claims stay chunk-sized
instead of trickling one recipient at a time.
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
        # (at least, up to, future of the count granted); first come, first served.
        self._waiters: deque[tuple[int, int, asyncio.Future[int]]] = deque()

    @property
    def used(self) -> int:
        return self.capacity - self.free

    async def take(self, up_to: int, at_least: int = 1) -> int:
        """Take between ``at_least`` and ``up_to`` slots (waiting for ``at_least``); the count."""
        up_to = max(1, min(up_to, self.capacity))
        want = max(1, min(at_least, up_to))
        if not self._waiters and self.free >= want:
            granted = min(up_to, self.free)
            self.free -= granted
            return granted
        # Slots are granted to a waiter when it is woken, not when it resumes: a caller that
        # arrives in between cannot take them, so a woken waiter never comes away empty.
        future: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        entry = (want, up_to, future)
        self._waiters.append(entry)
        try:
            return await future
        except BaseException:
            if entry in self._waiters:
                self._waiters.remove(entry)
                self._wake()
            elif future.done() and not future.cancelled():
                # Granted and cancelled at once: hand the slots back.
                self.give(future.result())
            raise

    def give(self, count: int = 1) -> None:
        if count <= 0:
            return
        self.free = min(self.capacity, self.free + count)
        self._wake()

    def _wake(self) -> None:
        while self._waiters:
            want, up_to, future = self._waiters[0]
            if future.done():
                self._waiters.popleft()
                continue
            if self.free < want:
                return
            self._waiters.popleft()
            granted = min(up_to, self.free)
            self.free -= granted
            future.set_result(granted)
