"""The benchmarked product as real processes, and what the benchmarks measure about them.

One :class:`BenchStack` per run: a scratch database (created next to the one named, migrated,
dropped afterwards), its own Redis key prefix, the mock Mitto, the API and, per scenario, a
daemon started with that scenario's settings, all as child processes (``sender.processes``),
driven through the public HTTP API. :class:`ResourceSampler` records CPU seconds per process
(and an approximation for PostgreSQL and Redis: every process of that name on the machine)
and the daemon's resident memory over time.
"""

from __future__ import annotations

import asyncio
import os
import re
import secrets
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import aiohttp
import asyncpg
import orjson
import psutil

from sender.db.migrations import apply_migrations
from sender.mock_mitto.harness import MockProcess, free_port
from sender.processes import ServiceProcess

ADMIN_TOKEN = "bench-admin-token"
TERMINAL = {"sent", "failed", "cancelled"}

# Benchmark data only (the product's SQL lives in sql/queries): N opted-in contacts with
# Greek mobile numbers, first names (Latin, some Greek) and a custom city.
SEED_SQL = """
INSERT INTO contacts (store_id, phone, first_name, last_name, tags, custom, consent)
SELECT $1,
       '+3069' || lpad(g::text, 8, '0'),
       (ARRAY['Maria', 'Eleni', 'Giorgos', 'Nikos', 'Katerina', 'Dimitris', 'Sofia',
              'Yannis'])[1 + g % 8],
       (ARRAY['Papadopoulou', 'Pappas', 'Georgiou', 'Smith'])[1 + (g / 8) % 4],
       '{bench}'::text[],
       jsonb_build_object('city', (ARRAY['Athens', 'Patra', 'Thessaloniki'])[1 + g % 3]),
       'opted_in'
FROM generate_series(1, $2::integer) AS g
"""


def with_database(dsn: str, name: str) -> str:
    return urlunsplit(urlsplit(dsn)._replace(path=f"/{name}"))


@dataclass
class Services:
    """Where PostgreSQL and Redis are: an admin DSN (any database on the server) and a URL."""

    database_url: str
    redis_url: str
    redis_prefix: str


# -- resource sampling -------------------------------------------------------------------


def _cpu_s(proc: psutil.Process) -> float:
    try:
        t = proc.cpu_times()
        return float(t.user + t.system)
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return 0.0


def _by_name(name: str) -> list[psutil.Process]:
    found = []
    for proc in psutil.process_iter(["name"]):
        if proc.info["name"] == name:
            found.append(proc)
    return found


class ResourceSampler:
    """CPU seconds of named processes over a measurement, and their RSS every ``interval_s``.

    PostgreSQL and Redis are summed over every process of that name on the machine (the
    benchmark's backends plus anything else running): an upper bound, marked approximate.
    Backends that exit during the measurement take their CPU time with them.
    """

    def __init__(self, pids: dict[str, int], interval_s: float = 0.25) -> None:
        self.procs = {name: psutil.Process(pid) for name, pid in pids.items()}
        self.interval_s = interval_s
        self.rss: dict[str, list[tuple[float, float]]] = {name: [] for name in self.procs}
        self._cpu0: dict[str, float] = {}
        self._shared0: dict[str, dict[int, float]] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._t0 = 0.0

    def _shared_now(self) -> dict[str, dict[int, float]]:
        return {
            kind: {p.pid: _cpu_s(p) for p in _by_name(name)}
            for kind, name in (("postgres", "postgres"), ("redis", "redis-server"))
        }

    def start(self) -> None:
        self._t0 = time.time()
        self._cpu0 = {name: _cpu_s(p) for name, p in self.procs.items()}
        self._shared0 = self._shared_now()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            now = time.time() - self._t0
            for name, proc in self.procs.items():
                with suppress(psutil.NoSuchProcess):
                    self.rss[name].append((now, proc.memory_info().rss / 1e6))
            self._stop.wait(self.interval_s)

    def stop(self) -> dict[str, Any]:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        cpu = {name: round(_cpu_s(p) - self._cpu0[name], 3) for name, p in self.procs.items()}
        shared = self._shared_now()
        for kind, now in shared.items():
            before = self._shared0.get(kind, {})
            cpu[f"{kind}_approx"] = round(
                sum(v - before.get(pid, 0.0) for pid, v in now.items()), 3
            )
        peak = {name: round(max((r for _, r in s), default=0.0), 1) for name, s in self.rss.items()}
        return {"cpu_s": cpu, "peak_rss_mb": peak}


