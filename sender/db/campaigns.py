"""Campaign rows: create, read, list, and edit or delete before sending."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sender.db.pool import Connection, Pool, Record
from sender.db.queries import sql

__all__ = [
    "Campaign",
    "CampaignFields",
    "create",
    "delete_unstarted",
    "get",
    "list_page",
    "lock",
    "update",
]


@dataclass(frozen=True, slots=True)
class CampaignFields:
    """What a client sets on a campaign (validated before it gets here)."""

    name: str
    message: str
    audience: dict[str, list[str]]
    priority: str
    scheduled_at: datetime | None
    encoding: str
    segments_estimate: int


@dataclass(frozen=True, slots=True)
class Campaign:
    id: int
    name: str
    message: str
    audience: dict[str, Any]
    status: str
    priority: str
    scheduled_at: datetime | None
    encoding: str | None
    segments_estimate: int | None
    created_at: datetime
    updated_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    total_recipients: int | None
    #: Contacts with a higher id are outside the audience (set at send; None before).
    audience_max_contact_id: int | None = None
    #: Credits held for this campaign (a scheduled campaign reserved them at send).
    credits_reserved: int = 0


def _campaign(row: Record) -> Campaign:
    return Campaign(**dict(row))


def _args(fields: CampaignFields) -> tuple[Any, ...]:
    return (
        fields.name,
        fields.message,
        fields.audience,
        fields.priority,
        fields.scheduled_at,
        fields.encoding,
        fields.segments_estimate,
    )


async def create(db: Pool | Connection, store_id: int, fields: CampaignFields) -> Campaign:
    row = await db.fetchrow(sql("campaigns.create"), store_id, *_args(fields))
    assert row is not None
    return _campaign(row)


async def get(db: Pool | Connection, store_id: int, campaign_id: int) -> Campaign | None:
    row = await db.fetchrow(sql("campaigns.get"), campaign_id, store_id)
    return _campaign(row) if row is not None else None


async def list_page(
    db: Pool | Connection,
    store_id: int,
    *,
    before_id: int | None,
    status: str | None,
    limit: int,
) -> list[Campaign]:
    """Campaigns newest first, with ``id < before_id`` when given."""
    rows = await db.fetch(sql("campaigns.list"), store_id, before_id, status, limit)
    return [_campaign(row) for row in rows]


async def lock(conn: Connection, store_id: int, campaign_id: int) -> Campaign | None:
    """Read and lock a campaign until the surrounding transaction ends."""
    row = await conn.fetchrow(sql("campaigns.lock"), campaign_id, store_id)
    return _campaign(row) if row is not None else None


async def update(
    conn: Connection, store_id: int, campaign_id: int, fields: CampaignFields
) -> Campaign | None:
    """Replace the editable fields; None when the campaign is gone or already started."""
    row = await conn.fetchrow(sql("campaigns.update"), campaign_id, store_id, *_args(fields))
    return _campaign(row) if row is not None else None


async def delete_unstarted(conn: Connection, store_id: int, campaign_id: int) -> bool:
    """Release what the campaign reserved and delete it, if it is draft or scheduled.

    Call it in a transaction that holds the campaign's lock (:func:`lock`).
    """
    await conn.execute(sql("campaigns.release_reserved"), campaign_id, store_id)
    return await conn.fetchval(sql("campaigns.delete"), campaign_id, store_id) is not None
