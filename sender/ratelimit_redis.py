"""The shared provider rate limiter (``SENDER_LIMITER=redis``): one token bucket in Redis.

Several daemons on several machines share one provider rate (DESIGN.md section 7). The bucket
lives in one Redis hash, changed only by one atomic Lua script on Redis's own clock (``TIME``),
so the daemons' clocks do not matter. Its adaptive rate and ``Retry-After`` block live in the
same hash: a 429 seen by one daemon slows all of them, and the cut cooldown is shared, so a
storm of 429s across all daemons is still one congestion signal.

**Local batching.** Redis is not asked once per message: a process takes a *lease* of up to
``lease_s`` worth of tokens (20 ms by default) in one script call and serves its callers from
it locally, in the same priority and round-robin order as :class:`~sender.ratelimit.TokenBucket`.
When the bucket is short, the script does not refuse (which would have every daemon poll): it
*reserves*, taking the tokens into debt and answering when they are due, so there is one call
per lease even under contention, and daemons are served first come, first served (a bulk
request cannot be starved by other daemons' leases). Only a ``Retry-After`` block refuses.

Lease tokens not used within ``lease_tokens / rate`` seconds of being due expire. Over-use is
never acceptable, so the bound is kept exact: a token used in a window ``[a, b]`` was due in
``[a - ttl, b]``, when the bucket had at most ``capacity + rate * (b - a + ttl)`` to give; the
Redis bucket's capacity is therefore ``burst - lease_tokens`` (``ttl * rate == lease_tokens``),
and the sum over all processes stays within ``rate * window + burst``.

If Redis is unreachable, callers wait (with back-off) rather than send unpaced.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import math
import time
from collections.abc import Awaitable, Callable, Hashable, Sequence
from typing import Final, cast

import redis.asyncio as aioredis
from redis.exceptions import NoScriptError, RedisError

from sender.ratelimit import (
    NORMAL,
    Aimd,
    QueuedLimiter,
    Waiter,
    cancel_and_wait,
    check_limits,
)
from sender.redisconn import redis_from_url

log = logging.getLogger(__name__)

# KEYS[1]: the limiter hash. ARGV: op ("take" | "throttle"), ceiling, capacity,
# min_rate_fraction, decrease_factor, recovery_fraction_per_s, cut_cooldown_s, amount (take:
# tokens wanted; throttle: Retry-After seconds or -1).
# Returns {granted, wait_s, rate_per_s, blocked_s, cut}: a take is refused (granted 0) only
# while blocked; otherwise it is granted, usable after wait_s (a reservation). Floats travel
# as strings: Lua numbers come back as truncated integers, and tostring() keeps only 14 digits
# (too few for a Unix time in microseconds), hence %.17g.
SCRIPT: Final = """
if redis.replicate_commands then redis.replicate_commands() end
local key = KEYS[1]
local op = ARGV[1]
local ceiling = tonumber(ARGV[2])
local cap = tonumber(ARGV[3])
local min_frac = tonumber(ARGV[4])
local decrease = tonumber(ARGV[5])
local slope = ceiling * tonumber(ARGV[6])
local cooldown = tonumber(ARGV[7])
local amount = tonumber(ARGV[8])

local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000

local s = redis.call('HMGET', key, 'tokens', 'last', 'rate', 'from', 'cut', 'until')
local tokens = tonumber(s[1]) or cap
local last = tonumber(s[2]) or now
local rate = tonumber(s[3]) or ceiling
local from = tonumber(s[4]) or now
local last_cut = tonumber(s[5]) or 0
local blocked = tonumber(s[6]) or 0
if rate > ceiling then rate = ceiling end

-- The rate is `rate` until `from`, then grows by `slope` per second up to the ceiling.
local function rate_at(x)
  if x <= from then return rate end
  return math.min(ceiling, rate + slope * (x - from))
