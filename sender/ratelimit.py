"""The provider rate limiter: an adaptive token bucket in front of every provider request.

DESIGN.md sections 6 and 7: the provider never sees more than ``rate`` messages per second plus
the bucket's ``burst`` in any window. :class:`TokenBucket` is the in-process limiter (one
daemon); :mod:`sender.ratelimit_redis` holds the shared one (several daemons). Both satisfy
:class:`ProviderLimiter`, which is all the send path depends on.

- **Bucket.** Capacity ``burst``, refilled at the current rate, never above ``burst``; it
  starts full. A request for more than ``burst`` tokens (a bulk send) is admitted when the
  bucket is full and leaves it in debt, so the long-run mean stays exactly the rate.
- **Hot path.** :meth:`TokenBucket.acquire` grants without suspending when nobody waits and
  tokens suffice: a clock read, a few attribute reads and a subtraction.
- **Order under scarcity.** Waiters queue by priority (0 high, 1 normal, 2 low); within a
  priority, keys (store ids) take turns, each key its own FIFO, so one big store cannot starve
  the others. One pump task grants in that order, sleeping until the next grant is possible.
- **Adaptive (AIMD).** :meth:`TokenBucket.on_throttled` honours ``Retry-After`` (no grant
  before it; tokens do not accrue while blocked, so there is no burst at the end of the
  block), and cuts the rate multiplicatively at most once per cooldown, because hundreds of
  requests in flight answering 429 together are one congestion signal. The rate then recovers
  additively with time, outside blocked windows, up to the ceiling.
- **Shared parts.** :class:`QueuedLimiter` is the base of both limiters: the settings checks,
  the counters, the wait queue with its pump task (started by the first waiter, ended when the
  queue is empty) and ``close``. Each keeps its own ``acquire`` fast path and grant loop.
"""

from __future__ import annotations

import abc
import asyncio
import math
import time
from collections import deque
from collections.abc import Awaitable, Callable, Hashable
from typing import ClassVar, Final, NamedTuple, Protocol

from sender.errors import SenderError

#: Priorities accepted by ``acquire``: 0 high, 1 normal, 2 low.
PRIORITIES: Final = 3
HIGH: Final = 0
NORMAL: Final = 1
LOW: Final = 2

# Tokens are floats refilled in many small steps; without a tolerance, rounding can leave a
# bucket at 0.9999999999 tokens and a pump asking to sleep 1e-17 s, which a fake clock (or a
# float) cannot advance by.
_EPSILON: Final = 1e-9


#: Arrival jitter the provider-side bucket is protected against (see :func:`bucket_capacity`).
JITTER_ALLOWANCE_S: Final = 0.025


