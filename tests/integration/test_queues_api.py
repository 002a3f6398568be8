"""GET /v1/admin/queues and the queue reading behind it, against real Redis and PostgreSQL.

Queues are filled with real arq jobs (the project's own enqueue functions), one of them marked
in progress the way an arq worker marks it; daemons are heartbeat entries written the way the
daemon writes them; a stuck campaign is a real `sending` row whose last progress is old.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import asyncpg
import orjson
import redis.asyncio as aioredis
from arq.constants import in_progress_key_prefix

from api.openapi import document
from sender.config import Settings
from sender.jobs import batch_job_id, create_arq_pool, enqueue_batch
from sender.queues import prune_daemons, read_daemons, read_queues
from tests.integration.factories import ADMIN, Client, bearer, create_store
from tests.integration.openapi_conformance import check_response
from tests.integration.pipeline_factories import sending_campaign, store_with_contacts


async def _fill_queues(settings: Settings) -> None:
    """high: 3 due (one running, the oldest waiting for 120 s) and 1 deferred; low: 1 due."""
    assert settings.redis_url is not None
    prefix = settings.redis_prefix
    arq = await create_arq_pool(settings.redis_url, prefix)
    try:
        now = datetime.now(UTC)
        # Oldest first: the worker would have taken job 0, so it is the one running.
        for batch_no, age_s in ((0, 300), (1, 120), (2, 10)):
            await enqueue_batch(
                arq, prefix, 1, batch_no, 0, "high", defer_until=now - timedelta(seconds=age_s)
            )
        await enqueue_batch(arq, prefix, 1, 3, 0, "high", defer_until=now + timedelta(minutes=5))
        await enqueue_batch(arq, prefix, 2, 0, 0, "low")
        await arq.set(in_progress_key_prefix + batch_job_id(prefix, 1, 0, 0), b"1", ex=60)
    finally:
        await arq.aclose(close_connection_pool=True)


async def _heartbeat(
    client: aioredis.Redis, prefix: str, daemon_id: str, age_s: float, **fields: object
) -> None:
    info = {
        "daemon_id": daemon_id,
        "pid": 4242,
        "host": "worker-1",
        "started_at": "2026-01-01T00:00:00+00:00",
        "heartbeat": time.time() - age_s,
        "in_flight": 0,
        "rate_per_s": 500.0,
        "messages_per_s": 0.0,
        **fields,
    }
    await client.hset(f"{prefix}:daemons", daemon_id, orjson.dumps(info))  # type: ignore[misc]


async def test_reading_splits_waiting_running_and_deferred(
    settings: Settings, redis_client: aioredis.Redis
) -> None:
    await _fill_queues(settings)
    stats = {q.priority: q for q in await read_queues(redis_client, settings.redis_prefix)}
    high = stats["high"]
    assert (high.waiting, high.running, high.deferred, high.due) == (2, 1, 1, 3)
    # The running job (300 s old) is not the backlog; the oldest waiting one is 120 s old.
    assert 119 < high.oldest_age_s < 130
    low = stats["low"]
    assert (low.waiting, low.running, low.deferred) == (1, 0, 0)
    assert 0 <= low.oldest_age_s < 10
    normal = stats["normal"]
    assert (normal.waiting, normal.running, normal.deferred, normal.oldest_age_s) == (0, 0, 0, 0)


async def test_forgotten_daemons_are_pruned(
    settings: Settings, redis_client: aioredis.Redis
) -> None:
    prefix = settings.redis_prefix
    await _heartbeat(redis_client, prefix, "fresh", 1)
    await _heartbeat(redis_client, prefix, "killed-long-ago", 7200)
    await redis_client.hset(f"{prefix}:daemons", "garbage", b"not json")  # type: ignore[misc]
    assert await prune_daemons(redis_client, prefix, 3600) == 2
    assert [d.id for d in await read_daemons(redis_client, prefix)] == ["fresh"]


async def test_queues_endpoint_answers_operators(
    api: Client, settings: Settings, db: asyncpg.Pool, redis_client: aioredis.Redis
) -> None:
    prefix = settings.redis_prefix
    await _fill_queues(settings)
    await _heartbeat(
        redis_client, prefix, "alive-1", 2, in_flight=7, messages_per_s=120.5, rate_per_s=450.0
    )
    await _heartbeat(redis_client, prefix, "alive-2", 4, in_flight=3, messages_per_s=79.5)
    # A daemon killed a minute ago: listed, not alive, not counted.
    await _heartbeat(redis_client, prefix, "dead", 65, in_flight=50, messages_per_s=900.0)
    store_id = await store_with_contacts(db, 10)
    stuck = await sending_campaign(db, store_id, reserve=10, recipients=10)
    moving = await sending_campaign(db, store_id, reserve=10, recipients=10)
    await db.execute(
        "UPDATE campaigns SET updated_at = now() - interval '700 seconds', sent_count = 4,"
        " failed_count = 1 WHERE id = $1",
        stuck,
    )

    response = await api.get("/v1/admin/queues", headers=ADMIN)
    raw = await response.read()
    assert response.status == 200, raw
    check_response(document(), "GET", "/v1/admin/queues", 200, response.content_type, raw)
    body = orjson.loads(raw)

    queues = {q["name"]: q for q in body["queues"]}
    assert [q["name"] for q in body["queues"]] == ["high", "normal", "low"]
    assert queues["high"] | {"oldest_age_s": 0} == {
        "name": "high",
        "depth": 2,
        "running": 1,
        "due": 3,
        "deferred": 1,
        "oldest_age_s": 0,
    }
    assert 119 < queues["high"]["oldest_age_s"] < 130
    assert queues["low"]["depth"] == 1

    assert body["in_flight"] == 10
    assert body["messages_per_s_last_minute"] == 200.0
    assert body["daemons_alive"] == 2
    daemons = {d["id"]: d for d in body["daemons"]}
    assert [d["id"] for d in body["daemons"]] == ["alive-1", "alive-2", "dead"]
    assert daemons["alive-1"]["alive"] and daemons["alive-1"]["rate_per_s"] == 450.0
    assert daemons["alive-1"]["host"] == "worker-1" and daemons["alive-1"]["pid"] == 4242
    assert not daemons["dead"]["alive"] and 64 < daemons["dead"]["age_s"] < 80

    sending = body["campaigns_sending"]
    assert sending["count"] == 2
    # The most idle first: the stuck campaign tops the list.
    assert [c["id"] for c in sending["campaigns"]] == [stuck, moving]
    first = sending["campaigns"][0]
    assert first["idle_s"] >= 700
    assert (first["total"], first["sent"], first["failed"], first["done"]) == (10, 4, 1, 5)
    assert first["percent"] == 50.0
    assert body["campaigns_by_status"] == {"scheduled": 0, "sending": 2, "paused": 0}


async def test_queues_endpoint_when_idle(api: Client) -> None:
    response = await api.get("/v1/admin/queues", headers=ADMIN)
    body = await response.json()
    assert response.status == 200, body
    assert all(q["depth"] == q["deferred"] == q["running"] == 0 for q in body["queues"])
    assert body["daemons"] == [] and body["daemons_alive"] == 0
    assert body["in_flight"] == 0 and body["messages_per_s_last_minute"] == 0
    assert body["campaigns_sending"] == {"count": 0, "campaigns": []}


async def test_queues_endpoint_needs_the_admin_token(api: Client) -> None:
    _, token = await create_store(api)
    assert (await api.get("/v1/admin/queues")).status == 401
    assert (await api.get("/v1/admin/queues", headers=bearer(token))).status == 403
