"""The send daemon: one uvloop process running an arq worker per priority queue.

It owns the process-wide sending machinery (one provider HTTP session, one limiter, one
in-flight cap, one outcome writer) that every batch job shares, a heartbeat in Redis, and the
sweeper. SIGTERM stops it gracefully: workers stop taking jobs, batch jobs stop claiming and
finish what is in flight, continuations are enqueued, outcomes are flushed, and the process
exits 0 within ``SENDER_SHUTDOWN_GRACE_S``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import time
import uuid
from datetime import UTC, datetime
from typing import Any

import orjson
from arq.connections import ArqRedis
from arq.worker import Worker, func

from sender.batch import BatchSender, SenderConfig
from sender.config import Settings
from sender.db import monitoring as monitoring_db
from sender.db import pipeline as pipeline_db
from sender.db.completion import try_complete
from sender.db.pool import Pool, create_pool
from sender.dispatch import dispatch
from sender.jobs import (
    PRIORITIES,
    create_arq_pool,
    deserialize,
    enqueue_batch,
    queue_name,
    serialize,
)
from sender.logs import log_context
from sender.metrics import DaemonMetrics
from sender.mitto import MittoClient
from sender.outcomes import OutcomeWriter
from sender.queues import prune_daemons, read_queues
from sender.ratelimit import ProviderLimiter, TokenBucket, bucket_capacity
from sender.redisconn import command
from sender.retry import RetryPolicy
from sender.sweeper import Sweeper

log = logging.getLogger("sender.daemon")

BATCH_JOB_TIMEOUT_S = 600
DISPATCH_JOB_TIMEOUT_S = 900
HEARTBEAT_INTERVAL_S = 5.0
HEARTBEAT_TTL_S = 30
#: Queue depth and campaign activity are read this often for the metrics: cheap reads
#: (two Redis round trips, one indexed count), and Prometheus scrapes every 15 s anyway.
MONITOR_INTERVAL_S = 5.0
#: A daemon silent this long is dropped from the heartbeat hash (a killed one never says bye).
FORGET_DAEMON_AFTER_S = 3600.0


class Daemon:
    def __init__(self, settings: Settings, *, metrics_port: int | None = None) -> None:
        if settings.database_url is None or settings.redis_url is None:
            raise ValueError("the daemon needs database_url and redis_url")
        self.settings = settings
        self.metrics_port = settings.metrics_port if metrics_port is None else metrics_port
        self.daemon_id = f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self.started_at = datetime.now(UTC)
        self.metrics = DaemonMetrics(enabled=settings.metrics_enabled)
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task[Any]] = []
        self._workers: list[Worker] = []
        self.pool: Pool
        self.arq: ArqRedis
        self.client: MittoClient
        self.limiter: ProviderLimiter
        self.writer: OutcomeWriter
        self.sender: BatchSender
        self.sweeper: Sweeper

    # -- lifecycle -----------------------------------------------------------------------

    async def start(self) -> None:
        s = self.settings
        assert s.database_url is not None and s.redis_url is not None
        self.pool = await create_pool(s.database_url, min_size=4, max_size=24)
        self.arq = await create_arq_pool(s.redis_url, s.redis_prefix)
        self.client = MittoClient.from_settings(s)
        await self.client.start()
        self.limiter = await self._make_limiter()
        self.writer = OutcomeWriter(
            self.pool,
            flush_interval_s=s.flush_interval_s,
            flush_max_rows=s.flush_max_rows,
            on_applied=self._on_applied,
            observe_flush=self.metrics.flush_done,
        )
        self.writer.start()
        self.sender = BatchSender(
            pool=self.pool,
            client=self.client,
            limiter=self.limiter,
            writer=self.writer,
            config=SenderConfig(
                public_url=s.public_url,
                link_secret=s.link_secret.encode(),
                claim_chunk_size=s.claim_chunk_size,
                claim_window=s.claim_window,
                policy=RetryPolicy(
                    max_attempts=s.max_attempts,
                    base_s=s.retry_base_s,
                    retry_ambiguous=s.retry_ambiguous,
                ),
            ),
            max_in_flight=s.max_in_flight,
            daemon_id=self.daemon_id,
            observer=self.metrics,
        )
        self.sweeper = Sweeper(
            self.pool,
            self.arq,
            prefix=s.redis_prefix,
            sending_lease_s=s.sending_lease_s,
            actor=f"daemon:{self.daemon_id}",
        )
        self.metrics.bind(self)
        if self.metrics_port:
            await self.metrics.serve(self.metrics_port)
        for priority in PRIORITIES:
            worker = Worker(
                functions=[
                    func(
                        _dispatch_job, name="dispatch", timeout=DISPATCH_JOB_TIMEOUT_S, max_tries=20
                    ),
                    func(
                        _send_batch_job,
                        name="send_batch",
                        timeout=BATCH_JOB_TIMEOUT_S,
                        max_tries=20,
                    ),
                ],
                queue_name=queue_name(s.redis_prefix, priority),
                redis_pool=await create_arq_pool(s.redis_url, s.redis_prefix),
                ctx={"daemon": self},
                handle_signals=False,
                max_jobs=16,
                poll_delay=0.1,
                keep_result=300,
                job_serializer=serialize,
                job_deserializer=deserialize,
                health_check_interval=HEARTBEAT_INTERVAL_S,
            )
            self._workers.append(worker)
            self._tasks.append(asyncio.create_task(worker.async_run(), name=f"arq-{priority}"))
        self._tasks.append(asyncio.create_task(self._heartbeat(), name="heartbeat"))
        self._tasks.append(asyncio.create_task(self._sweep_loop(), name="sweeper"))
        self._tasks.append(asyncio.create_task(self._monitor_loop(), name="monitor"))
        log.info(
            "daemon started",
            extra={
                "daemon_id": self.daemon_id,
                "max_in_flight": s.max_in_flight,
                "provider_rate": s.provider_rate,
                "limiter": s.limiter,
                "metrics_port": self.metrics_port,
            },
        )

    async def _make_limiter(self) -> ProviderLimiter:
        s = self.settings
        burst = bucket_capacity(s.provider_rate, s.provider_burst)
        if s.limiter == "redis":
            from sender.ratelimit_redis import RedisTokenBucket

            assert s.redis_url is not None
            return RedisTokenBucket.from_url(
                s.redis_url,
                key=f"{s.redis_prefix}:limiter:provider",
                rate_per_s=s.provider_rate,
                burst=burst,
            )
        return TokenBucket(s.provider_rate, burst)

    def request_stop(self) -> None:
        self._stop.set()

    async def wait_stopped(self) -> None:
        await self._stop.wait()

    async def stop(self) -> None:
        """Graceful stop within the grace time; safe to call once."""
        grace = self.settings.shutdown_grace_s
        deadline = time.monotonic() + grace
        log.info("daemon stopping", extra={"daemon_id": self.daemon_id, "grace_s": grace})
        for worker in self._workers:
            worker.allow_pick_jobs = False
        self.sender.stopping.set()
        running = [t for w in self._workers for t in w.tasks.values() if not t.done()]
        if running:
            _done, pending = await asyncio.wait(
                running, timeout=max(0.1, deadline - time.monotonic())
            )
            if pending:
                log.warning(
                    "jobs still running at the end of the grace time", extra={"jobs": len(pending)}
                )
        await self.writer.close(timeout_s=max(0.5, deadline - time.monotonic()))
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        for worker in self._workers:
            with contextlib.suppress(Exception):
                await worker.close()
        with contextlib.suppress(Exception):
            await command(self.arq, "HDEL", f"{self.settings.redis_prefix}:daemons", self.daemon_id)
        await self.client.close()
        await self.limiter.close()
        await self.arq.aclose(close_connection_pool=True)
        await self.pool.close()
        await self.metrics.stop_server()
        log.info("daemon stopped", extra={"daemon_id": self.daemon_id})

    # -- jobs ----------------------------------------------------------------------------

    async def run_dispatch(self, campaign_id: int, dispatch_round: int) -> int:
        return await dispatch(
            self.pool,
            self.arq,
            prefix=self.settings.redis_prefix,
            campaign_id=campaign_id,
            dispatch_round=dispatch_round,
            batch_size=self.settings.batch_size,
        )

    async def run_send_batch(self, campaign_id: int, batch_no: int, generation: int) -> int:
        result = await self.sender.run_batch(campaign_id, batch_no, generation)
        if result.superseded:
            return 0
        if result.finished:
            await self.complete(campaign_id)
            return result.sent_requests
        state = await pipeline_db.campaign_state(self.pool, campaign_id)
        if state is None or state.status != "sending" or result.next_due is None:
            return result.sent_requests
        new_generation = await pipeline_db.bump_generation(
            self.pool, campaign_id, batch_no, generation
        )
        if new_generation is not None:
            due = result.next_due
            await enqueue_batch(
                self.arq,
                self.settings.redis_prefix,
                campaign_id,
                batch_no,
                new_generation,
                state.priority,
                defer_until=due if due > datetime.now(UTC) else None,
            )
        return result.sent_requests

    async def complete(self, campaign_id: int) -> None:
        done = await try_complete(self.pool, campaign_id, actor=f"daemon:{self.daemon_id}")
        if done is not None:
            self.metrics.campaign_completed(done.status)
            log.info(
                "campaign completed",
                extra={
                    "campaign_id": campaign_id,
                    "store_id": done.store_id,
                    "status": done.status,
                    "released_credits": done.released,
                    **{f"count_{k}": v for k, v in done.counts.items()},
                },
            )

    async def _on_applied(self, applied: dict[int, int]) -> None:
        self.metrics.outcomes_applied(sum(applied.values()))

    # -- background ----------------------------------------------------------------------

    async def _heartbeat(self) -> None:
        key = f"{self.settings.redis_prefix}:daemons"
        while True:
            now = time.time()
            info = {
                "daemon_id": self.daemon_id,
                "pid": os.getpid(),
                "host": socket.gethostname(),
                "started_at": self.started_at.isoformat(),
                "heartbeat": now,
                "in_flight": self.sender.in_flight,
                "rate_per_s": self.limiter.rate_per_s,
                "messages_per_s": round(self.metrics.sample_message_rate(), 2),
            }
            try:
                await command(self.arq, "HSET", key, self.daemon_id, orjson.dumps(info))
                await command(self.arq, "EXPIRE", key, HEARTBEAT_TTL_S * 10)
                self.metrics.heartbeat(now)
            except Exception:
                log.warning("heartbeat failed", exc_info=True)
            await asyncio.sleep(HEARTBEAT_INTERVAL_S)

    async def _monitor_loop(self) -> None:
        """Queue depth and campaign activity for the metrics; prunes forgotten daemons."""
        prefix = self.settings.redis_prefix
        while True:
            try:
                self.metrics.queues_read(await read_queues(self.arq, prefix))
                self.metrics.campaigns_read(await monitoring_db.campaign_activity(self.pool))
                await prune_daemons(self.arq, prefix, FORGET_DAEMON_AFTER_S)
            except Exception:
                log.warning("monitoring read failed", exc_info=True)
            await asyncio.sleep(MONITOR_INTERVAL_S)

    async def _sweep_loop(self) -> None:
        while True:
            try:
                report = await self.sweeper.sweep()
                for done in report.completed:
                    self.metrics.campaign_completed(done.status)
            except Exception:
                log.warning("sweep failed", exc_info=True)
            await asyncio.sleep(self.settings.sweep_interval_s)


async def _dispatch_job(ctx: dict[str, Any], campaign_id: int, dispatch_round: int) -> int:
    daemon: Daemon = ctx["daemon"]
    with log_context(job_id=ctx.get("job_id"), campaign_id=campaign_id):
        return await daemon.run_dispatch(campaign_id, dispatch_round)


async def _send_batch_job(
    ctx: dict[str, Any], campaign_id: int, batch_no: int, generation: int
) -> int:
    daemon: Daemon = ctx["daemon"]
    with log_context(job_id=ctx.get("job_id"), campaign_id=campaign_id):
        return await daemon.run_send_batch(campaign_id, batch_no, generation)


async def run_daemon(settings: Settings, *, metrics_port: int | None = None) -> int:
    """Run until SIGTERM/SIGINT; returns the exit status."""
    daemon = Daemon(settings, metrics_port=metrics_port)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, daemon.request_stop)
    await daemon.start()
    try:
        await daemon.wait_stopped()
    finally:
        await daemon.stop()
    return 0
