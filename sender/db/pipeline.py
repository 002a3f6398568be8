"""Typed wrappers of the send pipeline's queries (sql/queries/pipeline.sql)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sender.db.pool import Connection, Pool
from sender.db.queries import sql


@dataclass(frozen=True, slots=True)
class ClaimedRecipient:
    id: int
    attempts: int
    phone: str
    contact_id: int | None
    first_name: str | None
    last_name: str | None
    custom: dict[str, Any]
    opted_in: bool


@dataclass(frozen=True, slots=True)
class CampaignState:
    id: int
    store_id: int
    status: str
    message: str
    priority: str
    dispatch_round: int
    sender_id: str
    subscription_status: str


@dataclass(frozen=True, slots=True)
class Audience:
    tags_any: list[str]
    tags_all: list[str]
    exclude_tags: list[str]

    @classmethod
    def from_json(cls, raw: dict[str, Any] | None) -> Audience:
        raw = raw or {}
        return cls(
            tags_any=list(raw.get("tags_any") or []),
            tags_all=list(raw.get("tags_all") or []),
            exclude_tags=list(raw.get("exclude_tags") or []),
        )


@dataclass(frozen=True, slots=True)
class DispatchTarget:
    id: int
    store_id: int
    status: str
    priority: str
    audience: Audience
    total_recipients: int | None
    audience_max_contact_id: int | None
    dispatch_round: int


async def lock_campaign_for_dispatch(conn: Connection, campaign_id: int) -> DispatchTarget | None:
    row = await conn.fetchrow(sql("pipeline.lock_campaign_for_dispatch"), campaign_id)
    if row is None:
        return None
    return DispatchTarget(
        id=row["id"],
        store_id=row["store_id"],
        status=row["status"],
        priority=row["priority"],
        audience=Audience.from_json(row["audience"]),
        total_recipients=row["total_recipients"],
        audience_max_contact_id=row["audience_max_contact_id"],
        dispatch_round=row["dispatch_round"],
    )


async def materialize(conn: Connection, target: DispatchTarget, batch_size: int) -> int:
    """Insert the campaign's recipients set-based; returns how many rows were inserted."""
    status = await conn.execute(
        sql("pipeline.materialize"),
        target.id,
        target.store_id,
        target.audience.tags_any,
        target.audience.tags_all,
        target.audience.exclude_tags,
        batch_size,
        target.audience_max_contact_id,
    )
    inserted = int(status.rsplit(" ", 1)[-1])
    await conn.execute(sql("pipeline.set_total"), target.id, inserted)
    await conn.execute(sql("pipeline.create_batches"), target.id, batch_size, inserted)
    return inserted


async def open_batches(db: Pool | Connection, campaign_id: int) -> list[tuple[int, int]]:
    rows = await db.fetch(sql("pipeline.open_batches"), campaign_id)
    return [(row["batch_no"], row["generation"]) for row in rows]


async def campaign_state(db: Pool | Connection, campaign_id: int) -> CampaignState | None:
    row = await db.fetchrow(sql("pipeline.campaign_state"), campaign_id)
    return CampaignState(**dict(row)) if row is not None else None


async def claim(
    db: Pool | Connection, campaign_id: int, batch_no: int, limit: int
) -> list[ClaimedRecipient]:
    """Claim in one statement (SKIP LOCKED, marks `sending`, nothing allocated).

    The send path uses ``pick`` + ``mark_claimed``; tests use this to put rows in flight."""
    rows = await db.fetch(sql("pipeline.claim"), campaign_id, batch_no, limit)
    return [_claimed(row) for row in rows]


async def pick(
    db: Pool | Connection, campaign_id: int, batch_no: int, limit: int, after_id: int = 0
) -> list[ClaimedRecipient]:
    """The next due pending recipients (ids above ``after_id``) with their contact data."""
    rows = await db.fetch(sql("pipeline.pick"), campaign_id, batch_no, limit, after_id)
    return [_claimed(row) for row in rows]


