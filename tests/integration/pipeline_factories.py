"""SQL-level factories for pipeline tests: a store, contacts and a campaign ready to send."""

from __future__ import annotations

import asyncpg

from sender.db import pipeline as db


async def store_with_contacts(
    pool: asyncpg.Pool, contacts: int, *, credits: int = 1_000_000, first_name: str = "Maria"
) -> int:
    store_id: int = await pool.fetchval(
        "INSERT INTO stores (name, sender_id, timezone, credits_available)"
        " VALUES ('Shop', 'SHOP', 'Europe/Athens', 0) RETURNING id"
    )
    if credits:
        await pool.execute(
            "UPDATE stores SET credits_available = $2 WHERE id = $1", store_id, credits
        )
        await pool.execute(
            "INSERT INTO credit_ledger (store_id, kind, available_delta, reserved_delta)"
            " VALUES ($1, 'topup', $2, 0)",
            store_id,
            credits,
        )
    await pool.execute(
        "INSERT INTO contacts (store_id, phone, first_name)"
        " SELECT $1, '+3069' || lpad(g::text, 8, '0'), $3 FROM generate_series(1, $2) g",
        store_id,
        contacts,
        first_name,
    )
    return store_id


async def sending_campaign(
    pool: asyncpg.Pool,
    store_id: int,
    *,
    message: str = "Hi {{first_name}}, 20% off today",
    reserve: int,
    recipients: int,
    batch_size: int = 5000,
    materialize: bool = True,
) -> int:
    """A campaign in `sending` with `reserve` credits reserved (as the send endpoint leaves it)."""
    campaign_id: int = await pool.fetchval(
        "INSERT INTO campaigns (store_id, name, message, status, credits_reserved,"
        " recipients_at_send, started_at) VALUES ($1, 'c', $2, 'sending', $3, $4, now())"
        " RETURNING id",
        store_id,
        message,
        reserve,
        recipients,
    )
    await pool.execute(
        "UPDATE stores SET credits_available = credits_available - $2,"
        " credits_reserved = credits_reserved + $2 WHERE id = $1",
        store_id,
        reserve,
    )
    await pool.execute(
        "INSERT INTO credit_ledger (store_id, campaign_id, kind, available_delta, reserved_delta)"
        " VALUES ($1, $2, 'reserve', -$3::bigint, $3::bigint)",
        store_id,
        campaign_id,
        reserve,
    )
    if materialize:
        async with pool.acquire() as conn, conn.transaction():
            target = await db.lock_campaign_for_dispatch(conn, campaign_id)
            assert target is not None
            await db.materialize(conn, target, batch_size)
    return campaign_id


async def ledger_balances(pool: asyncpg.Pool, store_id: int) -> dict[str, int]:
    """Store balances next to what the ledger says they must be."""
    row = await pool.fetchrow(
        "SELECT s.credits_available, s.credits_reserved,"
        " (SELECT coalesce(sum(available_delta), 0) FROM credit_ledger"
        "   WHERE store_id = s.id) AS avail,"
        " (SELECT coalesce(sum(reserved_delta), 0) FROM credit_ledger"
        "   WHERE store_id = s.id) AS res,"
        " (SELECT coalesce(sum(-reserved_delta), 0) FROM credit_ledger"
        "   WHERE store_id = s.id AND kind = 'charge') AS charged,"
        " (SELECT coalesce(sum(available_delta), 0) FROM credit_ledger"
        "   WHERE store_id = s.id AND kind = 'topup') AS topped_up"
        " FROM stores s WHERE s.id = $1",
        store_id,
    )
    assert row is not None
    return {k: int(v) for k, v in dict(row).items()}
