"""The daemon's Prometheus metrics, served on ``SENDER_METRICS_PORT``.

Names follow Prometheus conventions (``sender_`` prefix, ``_total``, ``_seconds``) and carry
no per-recipient or per-campaign label. Each daemon has its own registry, so tests can run
several in one process.

The pipeline calls some hooks once per provider request or token wait (``request_done``,
``limiter_waited``, ``recipient_answered``). Those series are kept as plain numbers in dicts
(:class:`HotCounter`, :class:`HotHistogram`) and turned into metric families only when
scraped: a request then costs about a microsecond instead of the several that
prometheus_client's locked counters and histograms take. Everything runs on the event loop's
thread, the scrape included, so nothing needs a lock. Queue and campaign gauges are
set by the daemon's monitor task from periodic cheap reads (``sender.queues``,
``sender.db.monitoring``); every daemon exports the same shared figures, so dashboards take
``max by (queue)`` of them. With ``enabled=False`` (``SENDER_METRICS_ENABLED=false``) the hooks
only keep the plain message count the heartbeat needs: the baseline of the overhead benchmark.
"""

from __future__ import annotations

import logging
import time
from bisect import bisect_left
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from importlib import metadata
from itertools import accumulate
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
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from sender.mitto import OutcomeKind, SendOutcome

if TYPE_CHECKING:
    from sender.daemon import Daemon
    from sender.db.monitoring import CampaignActivity
    from sender.queues import QueueStats

log = logging.getLogger("sender.metrics")

# Provider latency: a healthy provider answers in 5-100 ms, a struggling one in seconds, and
# the read timeout (10 s) bounds it; quantiles need several buckets per decade.
LATENCY_BUCKETS = (
    0.005, 0.01, 0.02, 0.03, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 10.0
)  # fmt: skip
WAIT_BUCKETS = (0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 30.0)
FLUSH_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


#: How far back the heartbeat's messages-per-second figure looks.
RATE_WINDOW_S = 60.0


class HotCounter:
    """A labelled counter as a dict of plain numbers, exported at scrape time."""

    def __init__(self, name: str, documentation: str, labelnames: Sequence[str]) -> None:
        # Named without ``_total``, as prometheus_client's families expect.
        self.name = name.removesuffix("_total")
        self.documentation = documentation
        self.labelnames = list(labelnames)
        self.values: dict[tuple[str, ...], float] = {}

    def inc(self, labels: tuple[str, ...], amount: float = 1.0) -> None:
        self.values[labels] = self.values.get(labels, 0.0) + amount

    def family(self) -> Metric:
        family = CounterMetricFamily(self.name, self.documentation, labels=self.labelnames)
        for labels, value in self.values.items():
            family.add_metric(list(labels), value)
        return family


class HotHistogram:
    """A labelled histogram as per-bucket counts and a sum, exported at scrape time."""

    def __init__(
        self,
        name: str,
        documentation: str,
        labelnames: Sequence[str],
        buckets: Sequence[float],
    ) -> None:
        self.name = name
        self.documentation = documentation
        self.labelnames = list(labelnames)
        self.bounds = tuple(buckets)
        # repr() writes these bounds as prometheus_client does ("0.005", "1.0", "10.0").
        self._les = [repr(float(bound)) for bound in self.bounds] + ["+Inf"]
        #: labels -> [count in each bucket (the last one above every bound)..., sum]
        self.series: dict[tuple[str, ...], list[float]] = {}
        if not self.labelnames:
            # A histogram without labels is exported (all zeros) before its first value.
            self.series[()] = [0.0] * (len(self.bounds) + 2)

    def observe(self, labels: tuple[str, ...], value: float) -> None:
        series = self.series.get(labels)
        if series is None:
            series = self.series[labels] = [0.0] * (len(self.bounds) + 2)
        # bisect_left finds the first bound >= value: the bucket "le" that value falls in.
        series[bisect_left(self.bounds, value)] += 1
        series[-1] += value

    def family(self) -> Metric:
        family = HistogramMetricFamily(self.name, self.documentation, labels=self.labelnames)
        for labels, series in self.series.items():
            cumulative = list(accumulate(series[:-1]))
            family.add_metric(
                list(labels), list(zip(self._les, cumulative, strict=True)), series[-1]
            )
        return family


class _HotCollector(Collector):
    def __init__(self, metrics: Iterable[HotCounter | HotHistogram]) -> None:
        self.metrics = list(metrics)

    def collect(self) -> Iterator[Metric]:
        for metric in self.metrics:
            yield metric.family()

    def describe(self) -> Iterator[Metric]:
        # The names, so the registry refuses a second metric of the same name.
        return self.collect()


_SMS = ("sms",)
_SMSBULK = ("smsbulk",)