end
-- Tokens accrued from `from` to x (negative before it).
local function area(x)
  local d = x - from
  if d <= 0 or rate >= ceiling then return rate * d end
  local ramp = (ceiling - rate) / slope
  if d <= ramp then return rate * d + slope * d * d / 2 end
  return rate * ramp + slope * ramp * ramp / 2 + ceiling * (d - ramp)
end

-- `last` is in the future while blocked: nothing accrues during a Retry-After window.
if now > last then
  tokens = tokens + area(now) - area(last)
  last = now
end
if tokens > cap then tokens = cap end
if now > from then
  rate = rate_at(now)
  from = now
end

local granted, wait, cut = 0, 0, 0
if op == 'take' then
  if now < blocked then
    wait = blocked - now
  else
    -- Granted now, or reserved: usable after `wait`, when the bucket would hold `need`.
    -- More than the capacity is granted on a full bucket and leaves debt.
    local need = math.min(amount, cap)
    if tokens + 1e-9 < need then wait = (need - tokens) / rate end
    tokens = tokens - amount
    granted = amount
  end
else
  if amount > 0 and now + amount > blocked then
    blocked = now + amount
    if last < blocked then last = blocked end
  end
  if now - last_cut >= cooldown then
    rate = math.max(ceiling * min_frac, rate * decrease)
    last_cut = now
    cut = 1
  end
  from = math.max(now, blocked)
end

local function fmt(x) return string.format('%.17g', x) end
redis.call('HSET', key, 'tokens', fmt(tokens), 'last', fmt(last), 'rate', fmt(rate),
  'from', fmt(from), 'cut', fmt(last_cut), 'until', fmt(blocked))
