"""Monitoring reads (sql/queries/monitoring.sql): active campaigns and their progress."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sender.db.pool import Pool
from sender.db.queries import sql

ACTIVE_STATUSES = ("scheduled", "sending", "paused")


@dataclass(frozen=True, slots=True)
class CampaignActivity:
    """Active campaigns by status, and the longest time a sending one went without progress."""

    by_status: dict[str, int]
    max_idle_s: float


@dataclass(frozen=True, slots=True)
class SendingCampaign:
    id: int
    store_id: int
    priority: str
    total: int
    sent: int
    failed: int
    unknown: int
    skipped: int
    cancelled: int
    started_at: datetime | None
    last_progress_at: datetime
    idle_s: float
    waiting_reason: str | None

    @property
    def done(self) -> int:
        return self.sent + self.failed + self.unknown + self.skipped + self.cancelled


async def campaign_activity(pool: Pool) -> CampaignActivity:
    rows = await pool.fetch(sql("monitoring.campaign_activity"))
    by_status = dict.fromkeys(ACTIVE_STATUSES, 0)
    max_idle_s = 0.0
    for row in rows:
        by_status[row["status"]] = int(row["campaigns"])
        max_idle_s = max(max_idle_s, float(row["max_idle_s"]))
    return CampaignActivity(by_status=by_status, max_idle_s=max_idle_s)


async def sending_campaigns(pool: Pool, limit: int) -> list[SendingCampaign]:
    rows = await pool.fetch(sql("monitoring.sending_campaigns"), limit)
    return [SendingCampaign(**dict(row)) for row in rows]
