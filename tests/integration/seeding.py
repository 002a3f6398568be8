"""Test helpers for contacts and campaigns: stores with tokens, imports, campaigns."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import asyncpg
from aiohttp.test_utils import TestClient

from tests.integration.factories import bearer, create_store

Client = TestClient[object, object]


@dataclass(frozen=True)
class Tenant:
    id: int
    token: str

    @property
    def auth(self) -> dict[str, str]:
        return bearer(self.token)


async def tenant(api: Client, *, credits: int = 100_000, region: str = "GR") -> Tenant:
    store, token = await create_store(api, credits=credits, default_region=region)
    return Tenant(int(store["id"]), token)


async def import_csv(api: Client, who: Tenant, text: str) -> dict[str, Any]:
    response = await api.post(
        "/v1/contacts/import",
        data=text.encode(),
        headers={**who.auth, "Content-Type": "text/csv"},
    )
    body = await response.json()
    assert response.status == 200, body
    assert isinstance(body, dict)
    return body


def campaign_body(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "name": "Black Friday",
        "message": "Hi {{first_name|there}}, 20% off: {{link:https://shop.example/bf}}",
        "audience": {"tags_any": [], "tags_all": [], "exclude_tags": []},
        "priority": "normal",
        "scheduled_at": None,
    }
    body.update(overrides)
    return body


async def create_campaign(api: Client, who: Tenant, **overrides: Any) -> dict[str, Any]:
    response = await api.post("/v1/campaigns", json=campaign_body(**overrides), headers=who.auth)
    body = await response.json()
    assert response.status == 201, body
    assert isinstance(body, dict)
    return body


async def problem(response: Any, status: int, code: str) -> dict[str, Any]:
    """Assert a problem+json answer with this status and code; its body."""
    body = await response.json(content_type=None)
    assert response.status == status, body
    assert response.content_type == "application/problem+json", body
    assert body["code"] == code, body
    assert body["status"] == status
    assert isinstance(body, dict)
    return body


async def count(db: asyncpg.Pool, table: str) -> int:
    # Table names come from the tests themselves, never from input.
    value: int = await db.fetchval(f"SELECT count(*) FROM {table}")
    return value