-- Keep the state while it matters (a block, a recovery, a debt), then let it go: a missing
-- hash is a full bucket at the ceiling.
local settle = math.max(blocked, from + (ceiling - rate) / slope, last) - now
settle = settle + (cap - tokens) / ceiling + 60
redis.call('PEXPIRE', key, math.ceil(settle * 1000))
return {granted, fmt(wait), fmt(rate_at(now)), fmt(math.max(0, blocked - now)), cut}
"""

SCRIPT_SHA: Final = hashlib.sha1(SCRIPT.encode()).hexdigest()

_TAKE: Final = "take"
_THROTTLE: Final = "throttle"
# A refused take waits at least this long, so rounding can never spin the pump.
_MIN_WAIT_S: Final = 1e-4
_BACKOFF_BASE_S: Final = 0.05
_BACKOFF_MAX_S: Final = 2.0


class RedisTokenBucket(QueuedLimiter):
    """A token bucket shared through Redis by every daemon that uses the same ``key``.

    Same interface as :class:`~sender.ratelimit.TokenBucket` (both are
    :class:`~sender.ratelimit.ProviderLimiter`). ``client`` stays the caller's unless the
    limiter was made by :meth:`from_url`. ``rate_per_s`` is the shared rate as of this
    process's last script call.
    """

    _PUMP_NAME = "ratelimit-redis-pump"

    def __init__(
        self,
        client: aioredis.Redis,
        key: str,
        rate_per_s: float,
        burst: int,
        *,
        lease_s: float = 0.02,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        min_rate_fraction: float = 0.05,
        decrease_factor: float = 0.5,
        recovery_fraction_per_s: float = 0.1,
        cut_cooldown_s: float = 1.0,
        owns_client: bool = False,
    ) -> None:
        aimd = Aimd(min_rate_fraction, decrease_factor, recovery_fraction_per_s, cut_cooldown_s)
        super().__init__(rate_per_s, burst, clock, sleep, aimd)
        if not lease_s > 0:
            raise ValueError("lease_s must be positive")
        self._client = client
        self._key = key
        self._owns_client = owns_client
        self._lease_s = lease_s
        self._resize()

        # The local lease: tokens taken from Redis, usable until ``_lease_expires``.
        self._lease = 0
        self._lease_expires = -math.inf

        # Throttle signals waiting to reach Redis, coalesced into one script call at a time.
        self._signal_task: asyncio.Task[None] | None = None
        self._signal_pending = False
        self._signal_retry_s = -1.0

        #: Script calls made (how well local batching spares Redis).
        self.redis_calls_total = 0

    @classmethod
    def from_url(
        cls,
        url: str,
        *,
        key: str,
        rate_per_s: float,
        burst: int,
        lease_s: float = 0.02,
    ) -> RedisTokenBucket:
        """A limiter with its own Redis client, closed by :meth:`close`."""
        return cls(redis_from_url(url), key, rate_per_s, burst, lease_s=lease_s, owns_client=True)

    def _resize(self) -> None:
        ceiling = self._ceiling
        self._lease_max = max(1, min(int(ceiling * self._lease_s), self._burst // 2))
        # A one-token lease is used at once, never held: nothing to reserve for it.
        reserve = self._lease_max if self._lease_max > 1 else 0
        self._capacity = self._burst - reserve
        self._lease_ttl_s = self._lease_max / ceiling
        # ARGV[2..7] of the script: the Aimd fields come in the order it reads them.
        self._script_args = tuple(repr(float(x)) for x in (ceiling, self._capacity, *self._aimd))

    # -- state -------------------------------------------------------------------------------

    @property
    def rate_per_s(self) -> float:
        return self._rate

    @property
    def capacity(self) -> int:
        """The Redis bucket's capacity: ``burst`` less the reserve for held lease tokens."""
        return self._capacity

    @property
    def lease_tokens(self) -> int:
        """The most tokens one lease takes at the ceiling rate."""
        return self._lease_max

    # -- acquiring ---------------------------------------------------------------------------

    async def acquire(self, n: int = 1, *, priority: int = NORMAL, key: Hashable = 0) -> float:
        """Wait for ``n`` tokens in priority/round-robin order; return the seconds waited."""
        if not self._queue.count and self._lease >= n and self._clock() < self._lease_expires:
            self._lease -= n
            self.grants_total += 1
            self.tokens_total += n
            return 0.0
        return await self._wait(n, priority, key)

    async def _pump(self) -> None:
        """Grant queued waiters from the lease, taking a new lease from Redis when it runs out."""
        queue = self._queue
        failures = 0
        while (waiter := queue.peek()) is not None:
            now = self._clock()
            if self._lease >= waiter.n and now < self._lease_expires:
                self._grant(waiter)
                continue
            if now < self._blocked_until:
                await self._sleep(self._blocked_until - now)
                continue
            # Leftovers too few for the head waiter (or expired) are let go, never pooled
            # with the next lease: a token must be used within its lease's lifetime.
            self._lease = 0
            big = waiter.n > self._lease_max
            want = waiter.n if big else max(waiter.n, self._lease_size())
            sent = self._clock()
            try:
                reply = await self._call(_TAKE, want)
            except (RedisError, OSError) as exc:
                failures += 1
                delay = min(_BACKOFF_MAX_S, _BACKOFF_BASE_S * 2 ** min(failures, 8))
                log.warning(
                    "rate limiter cannot reach Redis; sends wait",
                    extra={"error": repr(exc), "retry_in_s": delay},
                )
                await self._sleep(delay)
                continue
            failures = 0
            granted, wait = self._apply(reply)
            if not granted:
                # Blocked by a Retry-After (``_apply`` recorded until when); the floor
                # keeps a block ending within microseconds from spinning on Redis.
                floor = self._clock() + _MIN_WAIT_S
                self._blocked_until = max(self._blocked_until, floor)
                continue
            # The lease is usable from ``wait`` after Redis granted it (counted from the
            # reply, later) until ``ttl`` after that (counted from the request, earlier).
            self._lease_expires = sent + wait + self._lease_ttl_s
            signals = self.throttled_total
            if wait > 0.0:
                await self._sleep(wait)
            if self.throttled_total != signals:
                continue  # throttled meanwhile: let the reservation go
            self._lease = granted
            # The head is served at once, even if a slow round trip ate the lease's
            # lifetime: it uses its tokens the moment they are due, it holds none.
            head = queue.peek()
            if head is not None and head.n <= granted:
                self._grant(head)

    def _grant(self, waiter: Waiter) -> None:
        """Serve the head ``waiter`` from the lease."""
        self._lease -= waiter.n
        self.grants_total += 1
        self.tokens_total += waiter.n
        self._queue.grant(waiter)

    def _refund(self, n: int) -> None:
        """Nothing: lease tokens granted to a cancelled caller are lost (under-use only)."""

    def _lease_size(self) -> int:
        # Leases shrink with the adaptive rate, so a slowed-down bucket is shared in small bites.
        return max(1, min(self._lease_max, int(self._rate * self._lease_s)))

    async def _call(self, op: str, amount: float) -> Sequence[object]:
        args = (op, *self._script_args, repr(amount))
        self.redis_calls_total += 1
        try:
            reply = self._client.evalsha(SCRIPT_SHA, 1, self._key, *args)
            return await cast(Awaitable[Sequence[object]], reply)
        except NoScriptError:
            # First use on this server (or after SCRIPT FLUSH): EVAL also caches the script.
            reply = self._client.eval(SCRIPT, 1, self._key, *args)
            return await cast(Awaitable[Sequence[object]], reply)

    def _apply(self, reply: Sequence[object]) -> tuple[int, float]:
        """Take in the shared state from a script reply; return (granted, wait_s)."""
        granted, wait, rate, blocked, cut = (_number(x) for x in reply)
        self._rate = rate
        if blocked > 0:
            self._blocked_until = max(self._blocked_until, self._clock() + blocked)
        self.cuts_total += int(cut)
        return int(granted), wait

    # -- adaptation --------------------------------------------------------------------------

    def on_throttled(self, retry_after_s: float | None) -> None:
        """Apply a 429/503 locally at once and share it through Redis in the background."""
        self.throttled_total += 1
        # The provider is saturated: do not spend what is left of the lease.
        self._lease = 0
        if retry_after_s is not None and retry_after_s > 0:
            self._blocked_until = max(self._blocked_until, self._clock() + retry_after_s)
            self._signal_retry_s = max(self._signal_retry_s, retry_after_s)
        self._signal_pending = True
        if self._signal_task is None and not self._closed:
            self._signal_task = asyncio.create_task(
                self._send_signals(), name="ratelimit-redis-throttle"
            )

    async def _send_signals(self) -> None:
        try:
            while self._signal_pending:
                retry_s, self._signal_retry_s = self._signal_retry_s, -1.0
                self._signal_pending = False
                try:
                    reply = await self._call(_THROTTLE, retry_s)
                except RedisError as exc:
                    # The local block and lease drop already apply; other daemons will see
                    # 429s of their own.
                    log.warning(
                        "rate limiter could not share a throttle signal",
                        extra={"error": repr(exc)},
                    )
                    continue
                self._apply(reply)
        finally:
            self._signal_task = None

    async def flush(self) -> None:
        """Wait until throttle signals given so far have reached Redis."""
        task = self._signal_task
        if task is not None:
            await asyncio.shield(task)

    def set_ceiling(self, rate_per_s: float) -> None:
        """Reconfigure the rate; Redis takes it on this process's next script call."""
        check_limits(rate_per_s, self._burst)
        self._ceiling = float(rate_per_s)
        self._rate = min(self._rate, self._ceiling)
        self._resize()

    # -- lifecycle ---------------------------------------------------------------------------

    async def close(self) -> None:
        await super().close()
        task, self._signal_task = self._signal_task, None
        await cancel_and_wait(task)
        if self._owns_client:
            await self._client.aclose()


def _number(value: object) -> float:
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, bytes | str):
        return float(value)
    raise TypeError(f"unexpected script reply item {value!r}")
