"""Per-store API rate limits in Redis (GCRA), with ``RateLimit-*`` headers on every answer.

Two budgets per store: ``POST /v1/campaigns/{id}/send`` gets ``send_rate_limit_per_min``,
every other store route ``api_rate_limit_per_min``. Admin and provider routes are not
limited here (they are not a store's traffic).

The limiter is GCRA (generic cell rate algorithm) in one Lua script: a single Redis key per
(store, budget) holds the theoretical arrival time, so the check and the update are atomic
across any number of API processes, bursts up to the whole per-minute budget are allowed and
capacity comes back smoothly (no fixed-window double burst at a minute boundary). Redis's own
clock is used so API hosts with skewed clocks agree.

Redis is not the source of truth: when it does not answer, requests pass unlimited (and the
failure is logged) rather than the whole API failing.
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Awaitable
from typing import Any, cast

from aiohttp import web
from redis.exceptions import NoScriptError, RedisError

from api.keys import RATE_LIMIT, REDIS, SETTINGS, STORE, RateLimitState
from api.middleware import route_template
from sender.errors import TooManyRequests
from sender.redisconn import key

log = logging.getLogger("api.ratelimit")

PERIOD_MS = 60_000

# The send route is matched by template so it is limited whatever its parameter is named.
_SEND_ROUTE = re.compile(r"^/v1/campaigns/\{[^}]+\}/send$")

# KEYS[1]: the bucket. ARGV: limit, period_ms. Returns {allowed, remaining, reset_ms,
# retry_after_ms}. The TAT is stored as a decimal string: Lua's default number formatting
# would round a millisecond timestamp with a fraction.
_GCRA = """
local limit = tonumber(ARGV[1])
local period = tonumber(ARGV[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000
local interval = period / limit
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
if tat < now then tat = now end
local new_tat = tat + interval
local allow_at = new_tat - period
if now < allow_at then
  return {0, 0, math.ceil(tat - now), math.ceil(allow_at - now)}
end
redis.call('SET', KEYS[1], string.format('%.3f', new_tat), 'PX', math.ceil(new_tat - now))
return {1, math.floor((now - allow_at) / interval), math.ceil(new_tat - now), 0}
"""
_GCRA_SHA = hashlib.sha1(_GCRA.encode(), usedforsecurity=False).hexdigest()


def budget_of(request: web.Request) -> str | None:
    """Which budget a request spends: ``send``, ``api``, or None when not limited."""
    path = request.path
    if request.match_info.http_exception is not None or not path.startswith("/v1/"):
        return None
    if path.startswith(("/v1/admin/", "/v1/providers/")):
        return None
    if request.method == "POST" and _SEND_ROUTE.match(route_template(request)):
        return "send"
    return "api"


def _limit_for(request: web.Request, budget: str) -> int:
    settings = request.app[SETTINGS]
    return settings.send_rate_limit_per_min if budget == "send" else settings.api_rate_limit_per_min


async def check(request: web.Request, store_id: int, budget: str) -> RateLimitState | None:
    """Spend one request of ``budget``; None when Redis does not answer."""
    settings = request.app[SETTINGS]
    limit = _limit_for(request, budget)
    bucket = key(settings.redis_prefix, "ratelimit", budget, store_id)
    redis = request.app[REDIS]
    args = (bucket, str(limit), str(PERIOD_MS))
    try:
        try:
            # EVALSHA sends 40 bytes instead of the script; the script is loaded on first use
            # and again after a Redis restart. (redis-py types cover sync and async clients.)
            result = await cast(Awaitable[list[int]], redis.evalsha(_GCRA_SHA, 1, *args))
        except NoScriptError:
            result = await cast(Awaitable[list[int]], redis.eval(_GCRA, 1, *args))
    except (RedisError, OSError) as exc:
        log.warning("rate limiter unavailable; request not limited", extra={"error": repr(exc)})
        return None
    allowed, remaining, reset_ms, retry_ms = (int(value) for value in result)
    return RateLimitState(
        limit=limit,
        remaining=max(remaining, 0),
        reset_s=_ceil_s(reset_ms),
        retry_after_s=None if allowed else max(_ceil_s(retry_ms), 1),
    )


def _ceil_s(ms: int) -> int:
    return -(-ms // 1000)


def headers_of(state: RateLimitState) -> dict[str, str]:
    headers = {
        "RateLimit-Limit": str(state.limit),
        "RateLimit-Remaining": str(state.remaining),
        "RateLimit-Reset": str(state.reset_s),
    }
    if state.retry_after_s is not None:
        headers["Retry-After"] = str(state.retry_after_s)
    return headers


@web.middleware
async def rate_limit_middleware(request: web.Request, handler: Any) -> web.StreamResponse:
    """Runs after authentication (the store comes from the token)."""
    budget = budget_of(request)
    identity = request.get(STORE)
    if budget is not None and identity is not None:
        state = await check(request, identity.store_id, budget)
        if state is not None:
            # Headers are added when the response is prepared (``add_headers``), so error
            # answers and streamed responses carry them too.
            request[RATE_LIMIT] = state
            if state.retry_after_s is not None:
                raise TooManyRequests(
                    f"rate limit of {state.limit} requests per minute exceeded; "
                    f"retry in {state.retry_after_s} s"
                )
    response: web.StreamResponse = await handler(request)
    return response


async def add_headers(request: web.Request, response: web.StreamResponse) -> None:
    """``on_response_prepare`` hook: echo the request's rate-limit state."""
    state = request.get(RATE_LIMIT)
    if state is not None:
        response.headers.update(headers_of(state))
