"""Bulk outcome writes: COPY into a staging table, then one set-based statement.

One call applies a whole buffer of recipient outcomes in one transaction: recipients move
(only out of ``sending``), charges go to the ledger at most once per recipient, campaign
counters and store balances follow. Returns how many outcomes each campaign got.

A flush is four round trips (BEGIN, COPY, the statement, COMMIT): the staging table is
created once per connection, and the statement is prepared once per connection, so
PostgreSQL plans it once instead of on every flush.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import NamedTuple

import asyncpg

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

# Server process ids of the connections known to hold the staging table. A pid can come back
# on a new backend (or another server) without the table: the flush then meets an undefined
# table, forgets the pid and runs again, creating it.
_staged: set[int] = set()


async def write_outcomes(pool: Pool, rows: Sequence[OutcomeRow]) -> dict[int, int]:
    """Apply ``rows``; returns {campaign_id: recipients moved}. Idempotent per recipient."""
    if not rows:
        return {}
    async with pool.acquire() as conn:
        pid = conn.get_server_pid()
        for attempt in (1, 2):
            try:
                async with conn.transaction():
                    if pid not in _staged:
                        await conn.execute(sql("outcomes.create_stage"))
                        _staged.add(pid)
                    await conn.copy_records_to_table(
                        "outcome_stage", records=rows, columns=STAGE_COLUMNS
                    )
                    applied = await conn.fetch(sql("outcomes.apply"))
                break
            except asyncpg.UndefinedTableError:
                _staged.discard(pid)
                if attempt == 2:
                    raise
            except BaseException:
                _staged.discard(pid)
                raise
    return {row["campaign_id"]: row["n"] for row in applied}
