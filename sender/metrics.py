"""The daemon's Prometheus metrics, served on ``SENDER_METRICS_PORT``.

Names follow Prometheus conventions (``sender_`` prefix, ``_total``, ``_seconds``) and carry
no per-recipient or per-campaign label. Each daemon has its own registry, so tests can run
several in one process.
"""

from __future__ import annotations

import logging
from importlib import metadata
from typing import TYPE_CHECKING

from aiohttp import web
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

from sender.mitto import SendOutcome

if TYPE_CHECKING:
    from sender.daemon import Daemon

log = logging.getLogger("sender.metrics")

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
WAIT_BUCKETS = (0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 30.0)
FLUSH_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


class DaemonMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.messages = Counter(
            "sender_messages_total",
            "Recipients handled by provider requests, by outcome and error category.",
            ["outcome", "category"],
            registry=r,
        )
        self.requests = Counter(
            "sender_provider_requests_total",
            "Provider HTTP requests, by outcome and endpoint.",
            ["outcome", "endpoint"],
            registry=r,
        )
        self.latency = Histogram(
            "sender_provider_request_duration_seconds",
            "Provider request latency.",
            ["endpoint"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.in_flight = Gauge(
            "sender_requests_in_flight", "Provider requests in flight.", registry=r
        )
        self.in_flight_limit = Gauge(
            "sender_requests_in_flight_limit", "Configured in-flight cap.", registry=r
        )
        self.limiter_wait = Histogram(
            "sender_limiter_wait_seconds",
            "Time spent waiting for a provider token (waits only).",
            buckets=WAIT_BUCKETS,
            registry=r,
        )
        self.limiter_rate = Gauge(
            "sender_limiter_rate_per_second", "Current adaptive provider rate.", registry=r
        )
        self.limiter_ceiling = Gauge(
            "sender_limiter_ceiling_per_second", "Configured provider rate.", registry=r
        )
        self.flush_rows = Counter(
            "sender_outcome_flush_rows_total", "Outcome rows written by the writer.", registry=r
        )
        self.flush_latency = Histogram(
            "sender_outcome_flush_duration_seconds",
            "Duration of one outcome flush (COPY + set-based update).",
            buckets=FLUSH_BUCKETS,
            registry=r,
        )
        self.outcome_buffer = Gauge(
            "sender_outcome_buffer_rows", "Outcomes waiting to be written.", registry=r
        )
        self.applied = Counter(
            "sender_outcomes_applied_total",
            "Recipient state changes committed by the writer.",
            registry=r,
        )
        self.completed = Counter(
            "sender_campaigns_completed_total",
            "Campaigns completed by this daemon, by final status.",
            ["status"],
            registry=r,
        )
        self.heartbeat_ts = Gauge(
            "sender_daemon_heartbeat_timestamp_seconds",
            "Unix time of the daemon's last heartbeat.",
            registry=r,
        )
        self.build = Gauge(
            "sender_build_info", "Build information.", ["version", "component"], registry=r
        )
        self.build.labels(version=_version(), component="daemon").set(1)
        self._runner: web.AppRunner | None = None

    def bind(self, daemon: Daemon) -> None:
        """Gauges that read the daemon's live state at scrape time."""
        self.in_flight.set_function(lambda: daemon.sender.in_flight)
        self.in_flight_limit.set(daemon.settings.max_in_flight)
        self.limiter_rate.set_function(lambda: daemon.limiter.rate_per_s)
        self.limiter_ceiling.set(daemon.settings.provider_rate)
        self.outcome_buffer.set_function(lambda: daemon.writer.pending)

    # -- hooks called by the pipeline ------------------------------------------------------

    def request_done(self, outcome: SendOutcome, latency_s: float, recipients: int) -> None:
        endpoint = "sms" if recipients == 1 else "smsbulk"
        kind = outcome.kind.value
        self.requests.labels(outcome=kind, endpoint=endpoint).inc()
        self.latency.labels(endpoint=endpoint).observe(latency_s)
        self.messages.labels(outcome=kind, category=outcome.category or "none").inc(recipients)

    def limiter_waited(self, seconds: float) -> None:
        self.limiter_wait.observe(seconds)

    def flush_done(self, rows: int, seconds: float) -> None:
        self.flush_rows.inc(rows)
        self.flush_latency.observe(seconds)

    def outcomes_applied(self, count: int) -> None:
        self.applied.inc(count)

    def campaign_completed(self, status: str) -> None:
        self.completed.labels(status=status).inc()

    def heartbeat(self, unix_time: float) -> None:
        self.heartbeat_ts.set(unix_time)

    # -- HTTP ----------------------------------------------------------------------------

    def render(self) -> bytes:
        return generate_latest(self.registry)

    async def serve(self, port: int, host: str = "0.0.0.0") -> None:
        async def metrics(_request: web.Request) -> web.Response:
            return web.Response(body=self.render(), headers={"Content-Type": CONTENT_TYPE_LATEST})

        async def healthz(_request: web.Request) -> web.Response:
            return web.json_response({"status": "ok"})

        app = web.Application()
        app.router.add_get("/metrics", metrics)
        app.router.add_get("/healthz", healthz)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, host, port)
        try:
            await site.start()
        except OSError as exc:
            log.error("cannot serve metrics", extra={"port": port, "error": str(exc)})
            await runner.cleanup()
            return
        self._runner = runner

    async def stop_server(self) -> None:
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()


def _version() -> str:
    try:
        return metadata.version("campaign-sender")
    except metadata.PackageNotFoundError:
        return "unknown"
