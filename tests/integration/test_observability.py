"""The daemon's and the API's metrics and logs, with a real daemon (in-process) sending a real
campaign through the mock over HTTP.

- every metric name the dashboard and the alert rules use is exported by the running api or
  daemon (read from their /metrics, where HELP/TYPE lines name even series without samples);
- a send moves the counters, histograms and gauges the dashboard is built on;
- the daemon's logs are JSON lines, batch lines carry job, campaign and store ids, and nothing
  is logged per message at info level.
"""

from __future__ import annotations

import asyncio
import io
import logging
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import Any

import aiohttp
import orjson
import pytest
import redis.asyncio as aioredis
from prometheus_client.parser import text_string_to_metric_families
from pydantic import AnyHttpUrl

from sender.config import Settings
from sender.daemon import Daemon
from sender.logs import JsonFormatter
from sender.mock_mitto.harness import free_port, run_mock
from tests.deploy_files import PROMETHEUS_SERIES, all_exprs, metric_names
from tests.integration.factories import Client
from tests.integration.seeding import Tenant, create_campaign, import_csv, tenant

# arq's Worker.close calls redis-py's deprecated close(); under this suite's "warnings are
# errors" that call raises, the daemon's stop swallows it and the worker's pool stays open.
pytestmark = pytest.mark.filterwarnings("ignore:Call to deprecated close:DeprecationWarning")

RECIPIENTS = 300
BATCH_SIZE = 100


@asynccontextmanager
async def running_daemon(settings: Settings, mock_url: str) -> AsyncIterator[Daemon]:
    daemon = Daemon(
        settings.model_copy(
            update={
                "mitto_base_url": AnyHttpUrl(mock_url),
                "metrics_port": free_port(),
                "provider_rate": 5000.0,
                "provider_burst": 500,
                "batch_size": BATCH_SIZE,
                "sweep_interval_s": 1.0,
            }
        )
    )
    await daemon.start()
    try:
        yield daemon
    finally:
        await daemon.stop()


async def scrape(url: str) -> dict[str, Any]:
    """name -> metric family, from a /metrics answer."""
    async with aiohttp.ClientSession() as http, http.get(url) as response:
        assert response.status == 200
        text = await response.text()
    return {family.name: family for family in text_string_to_metric_families(text)}


def exported_names(families: dict[str, Any]) -> set[str]:
    """Series names a scrape offers, with or without samples yet."""
    names: set[str] = set()
    for family in families.values():
        names.update(sample.name for sample in family.samples)
        if family.type == "counter":
            names.add(f"{family.name}_total")
        elif family.type == "histogram":
            names.update(f"{family.name}{suffix}" for suffix in ("_bucket", "_sum", "_count"))
        else:
            names.add(family.name)
    return names


def value(families: dict[str, Any], sample_name: str, **labels: str) -> float:
    """Sum of the samples called ``sample_name`` whose labels include ``labels``."""
    family_name = sample_name.removesuffix("_total").removesuffix("_bucket")
    family_name = family_name.removesuffix("_count").removesuffix("_sum")
    family = families.get(family_name) or families[sample_name]
    return sum(
        sample.value
        for sample in family.samples
        if sample.name == sample_name and labels.items() <= sample.labels.items()
    )


