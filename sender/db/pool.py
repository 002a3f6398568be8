"""Connection pools: created once per process, with JSON codecs backed by orjson."""

from __future__ import annotations

from typing import Any

import asyncpg
import orjson

Pool = asyncpg.Pool
Connection = asyncpg.Connection
Record = asyncpg.Record


def _dumps(value: Any) -> str:
    return orjson.dumps(value).decode()


async def _init_connection(conn: asyncpg.Connection) -> None:
    for name in ("json", "jsonb"):
        await conn.set_type_codec(name, encoder=_dumps, decoder=orjson.loads, schema="pg_catalog")


async def _keep_session(conn: asyncpg.Connection) -> None:
    """Release without a reset round trip.

    asyncpg's default reset runs ``pg_advisory_unlock_all(); CLOSE ALL; UNLISTEN *; RESET ALL``
    on every release: one more round trip and four statements per pooled query, which the
    send path's profile showed. Pooled connections here never keep session state (no LISTEN,
    session advisory locks, SET or cursors; the outcome writer's temp table is meant to
    stay), and an open transaction is still rolled back by asyncpg before this runs.
    """


async def create_pool(dsn: str, *, min_size: int = 2, max_size: int = 20) -> asyncpg.Pool:
    """A pool whose connections decode json/jsonb into Python objects."""
    pool = await asyncpg.create_pool(
        dsn,
        min_size=min_size,
        max_size=max_size,
        init=_init_connection,
        reset=_keep_session,
        # Statement cache sized for the named queries; inactive connections are recycled so a
        # restarted PostgreSQL is picked up again.
        max_inactive_connection_lifetime=60.0,
    )
    assert pool is not None
    return pool


async def connect(dsn: str) -> asyncpg.Connection:
    """One connection with the same codecs as the pool (CLI commands, migrations)."""
    conn = await asyncpg.connect(dsn)
    await _init_connection(conn)
    return conn