@dataclass(frozen=True, slots=True)
class Marked:
    #: The picked recipients this call claimed (others were taken by another run meanwhile).
    ids: frozenset[int]
    #: Whether the segments were allocated (and the claimed ones with segments stamped
    #: requested); False when credits are short: then none is stamped.
    allocated: bool


async def mark_claimed(
    db: Pool | Connection,
    campaign_id: int,
    picked: Sequence[ClaimedRecipient],
    segments: Sequence[int],
) -> Marked:
    """Claim picked recipients still pending, allocating and stamping those with segments.

    Segments allocated for picked rows that another run claimed first are given back.
    """
    needed = sum(segments)
    row = await db.fetchrow(
        sql("pipeline.mark_claimed"),
        campaign_id,
        needed,
        [r.id for r in picked],
        list(segments),
        [r.attempts for r in picked],
    )
    assert row is not None
    ids = frozenset(row["marked"])
    allocated = bool(row["allocated"])
    if allocated and len(ids) < len(picked):
        lost = sum(s for r, s in zip(picked, segments, strict=True) if r.id not in ids)
        if lost:
            await db.execute(sql("pipeline.give_back_allocation"), campaign_id, lost)
    return Marked(ids, allocated or needed == 0)


def _claimed(row: Any) -> ClaimedRecipient:
    return ClaimedRecipient(
        id=row["id"],
        attempts=row["attempts"],
        phone=row["phone"],
        contact_id=row["contact_id"],
        first_name=row["first_name"],
        last_name=row["last_name"],
        custom=row["custom"] or {},
        opted_in=row["consent"] == "opted_in",
    )


async def allocate_and_mark(
    db: Pool | Connection, campaign_id: int, recipient_ids: Sequence[int], segments: Sequence[int]
) -> bool:
    """Allocate sum(segments) and stamp the recipients requested; False if credits are short."""
    marked = await db.fetch(
        sql("pipeline.allocate_and_mark"),
        campaign_id,
        sum(segments),
        list(recipient_ids),
        list(segments),
    )
    return len(marked) > 0


async def credit_room(db: Pool | Connection, campaign_id: int) -> tuple[int, int]:
    """(credits the campaign can still allocate, credits the store has available)."""
    row = await db.fetchrow(sql("pipeline.credit_room"), campaign_id)
    assert row is not None
    return int(row["room"]), int(row["credits_available"])


async def extend_reservation(
    db: Pool | Connection, campaign_id: int, store_id: int, amount: int
) -> bool:
    return (
        await db.fetchval(sql("pipeline.extend_reservation"), campaign_id, store_id, amount)
        is not None
    )


async def next_due(db: Pool | Connection, campaign_id: int, batch_no: int) -> datetime | None:
    due: datetime | None = await db.fetchval(sql("pipeline.next_due"), campaign_id, batch_no)
    return due


async def batch_has_work(db: Pool | Connection, campaign_id: int, batch_no: int) -> bool:
    return bool(await db.fetchval(sql("pipeline.batch_has_work"), campaign_id, batch_no))


async def take_batch_lease(
    db: Pool | Connection,
    campaign_id: int,
    batch_no: int,
    generation: int,
    owner: str,
    lease_s: float,
) -> bool:
    found = await db.fetchval(
        sql("pipeline.take_batch_lease"), campaign_id, batch_no, generation, owner, lease_s
    )
    return found is not None


async def release_batch_lease(
    db: Pool | Connection, campaign_id: int, batch_no: int, generation: int, owner: str
) -> None:
    await db.execute(sql("pipeline.release_batch_lease"), campaign_id, batch_no, generation, owner)


async def finish_batch(
    db: Pool | Connection, campaign_id: int, batch_no: int, generation: int
) -> None:
    await db.execute(sql("pipeline.finish_batch"), campaign_id, batch_no, generation)


async def bump_generation(
    db: Pool | Connection, campaign_id: int, batch_no: int, generation: int
) -> int | None:
    new: int | None = await db.fetchval(
        sql("pipeline.bump_generation"), campaign_id, batch_no, generation
    )
    return new
