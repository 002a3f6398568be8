"""The calling store's own endpoints: GET /v1/store and PUT /v1/store/webhook."""

from __future__ import annotations

import io
from typing import Any

import asyncpg
import pytest

from sender.config import Settings
from tests.integration.factories import ADMIN, Client, bearer, create_store


async def _problem(response: Any, status: int, code: str) -> None:
    assert response.status == status, await response.text()
    assert response.content_type == "application/problem+json"
    body = await response.json(content_type=None)
    assert body["code"] == code, body


async def test_get_own_store(api: Client) -> None:
    store, token = await create_store(api, credits=250)
    other, other_token = await create_store(api, name="Other", sender_id="OTHER")
    response = await api.get("/v1/store", headers=bearer(token))
    assert response.status == 200
    own = await response.json()
    assert own == store
    assert own["credits_available"] == 250
    assert own["credits_reserved"] == 0
    assert own["subscription_status"] == "active"
    # Each token sees its own store, whatever else exists.
    response = await api.get("/v1/store", headers=bearer(other_token))
    assert (await response.json())["id"] == other["id"]


async def test_store_routes_need_a_valid_token(api: Client) -> None:
    store, token = await create_store(api)
    await _problem(await api.get("/v1/store"), 401, "missing_token")
    await _problem(await api.get("/v1/store", headers=bearer("cs_live_nope")), 401, "invalid_token")
    await _problem(
        await api.get("/v1/store", headers={"Authorization": f"Basic {token}"}),
        401,
        "invalid_token",
    )
    # The admin token is not a store token.
    await _problem(await api.get("/v1/store", headers=ADMIN), 401, "invalid_token")
    response = await api.post(
        f"/v1/admin/stores/{store['id']}/tokens", json={"name": "second"}, headers=ADMIN
    )
    second = await response.json()
    await api.delete(f"/v1/admin/stores/{store['id']}/tokens/{second['id']}", headers=ADMIN)
    response = await api.put(
        "/v1/store/webhook", json={"url": "https://x.example/h"}, headers=bearer(second["token"])
    )
    await _problem(response, 401, "invalid_token")
    assert (await api.get("/v1/store", headers=bearer(token))).status == 200


async def test_put_webhook_stores_url_and_rotates_secret(api: Client, db: asyncpg.Pool) -> None:
    _, token = await create_store(api)
    url = "https://shop.example/hooks/sms?source=sender"
    response = await api.put("/v1/store/webhook", json={"url": url}, headers=bearer(token))
    assert response.status == 200
    first = await response.json()
    assert first["url"] == url
    assert first["secret"].startswith("whsec_")
    assert len(first["secret"]) > 40
    row = await db.fetchrow("SELECT webhook_url, webhook_secret FROM stores")
    assert row is not None
    assert (row["webhook_url"], row["webhook_secret"]) == (url, first["secret"])
    # The store payload shows the URL, never the secret.
    own = await (await api.get("/v1/store", headers=bearer(token))).json()
    assert own["webhook_url"] == url
    assert first["secret"] not in str(own)

    response = await api.put(
        "/v1/store/webhook", json={"url": "http://127.0.0.1:9000/hook"}, headers=bearer(token)
    )
    second = await response.json()
    assert second["secret"] != first["secret"]
    assert await db.fetchval("SELECT webhook_secret FROM stores") == second["secret"]


@pytest.mark.parametrize(
    "body",
    [
        {"url": "ftp://shop.example/x"},
        {"url": "shop.example/hook"},
        {"url": "https://"},
        {"url": "https://user:pw@shop.example/"},
        {"url": "https://shop.example/a b"},
        {"url": "https://shop.example/\u0000"},
        {"url": ""},
        {"url": "https://shop.example/" + "x" * 2100},
        {"url": 5},
        {},
        {"url": "https://shop.example/", "secret": "mine"},
    ],
)
async def test_put_webhook_rejects_bad_urls(
    api: Client, db: asyncpg.Pool, body: dict[str, Any]
) -> None:
    _, token = await create_store(api)
    response = await api.put("/v1/store/webhook", json=body, headers=bearer(token))
    assert response.status == 422, await response.text()
    assert (await response.json(content_type=None))["code"] in {
        "validation_error",
        "invalid_webhook_url",
    }
    row = await db.fetchrow("SELECT webhook_url, webhook_secret FROM stores")
    assert row is not None
    assert tuple(row) == (None, None)


async def test_put_webhook_bad_bodies(api: Client, db: asyncpg.Pool, settings: Settings) -> None:
    _, token = await create_store(api)
    headers = bearer(token)
    json_type = {**headers, "Content-Type": "application/json"}
    await _problem(
        await api.put("/v1/store/webhook", data=b'{"url": ', headers=json_type),
        400,
        "malformed_json",
    )
    await _problem(
        await api.put(
            "/v1/store/webhook", data=b"url=x", headers={**headers, "Content-Type": "text/plain"}
        ),
        415,
        "unsupported_media_type",
    )
    big = io.BytesIO(b'{"url": "https://x/' + b"a" * settings.max_json_body_bytes + b'"}')
    await _problem(
        await api.put("/v1/store/webhook", data=big, headers=json_type), 413, "payload_too_large"
    )
    row = await db.fetchrow("SELECT webhook_url, webhook_secret FROM stores")
    assert row is not None
    assert tuple(row) == (None, None)


async def test_unknown_routes_and_methods_are_problems(api: Client) -> None:
    _, token = await create_store(api)
    await _problem(await api.get("/v1/stores", headers=bearer(token)), 404, "not_found")
    await _problem(await api.get("/v1/store/nope", headers=bearer(token)), 404, "not_found")
    response = await api.delete("/v1/store", headers=bearer(token))
    await _problem(response, 405, "method_not_allowed")
