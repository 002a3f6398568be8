"""Test harness: real PostgreSQL and Redis, one isolated database and Redis namespace per test.

Services come from ``SENDER_TEST_DATABASE_URL`` / ``SENDER_TEST_REDIS_URL`` when set, else from
the embedded default (started on demand). A template database is migrated once per run; each
test gets ``CREATE DATABASE ... TEMPLATE`` (a file copy, tens of milliseconds) and its own Redis
key prefix, removed afterwards.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest
import redis.asyncio as aioredis

from sender.config import Settings, load_settings
from sender.db.migrations import apply_migrations
from sender.db.pool import create_pool


@dataclass(frozen=True)
class ServiceUrls:
    admin_dsn: str  # a database to run CREATE/DROP DATABASE from
    redis_url: str

    def dsn_for(self, database: str) -> str:
        parts = urlsplit(self.admin_dsn)
        return urlunsplit(parts._replace(path=f"/{database}"))


def _discover() -> ServiceUrls:
    dsn = os.environ.get("SENDER_TEST_DATABASE_URL")
    redis_url = os.environ.get("SENDER_TEST_REDIS_URL")
    if dsn is None or redis_url is None:
        from sender import services

        embedded = services.up()
        dsn = dsn or embedded.database_url
        redis_url = redis_url or embedded.redis_url
    return ServiceUrls(admin_dsn=dsn, redis_url=redis_url)


async def _admin_execute(services: ServiceUrls, statement: str) -> None:
    conn = await asyncpg.connect(services.admin_dsn)
    try:
        await conn.execute(statement)
    finally:
        await conn.close()


@pytest.fixture(scope="session")
def service_urls() -> ServiceUrls:
    return _discover()


@pytest.fixture(scope="session")
def template_database(service_urls: ServiceUrls) -> Iterator[str]:
    """A migrated database that every test database is cloned from."""
    import asyncio

    name = f"sender_tmpl_{uuid.uuid4().hex[:12]}"

    async def create() -> None:
        await _admin_execute(service_urls, f'CREATE DATABASE "{name}"')
        await apply_migrations(service_urls.dsn_for(name))

    async def drop() -> None:
        await _admin_execute(service_urls, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    asyncio.run(create())
    yield name
    asyncio.run(drop())


@pytest.fixture
async def database_url(service_urls: ServiceUrls, template_database: str) -> AsyncIterator[str]:
    """A fresh, migrated database for this test only."""
    name = f"sender_test_{uuid.uuid4().hex[:12]}"
    await _admin_execute(service_urls, f'CREATE DATABASE "{name}" TEMPLATE "{template_database}"')
    try:
        yield service_urls.dsn_for(name)
    finally:
        await _admin_execute(service_urls, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def redis_prefix() -> str:
    return f"t{uuid.uuid4().hex[:12]}"


@pytest.fixture
async def redis_url(service_urls: ServiceUrls, redis_prefix: str) -> AsyncIterator[str]:
    """The test Redis; every key this test writes starts with its prefix and is removed after."""
    yield service_urls.redis_url
    client = aioredis.from_url(service_urls.redis_url)
    try:
        for pattern in (f"{redis_prefix}*", f"arq:*{redis_prefix}*"):
            keys = [key async for key in client.scan_iter(match=pattern, count=1000)]
            if keys:
                await client.delete(*keys)
    finally:
        await client.aclose()


@pytest.fixture
def settings(database_url: str, redis_url: str, redis_prefix: str) -> Settings:
    """Settings pointing at this test's database and Redis namespace."""
    return load_settings(
        database_url=database_url,
        redis_url=redis_url,
        redis_prefix=redis_prefix,
        admin_token="test-admin-token",
        dlr_secret="test-dlr-secret",
    )


@pytest.fixture
async def db(database_url: str) -> AsyncIterator[asyncpg.Pool]:
    pool = await create_pool(database_url, min_size=1, max_size=10)
    try:
        yield pool
    finally:
        await pool.close()


@pytest.fixture
async def redis_client(redis_url: str) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.from_url(redis_url)
    try:
        yield client
    finally:
        await client.aclose()
