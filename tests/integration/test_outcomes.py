"""The outcome writer and completion against a real database: counters, charges, never backwards."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import asyncpg

from sender.db import pipeline
from sender.db.completion import try_complete
from sender.db.outcomes import OutcomeRow, write_outcomes
from sender.mitto import OutcomeKind, SendOutcome
from sender.outcomes import OutcomeWriter
from sender.retry import Claim, RetryPolicy, outcome_row
from tests.integration.pipeline_factories import (
    ledger_balances,
    sending_campaign,
    store_with_contacts,
)

POLICY = RetryPolicy(max_attempts=3, base_s=3.0)


async def _claim_all(
    pool: asyncpg.Pool, campaign_id: int, store_id: int, segments: int = 1
) -> list[Claim]:
    claimed = await pipeline.claim(pool, campaign_id, 0, 1000)
    ids = [c.id for c in claimed]
    assert await pipeline.allocate_and_mark(pool, campaign_id, ids, [segments] * len(ids))
    return [Claim(c.id, campaign_id, store_id, c.attempts, segments) for c in claimed]


async def test_outcomes_move_counters_charge_once_and_complete(db: asyncpg.Pool) -> None:
    store_id = await store_with_contacts(db, 10, credits=100)
    campaign_id = await sending_campaign(db, store_id, reserve=20, recipients=10)
    claims = await _claim_all(db, campaign_id, store_id, segments=2)
    outcomes = (
        [SendOutcome(OutcomeKind.ACCEPTED, "x", provider_id=f"id{i}") for i in range(6)]
        + [SendOutcome(OutcomeKind.PERMANENT, "x", category="invalid_number", error_code="8")] * 2
        + [SendOutcome(OutcomeKind.AMBIGUOUS, "x", category="timeout", error_code="read_timeout")]
        + [SendOutcome(OutcomeKind.TRANSIENT, "x", category="network", error_code="connect")]
    )
    rows = [outcome_row(c, o, POLICY) for c, o in zip(claims, outcomes, strict=True)]
    applied = await write_outcomes(db, rows)
    assert applied == {campaign_id: 10}
    # The same flush again (a retried flush after a lost commit answer) changes nothing.
    assert await write_outcomes(db, rows) == {}

    campaign = await db.fetchrow("SELECT * FROM campaigns WHERE id = $1", campaign_id)
    assert (campaign["sent_count"], campaign["failed_count"], campaign["unknown_count"]) == (
        6,
        2,
        1,
    )
    assert campaign["credits_charged"] == 14  # (6 sent + 1 unknown) x 2 segments
    assert campaign["credits_allocated"] == 0
    statuses = dict(
        await db.fetch(
            "SELECT status, count(*) FROM campaign_recipients WHERE campaign_id = $1 GROUP BY 1",
            campaign_id,
        )
    )
    assert statuses == {"sent": 6, "failed": 2, "unknown": 1, "pending": 1}
    retry = await db.fetchrow(
        "SELECT attempts, next_attempt_at, error_category FROM campaign_recipients"
        " WHERE campaign_id = $1 AND status = 'pending'",
        campaign_id,
    )
    assert retry["attempts"] == 1 and retry["error_category"] == "network"
    assert retry["next_attempt_at"] > datetime.now(UTC) + timedelta(seconds=1)

    # Not complete while one recipient is pending.
    assert await try_complete(db, campaign_id, actor="test") is None
    await db.execute(
        "UPDATE campaign_recipients SET next_attempt_at = now() WHERE campaign_id = $1", campaign_id
    )
    [last] = await _claim_all(db, campaign_id, store_id, segments=2)
    await write_outcomes(
        db, [outcome_row(last, SendOutcome(OutcomeKind.ACCEPTED, "x", provider_id="z"), POLICY)]
    )

    done = await try_complete(db, campaign_id, actor="test")
    assert done is not None and done.status == "sent"
    assert done.released == 20 - 16
    # Exactly once.
    assert await try_complete(db, campaign_id, actor="test") is None
    balances = await ledger_balances(db, store_id)
    assert balances["credits_available"] == balances["avail"] == 100 - 16
    assert balances["credits_reserved"] == balances["res"] == 0
    assert balances["charged"] == 16
    assert balances["credits_available"] + balances["credits_reserved"] + balances["charged"] == 100
    events = await db.fetch(
        "SELECT to_status FROM campaign_events WHERE campaign_id = $1", campaign_id
    )
    assert [e["to_status"] for e in events] == ["sent"]
    outbox = await db.fetch(
        "SELECT event_type FROM webhook_outbox WHERE campaign_id = $1", campaign_id
    )
    assert [o["event_type"] for o in outbox] == ["campaign.completed"]


async def test_states_never_move_backwards(db: asyncpg.Pool) -> None:
    store_id = await store_with_contacts(db, 1, credits=10)
    campaign_id = await sending_campaign(db, store_id, reserve=1, recipients=1)
    [claim] = await _claim_all(db, campaign_id, store_id)
    await db.execute(
        "UPDATE campaign_recipients SET status = 'delivered' WHERE id = $1", claim.recipient_id
    )
    row = outcome_row(claim, SendOutcome(OutcomeKind.ACCEPTED, "x", provider_id="late"), POLICY)
    assert await write_outcomes(db, [row]) == {}
    assert (
        await db.fetchval(
            "SELECT status FROM campaign_recipients WHERE id = $1", claim.recipient_id
        )
        == "delivered"
    )


async def test_a_recipient_is_never_charged_twice(db: asyncpg.Pool) -> None:
    store_id = await store_with_contacts(db, 1, credits=10)
    campaign_id = await sending_campaign(db, store_id, reserve=2, recipients=1)
    [claim] = await _claim_all(db, campaign_id, store_id)
    # A charge already exists (e.g. from a flush whose commit answer was lost, then retried by
    # another path): the unique index swallows the second and balances do not move twice.
    await db.execute(
        "INSERT INTO credit_ledger"
        " (store_id, campaign_id, recipient_id, kind, available_delta, reserved_delta)"
        " VALUES ($1, $2, $3, 'charge', 0, -1)",
        store_id,
        campaign_id,
        claim.recipient_id,
    )
    row = outcome_row(claim, SendOutcome(OutcomeKind.ACCEPTED, "x", provider_id="p"), POLICY)
    await write_outcomes(db, [row])
    assert (
        await db.fetchval(
            "SELECT count(*) FROM credit_ledger WHERE recipient_id = $1", claim.recipient_id
        )
        == 1
    )
    assert (
        await db.fetchval("SELECT credits_charged FROM campaigns WHERE id = $1", campaign_id) == 0
    )


async def test_writer_flushes_by_size_and_interval(db: asyncpg.Pool) -> None:
    store_id = await store_with_contacts(db, 50, credits=100)
    campaign_id = await sending_campaign(db, store_id, reserve=50, recipients=50)
    claims = await _claim_all(db, campaign_id, store_id)
    seen: list[dict[int, int]] = []

    async def on_applied(applied: dict[int, int]) -> None:
        seen.append(applied)

    writer = OutcomeWriter(db, flush_interval_s=0.05, flush_max_rows=20, on_applied=on_applied)
    writer.start()
    for claim in claims:
        writer.add(
            outcome_row(
                claim,
                SendOutcome(OutcomeKind.ACCEPTED, "x", provider_id=str(claim.recipient_id)),
                POLICY,
            )
        )
    await writer.close()
    assert sum(sum(a.values()) for a in seen) == 50
    assert writer.rows_written == 50
    assert await db.fetchval("SELECT sent_count FROM campaigns WHERE id = $1", campaign_id) == 50


async def test_claims_skip_locked_and_respect_campaign_status(db: asyncpg.Pool) -> None:
    store_id = await store_with_contacts(db, 30, credits=100)
    campaign_id = await sending_campaign(db, store_id, reserve=30, recipients=30)
    async with db.acquire() as conn, conn.transaction():
        first = await pipeline.claim(conn, campaign_id, 0, 10)
        # A concurrent claimer does not see the locked rows.
        second = await pipeline.claim(db, campaign_id, 0, 10)
    assert len(first) == 10 and len(second) == 10
    assert not {c.id for c in first} & {c.id for c in second}
    await db.execute("UPDATE campaigns SET status = 'paused' WHERE id = $1", campaign_id)
    assert await pipeline.claim(db, campaign_id, 0, 10) == []


async def test_allocation_refuses_beyond_the_reservation(db: asyncpg.Pool) -> None:
    store_id = await store_with_contacts(db, 5, credits=100)
    campaign_id = await sending_campaign(db, store_id, reserve=3, recipients=5)
    claimed = await pipeline.claim(db, campaign_id, 0, 5)
    ids = [c.id for c in claimed]
    assert not await pipeline.allocate_and_mark(db, campaign_id, ids, [1] * 5)
    assert (
        await db.fetchval(
            "SELECT count(*) FROM campaign_recipients"
            " WHERE campaign_id = $1 AND requested_at IS NOT NULL",
            campaign_id,
        )
        == 0
    )
    assert await pipeline.allocate_and_mark(db, campaign_id, ids[:3], [1] * 3)
    assert await pipeline.extend_reservation(db, campaign_id, store_id, 2)
    assert await pipeline.allocate_and_mark(db, campaign_id, ids[3:], [1] * 2)
    balances = await ledger_balances(db, store_id)
    assert balances["credits_available"] == balances["avail"] == 95
    assert balances["credits_reserved"] == balances["res"] == 5


async def test_write_outcomes_accepts_empty(db: asyncpg.Pool) -> None:
    assert await write_outcomes(db, []) == {}
    assert isinstance(OutcomeRow._fields, tuple)
