"""Materialization: one INSERT ... SELECT per campaign, and what keeps its rows consistent."""

from __future__ import annotations

import asyncpg

from sender.db import pipeline
from sender.db.queries import sql
from tests.integration.pipeline_factories import sending_campaign, store_with_contacts


async def _materialize(db: asyncpg.Pool, campaign_id: int, batch_size: int) -> int:
    async with db.acquire() as conn, conn.transaction():
        target = await pipeline.lock_campaign_for_dispatch(conn, campaign_id)
        assert target is not None
        return await pipeline.materialize(conn, target, batch_size)


async def test_recipients_are_batched_in_contact_order_and_a_repeat_adds_none(
    db: asyncpg.Pool,
) -> None:
    store_id = await store_with_contacts(db, 5)
    campaign_id = await sending_campaign(db, store_id, reserve=5, recipients=5, materialize=False)
    assert await _materialize(db, campaign_id, 2) == 5
    query = (
        "SELECT r.contact_id, r.batch_no, r.phone = c.phone AS same_phone"
        " FROM campaign_recipients r JOIN contacts c ON c.id = r.contact_id"
        " WHERE r.campaign_id = $1 ORDER BY r.id"
    )
    rows = await db.fetch(query, campaign_id)
    contact_ids = [r["id"] for r in await db.fetch("SELECT id FROM contacts ORDER BY id")]
    assert [r["contact_id"] for r in rows] == contact_ids
    assert [r["batch_no"] for r in rows] == [0, 0, 1, 1, 2]
    assert all(r["same_phone"] for r in rows)
    # Dispatch only materializes while total_recipients is NULL; even called again, the
    # statement leaves a materialized campaign as it was.
    async with db.acquire() as conn, conn.transaction():
        target = await pipeline.lock_campaign_for_dispatch(conn, campaign_id)
        assert target is not None
        status = await conn.execute(
            sql("pipeline.materialize"), campaign_id, store_id, [], [], [], 2, None
        )
        assert status == "INSERT 0 0"
    assert await db.fetch(query, campaign_id) == rows


async def test_deleting_a_store_deletes_its_campaigns_recipients(db: asyncpg.Pool) -> None:
    store_id = await store_with_contacts(db, 3)
    other_id = await store_with_contacts(db, 2)
    await sending_campaign(db, store_id, reserve=3, recipients=3)
    other_campaign = await sending_campaign(db, other_id, reserve=2, recipients=2)
    await db.execute("DELETE FROM stores WHERE id = $1", store_id)
    for table in ("contacts", "campaigns", "campaign_recipients"):
        left = await db.fetchval(f"SELECT count(*) FROM {table} WHERE store_id = $1", store_id)
        assert left == 0, table
    assert (
        await db.fetchval(
            "SELECT count(*) FROM campaign_recipients WHERE campaign_id = $1", other_campaign
        )
        == 2
    )
