"""The batch job against a real database and the real mock over HTTP (in-process)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg

from sender.batch import BatchSender, SenderConfig
from sender.mitto import MittoClient
from sender.mock_mitto.harness import InProcessMock, run_mock
from sender.outcomes import OutcomeWriter
from sender.ratelimit import TokenBucket
from sender.retry import RetryPolicy
from tests.acceptance.guarantees import check_guarantees
from tests.integration.pipeline_factories import sending_campaign, store_with_contacts

PERSONAL = "Hi {{first_name}}, 20% off today"


@asynccontextmanager
async def senders(
    pool: asyncpg.Pool, mock: InProcessMock, count: int = 1, *, rate: float = 100_000
) -> AsyncIterator[list[BatchSender]]:
    client = MittoClient(
        base_url=mock.base_url,
        api_key="dev-key",
        connect_timeout_s=2,
        read_timeout_s=2,
        pool_limit=200,
        pool_limit_per_host=200,
    )
    await client.start()
    limiter = TokenBucket(rate, 500)
    writer = OutcomeWriter(pool, flush_interval_s=0.05)
    writer.start()
    config = SenderConfig(
        public_url="http://127.0.0.1:8080",
        link_secret=b"secret",
        claim_chunk_size=100,
        policy=RetryPolicy(max_attempts=3, base_s=0.05),
    )
    made = [
        BatchSender(
            pool=pool,
            client=client,
            limiter=limiter,
            writer=writer,
            config=config,
            max_in_flight=50,
            daemon_id=f"test-{i}",
        )
        for i in range(count)
    ]
    try:
        yield made
    finally:
        await writer.close()
        await limiter.close()
        await client.close()


async def test_a_batch_run_twice_at_once_sends_each_recipient_once(db: asyncpg.Pool) -> None:
    store_id = await store_with_contacts(db, 1500, credits=10_000)
    campaign_id = await sending_campaign(db, store_id, reserve=1500, recipients=1500)
    async with run_mock() as mock, senders(db, mock, count=2) as (first, second):
        results = await asyncio.gather(
            first.run_batch(campaign_id, 0, 0), second.run_batch(campaign_id, 0, 0)
        )
        assert sum(r.sent_requests for r in results) == 1500
        assert all(r.sent_requests > 0 for r in results), "both runs should have shared the work"
        stats = await mock.stats()
        assert stats["accepted"] == 1500
        await first.writer.flush()
        figures = await check_guarantees(db, mock, campaign_id, store_id, topped_up=10_000)
        assert figures["statuses"] == {"sent": 1500}


async def test_a_superseded_generation_does_nothing(db: asyncpg.Pool) -> None:
    store_id = await store_with_contacts(db, 10, credits=100)
    campaign_id = await sending_campaign(db, store_id, reserve=10, recipients=10)
    await db.execute(
        "UPDATE campaign_batches SET generation = 1 WHERE campaign_id = $1", campaign_id
    )
    async with run_mock() as mock, senders(db, mock) as (sender,):
        result = await sender.run_batch(campaign_id, 0, 0)
        assert result.superseded
        assert (await mock.stats())["requests"] == 0


async def test_identical_texts_go_through_smsbulk(db: asyncpg.Pool) -> None:
    store_id = await store_with_contacts(db, 250, credits=1000)
    campaign_id = await sending_campaign(
        db, store_id, message="Flash sale today only!", reserve=250, recipients=250
    )
    async with run_mock() as mock, senders(db, mock) as (sender,):
        result = await sender.run_batch(campaign_id, 0, 0)
        assert result.finished
        stats = await mock.stats()
        assert stats["accepted"] == 250
        # One /smsbulk request carries the whole chunk, not 250 requests.
        assert stats["requests"] == 1
    assert await db.fetchval("SELECT sent_count FROM campaigns WHERE id = $1", campaign_id) == 250


async def test_opted_out_after_materialization_is_skipped(db: asyncpg.Pool) -> None:
    store_id = await store_with_contacts(db, 20, credits=100)
    campaign_id = await sending_campaign(db, store_id, message=PERSONAL, reserve=20, recipients=20)
    await db.execute(
        "UPDATE contacts SET consent = 'opted_out' WHERE store_id = $1 AND id IN"
        " (SELECT id FROM contacts WHERE store_id = $1 ORDER BY id LIMIT 5)",
        store_id,
    )
    async with run_mock() as mock, senders(db, mock) as (sender,):
        await sender.run_batch(campaign_id, 0, 0)
        assert (await mock.stats())["accepted"] == 15
    statuses = dict(
        await db.fetch(
            "SELECT status, count(*) FROM campaign_recipients WHERE campaign_id = $1 GROUP BY 1",
            campaign_id,
        )
    )
    assert statuses == {"sent": 15, "skipped": 5}
    assert (
        await db.fetchval(
            "SELECT count(*) FROM campaign_recipients WHERE campaign_id = $1"
            " AND status = 'skipped' AND error_category = 'opted_out'",
            campaign_id,
        )
        == 5
    )


async def test_credits_running_out_mid_send_fail_the_rest_cleanly(db: asyncpg.Pool) -> None:
    # Reserved for 10, the store has nothing more: 10 are sent, 20 fail with a clear category.
    store_id = await store_with_contacts(db, 30, credits=10)
    campaign_id = await sending_campaign(db, store_id, message=PERSONAL, reserve=10, recipients=30)
    async with run_mock() as mock, senders(db, mock) as (sender,):
        await sender.run_batch(campaign_id, 0, 0)
        assert (await mock.stats())["accepted"] == 10
    statuses = dict(
        await db.fetch(
            "SELECT error_category, count(*) FROM campaign_recipients"
            " WHERE campaign_id = $1 AND status = 'failed' GROUP BY 1",
            campaign_id,
        )
    )
    assert statuses == {"insufficient_credits": 20}
    store = await db.fetchrow(
        "SELECT credits_available, credits_reserved FROM stores WHERE id = $1", store_id
    )
    assert store is not None
    assert store["credits_available"] == 0 and store["credits_reserved"] == 0


async def test_transient_errors_are_retried_and_permanent_ones_fail_at_once(
    db: asyncpg.Pool,
) -> None:
    store_id = await store_with_contacts(db, 100, credits=1000)
    campaign_id = await sending_campaign(
        db, store_id, message=PERSONAL, reserve=100, recipients=100
    )
    config = {"p_reset": 0.3, "invalid_receiver_pattern": "0[0-4]$"}
    async with run_mock(config, seed=7) as mock, senders(db, mock) as (sender,):
        result = await sender.run_batch(campaign_id, 0, 0)
        while not result.finished:
            assert result.next_due is not None
            await asyncio.sleep(0.2)
            result = await sender.run_batch(campaign_id, 0, 0)
        stats = await mock.stats()
    rows = dict(
        await db.fetch(
            "SELECT status, count(*) FROM campaign_recipients WHERE campaign_id = $1 GROUP BY 1",
            campaign_id,
        )
    )
    # Numbers ending 00..04: 5 invalid receivers; resets are retried (some may exhaust 3 tries).
    assert rows.get("sent", 0) + rows.get("failed", 0) == 100
    # The invalid receivers fail for good the first time the provider sees them (a reset
    # before that is retried); nobody else fails as invalid.
    invalid = await db.fetch(
        "SELECT phone, status, error_category FROM campaign_recipients"
        " WHERE campaign_id = $1 AND phone ~ '0[0-4]$'",
        campaign_id,
    )
    assert len(invalid) == 5 and all(r["status"] == "failed" for r in invalid)
    assert (
        await db.fetchval(
            "SELECT count(*) FROM campaign_recipients WHERE campaign_id = $1"
            " AND error_category = 'invalid_number' AND phone !~ '0[0-4]$'",
            campaign_id,
        )
        == 0
    )
    assert (
        await db.fetchval(
            "SELECT max(attempts) FROM campaign_recipients WHERE campaign_id = $1", campaign_id
        )
        >= 2
    )
    assert stats["duplicates"] == 0


async def test_requests_on_the_wire_never_exceed_max_in_flight(db: asyncpg.Pool) -> None:
    # Claims run ahead of the requests (to keep the window full), but the provider never sees
    # more concurrent requests than the cap, however many batch jobs share the sender.
    store_id = await store_with_contacts(db, 1200, credits=10_000)
    campaign_id = await sending_campaign(
        db, store_id, reserve=1200, recipients=1200, batch_size=300
    )
    async with (
        run_mock({"latency_ms": 20}) as mock,
        senders(db, mock) as (sender,),
    ):
        results = await asyncio.gather(*(sender.run_batch(campaign_id, b, 0) for b in range(4)))
        assert sum(r.sent_requests for r in results) == 1200, (results, await mock.stats())
        stats = await mock.stats()
        assert stats["accepted"] == 1200
        assert stats["in_flight_max"] == sender.max_in_flight, stats
        figures = await check_guarantees(db, mock, campaign_id, store_id, topped_up=10_000)
        assert figures["statuses"] == {"sent": 1200}
