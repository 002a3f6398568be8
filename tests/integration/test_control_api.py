"""Cancel, pause, resume and retry-failed through the API, with the ledger kept balanced."""

from __future__ import annotations

from datetime import UTC, datetime

import asyncpg
import redis.asyncio as aioredis
from aiohttp.test_utils import TestClient

from sender.config import Settings
from sender.control import settle_cancelled
from sender.db import pipeline
from sender.db.outcomes import write_outcomes
from sender.jobs import batch_job_id, dispatch_job_id
from sender.mitto import OutcomeKind, SendOutcome
from sender.retry import Claim, RetryPolicy, outcome_row
from tests.integration.factories import bearer, create_store
from tests.integration.pipeline_factories import ledger_balances

Client = TestClient[object, object]


async def _sending_campaign(
    api: Client, contacts: int = 30, credits: int = 1000
) -> tuple[int, str, int]:
    store, token = await create_store(api, credits=credits)
    lines = ["phone,first_name"] + [f"+3069{i:08d},Maria" for i in range(contacts)]
    response = await api.post(
        "/v1/contacts/import",
        data="\n".join(lines).encode(),
        headers=bearer(token) | {"Content-Type": "text/csv"},
    )
    assert response.status == 200
    response = await api.post(
        "/v1/campaigns", json={"name": "c", "message": "Hi {{first_name}}"}, headers=bearer(token)
    )
    campaign_id = int((await response.json())["id"])
    response = await api.post(f"/v1/campaigns/{campaign_id}/send", headers=bearer(token))
    assert response.status == 202
    return int(store["id"]), token, campaign_id


async def _post(api: Client, token: str, path: str) -> tuple[int, dict[str, object]]:
    response = await api.post(path, headers=bearer(token))
    return response.status, await response.json(content_type=None)


async def test_pause_and_resume(
    api: Client, db: asyncpg.Pool, redis_client: aioredis.Redis, settings: Settings
) -> None:
    _store_id, token, campaign_id = await _sending_campaign(api)
    status, body = await _post(api, token, f"/v1/campaigns/{campaign_id}/pause")
    assert (status, body["status"], body["previous_status"]) == (200, "paused", "sending")
    # Paused: nothing can be claimed.
    async with db.acquire() as conn, conn.transaction():
        target = await pipeline.lock_campaign_for_dispatch(conn, campaign_id)
        assert target is not None
    assert await pipeline.claim(db, campaign_id, 0, 10) == []
    status, body = await _post(api, token, f"/v1/campaigns/{campaign_id}/pause")
    assert status == 409 and body["current_status"] == "paused"
    status, body = await _post(api, token, f"/v1/campaigns/{campaign_id}/resume")
    assert (status, body["status"]) == (202, "sending")
    # Paused before dispatch ran: the resume enqueues a fresh dispatch job.
    assert await redis_client.exists(
        f"arq:job:{dispatch_job_id(settings.redis_prefix, campaign_id, 1)}"
    )
    history = await db.fetch(
        "SELECT from_status, to_status FROM campaign_events WHERE campaign_id = $1 ORDER BY id",
        campaign_id,
    )
    assert [(h["from_status"], h["to_status"]) for h in history] == [
        ("draft", "sending"),
        ("sending", "paused"),
        ("paused", "sending"),
    ]


async def test_cancel_with_chunks_in_flight_releases_everything_in_the_end(
    api: Client, db: asyncpg.Pool
) -> None:
    store_id, token, campaign_id = await _sending_campaign(api, contacts=30, credits=100)
    async with db.acquire() as conn, conn.transaction():
        target = await pipeline.lock_campaign_for_dispatch(conn, campaign_id)
        assert target is not None
        await pipeline.materialize(conn, target, 5000)
    in_flight = await pipeline.claim(db, campaign_id, 0, 10)
    ids = [c.id for c in in_flight]
    assert await pipeline.allocate_and_mark(db, campaign_id, ids, [1] * 10)

    status, body = await _post(api, token, f"/v1/campaigns/{campaign_id}/cancel")
    assert status == 200
    assert (body["status"], body["cancelled_recipients"], body["released_credits"]) == (
        "cancelled",
        20,
        20,
    )
    # The ten in flight are answered after the cancel: accepted ones are charged.
    policy = RetryPolicy()
    rows = [
        outcome_row(
            Claim(c.id, campaign_id, store_id, 0, 1),
            SendOutcome(OutcomeKind.ACCEPTED, "x", provider_id=str(c.id))
            if i < 6
            else SendOutcome(OutcomeKind.TRANSIENT, "x", category="network"),
            policy,
            datetime.now(UTC),
        )
        for i, c in enumerate(in_flight)
    ]
    await write_outcomes(db, rows)
    assert await settle_cancelled(db) == 1
    statuses = dict(
        await db.fetch(
            "SELECT status, count(*) FROM campaign_recipients WHERE campaign_id = $1 GROUP BY 1",
            campaign_id,
        )
    )
    assert statuses == {"sent": 6, "cancelled": 24}
    balances = await ledger_balances(db, store_id)
    assert balances["credits_reserved"] == balances["res"] == 0
    assert balances["charged"] == 6
    assert balances["credits_available"] == balances["avail"] == 94
    # Nothing left to settle; a second cancel is an illegal transition.
    assert await settle_cancelled(db) == 0
    status, body = await _post(api, token, f"/v1/campaigns/{campaign_id}/cancel")
    assert status == 409 and body["current_status"] == "cancelled"


