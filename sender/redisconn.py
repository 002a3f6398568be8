"""Redis clients and key naming: every key this deployment writes starts with its prefix."""

from __future__ import annotations

import redis.asyncio as aioredis


def redis_from_url(url: str, **options: object) -> aioredis.Redis:
    """A client for ``url`` (redis-py's factory is untyped; this wrapper is the one place)."""
    client: aioredis.Redis = aioredis.from_url(url, **options)  # type: ignore[no-untyped-call]
    return client


def key(prefix: str, *parts: object) -> str:
    """``prefix:part:part``: the one way keys are named."""
    return ":".join([prefix, *(str(part) for part in parts)])


async def command(client: aioredis.Redis, *args: object) -> object:
    """Run one Redis command; redis-py types its command helpers as sync-or-async unions."""
    result: object = await client.execute_command(*args)  # type: ignore[no-untyped-call]
    return result
