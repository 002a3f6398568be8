"""The control plane's Prometheus metrics and ``GET /metrics``.

Each application owns its ``CollectorRegistry`` (never the process-global one), so several
apps in one process (tests, the demo) do not collide. Labels are route templates
(``/v1/campaigns/{id}``) and a closed set of methods, never raw paths or ids: the number of
series stays bounded whatever clients send.
"""

from __future__ import annotations

from importlib import metadata

from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})

# Control-plane requests are mostly a few milliseconds; imports and previews of large stores
# can take seconds.
_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class ApiMetrics:
    """HTTP request counters and latency histograms of one application."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "sender_http_requests",
            "HTTP requests answered by the control API, by route template and status.",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.duration = Histogram(
            "sender_http_request_duration_seconds",
            "Time from receiving a request to its response, by route template.",
            ["method", "route"],
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        # Same family as the daemon's, so one query shows which versions run where.
        self.build = Gauge(
            "sender_build_info",
            "Build information.",
            ["version", "component"],
            registry=self.registry,
        )
        self.build.labels(version=_version(), component="api").set(1)

    def observe(self, method: str, route: str, status: int, duration_s: float) -> None:
        label = method if method in _METHODS else "other"
        self.requests.labels(label, route, str(status)).inc()
        self.duration.labels(label, route).observe(duration_s)


def _version() -> str:
    try:
        return metadata.version("campaign-sender")
    except metadata.PackageNotFoundError:
        return "unknown"


METRICS = web.AppKey("metrics", ApiMetrics)


async def metrics_endpoint(request: web.Request) -> web.Response:
    body = generate_latest(request.app[METRICS].registry)
    response = web.Response(body=body)
    # CONTENT_TYPE_LATEST carries a charset parameter, which aiohttp's content_type rejects.
    response.headers["Content-Type"] = CONTENT_TYPE_LATEST
    return response


def setup(app: web.Application) -> None:
    app[METRICS] = ApiMetrics()
    app.router.add_get("/metrics", metrics_endpoint)
