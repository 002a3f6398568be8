"""Completing a campaign: final status, credit release, history and outbox, in one transaction."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sender.db.pool import Pool
from sender.db.queries import sql


@dataclass(frozen=True, slots=True)
class Completed:
    campaign_id: int
    store_id: int
    status: str
    released: int
    counts: dict[str, int]
    finished_at: datetime


_COUNTERS = ("sent", "delivered", "undelivered", "failed", "unknown", "cancelled", "skipped")


async def try_complete(pool: Pool, campaign_id: int, actor: str) -> Completed | None:
    """Finish the campaign if no recipient is pending or sending; None if not (yet)."""
    async with pool.acquire() as conn, conn.transaction():
        row = await conn.fetchrow(sql("completion.lock_sending"), campaign_id)
        if row is None:
            return None
        if await conn.fetchval(sql("completion.has_unfinished"), campaign_id):
            return None
        counts = {name: int(row[f"{name}_count"]) for name in _COUNTERS}
        accepted = counts["sent"] + counts["delivered"] + counts["undelivered"] + counts["unknown"]
        status = "sent" if accepted > 0 else "failed"
        release = int(row["credits_reserved"] - row["credits_charged"] - row["credits_released"])
        finished_at = await conn.fetchval(sql("completion.finish"), campaign_id, status, release)
        store_id = int(row["store_id"])
        if release > 0:
            await conn.execute(sql("completion.release_store_credits"), store_id, release)
            await conn.execute(
                sql("completion.ledger_release"),
                store_id,
                campaign_id,
                release,
                "unused reservation released at completion",
            )
        reason = f"{accepted} accepted, {counts['failed']} failed, {counts['skipped']} skipped"
        await conn.execute(
            sql("completion.add_event"), campaign_id, store_id, "sending", status, reason, actor
        )
        payload: dict[str, Any] = {
            "event": "campaign.completed",
            "campaign_id": campaign_id,
            "status": status,
            "round": str(row["dispatch_round"]),
            "counts": counts,
            "total": int(row["total_recipients"]),
            "credits": {
                "reserved": int(row["credits_reserved"]),
                "charged": int(row["credits_charged"]),
                "released": int(row["credits_released"]) + release,
            },
            "started_at": row["started_at"].isoformat() if row["started_at"] else None,
            "finished_at": finished_at.isoformat(),
        }
        await conn.execute(
            sql("completion.add_outbox"), store_id, campaign_id, "campaign.completed", payload
        )
        return Completed(campaign_id, store_id, status, release, counts, finished_at)


async def sending_campaigns(pool: Pool) -> list[int]:
    return [row["id"] for row in await pool.fetch(sql("completion.sending_campaigns"))]
