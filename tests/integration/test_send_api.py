"""POST /v1/campaigns/{id}/send and GET .../progress against real PostgreSQL and Redis."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest
import redis.asyncio as aioredis
from aiohttp.test_utils import TestClient

from sender.config import Settings, load_settings
from sender.jobs import dispatch_job_id
from tests.integration.factories import bearer, create_store
from tests.integration.pipeline_factories import ledger_balances

Client = TestClient[object, object]
MESSAGE = "Hi {{first_name}}, 20% off today"


async def _contacts(api: Client, token: str, count: int, tags: str = "") -> None:
    lines = ["phone,first_name,tags"] + [f"+3069{i:08d},Maria,{tags}" for i in range(count)]
    response = await api.post(
        "/v1/contacts/import",
        data="\n".join(lines).encode(),
        headers=bearer(token) | {"Content-Type": "text/csv"},
    )
    assert response.status == 200, await response.text()


async def _campaign(api: Client, token: str, **extra: Any) -> int:
    response = await api.post(
        "/v1/campaigns", json={"name": "BF", "message": MESSAGE, **extra}, headers=bearer(token)
    )
    assert response.status == 201, await response.text()
    return int((await response.json())["id"])


async def _snapshot(db: asyncpg.Pool, store_id: int) -> list[Any]:
    return [
        await db.fetch("SELECT * FROM stores WHERE id = $1", store_id),
        await db.fetch("SELECT id, status, credits_reserved FROM campaigns ORDER BY id"),
        await db.fetch("SELECT * FROM credit_ledger ORDER BY id"),
        await db.fetch("SELECT * FROM campaign_events ORDER BY id"),
    ]


async def test_send_reserves_transitions_and_enqueues(
    api: Client, db: asyncpg.Pool, redis_client: aioredis.Redis, settings: Settings
) -> None:
    store, token = await create_store(api, credits=1000)
    await _contacts(api, token, 120)
    campaign_id = await _campaign(api, token)
    response = await api.post(f"/v1/campaigns/{campaign_id}/send", headers=bearer(token))
    assert response.status == 202, await response.text()
    body = await response.json()
    assert body == {
        "id": campaign_id,
        "status": "sending",
        "recipients": 120,
        "credits_reserved": 120,
        "scheduled_at": None,
    }
    balances = await ledger_balances(db, store["id"])
    assert balances["credits_available"] == balances["avail"] == 880
    assert balances["credits_reserved"] == balances["res"] == 120
    history = await db.fetch(
        "SELECT from_status, to_status FROM campaign_events WHERE campaign_id = $1", campaign_id
    )
    assert [(h["from_status"], h["to_status"]) for h in history] == [("draft", "sending")]
    job_key = f"arq:job:{dispatch_job_id(settings.redis_prefix, campaign_id, 0)}"
    assert await redis_client.exists(job_key) == 1

    # A second send is an illegal transition, with the current status in the problem.
    again = await api.post(f"/v1/campaigns/{campaign_id}/send", headers=bearer(token))
    assert again.status == 409
    problem = await again.json(content_type=None)
    assert problem["code"] == "invalid_status_transition"
    assert problem["current_status"] == "sending"

    progress = await api.get(f"/v1/campaigns/{campaign_id}/progress", headers=bearer(token))
    assert progress.status == 200
    state = await progress.json()
    assert state["status"] == "sending"
    assert state["total"] == 120
    assert state["counts"]["pending"] == 120
    assert state["credits"] == {"reserved": 120, "charged": 0, "released": 0}


async def test_inactive_subscription_is_403_and_changes_nothing(
    api: Client, db: asyncpg.Pool
) -> None:
    store, token = await create_store(api, credits=1000, subscription_status="past_due")
    await _contacts(api, token, 5)
    campaign_id = await _campaign(api, token)
    before = await _snapshot(db, store["id"])
    response = await api.post(f"/v1/campaigns/{campaign_id}/send", headers=bearer(token))
    assert response.status == 403
    assert (await response.json(content_type=None))["code"] == "subscription_inactive"
    assert await _snapshot(db, store["id"]) == before


async def test_no_recipients_is_422_and_the_campaign_stays_draft(
    api: Client, db: asyncpg.Pool
) -> None:
    store, token = await create_store(api, credits=1000)
    await _contacts(api, token, 5, tags="retail")
    campaign_id = await _campaign(api, token, audience={"tags_any": ["vip"]})
    before = await _snapshot(db, store["id"])
    response = await api.post(f"/v1/campaigns/{campaign_id}/send", headers=bearer(token))
    assert response.status == 422
    assert (await response.json(content_type=None))["code"] == "no_recipients"
    assert await _snapshot(db, store["id"]) == before
    assert await db.fetchval("SELECT status FROM campaigns WHERE id = $1", campaign_id) == "draft"


async def test_insufficient_credits_is_402_with_figures(api: Client, db: asyncpg.Pool) -> None:
    store, token = await create_store(api, credits=10)
    await _contacts(api, token, 25)
    campaign_id = await _campaign(api, token)
    before = await _snapshot(db, store["id"])
    response = await api.post(f"/v1/campaigns/{campaign_id}/send", headers=bearer(token))
    assert response.status == 402
    problem = await response.json(content_type=None)
    assert (problem["code"], problem["needed"], problem["available"]) == (
        "insufficient_credits",
        25,
        10,
    )
    assert await _snapshot(db, store["id"]) == before


async def test_a_future_schedule_reserves_and_waits(
    api: Client, db: asyncpg.Pool, redis_client: aioredis.Redis, settings: Settings
) -> None:
    store, token = await create_store(api, credits=100)
    await _contacts(api, token, 10)
    at = (datetime.now(UTC) + timedelta(hours=2)).isoformat()
    campaign_id = await _campaign(api, token, scheduled_at=at)
    response = await api.post(f"/v1/campaigns/{campaign_id}/send", headers=bearer(token))
    assert response.status == 202
    body = await response.json()
    assert body["status"] == "scheduled" and body["credits_reserved"] == 10
    job_key = f"arq:job:{dispatch_job_id(settings.redis_prefix, campaign_id, 0)}"
    assert await redis_client.exists(job_key) == 0
    # Sending a scheduled campaign now starts it without reserving twice.
    now = await api.post(f"/v1/campaigns/{campaign_id}/send", headers=bearer(token))
    assert now.status == 202
    assert (await now.json())["status"] == "sending"
    balances = await ledger_balances(db, store["id"])
    assert balances["credits_reserved"] == 10 and balances["credits_available"] == 90


@pytest.fixture
def many_sends(settings: Settings) -> Settings:
    # The send rate limit is raised so that the credit reservation alone decides.
    return load_settings(**(settings.model_dump() | {"send_rate_limit_per_min": 1000}))


async def test_fifty_concurrent_sends_start_exactly_what_the_credits_cover(
    many_sends: Settings, db: asyncpg.Pool
) -> None:
    from aiohttp.test_utils import TestServer

    from api.app import create_app

    client: Client = TestClient(TestServer(create_app(many_sends), host="127.0.0.1"))
    await client.start_server()
    try:
        store, token = await create_store(client, credits=1000)
        await _contacts(client, token, 100)
        campaigns = [await _campaign(client, token) for _ in range(50)]

        async def send(campaign_id: int) -> int:
            response = await client.post(f"/v1/campaigns/{campaign_id}/send", headers=bearer(token))
            await response.read()
            return response.status

        statuses = await asyncio.gather(*(send(c) for c in campaigns))
    finally:
        await client.close()
    assert sorted(statuses).count(202) == 10
    assert sorted(statuses).count(402) == 40
    balances = await ledger_balances(db, store["id"])
    assert balances["credits_available"] == balances["avail"] == 0
    assert balances["credits_reserved"] == balances["res"] == 1000
    assert await db.fetchval("SELECT count(*) FROM campaigns WHERE status = 'sending'") == 10
    assert await db.fetchval("SELECT count(*) FROM campaigns WHERE status = 'draft'") == 40
