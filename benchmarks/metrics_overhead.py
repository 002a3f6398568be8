"""What the daemon's Prometheus metrics cost: the same send with metrics on and off.

    .venv/bin/python -m benchmarks.metrics_overhead [--recipients 20000] [--rounds 3]

One scratch database, the mock Mitto and the API as child processes; then, per round, a
fresh daemon with ``SENDER_METRICS_ENABLED=true`` and one with ``false`` (the order alternates
between rounds so drift on a shared machine hits both alike) each send the same personalized
campaign (one provider request per recipient, the path where the per-request hooks run most).
The provider limit is set far above what the machine can do, so the send is CPU-bound and any
cost of the hooks shows. Both daemons serve /metrics and are scraped every second, like an
aggressive Prometheus, so "off" differs only in the hot-path hooks being idle.

Reported per mode: throughput (recipients per second, from the campaign's server-side start
and finish times) and daemon CPU seconds per 1,000 recipients (Linux /proc); then the ratios
on/off, medians over the rounds. On a shared machine compare the ratios, not the absolutes.
Uses the embedded PostgreSQL/Redis unless SENDER_DATABASE_URL / SENDER_REDIS_URL are set.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import tempfile
import time
import uuid
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import aiohttp
import asyncpg
import orjson

from sender import services
from sender.config import load_settings
from sender.db.migrations import apply_migrations
from sender.mock_mitto.harness import MockProcess, free_port
from sender.processes import ServiceProcess

ADMIN_TOKEN = "bench-admin-token"
MESSAGE = "Hi {{first_name}}, 20% off today at our store"
TERMINAL = {"sent", "failed", "cancelled"}


def _cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process (Linux)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Bench:
    def __init__(self, database_url: str, redis_url: str, log_dir: Path) -> None:
        self.database_url = database_url
        self.redis_url = redis_url
        self.prefix = f"bench{uuid.uuid4().hex[:8]}"
        self.log_dir = log_dir
        self.mock = MockProcess({}, log_path=log_dir / "mock.log")
        self.api_port = free_port()
        self.api: ServiceProcess | None = None
        self.http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=600))
        self.token = ""
        self.runs = 0

    def env(self, **overrides: str) -> dict[str, str]:
        base = {k: v for k, v in os.environ.items() if not k.startswith("SENDER_")}
        base |= {
            "SENDER_DATABASE_URL": self.database_url,
            "SENDER_REDIS_URL": self.redis_url,
            "SENDER_REDIS_PREFIX": self.prefix,
            "SENDER_ADMIN_TOKEN": ADMIN_TOKEN,
            "SENDER_MITTO_BASE_URL": self.mock.base_url,
            "SENDER_PUBLIC_BASE_URL": f"http://127.0.0.1:{self.api_port}",
            "SENDER_METRICS_PORT": "0",
            "SENDER_LOG_LEVEL": "WARNING",
            "SENDER_SEND_RATE_LIMIT_PER_MIN": "100000",
            "SENDER_API_RATE_LIMIT_PER_MIN": "10000000",
        }
        return base | overrides

    async def call(self, method: str, path: str, token: str, **kwargs: Any) -> Any:
        headers = {"Authorization": f"Bearer {token}", **kwargs.pop("headers", {})}
        url = f"http://127.0.0.1:{self.api_port}{path}"
        async with self.http.request(method, url, headers=headers, **kwargs) as response:
            body = await response.read()
            if response.status >= 300:
                raise RuntimeError(f"{method} {path} -> {response.status}: {body[:300]!r}")
            return orjson.loads(body) if body else None

    async def start(self, recipients: int, rounds: int) -> None:
        self.mock.start()
        self.api = ServiceProcess(
            "api", ["api", "--port", str(self.api_port)], self.env(), self.log_dir
        )
        await asyncio.to_thread(self.api.start, f"http://127.0.0.1:{self.api_port}/healthz", 60.0)
        created = await self.call(
            "POST",
            "/v1/admin/stores",
            ADMIN_TOKEN,
            json={
                "name": "Overhead Shop",
                "sender_id": "OVERHEAD",
                "timezone": "Europe/Athens",
                "default_region": "GR",
                "subscription_status": "active",
                "credits": recipients * rounds * 2 * 2,
            },
        )
        self.token = created["token"]
        lines = ["phone,first_name"] + [f"+3069{i:08d},Name{i}" for i in range(recipients)]
        await self.call(
            "POST",
            "/v1/contacts/import",
            self.token,
            data=("\n".join(lines) + "\n").encode(),
            headers={"Content-Type": "text/csv"},
        )

    async def send(self, *, metrics: bool) -> dict[str, Any]:
        """One campaign to every contact by a fresh daemon; throughput and CPU."""
        self.runs += 1
        port = free_port()
        daemon = ServiceProcess(
            f"daemon{self.runs}-{'on' if metrics else 'off'}",
            ["daemon"],
            self.env(
                SENDER_METRICS_ENABLED="true" if metrics else "false",
                SENDER_METRICS_PORT=str(port),
                SENDER_PROVIDER_RATE="1000000",
                SENDER_PROVIDER_BURST="10000",
                SENDER_MAX_IN_FLIGHT="200",
                SENDER_BATCH_SIZE="5000",
            ),
            self.log_dir,
        )
        await asyncio.to_thread(daemon.start, f"http://127.0.0.1:{port}/healthz", 60.0)
        assert daemon.pid is not None
        scraper = asyncio.create_task(self._scrape(port))
        try:
            campaign = await self.call(
                "POST", "/v1/campaigns", self.token, json={"name": "overhead", "message": MESSAGE}
            )
            cpu_before = _cpu_s(daemon.pid)
            await self.call("POST", f"/v1/campaigns/{campaign['id']}/send", self.token)
            while True:
                progress = await self.call(
                    "GET", f"/v1/campaigns/{campaign['id']}/progress", self.token
                )
                if progress["status"] in TERMINAL:
                    break
                await asyncio.sleep(0.2)
            cpu_s = _cpu_s(daemon.pid) - cpu_before
        finally:
            scraper.cancel()
            await asyncio.to_thread(daemon.stop)
        elapsed = (
            datetime.fromisoformat(progress["finished_at"])
            - datetime.fromisoformat(progress["started_at"])
        ).total_seconds()
        done = progress["total"]
        return {
            "metrics": metrics,
            "status": progress["status"],
            "recipients": done,
            "elapsed_s": round(elapsed, 3),
            "per_s": round(done / elapsed, 1),
            "cpu_s_per_1000": round(1000 * cpu_s / done, 4),
        }

    async def _scrape(self, port: int) -> None:
        while True:
            try:
                async with self.http.get(f"http://127.0.0.1:{port}/metrics") as response:
                    await response.read()
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(1.0)

    async def close(self) -> None:
        await self.http.close()
        if self.api is not None:
            await asyncio.to_thread(self.api.stop)
        await self.mock.aclose()
        self.mock.stop()


def _median(runs: list[dict[str, Any]], key: str, metrics: bool) -> float:
    return float(statistics.median(run[key] for run in runs if run["metrics"] is metrics))


async def run(recipients: int, rounds: int) -> dict[str, Any]:
    settings = services.with_embedded_defaults(load_settings())
    assert settings.database_url is not None and settings.redis_url is not None
    name = f"sender_overhead_{uuid.uuid4().hex[:10]}"
    admin = await asyncpg.connect(settings.database_url)
    await admin.execute(f'CREATE DATABASE "{name}"')
    database_url = urlunsplit(urlsplit(settings.database_url)._replace(path=f"/{name}"))
    log_dir = Path(tempfile.mkdtemp(prefix="metrics-overhead-"))
    bench = Bench(database_url, settings.redis_url, log_dir)
    try:
        await apply_migrations(database_url)
        await bench.start(recipients, rounds)
        runs: list[dict[str, Any]] = []
        for index in range(rounds):
            for metrics in (True, False) if index % 2 == 0 else (False, True):
                result = await bench.send(metrics=metrics)
                print(orjson.dumps(result).decode(), flush=True)
                runs.append(result)
    finally:
        await bench.close()
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()
    on_rate, off_rate = _median(runs, "per_s", True), _median(runs, "per_s", False)
    on_cpu, off_cpu = _median(runs, "cpu_s_per_1000", True), _median(runs, "cpu_s_per_1000", False)
    return {
        "recipients": recipients,
        "rounds": rounds,
        "cpus": os.cpu_count(),
        "median_per_s": {"on": on_rate, "off": off_rate},
        "median_cpu_s_per_1000": {"on": on_cpu, "off": off_cpu},
        "throughput_ratio_on_over_off": round(on_rate / off_rate, 3),
        "cpu_ratio_on_over_off": round(on_cpu / off_cpu, 3),
        "logs": str(log_dir),
        "runs": runs,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--recipients", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    started = time.monotonic()
    summary = asyncio.run(run(args.recipients, args.rounds))
    summary["wall_s"] = round(time.monotonic() - started, 1)
    print(orjson.dumps(summary, option=orjson.OPT_INDENT_2).decode())


if __name__ == "__main__":
    main()
