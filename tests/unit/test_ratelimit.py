"""The in-process provider limiter on a fake clock: exact admission counts, bounded windows,
debt, Retry-After, AIMD cut and recovery, priority and per-store fairness, cancellation, close.

The fake ``sleep`` yields once (so waiters granted before it resume at the grant time) and then
advances the fake clock by exactly the requested time, so simulated minutes run in
milliseconds and every count is exact.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import AsyncIterator, Callable, Hashable
from typing import Any

import pytest

from sender.ratelimit import (
    HIGH,
    LOW,
    NORMAL,
    LimiterClosedError,
    ProviderLimiter,
    TokenBucket,
    bucket_capacity,
)


class ManualClock:
    """A clock whose sleeps end only when the test says so (for tests that inspect a queue)."""

    def __init__(self) -> None:
        self.now = 0.0
        self.sleepers: list[tuple[float, asyncio.Future[None]]] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        wakeup = asyncio.get_running_loop().create_future()
        self.sleepers.append((self.now + seconds, wakeup))
        await wakeup

    def release(self) -> None:
        """End the oldest sleep, moving the clock to its deadline."""
        deadline, wakeup = self.sleepers.pop(0)
        self.now = max(self.now, deadline)
        wakeup.set_result(None)


class FakeClock:
    def __init__(self, start: float = 0.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(0)
        self.now += max(0.0, seconds)


MakeBucket = Callable[..., TokenBucket]


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def make_bucket(clock: FakeClock) -> AsyncIterator[MakeBucket]:
    buckets: list[TokenBucket] = []

    def make(rate_per_s: float = 100.0, burst: int = 10, **options: Any) -> TokenBucket:
        bucket = TokenBucket(rate_per_s, burst, clock=clock, sleep=clock.sleep, **options)
        buckets.append(bucket)
        return bucket

    yield make
    for bucket in buckets:
        await bucket.close()


def drain_now(bucket: TokenBucket) -> int:
    """Take every token available at the current instant; return how many."""
    taken = 0
    while bucket.try_acquire() == 0.0:
        taken += 1
    return taken


def greedy_run(bucket: TokenBucket, clock: FakeClock, until_s: float, step_s: float = 0.001) -> int:
    """A caller that takes every token as soon as it exists, on a 1 ms grid up to ``until_s``."""
    start = clock.now
    taken = drain_now(bucket)
    steps = round((until_s - start) / step_s)
    for i in range(1, steps + 1):
        clock.now = start + i * step_s
        taken += drain_now(bucket)
    return taken


async def settle() -> None:
    """Let every runnable task run until it blocks (the fake clock never moves by itself)."""
    for _ in range(5):
        await asyncio.sleep(0)


def assert_no_other_tasks() -> None:
    assert asyncio.all_tasks() == {asyncio.current_task()}


# -- admission counts --------------------------------------------------------------------------


def test_is_a_provider_limiter(make_bucket: MakeBucket) -> None:
    limiter: ProviderLimiter = make_bucket()
    assert limiter.rate_per_s == 100.0
    assert limiter.ceiling_per_s == 100.0
    assert limiter.burst == 10
    assert limiter.waiting == 0
    assert limiter.blocked_for() == 0.0


def test_starts_full_with_exactly_burst_tokens(make_bucket: MakeBucket) -> None:
    bucket = make_bucket(100.0, 10)
    assert drain_now(bucket) == 10
    assert bucket.try_acquire() == pytest.approx(0.01)
    assert bucket.grants_total == 10


def test_half_a_second_admits_exactly_rate_times_elapsed(
    make_bucket: MakeBucket, clock: FakeClock
) -> None:
    bucket = make_bucket(100.0, 10)
    assert drain_now(bucket) == 10
    assert greedy_run(bucket, clock, 0.5) == 50


def test_ten_seconds_admit_exactly_rate_times_duration_plus_burst(
    make_bucket: MakeBucket, clock: FakeClock
) -> None:
    bucket = make_bucket(100.0, 10)
    assert greedy_run(bucket, clock, 10.0) == 100 * 10 + 10
    assert bucket.tokens_total == 1010


def test_no_burst_above_the_bucket_after_a_long_idle(
    make_bucket: MakeBucket, clock: FakeClock
) -> None:
    bucket = make_bucket(100.0, 10)
    greedy_run(bucket, clock, 2.0)
    clock.now += 1000.0
    assert drain_now(bucket) == 10
    assert bucket.tokens == pytest.approx(0.0)


async def test_waiters_are_granted_at_exactly_the_refill_times(
    make_bucket: MakeBucket, clock: FakeClock
) -> None:
    bucket = make_bucket(100.0, 10)
    grants: list[float] = []

    async def one() -> None:
        await bucket.acquire()
        grants.append(clock.now)

    await asyncio.gather(*(one() for _ in range(30)))
    assert grants[:10] == [0.0] * 10
    assert grants[10:] == pytest.approx([k / 100 for k in range(1, 21)])
    assert bucket.waiting == 0
    assert bucket.waited_s_total == pytest.approx(sum(grants))


async def test_fast_path_grants_without_a_task(make_bucket: MakeBucket) -> None:
    bucket = make_bucket(100.0, 10)
    for _ in range(10):
        assert await bucket.acquire() == 0.0
    assert bucket._pump_task is None
    assert_no_other_tasks()


async def test_acquire_returns_the_seconds_waited(
    make_bucket: MakeBucket, clock: FakeClock
) -> None:
    bucket = make_bucket(100.0, 10)
    drain_now(bucket)
    assert await bucket.acquire(3) == pytest.approx(0.03)
    assert clock.now == pytest.approx(0.03)


# -- bulk requests: debt -----------------------------------------------------------------------


def test_more_than_burst_is_admitted_on_a_full_bucket_leaving_debt(
    make_bucket: MakeBucket, clock: FakeClock
) -> None:
    bucket = make_bucket(100.0, 10)
    assert bucket.try_acquire(25) == 0.0
    assert bucket.tokens == pytest.approx(-15.0)
    # The debt is paid before anything else: 15 tokens to reach 0, one more for the request.
    assert bucket.try_acquire(1) == pytest.approx(0.16)
    # A second bulk request waits for a full bucket again.
    assert bucket.try_acquire(25) == pytest.approx(0.25)
    clock.now = 0.2499
    assert bucket.try_acquire(25) > 0.0
    clock.now = 0.25
    assert bucket.try_acquire(25) == 0.0


def test_bulk_is_not_admitted_on_a_partly_full_bucket(
    make_bucket: MakeBucket, clock: FakeClock
) -> None:
    bucket = make_bucket(100.0, 10)
    assert bucket.try_acquire(1) == 0.0
    assert bucket.try_acquire(25) == pytest.approx(0.01)


async def test_bulk_long_run_mean_is_exactly_the_rate(
    make_bucket: MakeBucket, clock: FakeClock
) -> None:
    bucket = make_bucket(100.0, 10)
    grants: list[float] = []
    for _ in range(40):
        await bucket.acquire(25)
        grants.append(clock.now)
    assert grants == pytest.approx([0.25 * k for k in range(40)])
    # 1000 tokens granted = the 10 the bucket started with + 100/s * 9.75 s + 15 still owed.
    assert bucket.tokens_total == 1000
    assert bucket.tokens == pytest.approx(-15.0)
    assert bucket.tokens_total - 10 + bucket.tokens == pytest.approx(100.0 * grants[-1])


# -- a simulated run: every 100 ms window bounded, mean exact ------------------------------------


async def test_a_30_second_run_is_bounded_in_every_window_and_exact_on_average(
    make_bucket: MakeBucket, clock: FakeClock
) -> None:
    rate, burst, duration = 1000.0, 50, 30.0
    bucket = make_bucket(rate, burst)
    grants: list[float] = []

    async def worker(store: int) -> None:
        while True:
            await bucket.acquire(key=store)
            if clock.now > duration:
                return
            grants.append(clock.now)

    await asyncio.gather(*(worker(i % 7) for i in range(200)))

    assert len(grants) == rate * duration + burst
    window, worst, lo = 0.1, 0, 0
    for hi, t in enumerate(grants):
        while grants[lo] < t - window:
            lo += 1
        worst = max(worst, hi - lo + 1)
    assert worst <= rate * window + burst
    mean = len(grants) / duration
    assert abs(mean - rate) / rate < 0.01


# -- Retry-After and AIMD ----------------------------------------------------------------------


async def test_retry_after_blocks_grants_until_its_time(
    make_bucket: MakeBucket, clock: FakeClock
) -> None:
    bucket = make_bucket(100.0, 10, cut_cooldown_s=1.0)
    bucket.on_throttled(2.0)
    assert bucket.blocked_for() == pytest.approx(2.0)
    assert bucket.try_acquire() == pytest.approx(2.0)
    clock.now = 1.999
    assert bucket.try_acquire() == pytest.approx(0.001)

    clock.now = 0.5
    await bucket.acquire()
    assert clock.now == pytest.approx(2.0)
    assert bucket.blocked_for() == 0.0


async def test_tokens_do_not_accrue_while_blocked(
    make_bucket: MakeBucket, clock: FakeClock
) -> None:
    bucket = make_bucket(100.0, 10)
    drain_now(bucket)
    bucket.on_throttled(5.0)  # also cuts the rate to 50/s
    clock.now = 5.0
    assert drain_now(bucket) == 0
    clock.now = 5.1
    assert drain_now(bucket) == 5


def test_a_storm_of_throttle_signals_within_the_cooldown_cuts_once(
    make_bucket: MakeBucket, clock: FakeClock
) -> None:
    bucket = make_bucket(100.0, 10, cut_cooldown_s=1.0)
    for i in range(500):
        clock.now = i * 0.0018  # 500 answers within 0.9 s
        bucket.on_throttled(None)
    assert bucket.cuts_total == 1
    assert bucket.throttled_total == 500
    # Recovery has been running since the cut at t=0: 50 + 10/s * 0.8982 s.
    assert bucket.rate_per_s == pytest.approx(50.0 + 10.0 * clock.now)
    clock.now = 1.0
    bucket.on_throttled(None)
    assert bucket.cuts_total == 2
    assert bucket.rate_per_s == pytest.approx(60.0 * 0.5)


def test_recovery_is_additive_with_time_and_capped_at_the_ceiling(
    make_bucket: MakeBucket, clock: FakeClock
) -> None:
    bucket = make_bucket(100.0, 10, decrease_factor=0.5, recovery_fraction_per_s=0.1)
    clock.now = 3.0
    bucket.on_throttled(None)
    expected = {0.0: 50.0, 1.0: 60.0, 2.5: 75.0, 5.0: 100.0, 10.0: 100.0}
    for dt, rate in expected.items():
        clock.now = 3.0 + dt
        assert bucket.rate_per_s == pytest.approx(rate), dt
    bucket.try_acquire()
    assert not bucket._recovering  # back on the one-multiply refill


def test_tokens_refill_along_the_recovery_curve(make_bucket: MakeBucket, clock: FakeClock) -> None:
    bucket = make_bucket(100.0, 1000)
    drain_now(bucket)
    bucket.on_throttled(None)
    clock.now = 1.0
    # The integral of 50 + 10 t over one second.
    assert bucket.tokens == pytest.approx(55.0)
    clock.now = 7.0
    # ... then 60 -> 100 over four seconds (320), then 100/s for two (200).
    assert bucket.tokens == pytest.approx(55.0 + 320.0 + 200.0)


def test_recovery_starts_after_the_blocked_window(
    make_bucket: MakeBucket, clock: FakeClock
) -> None:
    bucket = make_bucket(100.0, 10)
    bucket.on_throttled(2.0)
    clock.now = 1.5
    assert bucket.rate_per_s == 50.0
    clock.now = 3.0
    assert bucket.rate_per_s == pytest.approx(60.0)


def test_the_rate_never_falls_below_the_floor(make_bucket: MakeBucket, clock: FakeClock) -> None:
    bucket = make_bucket(100.0, 10, min_rate_fraction=0.05, cut_cooldown_s=0.0)
    for _ in range(20):
        bucket.on_throttled(None)
    assert bucket.rate_per_s == pytest.approx(5.0)
    assert bucket.cuts_total == 20


def test_set_ceiling(make_bucket: MakeBucket, clock: FakeClock) -> None:
    bucket = make_bucket(100.0, 10)
    bucket.set_ceiling(200.0)
    assert bucket.rate_per_s == 200.0
    assert bucket.ceiling_per_s == 200.0
    bucket.set_ceiling(40.0)
    assert bucket.rate_per_s == 40.0
    bucket.set_ceiling(100.0)
    bucket.on_throttled(None)
    bucket.set_ceiling(200.0)  # a recovering rate keeps recovering, now towards 200
    assert bucket.rate_per_s == 50.0
    clock.now = 1.0
    assert bucket.rate_per_s == pytest.approx(70.0)
    with pytest.raises(ValueError):
        bucket.set_ceiling(0.0)


@pytest.mark.parametrize(
    ("args", "options"),
    [
        ((0.0, 10), {}),
        ((math.inf, 10), {}),
        ((100.0, 0), {}),
        ((100.0, 10), {"decrease_factor": 0.0}),
        ((100.0, 10), {"min_rate_fraction": 1.5}),
        ((100.0, 10), {"recovery_fraction_per_s": 0.0}),
        ((100.0, 10), {"cut_cooldown_s": -1.0}),
    ],
)
def test_invalid_settings_fail_loudly(args: tuple[float, int], options: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        TokenBucket(*args, **options)  # type: ignore[arg-type]


async def test_invalid_requests_fail_loudly(make_bucket: MakeBucket) -> None:
    bucket = make_bucket(100.0, 10)
    with pytest.raises(ValueError):
        bucket.try_acquire(0)
    drain_now(bucket)
    with pytest.raises(ValueError):
        await bucket.acquire(1, priority=3)
    assert bucket.waiting == 0


# -- order under scarcity ----------------------------------------------------------------------


async def test_high_priority_is_granted_before_earlier_normal_and_low_waiters(
    make_bucket: MakeBucket,
) -> None:
    bucket = make_bucket(100.0, 1)
    drain_now(bucket)
    order: list[str] = []

    async def one(name: str, priority: int) -> None:
        await bucket.acquire(priority=priority)
        order.append(name)

    # All are queued before the pump grants anything; "high" comes last.
    names = [("low1", LOW), ("n1", NORMAL), ("n2", NORMAL), ("low2", LOW), ("n3", NORMAL)]
    names.append(("high", HIGH))
    await asyncio.gather(*(one(name, prio) for name, prio in names))
    assert order == ["high", "n1", "n2", "n3", "low1", "low2"]


async def test_stores_take_turns_so_a_big_store_cannot_starve_a_small_one(
    make_bucket: MakeBucket,
) -> None:
    bucket = make_bucket(100.0, 1)
    drain_now(bucket)
    order: list[Hashable] = []

    async def one(store: Hashable) -> None:
        await bucket.acquire(key=store)
        order.append(store)

    # The big store's 1000 requests are all queued before the small store's 10.
    await asyncio.gather(*(one("big") for _ in range(1000)), *(one("small") for _ in range(10)))
    assert order[:20].count("small") == 10
    assert order[20:] == ["big"] * 990


async def test_within_a_store_requests_are_first_come_first_served(
    make_bucket: MakeBucket,
) -> None:
    bucket = make_bucket(100.0, 1)
    drain_now(bucket)
    order: list[int] = []

    async def one(i: int) -> None:
        await bucket.acquire(key="s")
        order.append(i)

    await asyncio.gather(*(one(i) for i in range(50)))
    assert order == list(range(50))


# -- cancellation and close --------------------------------------------------------------------


@pytest.fixture
async def manual() -> AsyncIterator[tuple[ManualClock, TokenBucket]]:
    """A drained bucket (100/s, burst 1) on a clock that moves only when the test says."""
    clock = ManualClock()
    bucket = TokenBucket(100.0, 1, clock=clock, sleep=clock.sleep)
    drain_now(bucket)
    yield clock, bucket
    await bucket.close()


async def test_cancelled_waiters_are_skipped_and_the_pump_carries_on(
    manual: tuple[ManualClock, TokenBucket],
) -> None:
    clock, bucket = manual
    order: list[int] = []

    async def one(i: int) -> None:
        await bucket.acquire()
        order.append(i)

    tasks = [asyncio.create_task(one(i)) for i in range(4)]
    await settle()
    assert bucket.waiting == 4
    assert [deadline for deadline, _ in clock.sleepers] == [pytest.approx(0.01)]
    tasks[0].cancel()  # the head, which the pump is sleeping for
    tasks[2].cancel()
    await settle()
    assert bucket.waiting == 2
    clock.release()  # t=0.01: one token, for waiter 1 (0 is gone)
    await settle()
    assert order == [1]
    clock.release()  # t=0.02: waiter 3
    await asyncio.gather(tasks[1], tasks[3])
    assert order == [1, 3]
    assert tasks[0].cancelled() and tasks[2].cancelled()
    assert bucket.grants_total == 1 + 2
    assert bucket.waiting == 0
    assert clock.now == pytest.approx(0.02)


async def test_a_waiter_cancelled_after_its_grant_gives_the_tokens_back(
    manual: tuple[ManualClock, TokenBucket],
) -> None:
    clock, bucket = manual
    task = asyncio.create_task(bucket.acquire())
    await settle()
    clock.release()
    await asyncio.sleep(0)  # the pump runs and grants; the waiter has not resumed yet
    assert bucket.waiting == 0
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert bucket.tokens == pytest.approx(1.0)
    assert bucket.grants_total == 2  # counters stay monotonic; the token is back


async def test_close_fails_waiters_and_leaves_no_task(
    manual: tuple[ManualClock, TokenBucket],
) -> None:
    _clock, bucket = manual
    tasks = [asyncio.create_task(bucket.acquire(key=i % 3)) for i in range(10)]
    await settle()
    assert bucket.waiting == 10
    assert len(asyncio.all_tasks()) == 10 + 2  # the waiters, the pump, this test
    await bucket.close()
    results = await asyncio.gather(*tasks, return_exceptions=True)
    assert all(isinstance(r, LimiterClosedError) for r in results)
    assert bucket.waiting == 0
    assert bucket._pump_task is None
    assert_no_other_tasks()
    with pytest.raises(LimiterClosedError):
        await bucket.acquire()
    await bucket.close()  # idempotent


async def test_an_idle_limiter_holds_no_task(make_bucket: MakeBucket) -> None:
    bucket = make_bucket(100.0, 1)
    drain_now(bucket)
    await asyncio.gather(*(bucket.acquire() for _ in range(5)))
    await settle()
    assert bucket._pump_task is None
    assert_no_other_tasks()


def test_bucket_capacity_keeps_a_jitter_reserve_of_the_providers_burst() -> None:
    # 25 ms of the rate is kept back, at most half the burst, never below one token.
    assert bucket_capacity(1000, 50) == 25
    assert bucket_capacity(500, 50) == 37
    assert bucket_capacity(40, 50) == 49
    assert bucket_capacity(100_000, 50) == 25
    assert bucket_capacity(1000, 1) == 1
