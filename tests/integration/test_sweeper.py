"""The sweeper against real PostgreSQL and Redis: crashed claims, lost jobs, schedules, races."""

from __future__ import annotations

import asyncio

import asyncpg
import redis.asyncio as aioredis
from arq.connections import ArqRedis

from sender.config import Settings
from sender.db import pipeline
from sender.db.completion import try_complete
from sender.jobs import batch_job_id, create_arq_pool, dispatch_job_id
from sender.sweeper import Sweeper
from tests.integration.pipeline_factories import (
    ledger_balances,
    sending_campaign,
    store_with_contacts,
)


async def _sweeper(settings: Settings, db: asyncpg.Pool) -> tuple[Sweeper, ArqRedis]:
    assert settings.redis_url is not None
    arq = await create_arq_pool(settings.redis_url, settings.redis_prefix)
    return (
        Sweeper(db, arq, prefix=settings.redis_prefix, sending_lease_s=0.0, actor="test"),
        arq,
    )


async def test_crashed_claims_become_unknown_or_pending(
    settings: Settings, db: asyncpg.Pool
) -> None:
    store_id = await store_with_contacts(db, 20, credits=100)
    campaign_id = await sending_campaign(db, store_id, reserve=20, recipients=20)
    # A daemon claimed 10 and sent 6 of them (stamped requested) before it was killed.
    claimed = await pipeline.claim(db, campaign_id, 0, 10)
    requested = [c.id for c in claimed[:6]]
    assert await pipeline.allocate_and_mark(db, campaign_id, requested, [1] * 6)
    sweeper, arq = await _sweeper(settings, db)
    try:
        report = await sweeper.sweep()
    finally:
        await arq.aclose(close_connection_pool=True)
    assert (report.unknown_recipients, report.requeued_recipients) == (6, 4)
    statuses = dict(
        await db.fetch(
            "SELECT status, count(*) FROM campaign_recipients WHERE campaign_id = $1 GROUP BY 1",
            campaign_id,
        )
    )
    assert statuses == {"unknown": 6, "pending": 14}
    # The ones that may have reached the provider are charged; the others cost nothing.
    balances = await ledger_balances(db, store_id)
    assert balances["charged"] == 6
    assert balances["credits_reserved"] == balances["res"] == 14


async def test_lost_batch_jobs_are_rebuilt_with_a_new_generation(
    settings: Settings, db: asyncpg.Pool, redis_client: aioredis.Redis
) -> None:
    store_id = await store_with_contacts(db, 30, credits=100)
    campaign_id = await sending_campaign(db, store_id, reserve=30, recipients=30, batch_size=10)
    sweeper, arq = await _sweeper(settings, db)
    try:
        report = await sweeper.sweep()
        # Nothing held the three batches (their jobs were never in Redis: as after FLUSHALL).
        assert report.rebuilt_batches == 3
        for batch_no in range(3):
            key = f"arq:job:{batch_job_id(settings.redis_prefix, campaign_id, batch_no, 1)}"
            assert await redis_client.exists(key) == 1
        # Queued now: a second sweep leaves them alone.
        assert (await sweeper.sweep()).rebuilt_batches == 0
    finally:
        await arq.aclose(close_connection_pool=True)


async def test_due_scheduled_campaigns_start(
    settings: Settings, db: asyncpg.Pool, redis_client: aioredis.Redis
) -> None:
    store_id = await store_with_contacts(db, 5, credits=100)
    campaign_id = await sending_campaign(db, store_id, reserve=5, recipients=5, materialize=False)
    await db.execute(
        "UPDATE campaigns SET status = 'scheduled', scheduled_at = now() - interval '1 second'"
        " WHERE id = $1",
        campaign_id,
    )
    sweeper, arq = await _sweeper(settings, db)
    try:
        report = await sweeper.sweep()
    finally:
        await arq.aclose(close_connection_pool=True)
    assert report.started_scheduled == 1
    assert await db.fetchval("SELECT status FROM campaigns WHERE id = $1", campaign_id) == "sending"
    key = f"arq:job:{dispatch_job_id(settings.redis_prefix, campaign_id, 0)}"
    assert await redis_client.exists(key) == 1


async def test_completion_happens_once_when_daemons_race(db: asyncpg.Pool) -> None:
    store_id = await store_with_contacts(db, 3, credits=10)
    campaign_id = await sending_campaign(db, store_id, reserve=3, recipients=3)
    await db.execute(
        "UPDATE campaign_recipients SET status = 'failed' WHERE campaign_id = $1", campaign_id
    )
    await db.execute("UPDATE campaigns SET failed_count = 3 WHERE id = $1", campaign_id)
    results = await asyncio.gather(
        *(try_complete(db, campaign_id, actor=f"d{i}") for i in range(8))
    )
    done = [r for r in results if r is not None]
    assert len(done) == 1 and done[0].status == "failed" and done[0].released == 3
    assert (
        await db.fetchval(
            "SELECT count(*) FROM campaign_events WHERE campaign_id = $1", campaign_id
        )
        == 1
    )
    assert (
        await db.fetchval("SELECT count(*) FROM webhook_outbox WHERE campaign_id = $1", campaign_id)
        == 1
    )
    balances = await ledger_balances(db, store_id)
    assert balances["credits_available"] == balances["avail"] == 10
