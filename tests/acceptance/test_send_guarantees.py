"""The guarantees of the send path, proven with real processes and faults (DESIGN.md section 6)."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

import asyncpg
import pytest
import redis.asyncio as aioredis

from sender.config import Settings
from tests.acceptance.guarantees import check_guarantees
from tests.acceptance.stack import Stack, running_stack

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

MESSAGE = "Hi {{first_name}}, 20% off today at {{link:https://shop.example/sale}}"
# Short timeouts and backoff so retries and hangs play out within the test.
FAST_RETRIES = {
    "SENDER_MITTO_READ_TIMEOUT_S": "1.0",
    "SENDER_RETRY_BASE_S": "0.2",
    "SENDER_SENDING_LEASE_S": "15",
    "SENDER_SWEEP_INTERVAL_S": "1",
    "SENDER_PROVIDER_RATE": "4000",
    "SENDER_PROVIDER_BURST": "200",
    "SENDER_MAX_IN_FLIGHT": "200",
    "SENDER_BATCH_SIZE": "2000",
    "SENDER_SHUTDOWN_GRACE_S": "5",
}
FAULTY_PROVIDER = {
    "p_429": 0.05,
    "retry_after_s": 1,
    "p_503": 0.03,
    "p_500_after_accept": 0.01,
    "p_hang_after_accept": 0.01,
    "hang_s": 3,
    # Numbers ending in 00 or 01: 2% of the audience.
    "invalid_receiver_pattern": "0[01]$",
}


async def _prepare(stack: Stack, recipients: int, credits: int) -> tuple[int, str, int]:
    store_id, token = await stack.create_store(credits=credits)
    imported = await stack.import_contacts(token, recipients)
    assert imported["inserted"] == recipients
    campaign_id = await stack.create_campaign(token, MESSAGE)
    return store_id, token, campaign_id


async def test_faulty_provider_loses_and_duplicates_nothing(
    settings: Settings, db: asyncpg.Pool, tmp_path: Path
) -> None:
    async with running_stack(
        settings, tmp_path, mock_config=FAULTY_PROVIDER, env=FAST_RETRIES
    ) as stack:
        store_id, token, campaign_id = await _prepare(stack, 20_000, credits=100_000)
        accepted = await stack.send(token, campaign_id)
        assert accepted["status"] == "sending" and accepted["recipients"] == 20_000
        final = await stack.wait_finished(token, campaign_id, timeout_s=240)
        assert final["status"] == "sent"
        assert stack.mock is not None
        figures = await check_guarantees(db, stack.mock, campaign_id, store_id, topped_up=100_000)
        statuses = figures["statuses"]
        # The faults really happened and were classified.
        assert statuses.get("unknown", 0) > 0
        assert statuses.get("failed", 0) >= 300  # 2% invalid receivers
        stats = await stack.mock.stats()
        assert stats["throttled"] > 0


async def test_daemon_killed_twice_mid_send(
    settings: Settings, db: asyncpg.Pool, tmp_path: Path
) -> None:
    env = FAST_RETRIES | {"SENDER_PROVIDER_RATE": "1500"}
    async with running_stack(settings, tmp_path, mock_config={"latency_ms": 5}, env=env) as stack:
        store_id, token, campaign_id = await _prepare(stack, 20_000, credits=100_000)
        await stack.send(token, campaign_id)
        for _ in range(2):
            await stack.wait_until(
                token,
                campaign_id,
                lambda s: s["counts"]["sent"] + s["counts"]["unknown"] >= 3000,
                timeout_s=60,
            )
            assert (await stack.progress(token, campaign_id))["status"] == "sending"
            victim = stack.daemons[-1]
            victim.signal(signal.SIGKILL)
            victim.wait(10)
            await asyncio.sleep(0.5)
            stack.start_daemon()
            seen = (await stack.progress(token, campaign_id))["counts"]["sent"]
            # The new daemon makes progress before the next kill.
            await stack.wait_until(
                token,
                campaign_id,
                lambda s, seen=seen: s["counts"]["sent"] > seen + 2000 or s["status"] != "sending",
                timeout_s=60,
            )
        final = await stack.wait_finished(token, campaign_id, timeout_s=120)
        assert final["status"] == "sent"
        assert stack.mock is not None
        await check_guarantees(db, stack.mock, campaign_id, store_id, topped_up=100_000)


async def test_redis_flushed_mid_send(
    settings: Settings, db: asyncpg.Pool, redis_client: aioredis.Redis, tmp_path: Path
) -> None:
    env = FAST_RETRIES | {"SENDER_PROVIDER_RATE": "1500"}
    async with running_stack(settings, tmp_path, env=env) as stack:
        store_id, token, campaign_id = await _prepare(stack, 10_000, credits=100_000)
        await stack.send(token, campaign_id)
        await stack.wait_until(
            token, campaign_id, lambda s: s["counts"]["sent"] >= 2000, timeout_s=60
        )
        # Everything in Redis goes: queued batch jobs, results, limiter state.
        await redis_client.flushdb()
        final = await stack.wait_finished(token, campaign_id, timeout_s=120)
        assert final["status"] == "sent"
        assert stack.mock is not None
        await check_guarantees(db, stack.mock, campaign_id, store_id, topped_up=100_000)


async def test_graceful_sigterm_exits_zero_and_another_daemon_finishes(
    settings: Settings, db: asyncpg.Pool, tmp_path: Path
) -> None:
    env = FAST_RETRIES | {"SENDER_PROVIDER_RATE": "1000"}
    async with running_stack(settings, tmp_path, env=env) as stack:
        store_id, token, campaign_id = await _prepare(stack, 8_000, credits=100_000)
        await stack.send(token, campaign_id)
        await stack.wait_until(
            token, campaign_id, lambda s: s["counts"]["sent"] >= 1000, timeout_s=60
        )
        first = stack.daemons[0]
        first.signal(signal.SIGTERM)
        assert first.wait(15) == 0
        # Nothing is left in flight by a graceful stop.
        assert (
            await db.fetchval(
                "SELECT count(*) FROM campaign_recipients"
                " WHERE campaign_id = $1 AND status = 'sending'",
                campaign_id,
            )
            == 0
        )
        stack.start_daemon()
        final = await stack.wait_finished(token, campaign_id, timeout_s=120)
        assert final["status"] == "sent"
        assert stack.mock is not None
        await check_guarantees(db, stack.mock, campaign_id, store_id, topped_up=100_000)
