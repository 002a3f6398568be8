"""Test helpers that create tenants through the real API (admin token)."""

from __future__ import annotations

from typing import Any

from aiohttp.test_utils import TestClient

Client = TestClient[object, object]

ADMIN = {"Authorization": "Bearer test-admin-token"}


def store_body(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "name": "Athens Shoes",
        "sender_id": "ATHSHOES",
        "timezone": "Europe/Athens",
        "default_region": "GR",
        "subscription_status": "active",
        "credits": 100_000,
    }
    body.update(overrides)
    return body


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def create_store(api: Client, **overrides: Any) -> tuple[dict[str, Any], str]:
    """A new store and its first token."""
    response = await api.post("/v1/admin/stores", json=store_body(**overrides), headers=ADMIN)
    assert response.status == 201, await response.text()
    created = await response.json()
    return created["store"], created["token"]
