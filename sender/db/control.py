"""Queries behind cancel, pause, resume and retry (sql/queries/control.sql)."""

from __future__ import annotations

from dataclasses import dataclass

from sender.db.pool import Connection, Pool
from sender.db.queries import sql


@dataclass(frozen=True, slots=True)
class LockedCampaign:
    id: int
    store_id: int
    status: str
    priority: str
    dispatch_round: int
    total_recipients: int | None
    credits_reserved: int
    credits_allocated: int
    credits_charged: int
    credits_released: int


async def lock(conn: Connection, campaign_id: int, store_id: int) -> LockedCampaign | None:
    row = await conn.fetchrow(sql("control.lock"), campaign_id, store_id)
    return LockedCampaign(**dict(row)) if row is not None else None


async def set_status(conn: Connection, campaign_id: int, status: str) -> None:
    await conn.execute(sql("control.set_status"), campaign_id, status)


async def cancel_pending(conn: Connection, campaign_id: int) -> int:
    cancelled: int = await conn.fetchval(sql("control.cancel_pending"), campaign_id)
    return cancelled


async def release_unallocated(conn: Connection, campaign_id: int, note: str) -> int:
    released = await conn.fetchval(sql("control.release_unallocated"), campaign_id, note)
    return int(released or 0)


async def cancelled_to_settle(pool: Pool) -> list[tuple[int, int]]:
    rows = await pool.fetch(sql("control.cancelled_to_settle"))
    return [(row["id"], row["store_id"]) for row in rows]


async def reopen_failed(
    conn: Connection, campaign_id: int, categories: list[str]
) -> tuple[int, int]:
    """(recipients reopened, their segments)."""
    row = await conn.fetchrow(sql("control.reopen_failed"), campaign_id, categories)
    assert row is not None
    return int(row["recipients"]), int(row["segments"])


async def restart_for_retry(conn: Connection, campaign_id: int, reopened: int, reserve: int) -> int:
    dispatch_round: int = await conn.fetchval(
        sql("control.restart_for_retry"), campaign_id, reopened, reserve
    )
    return dispatch_round


async def bump_open_batches(conn: Connection, campaign_id: int) -> list[tuple[int, int]]:
    rows = await conn.fetch(sql("control.bump_open_batches"), campaign_id)
    return [(row["batch_no"], row["generation"]) for row in rows]


async def bump_dispatch_round(conn: Connection, campaign_id: int) -> int:
    dispatch_round: int = await conn.fetchval(sql("control.bump_dispatch_round"), campaign_id)
    return dispatch_round
