"""arq queues and jobs: names, deterministic ids, serialization, enqueueing, job state.

Three queues, one per campaign priority. Job ids are deterministic so that enqueueing the same
work twice is a no-op: ``dispatch`` by (campaign, dispatch round), ``send_batch`` by
(campaign, batch, generation). A legitimate re-enqueue (deferred retries, continuation after a
time box, rebuild after Redis loss) bumps the batch's generation in PostgreSQL first, which
gives it a fresh id even while arq still remembers the old one for ``keep_result``.
Payloads are orjson, never pickle.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

import orjson
from arq.connections import ArqRedis
from arq.constants import in_progress_key_prefix, job_key_prefix
from redis.asyncio import ConnectionPool

PRIORITIES: tuple[str, ...] = ("high", "normal", "low")

JobState = Literal["queued", "running", "absent"]


def serialize(data: dict[str, Any]) -> bytes:
    return orjson.dumps(data)


def deserialize(raw: bytes) -> dict[str, Any]:
    value: dict[str, Any] = orjson.loads(raw)
    return value


def queue_name(prefix: str, priority: str) -> str:
    if priority not in PRIORITIES:
        raise ValueError(f"unknown priority {priority!r}")
    return f"{prefix}:queue:{priority}"


def dispatch_job_id(prefix: str, campaign_id: int, dispatch_round: int) -> str:
    return f"{prefix}:dispatch:{campaign_id}:{dispatch_round}"


def batch_job_id(prefix: str, campaign_id: int, batch_no: int, generation: int) -> str:
    return f"{prefix}:batch:{campaign_id}:{batch_no}:{generation}"


async def create_arq_pool(redis_url: str, prefix: str) -> ArqRedis:
    """An arq client that connects on first use.

    arq's own ``create_pool`` pings Redis with retries before returning; the API must start
    (and answer /readyz honestly) while Redis is down, so the connection is made lazily.
    """
    return ArqRedis(
        ConnectionPool.from_url(redis_url),
        job_serializer=serialize,
        job_deserializer=deserialize,
        default_queue_name=queue_name(prefix, "normal"),
    )


async def enqueue_dispatch(
    arq: ArqRedis, prefix: str, campaign_id: int, dispatch_round: int, priority: str
) -> bool:
    """Enqueue the dispatch job; False if a job with that id is already known to arq."""
    job = await arq.enqueue_job(
        "dispatch",
        campaign_id,
        dispatch_round,
        _job_id=dispatch_job_id(prefix, campaign_id, dispatch_round),
        _queue_name=queue_name(prefix, priority),
    )
    return job is not None


async def enqueue_batch(
    arq: ArqRedis,
    prefix: str,
    campaign_id: int,
    batch_no: int,
    generation: int,
    priority: str,
    *,
    defer_until: datetime | None = None,
) -> bool:
    job = await arq.enqueue_job(
        "send_batch",
        campaign_id,
        batch_no,
        generation,
        _job_id=batch_job_id(prefix, campaign_id, batch_no, generation),
        _queue_name=queue_name(prefix, priority),
        _defer_until=defer_until,
    )
    return job is not None


async def job_state(arq: ArqRedis, job_id: str) -> JobState:
    """Whether arq holds the job: waiting in a queue, running somewhere, or not at all."""
    async with arq.pipeline(transaction=False) as pipe:
        pipe.exists(job_key_prefix + job_id)
        pipe.exists(in_progress_key_prefix + job_id)
        queued, running = await pipe.execute()
    if running:
        return "running"
    if queued:
        return "queued"
    return "absent"
