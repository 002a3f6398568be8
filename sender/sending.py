"""Starting a send and reading its progress (``POST .../send``, ``GET .../progress``).

Starting is one transaction: lock the campaign, check the subscription, price the audience
(set-based, see ``sender.pricing``), reserve the credits atomically against concurrent sends,
and move ``draft|scheduled -> sending`` (or ``-> scheduled`` when its time is ahead) with a
history row. The dispatch job is enqueued after the commit; if Redis is down then, the
campaign is ``sending`` without a job and the daemon's sweeper enqueues it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from arq.connections import ArqRedis

from sender.campaigns import Audience
from sender.db import audience as audience_db
from sender.db import sending as db
from sender.db.pool import Connection, Pool
from sender.errors import Conflict, Forbidden, NotFound, PaymentRequired, ValidationProblem
from sender.jobs import enqueue_dispatch
from sender.pricing import price_audience
from sender.templates import Template

log = logging.getLogger("sender.sending")

STARTABLE = ("draft", "scheduled")


@dataclass(frozen=True, slots=True)
class SendAccepted:
    id: int
    status: str
    recipients: int
    credits_reserved: int
    scheduled_at: datetime | None


async def start_send(
    pool: Pool,
    arq: ArqRedis | None,
    *,
    prefix: str,
    public_url: str,
    store_id: int,
    campaign_id: int,
    actor: str,
) -> SendAccepted:
    now = datetime.now(UTC)
    async with pool.acquire() as conn, conn.transaction():
        campaign = await db.lock_campaign(conn, campaign_id, store_id)
        if campaign is None:
            raise NotFound("no such campaign")
        if campaign.status not in STARTABLE:
            raise Conflict(
                f"campaign is {campaign.status}",
                code="invalid_status_transition",
                current_status=campaign.status,
            )
        if campaign.subscription_status != "active":
            raise Forbidden(
                f"the store's subscription is {campaign.subscription_status}",
                code="subscription_inactive",
                subscription_status=campaign.subscription_status,
            )
        due_later = campaign.scheduled_at is not None and campaign.scheduled_at > now
        new_status = "scheduled" if due_later else "sending"
        if campaign.status == "scheduled" and campaign.credits_reserved > 0:
            # Already priced and reserved when it was scheduled: "send" now just starts it.
            started = await _transition(conn, campaign, "sending", 0, 0, 0, actor, "started now")
            recipients = await db.recipients_at_send(conn, campaign_id)
            reserved = campaign.credits_reserved
        else:
            max_id = await db.max_contact_id(conn, store_id)
            audience = Audience.from_json(campaign.audience)
            priced = await price_audience(
                conn,
                audience_db.AudienceFilter(
                    store_id=store_id,
                    tags_any=audience.tags_any,
                    tags_all=audience.tags_all,
                    exclude_tags=audience.exclude_tags,
                    max_contact_id=max_id,
                ),
                Template.parse(campaign.message),
                public_url,
            )
            cost = priced.cost
            if cost.recipients == 0:
                raise ValidationProblem(
                    "no opted-in contact matches the campaign's audience", code="no_recipients"
                )
            if not await db.reserve_credits(conn, store_id, cost.total, campaign_id):
                available = await audience_db.credits_available(conn, store_id)
                raise PaymentRequired(
                    f"the campaign needs {cost.total} credits; {available} are available",
                    code="insufficient_credits",
                    needed=cost.total,
                    available=available,
                )
            reason = f"{cost.recipients} recipients, {cost.total} credits reserved"
            started = await _transition(
                conn, campaign, new_status, cost.total, cost.recipients, max_id, actor, reason
            )
            recipients = cost.recipients
            reserved = cost.total
    if started.status == "sending" and arq is not None:
        try:
            await enqueue_dispatch(
                arq, prefix, started.id, started.dispatch_round, started.priority
            )
        except Exception:
            # The campaign is sending without a job: the sweeper enqueues it.
            log.warning(
                "could not enqueue dispatch", exc_info=True, extra={"campaign_id": started.id}
            )
    return SendAccepted(
        id=started.id,
        status=started.status,
        recipients=recipients,
        credits_reserved=reserved,
        scheduled_at=campaign.scheduled_at,
    )


async def _transition(
    conn: Connection,
    campaign: db.LockedCampaign,
    status: str,
    reserve: int,
    recipients: int,
    max_contact_id: int,
    actor: str,
    reason: str,
) -> db.Started:
    started = await db.start(
        conn,
        campaign_id=campaign.id,
        store_id=campaign.store_id,
        status=status,
        reserve=reserve,
        recipients=recipients,
        max_contact_id=max_contact_id,
    )
    if started is None:  # pragma: no cover - the row is locked, its status was just checked
        raise Conflict("campaign changed concurrently", code="invalid_status_transition")
    await db.add_event(
        conn,
        campaign_id=campaign.id,
        store_id=campaign.store_id,
        from_status=campaign.status,
        to_status=status,
        reason=reason,
        actor=actor,
    )
    return started


_TERMINAL = ("sent", "delivered", "undelivered", "failed", "unknown", "cancelled", "skipped")


async def progress(pool: Pool, store_id: int, campaign_id: int) -> dict[str, Any]:
    """The progress payload (DESIGN.md section 9), from counters: no row counting."""
    row = await db.progress(pool, campaign_id, store_id)
    if row is None:
        raise NotFound("no such campaign")
    total = int(row["total_recipients"] or row["recipients_at_send"] or 0)
    counts = {name: int(row[f"{name}_count"]) for name in _TERMINAL}
    sending = int(row["sending_count"])
    done = sum(counts.values())
    counts = {"pending": max(total - done - sending, 0), "sending": sending, **counts}
    started_at: datetime | None = row["started_at"]
    finished_at: datetime | None = row["finished_at"]
    end = finished_at or row["now"]
    elapsed = (end - started_at).total_seconds() if started_at else 0.0
    rate = done / elapsed if elapsed > 0 and done else 0.0
    remaining = total - done
    eta = remaining / rate if rate > 0 and remaining > 0 and finished_at is None else None
    if finished_at is not None:
        eta = 0.0
    return {
        "id": row["id"],
        "status": row["status"],
        "total": total,
        "counts": counts,
        "percent": round(100.0 * done / total, 2) if total else 0.0,
        "rate_per_s": round(rate, 1),
        "eta_s": round(eta, 1) if eta is not None else None,
        "started_at": started_at.isoformat() if started_at else None,
        "finished_at": finished_at.isoformat() if finished_at else None,
        "scheduled_at": row["scheduled_at"].isoformat() if row["scheduled_at"] else None,
        "credits": {
            "reserved": int(row["credits_reserved"]),
            "charged": int(row["credits_charged"]),
            "released": int(row["credits_released"]),
        },
        "clicks": int(row["clicks"]),
        "waiting_reason": row["waiting_reason"],
    }


async def error_breakdown(pool: Pool, store_id: int, campaign_id: int) -> dict[str, Any]:
    """Recipients that did not get through, by status, category and raw provider code."""
    if not await db.campaign_exists(pool, campaign_id, store_id):
        raise NotFound("no such campaign")
    rows = await db.errors(pool, campaign_id)
    by_category: dict[str, int] = {}
    for row in rows:
        by_category[row["category"]] = by_category.get(row["category"], 0) + row["count"]
    return {
        "id": campaign_id,
        "total": sum(row["count"] for row in rows),
        "by_category": by_category,
        "categories": rows,
    }
