"""Queries of the sweeper (sql/queries/sweeper.sql)."""

from __future__ import annotations

from dataclasses import dataclass

from sender.db.pool import Pool
from sender.db.queries import sql


@dataclass(frozen=True, slots=True)
class StaleRecipient:
    id: int
    campaign_id: int
    store_id: int
    attempts: int
    requested: bool
    segments: int


@dataclass(frozen=True, slots=True)
class OrphanBatch:
    campaign_id: int
    batch_no: int
    generation: int
    lease_expired: bool
    priority: str


@dataclass(frozen=True, slots=True)
class CampaignToDispatch:
    id: int
    priority: str
    dispatch_round: int


async def stale_sending(pool: Pool, lease_s: float, limit: int) -> list[StaleRecipient]:
    rows = await pool.fetch(sql("sweeper.stale_sending"), lease_s, limit)
    return [StaleRecipient(**dict(row)) for row in rows]


async def orphan_batches(pool: Pool, limit: int) -> list[OrphanBatch]:
    return [
        OrphanBatch(**dict(row)) for row in await pool.fetch(sql("sweeper.orphan_batches"), limit)
    ]


async def undispatched(pool: Pool) -> list[CampaignToDispatch]:
    return [
        CampaignToDispatch(**dict(row)) for row in await pool.fetch(sql("sweeper.undispatched"))
    ]


async def start_due_scheduled(pool: Pool) -> list[CampaignToDispatch]:
    rows = await pool.fetch(sql("sweeper.start_due_scheduled"))
    return [CampaignToDispatch(**dict(row)) for row in rows]