@contextmanager
def captured_logs() -> Iterator[io.StringIO]:
    """The JSON lines the product would print, formatted at emit time (context included)."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    try:
        yield stream
    finally:
        root.removeHandler(handler)
        root.setLevel(level)


async def send_campaign(api: Client, who: Tenant) -> int:
    lines = ["phone,first_name"] + [f"+3069{i:08d},Name{i}" for i in range(RECIPIENTS)]
    await import_csv(api, who, "\n".join(lines) + "\n")
    campaign = await create_campaign(api, who, message="Hi {{first_name}}, 20% off today")
    response = await api.post(f"/v1/campaigns/{campaign['id']}/send", headers=who.auth)
    assert response.status == 202, await response.text()
    deadline = time.monotonic() + 60
    while True:
        progress = await (
            await api.get(f"/v1/campaigns/{campaign['id']}/progress", headers=who.auth)
        ).json()
        if progress["status"] == "sent":
            return int(campaign["id"])
        assert time.monotonic() < deadline, progress
        await asyncio.sleep(0.1)


async def test_dashboard_and_rules_use_only_exported_metrics(
    api: Client, settings: Settings
) -> None:
    async with run_mock() as mock, running_daemon(settings, mock.base_url) as daemon:
        daemon_names = exported_names(
            await scrape(f"http://127.0.0.1:{daemon.metrics_port}/metrics")
        )
    api_names = exported_names(await scrape(str(api.make_url("/metrics"))))
    exported = daemon_names | api_names | PROMETHEUS_SERIES
    missing = {
        f"{where}: {name}"
        for where, expr in all_exprs()
        for name in metric_names(expr)
        if name not in exported
    }
    assert not missing, sorted(missing)
    # The names the issue asks for, by component.
    assert {
        "sender_messages_total",
        "sender_retries_total",
        "sender_provider_request_duration_seconds_bucket",
        "sender_requests_in_flight",
        "sender_queue_depth",
        "sender_queue_oldest_job_age_seconds",
        "sender_limiter_wait_seconds_bucket",
        "sender_limiter_rate_per_second",
        "sender_outcome_flush_rows_total",
        "sender_outcome_flush_duration_seconds_bucket",
        "sender_active_campaigns",
        "sender_daemon_heartbeat_timestamp_seconds",
        "sender_build_info",
    } <= daemon_names
    assert {
        "sender_http_requests_total",
        "sender_http_request_duration_seconds_bucket",
        "sender_build_info",
    } <= api_names


async def test_a_send_moves_the_metrics_and_logs_one_line_per_batch(
    api: Client, settings: Settings, redis_client: aioredis.Redis
) -> None:
    who = await tenant(api)
    with captured_logs() as logs:
        async with run_mock() as mock, running_daemon(settings, mock.base_url) as daemon:
            url = f"http://127.0.0.1:{daemon.metrics_port}/metrics"
            campaign_id = await send_campaign(api, who)
            # The API may see the campaign sent a moment before the daemon counts it.
            deadline = time.monotonic() + 10
            while True:
                families = await scrape(url)
                if value(families, "sender_campaigns_completed_total", status="sent") == 1:
                    break
                assert time.monotonic() < deadline
                await asyncio.sleep(0.1)

            assert value(families, "sender_messages_total", outcome="accepted") == RECIPIENTS
            assert value(families, "sender_provider_requests_total", endpoint="sms") == RECIPIENTS
            assert value(families, "sender_provider_request_duration_seconds_count") == RECIPIENTS
            assert value(families, "sender_provider_request_duration_seconds_bucket", le="+Inf")
            assert value(families, "sender_outcome_flush_rows_total") >= RECIPIENTS
            assert value(families, "sender_outcome_flush_duration_seconds_count") > 0
            assert value(families, "sender_requests_in_flight_limit") == settings.max_in_flight
            assert value(families, "sender_limiter_rate_per_second") > 0
            assert value(families, "sender_daemon_heartbeat_timestamp_seconds") > time.time() - 30
            assert value(families, "sender_build_info", component="daemon") == 1
            queues = {s.labels["queue"] for s in families["sender_queue_depth"].samples}
            assert queues == {"high", "normal", "low"}
            active = {s.labels["status"] for s in families["sender_active_campaigns"].samples}
            assert active == {"scheduled", "sending", "paused"}

            # The heartbeat publishes the last minute's rate for GET /v1/admin/queues.
            key = f"{settings.redis_prefix}:daemons"
            deadline = time.monotonic() + 15
            while True:
                raw = await redis_client.hget(key, daemon.daemon_id)  # type: ignore[misc]
                info = orjson.loads(raw)
                if info["messages_per_s"] > 0:
                    break
                assert time.monotonic() < deadline, info
                await asyncio.sleep(0.5)
            response = await api.get(
                "/v1/admin/queues", headers={"Authorization": "Bearer test-admin-token"}
            )
            body = await response.json()
            assert body["daemons_alive"] == 1 and body["messages_per_s_last_minute"] > 0

    lines = [orjson.loads(line) for line in logs.getvalue().splitlines()]
    daemon_lines = [
        line
        for line in lines
        if line["logger"].startswith(("sender.", "arq.")) and line["level"] != "debug"
    ]
    assert all({"time", "level", "message", "logger"} <= line.keys() for line in daemon_lines)
    batches = [line for line in daemon_lines if line["message"] == "batch done"]
    assert len(batches) == RECIPIENTS // BATCH_SIZE
    for line in batches:
        assert line["campaign_id"] == campaign_id and line["store_id"] == who.id
        assert line["job_id"].startswith(f"{settings.redis_prefix}:batch:{campaign_id}:")
    # A few lines per job and per daemon lifecycle, never one per message.
    assert len(daemon_lines) < RECIPIENTS // 5, [line["message"] for line in daemon_lines]
    texts = [line["message"] for line in daemon_lines]
    assert max(texts.count(text) for text in set(texts)) <= 2 * (RECIPIENTS // BATCH_SIZE) + 2