@contextmanager
def sampling(pids: dict[str, int]) -> Iterator[ResourceSampler]:
    sampler = ResourceSampler(pids)
    sampler.start()
    try:
        yield sampler
    finally:
        if not sampler._stop.is_set():
            sampler.stop()


# -- the stack -----------------------------------------------------------------------------


@dataclass
class BenchStack:
    services: Services
    log_dir: Path
    database: str = field(default_factory=lambda: f"bench_{secrets.token_hex(5)}")
    mock: MockProcess | None = None
    api: ServiceProcess | None = None
    daemon: ServiceProcess | None = None
    api_port: int = 0
    http: aiohttp.ClientSession | None = None
    keep_database: bool = False
    _daemons_started: int = 0

    @property
    def database_url(self) -> str:
        return with_database(self.services.database_url, self.database)

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    async def start(self) -> None:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        conn = await asyncpg.connect(self.services.database_url)
        try:
            await conn.execute(f'CREATE DATABASE "{self.database}"')
        finally:
            await conn.close()
        await apply_migrations(self.database_url)
        self.mock = MockProcess(
            {}, log_path=self.log_dir / "mock.log", extra_args=["--log-level", "WARNING"]
        )
        self.mock.start()
        self.api_port = free_port()
        self.api = ServiceProcess(
            "api",
            ["api", "--host", "127.0.0.1", "--port", str(self.api_port)],
            self.env(),
            self.log_dir,
        )
        self.api.start(ready_url=f"{self.api_url}/readyz")
        self.http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=600))

    def env(self, **overrides: object) -> dict[str, str]:
        assert self.mock is not None
        base = {k: v for k, v in os.environ.items() if not k.startswith("SENDER_")}
        base.update(
            {
                "SENDER_DATABASE_URL": self.database_url,
                "SENDER_REDIS_URL": self.services.redis_url,
                "SENDER_REDIS_PREFIX": self.services.redis_prefix,
                "SENDER_ADMIN_TOKEN": ADMIN_TOKEN,
                "SENDER_MITTO_BASE_URL": self.mock.base_url,
                "SENDER_MITTO_API_KEY": "dev-key",
                "SENDER_PUBLIC_BASE_URL": f"http://127.0.0.1:{self.api_port}",
                "SENDER_METRICS_PORT": "0",
                "SENDER_LOG_LEVEL": "INFO",
                "SENDER_SEND_RATE_LIMIT_PER_MIN": "100000",
                "SENDER_API_RATE_LIMIT_PER_MIN": "10000000",
            }
        )
        base.update({f"SENDER_{k.upper()}": str(v) for k, v in overrides.items()})
        return base

    async def start_daemon(self, **settings: object) -> ServiceProcess:
        """A fresh daemon with these settings (``max_in_flight=500`` -> SENDER_MAX_IN_FLIGHT)."""
        await self.stop_daemon()
        port = free_port()
        self._daemons_started += 1
        daemon = ServiceProcess(
            f"daemon{self._daemons_started}",
            ["daemon", "--metrics-port", str(port)],
            self.env(**settings),
            self.log_dir,
        )
        await asyncio.to_thread(daemon.start, f"http://127.0.0.1:{port}/healthz")
        self.daemon = daemon
        return daemon

    async def stop_daemon(self) -> None:
        daemon, self.daemon = self.daemon, None
        if daemon is not None:
            await asyncio.to_thread(daemon.stop)

    async def close(self) -> None:
        if self.http is not None:
            await self.http.close()
        await self.stop_daemon()
        if self.api is not None:
            self.api.stop()
        if self.mock is not None:
            await self.mock.aclose()
            self.mock.stop()
        if not self.keep_database:
            conn = await asyncpg.connect(self.services.database_url)
            try:
                await conn.execute(f'DROP DATABASE IF EXISTS "{self.database}" WITH (FORCE)')
            finally:
                await conn.close()
        await _drop_redis_keys(self.services.redis_url, self.services.redis_prefix)

    # -- the public API ------------------------------------------------------------------

    async def call(
        self,
        method: str,
        path: str,
        token: str,
        *,
        json: Any = None,
        expect: int | None = None,
    ) -> Any:
        assert self.http is not None
        async with self.http.request(
            method,
            self.api_url + path,
            data=orjson.dumps(json) if json is not None else None,
            headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
        ) as resp:
            body = orjson.loads(await resp.read()) if resp.status != 204 else None
            if expect is not None and resp.status != expect:
                raise RuntimeError(f"{method} {path} -> {resp.status}: {body}")
            return body

    async def create_store(self, credits: int, name: str = "Bench Store") -> tuple[int, str]:
        body = await self.call(
            "POST",
            "/v1/admin/stores",
            ADMIN_TOKEN,
            json={
                "name": name,
                "sender_id": "BENCH",
                "timezone": "Europe/Athens",
                "default_region": "GR",
                "subscription_status": "active",
                "credits": credits,
            },
            expect=201,
        )
        return int(body["store"]["id"]), str(body["token"])

    async def seed_contacts(self, store_id: int, count: int) -> float:
        """``count`` contacts in one set-based INSERT (benchmark data, not the import path)."""
        conn = await asyncpg.connect(self.database_url)
        try:
            started = time.perf_counter()
            await conn.execute(SEED_SQL, store_id, count)
            await conn.execute("ANALYZE contacts")
            return time.perf_counter() - started
        finally:
            await conn.close()

    async def create_campaign(self, token: str, message: str) -> int:
        body = await self.call(
            "POST",
            "/v1/campaigns",
            token,
            json={"name": "bench", "message": message, "audience": {"tags_any": ["bench"]}},
            expect=201,
        )
        return int(body["id"])

    async def progress(self, token: str, campaign_id: int) -> dict[str, Any]:
        body: dict[str, Any] = await self.call(
            "GET", f"/v1/campaigns/{campaign_id}/progress", token, expect=200
        )
        return body

    async def send_and_wait(
        self, token: str, campaign_id: int, *, timeout_s: float, poll_s: float = 0.1
    ) -> dict[str, Any]:
        """POST send, then poll progress until terminal: timings and the progress series."""
        wall0 = time.time()
        t0 = time.perf_counter()
        accepted = await self.call("POST", f"/v1/campaigns/{campaign_id}/send", token, expect=202)
        send_call_s = time.perf_counter() - t0
        series: list[tuple[float, int]] = []
        max_sending = 0
        deadline = t0 + timeout_s
        while True:
            state = await self.progress(token, campaign_id)
            now = time.perf_counter()
            done = sum(v for k, v in state["counts"].items() if k not in ("pending", "sending"))
            series.append((round(now - t0, 3), done))
            max_sending = max(max_sending, int(state["counts"].get("sending", 0)))
            if state["status"] in TERMINAL:
                break
            if now > deadline:
                raise TimeoutError(f"campaign {campaign_id} not finished: {state}")
            await asyncio.sleep(poll_s)
        return {
            "wall_start": wall0,
            "send_call_s": send_call_s,
            "total_s": time.perf_counter() - t0,
            "accepted": accepted,
            "final": state,
            "progress_series": series,
            "max_sending": max_sending,
        }


async def _drop_redis_keys(redis_url: str, prefix: str) -> None:
    import redis.asyncio as aioredis

    client = aioredis.from_url(redis_url)
    try:
        for pattern in (f"{prefix}*", f"arq:*{prefix}*"):
            keys = [key async for key in client.scan_iter(match=pattern, count=1000)]
            for start in range(0, len(keys), 1000):
                await client.delete(*keys[start : start + 1000])
    finally:
        await client.aclose()


_MATERIALIZED = re.compile(rb'"recipients materialized"')


def materialization_s(log_path: Path) -> float | None:
    """Seconds the daemon logged for materializing recipients (the last such line)."""
    found: float | None = None
    try:
        with log_path.open("rb") as log:
            for line in log:
                if _MATERIALIZED.search(line):
                    try:
                        found = float(orjson.loads(line)["elapsed_s"])
                    except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
                        continue
    except OSError:
        return None
    return found
