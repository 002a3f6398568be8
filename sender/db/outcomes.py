"""Bulk outcome writes: COPY into a staging table, then set-based statements.

One call applies a whole buffer of recipient outcomes in one transaction: recipients move
(only out of ``sending``), charges go to the ledger at most once per recipient, campaign
counters and store balances follow. Returns how many outcomes each campaign got.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import NamedTuple

from sender.db.pool import Pool
from sender.db.queries import sql


class OutcomeRow(NamedTuple):
    """One recipient's outcome, in the staging table's column order."""

    recipient_id: int
    campaign_id: int
    store_id: int
    status: str
    attempts_inc: int
    next_attempt_at: datetime | None
    provider_message_id: str | None
    error_category: str | None
    error_code: str | None
    error_text: str | None
    segments: int
    charge: bool
    at: datetime


STAGE_COLUMNS = list(OutcomeRow._fields)


async def write_outcomes(pool: Pool, rows: Sequence[OutcomeRow]) -> dict[int, int]:
    """Apply ``rows``; returns {campaign_id: recipients moved}. Idempotent per recipient."""
    if not rows:
        return {}
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute(sql("outcomes.create_stage"))
        await conn.copy_records_to_table("outcome_stage", records=rows, columns=STAGE_COLUMNS)
        await conn.execute(sql("outcomes.apply"))
        await conn.execute(sql("outcomes.settle"))
        applied = await conn.fetch(sql("outcomes.applied_campaigns"))
    return {row["campaign_id"]: row["n"] for row in applied}