def bucket_capacity(rate_per_s: float, provider_burst: int) -> int:
    """Our bucket's capacity for a provider that allows ``provider_burst`` above its rate.

    The provider counts arrivals; we count grants. Requests granted just before the event
    loop stalls (a busy turn, a GC pause) leave with those granted just after it, so the
    provider can see them compressed by the stall. Keeping ``rate x 25 ms`` of the burst (at
    most half of it) in reserve absorbs such jitter up to 25 ms: S4 measured 26 throttled
    requests in 30 s with the full burst, each one also cutting the adaptive rate. The long-run
    rate is unchanged; only the instant burst is smaller.
    """
    reserve = min(provider_burst // 2, math.ceil(rate_per_s * JITTER_ALLOWANCE_S))
    return max(1, provider_burst - reserve)


class LimiterClosedError(SenderError):
    """the rate limiter is closed."""


class ProviderLimiter(Protocol):
    """What the send path needs from a limiter, local (:class:`TokenBucket`) or shared."""

    #: Seconds callers spent waiting in ``acquire`` (metrics: limiter wait time).
    waited_s_total: float
    #: ``acquire`` calls granted.
    grants_total: int
    #: Tokens granted (a bulk request of n recipients counts n).
    tokens_total: int
    #: Throttle signals received (429/503 answers).
    throttled_total: int
    #: Multiplicative rate cuts applied.
    cuts_total: int

    @property
    def rate_per_s(self) -> float:
        """The current (adaptive) rate."""
        ...

    @property
    def ceiling_per_s(self) -> float:
        """The configured rate the adaptive rate recovers to."""
        ...

    @property
    def burst(self) -> int: ...

    @property
    def waiting(self) -> int:
        """Callers queued in ``acquire``."""
        ...

    def blocked_for(self) -> float:
        """Seconds left of a ``Retry-After`` block (0.0 when not blocked)."""
        ...

    async def acquire(self, n: int = 1, *, priority: int = NORMAL, key: Hashable = 0) -> float:
        """Wait until ``n`` tokens are granted; return the seconds waited."""
        ...

    def on_throttled(self, retry_after_s: float | None) -> None:
        """The provider answered 429/503: block for ``retry_after_s`` and slow down."""
        ...

    def set_ceiling(self, rate_per_s: float) -> None:
        """Change the configured rate."""
        ...

    async def close(self) -> None:
        """Stop background tasks; callers still waiting get :class:`LimiterClosedError`."""
        ...


class Waiter:
    """One queued ``acquire`` call."""

    __slots__ = ("future", "granted", "key", "n", "priority")

    def __init__(self, future: asyncio.Future[None], n: int, priority: int, key: Hashable):
        self.future = future
        self.n = n
        self.priority = priority
        self.key = key
        self.granted = False


class _Level:
    """The waiters of one priority: a FIFO per key, keys served round-robin."""

    __slots__ = ("order", "queues")

    def __init__(self) -> None:
        self.queues: dict[Hashable, deque[Waiter]] = {}
        self.order: deque[Hashable] = deque()


class WaitQueue:
    """Waiters in grant order: priority first, then keys in turn, then arrival.

    Shared by the local and the Redis limiter. Cancelled waiters are removed lazily (skipped
    when they reach the head), so cancelling is O(1).
    """

    __slots__ = ("_levels", "count")

    def __init__(self) -> None:
        self._levels = tuple(_Level() for _ in range(PRIORITIES))
        #: Live waiters (queued, neither granted nor cancelled).
        self.count = 0

    def push(self, future: asyncio.Future[None], n: int, priority: int, key: Hashable) -> Waiter:
        if not 0 <= priority < PRIORITIES:
            raise ValueError(f"priority must be 0 (high), 1 (normal) or 2 (low), not {priority}")
        waiter = Waiter(future, n, priority, key)
        level = self._levels[priority]
        queue = level.queues.get(key)
        if queue is None:
            queue = level.queues[key] = deque()
            level.order.append(key)
        queue.append(waiter)
        self.count += 1
        return waiter

    def peek(self) -> Waiter | None:
        """The next waiter to grant, or None."""
        for level in self._levels:
            order, queues = level.order, level.queues
            while order:
                key = order[0]
                queue = queues[key]
                while queue and queue[0].future.done():
                    queue.popleft()
                if queue:
                    return queue[0]
                order.popleft()
                del queues[key]
        return None

    def grant(self, waiter: Waiter) -> None:
        """Remove ``waiter`` (the one :meth:`peek` returned) and wake it; its key's turn ends."""
        level = self._levels[waiter.priority]
        key = level.order.popleft()
        queue = level.queues[key]
        queue.popleft()
        if queue:
            level.order.append(key)
        else:
            del level.queues[key]
        self.count -= 1
        waiter.granted = True
        waiter.future.set_result(None)

    def cancelled(self, waiter: Waiter) -> bool:
        """Account for a waiter whose caller was cancelled; False if it had been granted."""
        if waiter.granted:
            return False
        self.count -= 1
        return True

    def fail_all(self, exc: BaseException) -> None:
        for level in self._levels:
            for queue in level.queues.values():
                for waiter in queue:
                    if not waiter.future.done():
                        waiter.future.set_exception(exc)
            level.queues.clear()
            level.order.clear()
        self.count = 0


def check_limits(rate_per_s: float, burst: int) -> None:
    if not (math.isfinite(rate_per_s) and rate_per_s > 0):
        raise ValueError(f"rate_per_s must be a positive number, not {rate_per_s!r}")
    if burst < 1:
        raise ValueError(f"burst must be at least 1, not {burst!r}")


class Aimd(NamedTuple):
    """The adaptive-rate settings both limiters take, in the order the Redis script wants."""

    min_rate_fraction: float
    decrease_factor: float
    recovery_fraction_per_s: float
    cut_cooldown_s: float


def check_adaptive(
    min_rate_fraction: float,
    decrease_factor: float,
    recovery_fraction_per_s: float,
    cut_cooldown_s: float,
) -> None:
    if not 0 < min_rate_fraction <= 1:
        raise ValueError("min_rate_fraction must be in (0, 1]")
    if not 0 < decrease_factor <= 1:
        raise ValueError("decrease_factor must be in (0, 1]")
    if not recovery_fraction_per_s > 0:
        raise ValueError("recovery_fraction_per_s must be positive")
    if not cut_cooldown_s >= 0:
        raise ValueError("cut_cooldown_s must be >= 0")


async def cancel_and_wait(task: asyncio.Task[None] | None) -> None:
    """Cancel a background ``task`` (if any) and wait until it has ended."""
    if task is None:
        return
    task.cancel()
    try:
        await task
    except asyncio.CancelledError:
        # The task's own cancellation, not ours: re-raise only if we were cancelled.
        current = asyncio.current_task()
        if current is not None and current.cancelling():
            raise


class QueuedLimiter(abc.ABC):
    """The base of both limiters: settings, counters, the wait queue and its pump task.

    A subclass grants on its own fast path in ``acquire`` and otherwise awaits :meth:`_wait`,
    which queues the caller and starts the subclass's :meth:`_pump` when none runs.
    """

    #: The name of the pump task.
    _PUMP_NAME: ClassVar[str] = "ratelimit-pump"

    def __init__(
        self,
        rate_per_s: float,
        burst: int,
        clock: Callable[[], float],
        sleep: Callable[[float], Awaitable[None]],
        aimd: Aimd,
    ) -> None:
        check_limits(rate_per_s, burst)
        check_adaptive(*aimd)
        self._clock = clock
        self._sleep = sleep
        self._aimd = aimd
        self._ceiling = float(rate_per_s)
        self._burst = burst
        self._rate = self._ceiling
        # No grant before this (a ``Retry-After`` block).
        self._blocked_until = -math.inf

        self._queue = WaitQueue()
        self._pump_task: asyncio.Task[None] | None = None
        self._closed = False

        self.waited_s_total = 0.0
        self.grants_total = 0
        self.tokens_total = 0
        self.throttled_total = 0
        self.cuts_total = 0

    # -- state -------------------------------------------------------------------------------

    @property
    def ceiling_per_s(self) -> float:
        return self._ceiling

    @property
    def burst(self) -> int:
        return self._burst

    @property
    def waiting(self) -> int:
        return self._queue.count

    def blocked_for(self) -> float:
        return max(0.0, self._blocked_until - self._clock())

    # -- waiting -----------------------------------------------------------------------------

    async def _wait(self, n: int, priority: int, key: Hashable) -> float:
        """Queue for ``n`` tokens until the pump grants them; return the seconds waited."""
        if self._closed:
            raise LimiterClosedError()
        if n < 1:
            raise ValueError(f"n must be at least 1, not {n!r}")
        start = self._clock()
        waiter = self._queue.push(asyncio.get_running_loop().create_future(), n, priority, key)
        if self._pump_task is None:
            self._pump_task = asyncio.create_task(self._run_pump(), name=self._PUMP_NAME)
        try:
            await waiter.future
        except asyncio.CancelledError:
            if not self._queue.cancelled(waiter):
                # Granted, then cancelled before it could send: the tokens were not used.
                self._refund(n)
            raise
        waited = self._clock() - start
        self.waited_s_total += waited
        return waited

    async def _run_pump(self) -> None:
        try:
            await self._pump()
        finally:
            self._pump_task = None

    @abc.abstractmethod
    async def _pump(self) -> None:
        """Grant queued waiters in order until the queue is empty (ends the pump task)."""

    @abc.abstractmethod
    def _refund(self, n: int) -> None:
        """Take back ``n`` tokens granted to a waiter cancelled before it resumed."""

    # -- lifecycle ---------------------------------------------------------------------------

    async def close(self) -> None:
        self._closed = True
        task, self._pump_task = self._pump_task, None
        await cancel_and_wait(task)
        self._queue.fail_all(LimiterClosedError())


class TokenBucket(QueuedLimiter):
    """The in-process adaptive token bucket (``SENDER_LIMITER=local``).

    ``clock`` and ``sleep`` are injectable so tests can run minutes of simulated time in
    milliseconds. Not thread-safe: use it from one event loop.
    """

    def __init__(
        self,
        rate_per_s: float,
        burst: int,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        min_rate_fraction: float = 0.05,
        decrease_factor: float = 0.5,
        recovery_fraction_per_s: float = 0.1,
        cut_cooldown_s: float = 1.0,
    ) -> None:
        aimd = Aimd(min_rate_fraction, decrease_factor, recovery_fraction_per_s, cut_cooldown_s)
        super().__init__(rate_per_s, burst, clock, sleep, aimd)
        # Plain attributes: the refill reads them on every grant while the rate recovers.
        self._min_rate_fraction = min_rate_fraction
        self._decrease_factor = decrease_factor
        self._recovery_fraction_per_s = recovery_fraction_per_s
        self._cut_cooldown_s = cut_cooldown_s

        self._capacity = float(burst)
        now = clock()
        self._tokens = self._capacity
        # Tokens are accounted up to ``_last``; it is in the future while blocked, so nothing
        # accrues during a Retry-After window.
        self._last = now
        # The rate is ``_rate`` until ``_recover_from``, then grows linearly to the ceiling.
        # While it is at the ceiling, ``_recovering`` is False and refill is one multiply.
        self._recover_from = now
        self._recovering = False
        self._last_cut = -math.inf

    # -- state -------------------------------------------------------------------------------

    @property
    def rate_per_s(self) -> float:
        if self._recovering:
            return self._rate_at(self._clock())
        return self._rate

    @property
    def tokens(self) -> float:
        """Tokens in the bucket now (negative while in debt after a bulk grant)."""
        self._refill(self._clock())
        return self._tokens

    # -- acquiring ---------------------------------------------------------------------------

    def try_acquire(self, n: int = 1) -> float:
        """Take ``n`` tokens and return 0.0, or take nothing and return the seconds to wait.

        Ignores queued waiters (``acquire`` keeps their order); the pump grants through it.
        The wait is a lower bound: the caller must try again after it.
        """
        if n < 1:
            raise ValueError(f"n must be at least 1, not {n!r}")
        now = self._clock()
        if now > self._last:
            if self._recovering:
                self._refill(now)
            else:
                tokens = self._tokens + (now - self._last) * self._rate
                self._tokens = tokens if tokens < self._capacity else self._capacity
                self._last = now
        if now < self._blocked_until:
            return self._blocked_until - now
        # More than the bucket holds is admitted on a full bucket, leaving debt.
        need = n if n < self._capacity else self._capacity
        if self._tokens + _EPSILON >= need:
            self._tokens -= n
            self.grants_total += 1
            self.tokens_total += n
            return 0.0
        return (need - self._tokens) / self._rate_at(now)

    async def acquire(self, n: int = 1, *, priority: int = NORMAL, key: Hashable = 0) -> float:
        """Wait for ``n`` tokens in priority/round-robin order; return the seconds waited.

        ``key`` is what fairness is shared between (the store id).
        """
        if not self._queue.count and self.try_acquire(n) == 0.0:
            return 0.0
        return await self._wait(n, priority, key)

    async def _pump(self) -> None:
        """Grant queued waiters in order, sleeping until the head one can be granted.

        Ends when the queue is empty (``acquire`` starts a new one), so an idle limiter holds
        no task. A waiter that arrives while the pump sleeps for a larger head request waits
        at most until that wake-up (at most ``burst / rate`` seconds).
        """
        queue = self._queue
        while (waiter := queue.peek()) is not None:
            wait = self.try_acquire(waiter.n)
            if wait == 0.0:
                queue.grant(waiter)
            else:
                await self._sleep(wait)

    def _refund(self, n: int) -> None:
        self._refill(self._clock())
        # The counters keep the grant: metrics read them as monotonic counters.
        self._tokens = min(self._capacity, self._tokens + n)

    # -- adaptation --------------------------------------------------------------------------

    def on_throttled(self, retry_after_s: float | None) -> None:
        """The provider answered 429/503 (optionally with ``Retry-After``, in seconds)."""
        now = self._clock()
        self._refill(now)
        self.throttled_total += 1
        rate = self._rate_at(now)
        if retry_after_s is not None and retry_after_s > 0:
            until = now + retry_after_s
            if until > self._blocked_until:
                self._blocked_until = until
                self._last = max(self._last, until)
        if now - self._last_cut >= self._cut_cooldown_s:
            rate = max(self._ceiling * self._min_rate_fraction, rate * self._decrease_factor)
            self._last_cut = now
            self.cuts_total += 1
        # Recovery starts again after the cut and after the blocked window.
        self._set_curve(rate, max(now, self._blocked_until))

    def set_ceiling(self, rate_per_s: float) -> None:
        """Reconfigure the rate: applied at once unless the rate is recovering from a cut."""
        check_limits(rate_per_s, self._burst)
        now = self._clock()
        self._refill(now)
        rate = self._rate_at(now) if self._recovering else rate_per_s
        self._ceiling = float(rate_per_s)
        self._set_curve(min(rate, self._ceiling), max(now, self._recover_from))

    def _set_curve(self, rate: float, recover_from: float) -> None:
        self._rate = rate
        self._recover_from = recover_from
        self._recovering = rate < self._ceiling

    def _rate_at(self, t: float) -> float:
        if not self._recovering or t <= self._recover_from:
            return self._rate
        rate = self._rate + self._ceiling * self._recovery_fraction_per_s * (t - self._recover_from)
        return rate if rate < self._ceiling else self._ceiling

    def _area(self, t: float) -> float:
        """Tokens accrued from ``_recover_from`` to ``t`` (negative before it)."""
        d = t - self._recover_from
        base = self._rate
        if d <= 0.0 or not self._recovering:
            return base * d
        slope = self._ceiling * self._recovery_fraction_per_s
        ramp = (self._ceiling - base) / slope
        if d <= ramp:
            return base * d + slope * d * d / 2
        return base * ramp + slope * ramp * ramp / 2 + self._ceiling * (d - ramp)

    def _refill(self, now: float) -> None:
        if now <= self._last:
            return
        tokens = self._tokens + self._area(now) - self._area(self._last)
        self._tokens = tokens if tokens < self._capacity else self._capacity
        self._last = now
        if self._recovering and now > self._recover_from:
            # Re-anchor the curve at ``now``: same line, smaller numbers, and the hot path
            # returns to one multiply once the ceiling is reached.
            self._set_curve(self._rate_at(now), now)
