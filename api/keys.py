"""Typed application and request keys: what the app holds and what middlewares attach."""

from __future__ import annotations

from dataclasses import dataclass

import redis.asyncio as aioredis
from aiohttp import web

from sender.config import Settings
from sender.db.pool import Pool


@dataclass(frozen=True, slots=True)
class StoreIdentity:
    """The store a request acts for; it comes only from the bearer token."""

    store_id: int
    token_id: int


SETTINGS = web.AppKey("settings", Settings)
DB = web.AppKey("db", Pool)
REDIS = web.AppKey("redis", aioredis.Redis)

REQUEST_ID = web.RequestKey("request_id", str)
STORE = web.RequestKey("store", StoreIdentity)