async def test_retry_failed_reopens_only_retryable_failures(
    api: Client, db: asyncpg.Pool, redis_client: aioredis.Redis, settings: Settings
) -> None:
    store_id, token, campaign_id = await _sending_campaign(api, contacts=10, credits=100)
    async with db.acquire() as conn, conn.transaction():
        target = await pipeline.lock_campaign_for_dispatch(conn, campaign_id)
        assert target is not None
        await pipeline.materialize(conn, target, 5000)
    claimed = await pipeline.claim(db, campaign_id, 0, 10)
    assert await pipeline.allocate_and_mark(db, campaign_id, [c.id for c in claimed], [1] * 10)
    policy = RetryPolicy(max_attempts=1)
    outcomes = (
        [SendOutcome(OutcomeKind.ACCEPTED, "x", provider_id=f"p{i}") for i in range(5)]
        + [SendOutcome(OutcomeKind.TRANSIENT, "x", category="network", error_code="reset")] * 3
        + [SendOutcome(OutcomeKind.PERMANENT, "x", category="invalid_number", error_code="8")] * 2
    )
    await write_outcomes(
        db,
        [
            outcome_row(Claim(c.id, campaign_id, store_id, 0, 1), o, policy)
            for c, o in zip(claimed, outcomes, strict=True)
        ],
    )
    await db.execute(
        "UPDATE campaigns SET status = 'sent', finished_at = now() WHERE id = $1", campaign_id
    )
    status, body = await _post(api, token, f"/v1/campaigns/{campaign_id}/retry-failed")
    assert status == 202, body
    assert (body["status"], body["retried_recipients"], body["credits_reserved"]) == (
        "sending",
        3,
        3,
    )
    rows = dict(
        await db.fetch(
            "SELECT status, count(*) FROM campaign_recipients WHERE campaign_id = $1 GROUP BY 1",
            campaign_id,
        )
    )
    assert rows == {"sent": 5, "pending": 3, "failed": 2}
    campaign = await db.fetchrow("SELECT * FROM campaigns WHERE id = $1", campaign_id)
    assert campaign is not None
    assert (campaign["failed_count"], campaign["dispatch_round"]) == (2, 1)
    generation = await db.fetchval(
        "SELECT generation FROM campaign_batches WHERE campaign_id = $1 AND batch_no = 0",
        campaign_id,
    )
    assert generation == 1
    assert await redis_client.exists(
        f"arq:job:{batch_job_id(settings.redis_prefix, campaign_id, 0, 1)}"
    )
    # While sending again, a second retry is illegal; with nothing retryable it is a 422.
    status, body = await _post(api, token, f"/v1/campaigns/{campaign_id}/retry-failed")
    assert status == 409
    await db.execute("UPDATE campaign_recipients SET status = 'sent' WHERE status = 'pending'")
    await db.execute("UPDATE campaigns SET status = 'sent' WHERE id = $1", campaign_id)
    status, body = await _post(api, token, f"/v1/campaigns/{campaign_id}/retry-failed")
    assert (status, body["code"]) == (422, "nothing_to_retry")


async def test_control_of_another_stores_campaign_is_404(api: Client, db: asyncpg.Pool) -> None:
    _store_id, _token, campaign_id = await _sending_campaign(api)
    _other, other_token = await create_store(api, credits=10)
    for action in ("cancel", "pause", "resume", "retry-failed"):
        status, body = await _post(api, other_token, f"/v1/campaigns/{campaign_id}/{action}")
        assert (status, body["code"]) == (404, "not_found"), action
    assert await db.fetchval("SELECT status FROM campaigns WHERE id = $1", campaign_id) == "sending"