class DaemonMetrics:
    def __init__(self, *, enabled: bool = True) -> None:
        self.enabled = enabled
        #: Recipients answered by the provider (throttled answers excluded), for the heartbeat.
        self.answered = 0
        self._rate_samples: deque[tuple[float, int]] = deque(maxlen=256)
        self.registry = CollectorRegistry()
        r = self.registry
        self.messages = HotCounter(
            "sender_messages_total",
            "Recipients handled by provider requests, by outcome and error category.",
            ["outcome", "category"],
        )
        self.requests = HotCounter(
            "sender_provider_requests_total",
            "Provider HTTP requests, by outcome and endpoint.",
            ["outcome", "endpoint"],
        )
        self.latency = HotHistogram(
            "sender_provider_request_duration_seconds",
            "Provider request latency.",
            ["endpoint"],
            LATENCY_BUCKETS,
        )
        self.limiter_wait = HotHistogram(
            "sender_limiter_wait_seconds",
            "Time spent waiting for a provider token (waits only).",
            [],
            WAIT_BUCKETS,
        )
        self.retries = HotCounter(
            "sender_retries_total",
            "Answers to retried sends (recipients with earlier attempts), by outcome kind.",
            ["result"],
        )
        r.register(
            _HotCollector(
                [self.messages, self.requests, self.latency, self.limiter_wait, self.retries]
            )
        )
        self.in_flight = Gauge(
            "sender_requests_in_flight", "Provider requests in flight.", registry=r
        )
        self.in_flight_limit = Gauge(
            "sender_requests_in_flight_limit", "Configured in-flight cap.", registry=r
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
        self.queue_depth = Gauge(
            "sender_queue_depth",
            "Jobs due and waiting for a worker, per priority queue (shared: take max).",
            ["queue"],
            registry=r,
        )
        self.queue_running = Gauge(
            "sender_queue_running_jobs",
            "Jobs being run by a worker, per priority queue (shared: take max).",
            ["queue"],
            registry=r,
        )
        self.queue_deferred = Gauge(
            "sender_queue_deferred_jobs",
            "Jobs scheduled for later (retries, continuations), per priority queue.",
            ["queue"],
            registry=r,
        )
        self.queue_age = Gauge(
            "sender_queue_oldest_job_age_seconds",
            "Age of the oldest job waiting for a worker, per priority queue (0: none waits).",
            ["queue"],
            registry=r,
        )
        self.active_campaigns = Gauge(
            "sender_active_campaigns",
            "Campaigns scheduled, sending or paused (shared: take max).",
            ["status"],
            registry=r,
        )
        self.campaign_idle = Gauge(
            "sender_campaign_max_idle_seconds",
            "Longest time any sending campaign has gone without a recipient changing state.",
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
        if outcome.kind is not OutcomeKind.THROTTLED:
            self.answered += recipients
        if not self.enabled:
            return
        kind = outcome.kind.value
        endpoint = _SMS if recipients == 1 else _SMSBULK
        self.requests.inc((kind, endpoint[0]))
        self.latency.observe(endpoint, latency_s)
        self.messages.inc((kind, outcome.category or "none"), recipients)

    def recipient_answered(self, attempts: int, outcome: SendOutcome) -> None:
        """The final answer of one claim; ``attempts`` > 0 (earlier tries) makes it a retry."""
        if attempts and self.enabled:
            self.retries.inc((outcome.kind.value,))

    def limiter_waited(self, seconds: float) -> None:
        if self.enabled:
            self.limiter_wait.observe((), seconds)

    def flush_done(self, rows: int, seconds: float) -> None:
        if not self.enabled:
            return
        self.flush_rows.inc(rows)
        self.flush_latency.observe(seconds)

    def outcomes_applied(self, count: int) -> None:
        self.applied.inc(count)

    def campaign_completed(self, status: str) -> None:
        self.completed.labels(status=status).inc()

    def heartbeat(self, unix_time: float) -> None:
        self.heartbeat_ts.set(unix_time)

    def sample_message_rate(self, now: float | None = None) -> float:
        """Messages answered per second over the last minute; called once per heartbeat.

        Each call records a sample, so the figure needs no timer of its own: the oldest
        sample within the window against the current count.
        """
        now = time.monotonic() if now is None else now
        samples = self._rate_samples
        samples.append((now, self.answered))
        while len(samples) > 1 and now - samples[0][0] > RATE_WINDOW_S:
            samples.popleft()
        since, count = samples[0]
        return (self.answered - count) / (now - since) if now > since else 0.0

    # -- periodic readings (the daemon's monitor task) -----------------------------------

    def queues_read(self, stats: list[QueueStats]) -> None:
        for queue in stats:
            self.queue_depth.labels(queue=queue.priority).set(queue.waiting)
            self.queue_running.labels(queue=queue.priority).set(queue.running)
            self.queue_deferred.labels(queue=queue.priority).set(queue.deferred)
            self.queue_age.labels(queue=queue.priority).set(queue.oldest_age_s)

    def campaigns_read(self, activity: CampaignActivity) -> None:
        for status, count in activity.by_status.items():
            self.active_campaigns.labels(status=status).set(count)
        self.campaign_idle.set(activity.max_idle_s)

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
