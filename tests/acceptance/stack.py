"""The product as real processes: mock Mitto, the API and one or more daemons.

Acceptance tests start them as child processes against the test's own database and Redis
namespace, drive them through the public HTTP API, fault them (SIGKILL, FLUSHALL, provider
errors), and check the guarantees against the mock's own record and the database.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from sender.config import Settings
from sender.mock_mitto.harness import MockProcess, free_port
from sender.processes import ServiceProcess

ADMIN_TOKEN = "test-admin-token"
TERMINAL_CAMPAIGN = {"sent", "failed", "cancelled"}


@dataclass
class Stack:
    settings: Settings
    log_dir: Path
    mock_config: dict[str, Any] = field(default_factory=dict)
    env_overrides: dict[str, str] = field(default_factory=dict)
    mock: MockProcess | None = None
    api: ServiceProcess | None = None
    daemons: list[ServiceProcess] = field(default_factory=list)
    api_port: int = 0
    http: aiohttp.ClientSession | None = None

    # -- processes -----------------------------------------------------------------------

    def env(self) -> dict[str, str]:
        assert self.mock is not None
        s = self.settings
        base = {k: v for k, v in os.environ.items() if not k.startswith("SENDER_")}
        base.update(
            {
                "SENDER_DATABASE_URL": str(s.database_url),
                "SENDER_REDIS_URL": str(s.redis_url),
                "SENDER_REDIS_PREFIX": s.redis_prefix,
                "SENDER_ADMIN_TOKEN": ADMIN_TOKEN,
                "SENDER_MITTO_BASE_URL": self.mock.base_url,
                "SENDER_MITTO_API_KEY": "dev-key",
                "SENDER_PUBLIC_BASE_URL": f"http://127.0.0.1:{self.api_port}",
                "SENDER_METRICS_PORT": "0",
                "SENDER_LOG_LEVEL": "INFO",
                "SENDER_SEND_RATE_LIMIT_PER_MIN": "1000",
                "SENDER_API_RATE_LIMIT_PER_MIN": "100000",
            }
        )
        base.update(self.env_overrides)
        return base

    async def start(self, daemons: int = 1) -> None:
        self.mock = MockProcess(self.mock_config, log_path=self.log_dir / "mock.log")
        self.mock.start()
        self.api_port = free_port()
        self.api = ServiceProcess(
            "api",
            ["api", "--host", "127.0.0.1", "--port", str(self.api_port)],
            self.env(),
            self.log_dir,
        )
        self.api.start(ready_url=f"{self.api_url}/healthz")
        for _ in range(daemons):
            self.start_daemon()
        self.http = aiohttp.ClientSession()

    def start_daemon(self) -> ServiceProcess:
        daemon = ServiceProcess(f"daemon{len(self.daemons)}", ["daemon"], self.env(), self.log_dir)
        daemon.start()
        self.daemons.append(daemon)
        return daemon

    async def close(self) -> None:
        if self.http is not None:
            await self.http.close()
        for daemon in self.daemons:
            daemon.stop()
        if self.api is not None:
            self.api.stop()
        if self.mock is not None:
            await self.mock.aclose()
            self.mock.stop()

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    # -- the public API ------------------------------------------------------------------

    async def call(
        self,
        method: str,
        path: str,
        token: str,
        *,
        json: Any = None,
        data: bytes | None = None,
        content_type: str | None = None,
        expect: int | None = None,
    ) -> tuple[int, Any]:
        assert self.http is not None
        headers = {"Authorization": f"Bearer {token}"}
        if content_type:
            headers["Content-Type"] = content_type
        async with self.http.request(
            method, self.api_url + path, json=json, data=data, headers=headers
        ) as resp:
            body = await resp.json(content_type=None) if resp.status != 204 else None
            if expect is not None and resp.status != expect:
                raise AssertionError(f"{method} {path} -> {resp.status}: {body}")
            return resp.status, body

    async def create_store(self, credits: int) -> tuple[int, str]:
        _, body = await self.call(
            "POST",
            "/v1/admin/stores",
            ADMIN_TOKEN,
            json={
                "name": "Acceptance Shop",
                "sender_id": "ACCSHOP",
                "timezone": "Europe/Athens",
                "default_region": "GR",
                "subscription_status": "active",
                "credits": credits,
            },
            expect=201,
        )
        return int(body["store"]["id"]), str(body["token"])

    async def import_contacts(self, token: str, count: int, *, start: int = 0) -> dict[str, Any]:
        lines = ["phone,first_name,last_name"]
        lines += [f"+3069{start + i:08d},Name{i},Surname{i}" for i in range(count)]
        _, body = await self.call(
            "POST",
            "/v1/contacts/import",
            token,
            data=("\n".join(lines) + "\n").encode(),
            content_type="text/csv",
            expect=200,
        )
        return dict(body)

    async def create_campaign(self, token: str, message: str, **extra: Any) -> int:
        _, body = await self.call(
            "POST",
            "/v1/campaigns",
            token,
            json={"name": "Acceptance", "message": message, **extra},
            expect=201,
        )
        return int(body["id"])

    async def send(self, token: str, campaign_id: int) -> dict[str, Any]:
        _, body = await self.call("POST", f"/v1/campaigns/{campaign_id}/send", token, expect=202)
        return dict(body)

    async def progress(self, token: str, campaign_id: int) -> dict[str, Any]:
        _, body = await self.call("GET", f"/v1/campaigns/{campaign_id}/progress", token, expect=200)
        return dict(body)

    async def wait_until(
        self, token: str, campaign_id: int, predicate: Any, timeout_s: float
    ) -> dict[str, Any]:
        deadline = time.monotonic() + timeout_s
        while True:
            state = await self.progress(token, campaign_id)
            if predicate(state):
                return state
            if time.monotonic() > deadline:
                logs = "\n".join(f"--- {d.name}\n{d.tail()}" for d in self.daemons)
                raise AssertionError(f"timed out; last progress {state}\n{logs}")
            await asyncio.sleep(0.25)

    async def wait_finished(self, token: str, campaign_id: int, timeout_s: float) -> dict[str, Any]:
        return await self.wait_until(
            token, campaign_id, lambda s: s["status"] in TERMINAL_CAMPAIGN, timeout_s
        )


@contextlib.asynccontextmanager
async def running_stack(
    settings: Settings,
    log_dir: Path,
    *,
    mock_config: dict[str, Any] | None = None,
    env: dict[str, str] | None = None,
    daemons: int = 1,
) -> Any:
    stack = Stack(settings, log_dir, mock_config or {}, env or {})
    try:
        await stack.start(daemons=daemons)
        yield stack
    finally:
        await stack.close()
