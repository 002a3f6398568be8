"""The dispatch job: materialize a campaign's recipients and enqueue one job per batch.

Materialization is one set-based INSERT ... SELECT inside a transaction that holds the
campaign row, so a repeated or concurrent dispatch finds the work done and only (re)enqueues
the open batches, whose deterministic ids make that harmless.
"""

from __future__ import annotations

import logging
import time

from arq.connections import ArqRedis

from sender.db import pipeline as db
from sender.db.completion import Completed, try_complete
from sender.db.pool import Pool
from sender.jobs import enqueue_batch

log = logging.getLogger("sender.dispatch")


async def dispatch(
    pool: Pool,
    arq: ArqRedis,
    *,
    prefix: str,
    campaign_id: int,
    dispatch_round: int,
    batch_size: int,
) -> int:
    """Returns the number of batch jobs enqueued."""
    started = time.perf_counter()
    async with pool.acquire() as conn, conn.transaction():
        target = await db.lock_campaign_for_dispatch(conn, campaign_id)
        if target is None or target.status != "sending" or target.dispatch_round != dispatch_round:
            return 0
        materialized = None
        if target.total_recipients is None:
            materialized = await db.materialize(conn, target, batch_size)
    if materialized is not None:
        log.info(
            "recipients materialized",
            extra={
                "campaign_id": campaign_id,
                "store_id": target.store_id,
                "recipients": materialized,
                "elapsed_s": round(time.perf_counter() - started, 3),
            },
        )
    enqueued = 0
    for batch_no, generation in await db.open_batches(pool, campaign_id):
        if await enqueue_batch(arq, prefix, campaign_id, batch_no, generation, target.priority):
            enqueued += 1
    if materialized == 0:
        # The audience emptied between send and dispatch: finish now (failed, credits back).
        done: Completed | None = await try_complete(pool, campaign_id, actor="dispatch")
        if done is not None:
            log.info(
                "campaign completed", extra={"campaign_id": campaign_id, "status": done.status}
            )
    return enqueued
