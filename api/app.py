"""The control plane's aiohttp application factory.

``create_app(settings)`` wires middlewares and routes; the PostgreSQL pool and the Redis client
are created on startup and closed on cleanup, held under typed app keys.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from aiohttp import web

from api.auth import auth_middleware
from api.keys import DB, REDIS, SETTINGS
from api.middleware import request_context_middleware
from api.problems import problem_middleware
from api.routes import health
from sender.config import Settings
from sender.db.pool import create_pool
from sender.redisconn import redis_from_url


async def _resources(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    assert settings.database_url is not None and settings.redis_url is not None
    app[DB] = await create_pool(settings.database_url, min_size=2, max_size=20)
    app[REDIS] = redis_from_url(settings.redis_url)
    try:
        yield
    finally:
        await app[REDIS].aclose()
        await app[DB].close()


def create_app(settings: Settings) -> web.Application:
    if settings.database_url is None or settings.redis_url is None:
        raise ValueError("create_app needs database_url and redis_url (use with_embedded_defaults)")
    app = web.Application(
        middlewares=[request_context_middleware, problem_middleware, auth_middleware],
        client_max_size=settings.max_json_body_bytes,
    )
    app[SETTINGS] = settings
    app.cleanup_ctx.append(_resources)
    health.setup(app)
    return app
