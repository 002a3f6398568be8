"""A real Prometheus scrapes a real API and daemon during a send through the mock.

Prometheus runs with the project's own scrape jobs (deploy/prometheus/prometheus.yml, targets
pointed at the test's processes, 1 s intervals) and the real alert rules, of which
SenderDaemonDown is shortened (a 12 s heartbeat threshold, more than twice the heartbeat
period, a 3 s scrape window, for: 1s) so
that stopping the daemon plays out within the test. Through Prometheus' HTTP API the test sees
a non-zero send rate, queue depth samples and provider latency buckets while sending, no
daemon alert while the daemon runs, and SenderDaemonDown pending or firing once it stopped.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import subprocess
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml

from sender.config import Settings
from sender.mock_mitto.harness import free_port
from tests.acceptance.stack import Stack, running_stack
from tests.deploy_files import PROMETHEUS_CONFIG, load_rules, prometheus

pytestmark = [pytest.mark.slow, pytest.mark.timeout(120)]

RECIPIENTS = 4000
SEND = {
    "SENDER_PROVIDER_RATE": "400",
    "SENDER_PROVIDER_BURST": "50",
    "SENDER_BATCH_SIZE": "500",
    "SENDER_SHUTDOWN_GRACE_S": "5",
}


def _test_rules() -> list[dict[str, Any]]:
    """The real rules, with SenderDaemonDown's minute shortened to seconds."""
    rules = load_rules()
    (down,) = [rule for rule in rules if rule.get("alert") == "SenderDaemonDown"]
    expr, count_threshold = re.subn(r"\) > 60\b", ") > 12", down["expr"])
    expr, count_window = re.subn(r"\[1m\]", "[3s]", expr)
    # The real rule must still have the shape this shortening relies on.
    assert (count_threshold, count_window) == (1, 1), down["expr"]
    down["expr"] = expr
    down["for"] = "1s"
    return rules


def _config(stack: Stack, daemon_port: int, rules_path: Path) -> dict[str, Any]:
    """deploy/prometheus/prometheus.yml with the test's targets and 1 s intervals."""
    config: dict[str, Any] = yaml.safe_load(PROMETHEUS_CONFIG.read_text())
    config["global"] = {
        "scrape_interval": "1s",
        "scrape_timeout": "900ms",
        "evaluation_interval": "1s",
    }
    config["rule_files"] = [str(rules_path)]
    targets = {
        "sender-api": f"127.0.0.1:{stack.api_port}",
        "sender-daemon": f"127.0.0.1:{daemon_port}",
    }
    for job in config["scrape_configs"]:
        job["static_configs"] = [{"targets": [targets[job["job_name"]]]}]
    assert {job["job_name"] for job in config["scrape_configs"]} == set(targets)
    return config


@contextlib.contextmanager
def running_prometheus(config: dict[str, Any], tmp_path: Path) -> Iterator[str]:
    config_path = tmp_path / "prometheus.yml"
    config_path.write_text(yaml.safe_dump(config))
    port = free_port()
    log_path = tmp_path / "prometheus.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [
                prometheus(),
                f"--config.file={config_path}",
                f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                f"--web.listen-address=127.0.0.1:{port}",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


async def _eventually(
    check: Callable[[], Awaitable[Any]], what: str, timeout_s: float = 30.0
) -> Any:
    deadline = time.monotonic() + timeout_s
    while True:
        found = await check()
        if found:
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.5)


async def test_prometheus_sees_a_send_and_alerts_when_the_daemon_stops(
    settings: Settings, tmp_path: Path
) -> None:
    daemon_port = free_port()
    env = SEND | {"SENDER_METRICS_PORT": str(daemon_port)}
    rules_path = tmp_path / "sender.rules.yml"
    rules_path.write_text(yaml.safe_dump({"groups": [{"name": "sender", "rules": _test_rules()}]}))
    async with (
        running_stack(settings, tmp_path, mock_config={"latency_ms": 5}, env=env) as stack,
        aiohttp.ClientSession() as http,
    ):
        with running_prometheus(_config(stack, daemon_port, rules_path), tmp_path) as base:

            async def ready() -> bool:
                with contextlib.suppress(aiohttp.ClientError):
                    async with http.get(f"{base}/-/ready") as response:
                        return response.status == 200
                return False

            async def query(promql: str) -> list[dict[str, Any]]:
                async with http.get(f"{base}/api/v1/query", params={"query": promql}) as r:
                    body = await r.json()
                assert body["status"] == "success", body
                result: list[dict[str, Any]] = body["data"]["result"]
                return result

            async def daemon_alerts() -> list[dict[str, Any]]:
                async with http.get(f"{base}/api/v1/alerts") as response:
                    body = await response.json()
                return [
                    alert
                    for alert in body["data"]["alerts"]
                    if alert["labels"]["alertname"] == "SenderDaemonDown"
                ]

            await _eventually(ready, "Prometheus to be ready")
            _, token = await stack.create_store(credits=RECIPIENTS * 2)
            await stack.import_contacts(token, RECIPIENTS)
            campaign_id = await stack.create_campaign(token, "Hi {{first_name}}, 20% off today")
            await stack.send(token, campaign_id)

            rate = await _eventually(
                lambda: query("sum(rate(sender_messages_total[15s])) > 0"), "a send rate"
            )
            assert float(rate[0]["value"][1]) > 0
            depth = await _eventually(
                lambda: query('sender_queue_depth{job="sender-daemon"}'), "queue depth samples"
            )
            assert {series["metric"]["queue"] for series in depth} == {"high", "normal", "low"}
            await _eventually(
                lambda: query(
                    'sum(sender_provider_request_duration_seconds_bucket{le="+Inf"}) > 0'
                ),
                "provider latency buckets",
            )
            p99 = await query(
                "histogram_quantile(0.99, sum by (le)"
                " (rate(sender_provider_request_duration_seconds_bucket[15s])))"
            )
            assert 0 < float(p99[0]["value"][1]) < 10
            await _eventually(
                lambda: query('sum(sender_http_requests_total{job="sender-api"}) > 0'),
                "API request counts",
            )
            assert await query('up{job="sender-daemon"} == 1')

            final = await stack.wait_finished(token, campaign_id, timeout_s=60)
            assert final["status"] == "sent"
            assert not await daemon_alerts(), "SenderDaemonDown while the daemon runs"

            (daemon,) = stack.daemons
            assert await asyncio.to_thread(daemon.stop) == 0
            alerts = await _eventually(daemon_alerts, "SenderDaemonDown", timeout_s=30)
            assert alerts[0]["state"] in {"pending", "firing"}
            assert alerts[0]["labels"]["instance"] == f"127.0.0.1:{daemon_port}"
            assert alerts[0]["labels"]["severity"] == "critical"
