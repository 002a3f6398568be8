"""Cancel, pause, resume and retry-failed: the campaign state machine's control transitions.

Each transition is one transaction on the locked campaign row with a history row (DESIGN.md
section 5); an illegal one is a 409 carrying the current status.

- cancel (draft|scheduled|sending|paused -> cancelled): pending recipients become
  ``cancelled``; chunks already in flight finish and are charged if accepted; every credit no
  chunk in flight needs is released at once, the rest by the sweeper once they are answered.
- pause (sending -> paused): batch jobs stop at their next claim; nothing is lost.
- resume (paused -> sending): every unfinished batch gets a fresh job.
- retry-failed (sent|failed -> sending): recipients that failed for a retryable reason
  (network, provider error, throttling, credits) go back to pending with fresh attempts and
  new credits are reserved for them; permanent failures (invalid number, rejected) stay.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from arq.connections import ArqRedis

from sender.db import control as db
from sender.db import pipeline as pipeline_db
from sender.db import sending as sending_db
from sender.db.audience import credits_available
from sender.db.pool import Connection, Pool
from sender.errors import Conflict, NotFound, PaymentRequired, ValidationProblem
from sender.jobs import enqueue_batch, enqueue_dispatch

log = logging.getLogger("sender.control")

RETRYABLE_CATEGORIES = [
    "network",
    "provider_error",
    "rate_limited",
    "timeout",
    "insufficient_credits",
]


@dataclass(frozen=True, slots=True)
class Transition:
    id: int
    status: str
    previous_status: str
    cancelled_recipients: int = 0
    released_credits: int = 0
    retried_recipients: int = 0
    credits_reserved: int = 0


async def _locked(
    conn: Connection, campaign_id: int, store_id: int, allowed: tuple[str, ...]
) -> db.LockedCampaign:
    campaign = await db.lock(conn, campaign_id, store_id)
    if campaign is None:
        raise NotFound("no such campaign")
    if campaign.status not in allowed:
        raise Conflict(
            f"campaign is {campaign.status}",
            code="invalid_status_transition",
            current_status=campaign.status,
        )
    return campaign


async def _history(
    conn: Connection, campaign: db.LockedCampaign, to: str, reason: str, actor: str
) -> None:
    await sending_db.add_event(
        conn,
        campaign_id=campaign.id,
        store_id=campaign.store_id,
        from_status=campaign.status,
        to_status=to,
        reason=reason,
        actor=actor,
    )


async def cancel(pool: Pool, *, store_id: int, campaign_id: int, actor: str) -> Transition:
    async with pool.acquire() as conn, conn.transaction():
        campaign = await _locked(
            conn, campaign_id, store_id, ("draft", "scheduled", "sending", "paused")
        )
        await db.set_status(conn, campaign_id, "cancelled")
        cancelled = await db.cancel_pending(conn, campaign_id)
        released = await db.release_unallocated(conn, campaign_id, "released on cancel")
        await _history(
            conn, campaign, "cancelled", f"{cancelled} pending recipients cancelled", actor
        )
    return Transition(campaign_id, "cancelled", campaign.status, cancelled, released)


async def settle_cancelled(pool: Pool) -> int:
    """Cancel recipients that came back to pending and release credits freed since (sweeper)."""
    settled = 0
    for campaign_id, _store_id in await db.cancelled_to_settle(pool):
        async with pool.acquire() as conn, conn.transaction():
            await db.cancel_pending(conn, campaign_id)
            await db.release_unallocated(conn, campaign_id, "released after cancel")
        settled += 1
    return settled


async def pause(pool: Pool, *, store_id: int, campaign_id: int, actor: str) -> Transition:
    async with pool.acquire() as conn, conn.transaction():
        campaign = await _locked(conn, campaign_id, store_id, ("sending",))
        await db.set_status(conn, campaign_id, "paused")
        await _history(conn, campaign, "paused", "paused by request", actor)
    return Transition(campaign_id, "paused", campaign.status)


async def resume(
    pool: Pool, arq: ArqRedis, *, prefix: str, store_id: int, campaign_id: int, actor: str
) -> Transition:
    async with pool.acquire() as conn, conn.transaction():
        campaign = await _locked(conn, campaign_id, store_id, ("paused",))
        await db.set_status(conn, campaign_id, "sending")
        batches = await db.bump_open_batches(conn, campaign_id)
        dispatch_round = campaign.dispatch_round
        if campaign.total_recipients is None:
            # Paused before dispatch ran: arq may remember the old dispatch job's id.
            dispatch_round = await db.bump_dispatch_round(conn, campaign_id)
        await _history(conn, campaign, "sending", "resumed by request", actor)
    await _enqueue(arq, prefix, campaign, batches, dispatch_round)
    return Transition(campaign_id, "sending", campaign.status)


async def retry_failed(
    pool: Pool, arq: ArqRedis, *, prefix: str, store_id: int, campaign_id: int, actor: str
) -> Transition:
    async with pool.acquire() as conn, conn.transaction():
        campaign = await _locked(conn, campaign_id, store_id, ("sent", "failed"))
        reopened, segments = await db.reopen_failed(conn, campaign_id, RETRYABLE_CATEGORIES)
        if reopened == 0:
            raise ValidationProblem(
                "no recipient failed for a retryable reason", code="nothing_to_retry"
            )
        if not await sending_db.reserve_credits(conn, store_id, segments, campaign_id):
            available = await credits_available(conn, store_id)
            raise PaymentRequired(
                f"retrying needs {segments} credits; {available} are available",
                code="insufficient_credits",
                needed=segments,
                available=available,
            )
        await db.restart_for_retry(conn, campaign_id, reopened, segments)
        await _history(conn, campaign, "sending", f"{reopened} failed recipients retried", actor)
        batches = await pipeline_db.open_batches(conn, campaign_id)
    await _enqueue(arq, prefix, campaign, batches, campaign.dispatch_round + 1)
    return Transition(
        campaign_id,
        "sending",
        campaign.status,
        retried_recipients=reopened,
        credits_reserved=segments,
    )


async def _enqueue(
    arq: ArqRedis,
    prefix: str,
    campaign: db.LockedCampaign,
    batches: list[tuple[int, int]],
    dispatch_round: int,
) -> None:
    # After the commit; if Redis is down now, the sweeper enqueues what is missing.
    try:
        if campaign.total_recipients is None:
            await enqueue_dispatch(arq, prefix, campaign.id, dispatch_round, campaign.priority)
            return
        for batch_no, generation in batches:
            await enqueue_batch(arq, prefix, campaign.id, batch_no, generation, campaign.priority)
    except Exception:
        log.warning(
            "could not enqueue after a control transition",
            exc_info=True,
            extra={"campaign_id": campaign.id},
        )
