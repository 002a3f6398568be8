"""Per-store rate limits: budgets, headers, 429 with Retry-After, isolation between stores."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager

import pytest
import redis.asyncio as aioredis
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from api.app import create_app
from sender.config import Settings
from sender.errors import NotFound
from tests.integration.factories import ADMIN, Client, bearer, create_store

SEND = "/v1/campaigns/{id}/send"
AppFactory = Callable[..., AbstractAsyncContextManager[Client]]


def _has_send_route(app: web.Application) -> bool:
    return any(
        route.method == "POST"
        and (route.resource is not None)
        # The canonical form drops regex constraints: /v1/campaigns/{id:\d+}/send -> {id}.
        and route.resource.canonical == SEND
        for route in app.router.routes()
    )


@pytest.fixture
def app_with(settings: Settings) -> AppFactory:
    """Start the app with some settings changed; adds a stand-in send route if it is missing."""

    @asynccontextmanager
    async def start(**changes: object) -> AsyncIterator[Client]:
        app = create_app(settings.model_copy(update=changes))
        if not _has_send_route(app):

            async def send_stand_in(request: web.Request) -> web.Response:
                raise NotFound("no such campaign")

            app.router.add_post(SEND, send_stand_in)
        client: Client = TestClient(TestServer(app, host="127.0.0.1"))
        await client.start_server()
        try:
            yield client
        finally:
            await client.close()

    return start


def _limits(response: object) -> tuple[int, int, int]:
    headers = response.headers  # type: ignore[attr-defined]
    return (
        int(headers["RateLimit-Limit"]),
        int(headers["RateLimit-Remaining"]),
        int(headers["RateLimit-Reset"]),
    )


async def test_store_routes_answer_rate_limit_headers_then_429(app_with: AppFactory) -> None:
    async with app_with(api_rate_limit_per_min=3) as api:
        _, token = await create_store(api)
        remaining = []
        for _ in range(3):
            response = await api.get("/v1/store", headers=bearer(token))
            assert response.status == 200
            limit, left, reset = _limits(response)
            assert limit == 3
            assert 0 < reset <= 60
            remaining.append(left)
        assert remaining == [2, 1, 0]
        response = await api.get("/v1/store", headers=bearer(token))
        assert response.status == 429
        assert response.content_type == "application/problem+json"
        assert (await response.json(content_type=None))["code"] == "rate_limited"
        retry_after = int(response.headers["Retry-After"])
        # GCRA: one request's worth of budget comes back every 60/3 = 20 s.
        assert 1 <= retry_after <= 20
        assert _limits(response)[:2] == (3, 0)


async def test_limits_are_per_store_and_admin_is_not_limited(app_with: AppFactory) -> None:
    async with app_with(api_rate_limit_per_min=1) as api:
        store_a, token_a = await create_store(api)
        _, token_b = await create_store(api, name="B")
        assert (await api.get("/v1/store", headers=bearer(token_a))).status == 200
        assert (await api.get("/v1/store", headers=bearer(token_a))).status == 429
        # Store B has its own budget.
        assert (await api.get("/v1/store", headers=bearer(token_b))).status == 200
        # Admin routes and public routes carry no store budget.
        for _ in range(3):
            response = await api.post(
                f"/v1/admin/stores/{store_a['id']}/credits", json={"amount": 1}, headers=ADMIN
            )
            assert response.status == 200
            assert "RateLimit-Limit" not in response.headers
        assert "RateLimit-Limit" not in (await api.get("/healthz")).headers


async def test_error_answers_carry_the_headers_and_spend_budget(app_with: AppFactory) -> None:
    async with app_with(api_rate_limit_per_min=2) as api:
        _, token = await create_store(api)
        response = await api.put("/v1/store/webhook", json={"url": "nope"}, headers=bearer(token))
        assert response.status == 422
        assert _limits(response)[:2] == (2, 1)
        response = await api.get("/v1/store", headers=bearer(token))
        assert _limits(response)[:2] == (2, 0)
        assert (await api.get("/v1/store", headers=bearer(token))).status == 429


async def test_send_route_has_its_own_budget(app_with: AppFactory, settings: Settings) -> None:
    assert settings.send_rate_limit_per_min == 5
    async with app_with(api_rate_limit_per_min=100) as api:
        _, token = await create_store(api)
        statuses = []
        for _ in range(5):
            response = await api.post("/v1/campaigns/999999/send", json={}, headers=bearer(token))
            statuses.append(response.status)
            assert _limits(response)[0] == 5
        assert 429 not in statuses
        response = await api.post("/v1/campaigns/999999/send", json={}, headers=bearer(token))
        assert response.status == 429
        assert 1 <= int(response.headers["Retry-After"]) <= 12
        # The general budget is untouched by the send budget.
        response = await api.get("/v1/store", headers=bearer(token))
        assert response.status == 200
        assert _limits(response)[:2] == (100, 99)


async def test_limiter_state_lives_under_the_redis_prefix(
    app_with: AppFactory, settings: Settings, redis_client: aioredis.Redis
) -> None:
    async with app_with() as api:
        store, token = await create_store(api)
        assert (await api.get("/v1/store", headers=bearer(token))).status == 200
    keys = [k.decode() async for k in redis_client.scan_iter(match=f"{settings.redis_prefix}:*")]
    assert keys == [f"{settings.redis_prefix}:ratelimit:api:{store['id']}"]
    assert 0 < await redis_client.pttl(keys[0]) <= 60_000


async def test_redis_outage_lets_requests_through(app_with: AppFactory, api: Client) -> None:
    _, token = await create_store(api)
    # Port 1 on loopback: nothing listens, so every Redis call fails at once.
    async with app_with(redis_url="redis://127.0.0.1:1/0") as broken:
        response = await broken.get("/v1/store", headers=bearer(token))
        assert response.status == 200
        assert "RateLimit-Limit" not in response.headers
