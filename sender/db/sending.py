"""Queries that start a send and read its progress (sql/queries/sending.sql)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sender.db.pool import Connection, Pool, Record
from sender.db.queries import sql


@dataclass(frozen=True, slots=True)
class LockedCampaign:
    id: int
    store_id: int
    status: str
    message: str
    audience: dict[str, Any]
    priority: str
    scheduled_at: datetime | None
    dispatch_round: int
    credits_reserved: int
    credits_charged: int
    credits_released: int
    subscription_status: str
    credits_available: int


@dataclass(frozen=True, slots=True)
class Started:
    id: int
    status: str
    dispatch_round: int
    priority: str


async def lock_campaign(conn: Connection, campaign_id: int, store_id: int) -> LockedCampaign | None:
    row = await conn.fetchrow(sql("sending.lock_campaign"), campaign_id, store_id)
    return LockedCampaign(**dict(row)) if row is not None else None


async def max_contact_id(conn: Connection, store_id: int) -> int:
    value: int = await conn.fetchval(sql("sending.max_contact_id"), store_id)
    return value


async def reserve_credits(conn: Connection, store_id: int, amount: int, campaign_id: int) -> bool:
    """Move ``amount`` from available to reserved with a ledger entry; False if short."""
    return (
        await conn.fetchval(sql("sending.reserve_credits"), store_id, amount, campaign_id)
        is not None
    )


async def start(
    conn: Connection,
    *,
    campaign_id: int,
    store_id: int,
    status: str,
    reserve: int,
    recipients: int,
    max_contact_id: int,
) -> Started | None:
    row = await conn.fetchrow(
        sql("sending.start"), campaign_id, store_id, status, reserve, recipients, max_contact_id
    )
    return Started(**dict(row)) if row is not None else None


async def add_event(
    conn: Connection,
    *,
    campaign_id: int,
    store_id: int,
    from_status: str | None,
    to_status: str,
    reason: str,
    actor: str,
) -> None:
    await conn.execute(
        sql("sending.add_event"), campaign_id, store_id, from_status, to_status, reason, actor
    )


async def progress(db: Pool | Connection, campaign_id: int, store_id: int) -> Record | None:
    row: Record | None = await db.fetchrow(sql("sending.progress"), campaign_id, store_id)
    return row


async def recipients_at_send(conn: Connection, campaign_id: int) -> int:
    value: int = await conn.fetchval(sql("sending.recipients_at_send"), campaign_id)
    return value


async def campaign_exists(db: Pool | Connection, campaign_id: int, store_id: int) -> bool:
    return bool(await db.fetchval(sql("sending.campaign_exists"), campaign_id, store_id))


async def errors(db: Pool | Connection, campaign_id: int) -> list[dict[str, Any]]:
    rows = await db.fetch(sql("sending.errors"), campaign_id)
    return [
        {
            "status": row["status"],
            "category": row["category"] or "unknown",
            "code": row["code"],
            "count": int(row["count"]),
            "example": row["example"],
        }
        for row in rows
    ]
