"""Typed application and request keys: what the app holds and what middlewares attach."""

from __future__ import annotations

from dataclasses import dataclass

import redis.asyncio as aioredis
from aiohttp import web
from arq.connections import ArqRedis

from sender.config import Settings
from sender.db.pool import Pool


@dataclass(frozen=True, slots=True)
class StoreIdentity:
    """The store a request acts for; it comes only from the bearer token."""

    store_id: int
    token_id: int


@dataclass(frozen=True, slots=True)
class RateLimitState:
    """The outcome of a rate-limit check, echoed as ``RateLimit-*`` headers."""

    limit: int
    remaining: int
    reset_s: int
    retry_after_s: int | None = None


SETTINGS = web.AppKey("settings", Settings)
DB = web.AppKey("db", Pool)
REDIS = web.AppKey("redis", aioredis.Redis)
#: arq's Redis pool, for enqueueing jobs (dispatch, batches) with the project's serializer.
ARQ = web.AppKey("arq", ArqRedis)
#: The assembled OpenAPI document, serialized once at startup.
OPENAPI = web.AppKey("openapi", bytes)

REQUEST_ID = web.RequestKey("request_id", str)
STORE = web.RequestKey("store", StoreIdentity)
RATE_LIMIT = web.RequestKey("rate_limit", RateLimitState)
