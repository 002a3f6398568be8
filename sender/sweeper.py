"""The sweeper: a periodic pass that makes every campaign finish, whatever crashed.

- Recipients left ``sending`` past the lease: back to ``pending`` when no request left for
  them (no request stamp), otherwise ``unknown`` and charged (the provider may have them).
- Unfinished batches of sending campaigns that no live job holds and that arq does not hold
  either (the daemon died, or Redis was flushed): moved to a new generation and enqueued.
- Sending campaigns never dispatched (dispatch job lost): dispatch enqueued again.
- Scheduled campaigns whose time has come: started.
- Sending campaigns with nothing left to do: completed (exactly once; the SQL guards it).

Every step is idempotent and guarded in SQL, so two daemons sweeping at once is harmless; a
Redis lock just avoids the wasted work.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime

from arq.connections import ArqRedis

from sender.control import settle_cancelled
from sender.db import pipeline as pipeline_db
from sender.db import sweeper as db
from sender.db.completion import Completed, sending_campaigns, try_complete
from sender.db.outcomes import OutcomeRow, write_outcomes
from sender.db.pool import Pool
from sender.jobs import batch_job_id, dispatch_job_id, enqueue_batch, enqueue_dispatch, job_state

log = logging.getLogger("sender.sweeper")


@dataclass
class SweepReport:
    requeued_recipients: int = 0
    unknown_recipients: int = 0
    rebuilt_batches: int = 0
    redispatched: int = 0
    started_scheduled: int = 0
    completed: list[Completed] = field(default_factory=list)


class Sweeper:
    def __init__(
        self,
        pool: Pool,
        arq: ArqRedis,
        *,
        prefix: str,
        sending_lease_s: float,
        actor: str,
        batch_limit: int = 5000,
    ) -> None:
        self.pool = pool
        self.arq = arq
        self.prefix = prefix
        self.sending_lease_s = sending_lease_s
        self.actor = actor
        self.batch_limit = batch_limit

    async def sweep(self) -> SweepReport:
        lock = self.arq.lock(f"{self.prefix}:sweeper-lock", timeout=60, blocking=False)
        if not await lock.acquire():
            return SweepReport()
        try:
            report = SweepReport()
            await self._settle_stale_recipients(report)
            await self._start_scheduled(report)
            await self._redispatch(report)
            await self._rebuild_batches(report)
            await self._complete(report)
            await settle_cancelled(self.pool)
            if (
                report.requeued_recipients
                or report.unknown_recipients
                or report.rebuilt_batches
                or report.redispatched
                or report.started_scheduled
            ):
                log.info(
                    "sweep repaired state",
                    extra={
                        "requeued_recipients": report.requeued_recipients,
                        "unknown_recipients": report.unknown_recipients,
                        "rebuilt_batches": report.rebuilt_batches,
                        "redispatched": report.redispatched,
                        "started_scheduled": report.started_scheduled,
                    },
                )
            return report
        finally:
            await lock.release()

    async def _settle_stale_recipients(self, report: SweepReport) -> None:
        stale = await db.stale_sending(self.pool, self.sending_lease_s, self.batch_limit)
        if not stale:
            return
        now = datetime.now(UTC)
        rows = []
        for r in stale:
            if r.requested:
                report.unknown_recipients += 1
                rows.append(
                    OutcomeRow(
                        r.id, r.campaign_id, r.store_id, "unknown", 1, None, None,
                        "unknown", "lease_expired",
                        "the sender stopped while this request may have been in flight",
                        r.segments, r.segments > 0, now,
                    )
                )  # fmt: skip
            else:
                report.requeued_recipients += 1
                rows.append(
                    OutcomeRow(
                        r.id, r.campaign_id, r.store_id, "pending", 0, None, None,
                        None, None, None, 0, False, now,
                    )
                )  # fmt: skip
        await write_outcomes(self.pool, rows)

    async def _start_scheduled(self, report: SweepReport) -> None:
        for campaign in await db.start_due_scheduled(self.pool):
            report.started_scheduled += 1
            await enqueue_dispatch(
                self.arq, self.prefix, campaign.id, campaign.dispatch_round, campaign.priority
            )

    async def _redispatch(self, report: SweepReport) -> None:
        for campaign in await db.undispatched(self.pool):
            job_id = dispatch_job_id(self.prefix, campaign.id, campaign.dispatch_round)
            if await job_state(self.arq, job_id) != "absent":
                continue
            if await enqueue_dispatch(
                self.arq, self.prefix, campaign.id, campaign.dispatch_round, campaign.priority
            ):
                report.redispatched += 1

    async def _rebuild_batches(self, report: SweepReport) -> None:
        for batch in await db.orphan_batches(self.pool, self.batch_limit):
            job_id = batch_job_id(self.prefix, batch.campaign_id, batch.batch_no, batch.generation)
            state = await job_state(self.arq, job_id)
            if state == "queued" or (state == "running" and not batch.lease_expired):
                continue
            # Gone from Redis, or running under a lease nobody renews: its daemon is dead.
            if not await pipeline_db.batch_has_work(self.pool, batch.campaign_id, batch.batch_no):
                await pipeline_db.finish_batch(
                    self.pool, batch.campaign_id, batch.batch_no, batch.generation
                )
                continue
            generation = await pipeline_db.bump_generation(
                self.pool, batch.campaign_id, batch.batch_no, batch.generation
            )
            if generation is None:
                continue
            due = await pipeline_db.next_due(self.pool, batch.campaign_id, batch.batch_no)
            await enqueue_batch(
                self.arq,
                self.prefix,
                batch.campaign_id,
                batch.batch_no,
                generation,
                batch.priority,
                defer_until=due if due is not None and due > datetime.now(UTC) else None,
            )
            report.rebuilt_batches += 1

    async def _complete(self, report: SweepReport) -> None:
        for campaign_id in await sending_campaigns(self.pool):
            done = await try_complete(self.pool, campaign_id, actor=self.actor)
            if done is not None:
                report.completed.append(done)
