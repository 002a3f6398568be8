"""The control plane's aiohttp application factory.

``create_app(settings)`` wires middlewares and routes; the PostgreSQL pool and the Redis client
are created on startup and closed on cleanup, held under typed app keys.

Middleware order (outermost first) and why:

1. ``request_context_middleware``: request id, access log, HTTP metrics; sees every answer.
2. ``problem_middleware``: every error below becomes problem+json.
3. ``auth_middleware``: who is calling (admin, a store, a provider callback).
4. ``rate_limit_middleware``: per store, so after auth; before idempotency so replays count.
5. ``idempotency_middleware``: keyed by the authenticated scope; wraps the handler only.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from aiohttp import web

from api import metrics, openapi, ratelimit
from api.auth import auth_middleware
from api.idempotency import idempotency_middleware, purge_expired
from api.keys import ARQ, DB, REDIS, SETTINGS
from api.middleware import request_context_middleware
from api.problems import problem_middleware
from api.ratelimit import rate_limit_middleware
from api.routes import admin, campaigns, contacts, control, health, queues, sending, store
from sender.config import Settings
from sender.db.pool import create_pool
from sender.jobs import create_arq_pool
from sender.redisconn import redis_from_url


async def _resources(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    assert settings.database_url is not None and settings.redis_url is not None
    app[DB] = await create_pool(settings.database_url, min_size=2, max_size=20)
    app[REDIS] = redis_from_url(settings.redis_url)
    app[ARQ] = await create_arq_pool(settings.redis_url, settings.redis_prefix)
    try:
        yield
    finally:
        await app[ARQ].aclose(close_connection_pool=True)
        await app[REDIS].aclose()
        await app[DB].close()


def create_app(settings: Settings) -> web.Application:
    if settings.database_url is None or settings.redis_url is None:
        raise ValueError("create_app needs database_url and redis_url (use with_embedded_defaults)")
    app = web.Application(
        middlewares=[
            request_context_middleware,
            problem_middleware,
            auth_middleware,
            rate_limit_middleware,
            idempotency_middleware,
        ],
        client_max_size=settings.max_json_body_bytes,
    )
    app[SETTINGS] = settings
    app.cleanup_ctx.append(_resources)
    app.cleanup_ctx.append(purge_expired)
    app.on_response_prepare.append(ratelimit.add_headers)
    health.setup(app)
    contacts.setup(app)
    campaigns.setup(app)
    sending.setup(app)
    control.setup(app)
    metrics.setup(app)
    openapi.setup(app)
    admin.setup(app)
    queues.setup(app)
    store.setup(app)
    return app
