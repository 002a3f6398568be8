"""Queue monitoring: what the arq queues hold and which daemons are alive, read from Redis.

Used by the daemon (Prometheus gauges, every few seconds) and by ``GET /v1/admin/queues``.

An arq queue is a sorted set of job ids scored by the time (ms) from which the job may run:
its enqueue time, or the deferral time of a retry or continuation. A job stays in the set
while it runs (arq removes it when it finishes) and is marked meanwhile by an
``arq:in-progress:<job id>`` key. A reading splits each queue into:

- waiting: due (score <= now) and not picked by any worker: the backlog;
- running: due and marked in progress;
- deferred: scored in the future (backoff retries, continuations).

A reading costs two pipelined round trips for all three queues whatever their length: ZCARD,
ZCOUNT and the head of the due range (at most ``HEAD_SCAN`` ids), then one EXISTS per id read.
Workers take the oldest due jobs first, so the running ones sit at the head of the due range
and counting the in-progress marks there is exact unless more than ``HEAD_SCAN`` jobs of one
queue run at once (then waiting is over-counted and the oldest age is a lower bound).

Daemons write a heartbeat into the hash ``{prefix}:daemons`` (one JSON field per daemon id,
see ``sender.daemon``); a daemon is alive when its last heartbeat is younger than
``ALIVE_WITHIN_S``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import orjson
import redis.asyncio as aioredis
from arq.constants import in_progress_key_prefix

from sender.jobs import PRIORITIES, queue_name
from sender.redisconn import command

#: Due job ids read per queue to tell running jobs from waiting ones.
HEAD_SCAN = 200
# Scores this far ahead of our clock still count as due (see read_queues).
CLOCK_SKEW_TOLERANCE_MS = 1000.0
#: A daemon whose last heartbeat is older than this counts as down (heartbeats every 5 s).
ALIVE_WITHIN_S = 30.0


@dataclass(frozen=True, slots=True)
class QueueStats:
    """One priority queue at one moment."""

    priority: str
    waiting: int
    running: int
    deferred: int
    #: Age of the oldest waiting job, 0.0 when nothing waits.
    oldest_age_s: float

    @property
    def due(self) -> int:
        return self.waiting + self.running

    @property
    def total(self) -> int:
        return self.waiting + self.running + self.deferred


@dataclass(frozen=True, slots=True)
class DaemonInfo:
    """A daemon's last heartbeat, as it wrote it."""

    id: str
    host: str
    pid: int
    started_at: str | None
    heartbeat: float
    in_flight: int
    rate_per_s: float
    messages_per_s: float

    def age_s(self, now: float) -> float:
        return max(now - self.heartbeat, 0.0)

    def alive(self, now: float) -> bool:
        return self.age_s(now) < ALIVE_WITHIN_S


def daemons_key(prefix: str) -> str:
    return f"{prefix}:daemons"


async def read_queues(client: aioredis.Redis, prefix: str) -> list[QueueStats]:
    """Depth, running, deferred and oldest waiting age of every priority queue."""
    now_ms = time.time() * 1000
    # A job's score is the enqueuing host's clock (rounded to the millisecond): one enqueued
    # "now" by another host, or just before a small clock step here, can score a little
    # ahead of this clock. It is due, not deferred (deferrals are seconds or more).
    due_ms = now_ms + CLOCK_SKEW_TOLERANCE_MS
    names = [queue_name(prefix, priority) for priority in PRIORITIES]
    async with client.pipeline(transaction=False) as pipe:
        for name in names:
            pipe.zcard(name)
            pipe.zcount(name, "-inf", due_ms)
            pipe.zrangebyscore(name, "-inf", due_ms, start=0, num=HEAD_SCAN, withscores=True)
        first: list[Any] = await pipe.execute()
    heads: list[list[tuple[bytes, float]]] = [first[i * 3 + 2] for i in range(len(names))]
    async with client.pipeline(transaction=False) as pipe:
        for head in heads:
            for job_id, _score in head:
                pipe.exists(in_progress_key_prefix + job_id.decode())
        marks: list[int] = await pipe.execute() if any(heads) else []
    out: list[QueueStats] = []
    offset = 0
    for index, priority in enumerate(PRIORITIES):
        total, due = int(first[index * 3]), int(first[index * 3 + 1])
        head = heads[index]
        running_flags = [bool(flag) for flag in marks[offset : offset + len(head)]]
        offset += len(head)
        running = sum(running_flags)
        waiting_scores = [
            score for (_, score), run in zip(head, running_flags, strict=True) if not run
        ]
        if waiting_scores:
            oldest_ms = waiting_scores[0]
        elif due > len(head) and head:
            # Every job read runs, yet more are due: the oldest waiting one is younger than
            # the last read, whose age is the best cheap lower bound.
            oldest_ms = head[-1][1]
        else:
            oldest_ms = now_ms
        out.append(
            QueueStats(
                priority=priority,
                waiting=max(due - running, 0),
                running=running,
                deferred=max(total - due, 0),
                oldest_age_s=max(now_ms - oldest_ms, 0.0) / 1000,
            )
        )
    return out


def _daemon(raw: bytes) -> DaemonInfo | None:
    try:
        data = orjson.loads(raw)
        return DaemonInfo(
            id=str(data["daemon_id"]),
            host=str(data.get("host", "")),
            pid=int(data.get("pid", 0)),
            started_at=data.get("started_at"),
            heartbeat=float(data["heartbeat"]),
            in_flight=int(data.get("in_flight", 0)),
            rate_per_s=float(data.get("rate_per_s", 0.0)),
            messages_per_s=float(data.get("messages_per_s", 0.0)),
        )
    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
        # A field written by another version (or by hand) must not break monitoring.
        return None


async def _hgetall(client: aioredis.Redis, key: str) -> dict[bytes, bytes]:
    raw = await command(client, "HGETALL", key)
    assert isinstance(raw, dict)
    return raw


async def read_daemons(client: aioredis.Redis, prefix: str) -> list[DaemonInfo]:
    """Every daemon that left a heartbeat, most recent first."""
    raw = await _hgetall(client, daemons_key(prefix))
    found = [info for info in map(_daemon, raw.values()) if info is not None]
    found.sort(key=lambda info: (-info.heartbeat, info.id))
    return found


async def prune_daemons(client: aioredis.Redis, prefix: str, older_than_s: float) -> int:
    """Forget daemons silent for longer than ``older_than_s`` (killed ones never say goodbye)."""
    now = time.time()
    raw = await _hgetall(client, daemons_key(prefix))
    stale = [
        field
        for field, value in raw.items()
        if (info := _daemon(value)) is None or info.age_s(now) > older_than_s
    ]
    if stale:
        await command(client, "HDEL", daemons_key(prefix), *stale)
    return len(stale)
