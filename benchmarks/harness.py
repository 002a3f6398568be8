"""A scratch deployment for API benchmarks: own database, the real app on a real socket.

The database is created next to the one ``SENDER_DATABASE_URL`` names (the embedded default
when unset), migrated, and dropped afterwards unless ``keep`` is set. The app runs in this
process, as ``sender api`` would run it, so a measurement includes HTTP, parsing and SQL.
"""

from __future__ import annotations

import socket
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import aiohttp
import asyncpg
from aiohttp import web

from api.app import create_app
from sender import services
from sender.config import Settings, load_settings
from sender.db.migrations import apply_migrations

ADMIN_TOKEN = "bench-admin-token"


@dataclass(frozen=True)
class Deployment:
    base_url: str
    settings: Settings
    database_url: str


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _with_database(dsn: str, name: str) -> str:
    return urlunsplit(urlsplit(dsn)._replace(path=f"/{name}"))


@asynccontextmanager
async def scratch_api(*, keep: bool = False) -> AsyncIterator[Deployment]:
    base = services.with_embedded_defaults(load_settings())
    assert base.database_url is not None
    name = f"sender_bench_{uuid.uuid4().hex[:10]}"
    admin = await asyncpg.connect(base.database_url)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
        dsn = _with_database(base.database_url, name)
        await apply_migrations(dsn)
        port = _free_port()
        settings = load_settings(
            database_url=dsn,
            redis_url=base.redis_url,
            redis_prefix=f"bench{uuid.uuid4().hex[:8]}",
            admin_token=ADMIN_TOKEN,
            public_base_url=f"http://127.0.0.1:{port}",
            # Benchmarks measure the work, not the per-store request budget.
            api_rate_limit_per_min=1_000_000,
        )
        runner = web.AppRunner(create_app(settings), access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        try:
            yield Deployment(f"http://127.0.0.1:{port}", settings, dsn)
        finally:
            await runner.cleanup()
    finally:
        if not keep:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


async def create_store(
    session: aiohttp.ClientSession, base_url: str, *, credits: int
) -> tuple[int, str]:
    """A store through the admin API: (store id, its token)."""
    body: dict[str, Any] = {
        "name": "Bench Store",
        "sender_id": "BENCH",
        "timezone": "Europe/Athens",
        "default_region": "GR",
        "subscription_status": "active",
        "credits": credits,
    }
    async with session.post(
        f"{base_url}/v1/admin/stores",
        json=body,
        headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
    ) as response:
        created = await response.json()
        assert response.status == 201, created
    return int(created["store"]["id"]), str(created["token"])
