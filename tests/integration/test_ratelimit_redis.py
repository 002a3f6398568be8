"""The shared provider limiter against the real Redis: several limiter instances (one per
simulated daemon, each with its own connection pool) share one rate, a throttle signal from one
slows the others, bulk requests go into debt, the script survives a missing script cache, and an
unreachable Redis makes callers wait instead of sending unpaced.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable

import pytest

from sender import ratelimit_redis
from sender.ratelimit import ProviderLimiter
from sender.ratelimit_redis import RedisTokenBucket
from sender.redisconn import key as redis_key
from sender.redisconn import redis_from_url

RATE = 200.0
BURST = 20

MakeLimiter = Callable[..., RedisTokenBucket]


@pytest.fixture
def limiter_key(redis_prefix: str) -> str:
    return redis_key(redis_prefix, "limiter", "provider")


@pytest.fixture
async def make_limiter(redis_url: str, limiter_key: str) -> AsyncIterator[MakeLimiter]:
    limiters: list[RedisTokenBucket] = []

    def make(rate_per_s: float = RATE, burst: int = BURST) -> RedisTokenBucket:
        limiter = RedisTokenBucket.from_url(
            redis_url, key=limiter_key, rate_per_s=rate_per_s, burst=burst
        )
        limiters.append(limiter)
        return limiter

    yield make
    for limiter in limiters:
        await limiter.close()


async def consume(limiter: RedisTokenBucket, until: float, grants: list[float], store: int) -> None:
    """Acquire one token at a time until ``until`` (monotonic), recording each grant's time."""
    while True:
        await limiter.acquire(key=store)
        now = time.monotonic()
        if now >= until:
            return
        grants.append(now)


def busiest_window(grants: list[float], window_s: float) -> int:
    grants = sorted(grants)
    worst, lo = 0, 0
    for hi, t in enumerate(grants):
        while grants[lo] < t - window_s:
            lo += 1
        worst = max(worst, hi - lo + 1)
    return worst


async def test_daemons_share_one_rate(make_limiter: MakeLimiter) -> None:
    daemons = [make_limiter() for _ in range(3)]
    limiter: ProviderLimiter = daemons[0]
    assert limiter.rate_per_s == RATE
    lease = daemons[0].lease_tokens
    assert lease == 4  # 20 ms at 200/s
    assert daemons[0].capacity == BURST - lease

    grants: list[float] = []
    start = time.monotonic()
    until = start + 2.0
    await asyncio.gather(
        *(consume(d, until, grants, store) for d in daemons for store in range(10))
    )
    elapsed = until - start

    allowed = RATE * elapsed + BURST
    tolerance = lease * len(daemons)
    assert len(grants) <= allowed + tolerance
    assert len(grants) >= 0.85 * allowed
    assert busiest_window(grants, 0.5) <= RATE * 0.5 + BURST + tolerance
    # Every daemon got a share, and Redis was asked once per lease, not once per message.
    assert all(d.grants_total >= len(grants) / 10 for d in daemons)
    assert sum(d.redis_calls_total for d in daemons) <= len(grants) / 2


async def test_a_throttle_signal_from_one_daemon_slows_the_others(
    make_limiter: MakeLimiter,
) -> None:
    throttled, *others = [make_limiter() for _ in range(3)]
    throttled.on_throttled(0.3)
    assert throttled.blocked_for() == pytest.approx(0.3, abs=0.05)
    await throttled.flush()
    assert throttled.cuts_total == 1
    assert throttled.rate_per_s == pytest.approx(RATE / 2, rel=0.02)

    grants: list[float] = []
    start = time.monotonic()
    until = start + 1.0
    await asyncio.gather(*(consume(d, until, grants, store) for d in others for store in range(5)))

    # Nothing before the shared Retry-After ends, then about half the rate: the bucket's 16
    # tokens (kept through the block) plus 100/s rising by 20/s per second over 0.7 s (~91),
    # where the unthrottled rate would have granted 216.
    assert min(grants) - start >= 0.25
    assert 60 <= len(grants) <= 110
    for daemon in others:
        assert daemon.rate_per_s < RATE * 0.6
        assert daemon.cuts_total == 0


async def test_a_storm_of_429s_across_daemons_is_one_cut(make_limiter: MakeLimiter) -> None:
    daemons = [make_limiter() for _ in range(3)]
    for _ in range(100):
        for daemon in daemons:
            daemon.on_throttled(None)
    for daemon in daemons:
        await daemon.flush()
    assert sum(d.cuts_total for d in daemons) == 1
    assert sum(d.redis_calls_total for d in daemons) <= 2 * len(daemons)
    assert all(d.rate_per_s == pytest.approx(RATE / 2, rel=0.02) for d in daemons)


async def test_a_bulk_request_goes_into_debt_that_others_repay(make_limiter: MakeLimiter) -> None:
    bulk, other = make_limiter(), make_limiter()
    assert await bulk.acquire(30) == pytest.approx(0.0, abs=0.05)
    # The bucket (16) is now 14 in debt; the other daemon's next lease of 4 needs 18 tokens.
    waited = await other.acquire(1)
    assert 0.07 <= waited <= 0.25


async def test_state_lives_under_the_prefix_and_expires(
    make_limiter: MakeLimiter, redis_url: str, limiter_key: str, redis_prefix: str
) -> None:
    limiter = make_limiter()
    await limiter.acquire()
    client = redis_from_url(redis_url)
    try:
        assert limiter_key.startswith(f"{redis_prefix}:")
        assert await client.exists(limiter_key) == 1
        assert 0 < await client.pttl(limiter_key) <= 120_000
    finally:
        await client.aclose()


async def test_falls_back_to_eval_when_the_script_is_not_cached(
    make_limiter: MakeLimiter, monkeypatch: pytest.MonkeyPatch
) -> None:
    # An unknown SHA answers NOSCRIPT exactly as a server whose script cache was flushed.
    monkeypatch.setattr(ratelimit_redis, "SCRIPT_SHA", "0" * 40)
    limiter = make_limiter()
    for _ in range(10):
        await limiter.acquire()
    assert limiter.grants_total == 10


async def test_without_redis_callers_wait_instead_of_sending() -> None:
    limiter = RedisTokenBucket.from_url(
        "redis://127.0.0.1:1/0", key="unreachable:limiter:provider", rate_per_s=RATE, burst=BURST
    )
    try:
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(limiter.acquire(), timeout=0.3)
        assert limiter.grants_total == 0
    finally:
        await limiter.close()
    assert limiter.waiting == 0
