"""Tenant isolation matrix: store B can neither see nor change store A's resources.

The matrix is built from the app's router, not from a hand-kept list: every store route under
/v1 whose path names a resource id is called with store B's token on store A's real ids, and
must answer 404 (the same answer as an id that does not exist) while A's rows stay exactly as
they were. A route whose id parameter has no fixture mapping in ``RESOURCES`` fails the test by
name, so a new route cannot slip past the matrix.
"""

from __future__ import annotations

import asyncio
import re
from typing import Any

import asyncpg
import orjson
from aiohttp import web

from api.app import create_app
from sender.config import Settings
from tests.integration.factories import Client, bearer, create_store

#: (collection segment before the parameter, parameter name) -> the kind of resource it names.
RESOURCES: dict[tuple[str, str], str] = {
    ("contacts", "id"): "contact",
    ("campaigns", "id"): "campaign",
}

#: Bodies for mutating routes that would be accepted from the owner, so that only ownership
#: decides the answer. Routes not listed get ``{}``.
BODIES: dict[tuple[str, str], dict[str, Any]] = {
    ("PATCH", "/v1/contacts/{id}"): {"tags": ["stolen"]},
    ("PATCH", "/v1/campaigns/{id}"): {"name": "stolen"},
    ("POST", "/v1/campaigns/{id}/test"): {"phone": "+306912345678"},
}

#: Tenant-owned tables and how their rows of one store are selected (test-only snapshots).
SNAPSHOTS = {
    "stores": "SELECT to_jsonb(t) AS row FROM stores t WHERE id = $1",
    "api_tokens": "SELECT to_jsonb(t) AS row FROM api_tokens t WHERE store_id = $1 ORDER BY id",
    "contacts": "SELECT to_jsonb(t) AS row FROM contacts t WHERE store_id = $1 ORDER BY id",
    "campaigns": "SELECT to_jsonb(t) AS row FROM campaigns t WHERE store_id = $1 ORDER BY id",
    "campaign_recipients": (
        "SELECT to_jsonb(t) AS row FROM campaign_recipients t WHERE store_id = $1 ORDER BY id"
    ),
    "campaign_events": (
        "SELECT to_jsonb(t) AS row FROM campaign_events t WHERE store_id = $1 ORDER BY id"
    ),
    "credit_ledger": (
        "SELECT to_jsonb(t) AS row FROM credit_ledger t WHERE store_id = $1 ORDER BY id"
    ),
    "webhook_outbox": (
        "SELECT to_jsonb(t) AS row FROM webhook_outbox t WHERE store_id = $1 ORDER BY id"
    ),
}

_PARAM = re.compile(r"\{([^}:]+)(?::[^}]*)?\}")


def id_routes(app: web.Application) -> list[tuple[str, str, list[tuple[str, str]]]]:
    """(method, template, [(collection, param)]) of store routes whose path names an id."""
    found = []
    for route in app.router.routes():
        resource = route.resource
        if resource is None or route.method in {"HEAD", "*"}:
            continue
        template = resource.canonical
        if not template.startswith("/v1/") or template.startswith(("/v1/admin/", "/v1/providers/")):
            continue
        segments = template.strip("/").split("/")
        params = [
            (segments[index - 1], match.group(1))
            for index, segment in enumerate(segments)
            if (match := _PARAM.fullmatch(segment))
        ]
        if params:
            found.append((route.method, template, params))
    return sorted(found)


def unmapped_params(routes: list[tuple[str, str, list[tuple[str, str]]]]) -> list[str]:
    return sorted(
        {
            f"{method} {template} ({collection}/{{{param}}})"
            for method, template, params in routes
            for collection, param in params
            if (collection, param) not in RESOURCES
        }
    )


async def _snapshot(db: asyncpg.Pool, store_id: int) -> dict[str, list[Any]]:
    return {
        table: [row["row"] for row in await db.fetch(query, store_id)]
        for table, query in SNAPSHOTS.items()
    }


async def _create_contact(api: Client, token: str, db: asyncpg.Pool, store_id: int) -> int:
    response = await api.post(
        "/v1/contacts/import",
        data="phone,first_name,last_name,tags\n+306912345678,Maria,P,vip\n",
        headers={**bearer(token), "Content-Type": "text/csv"},
    )
    assert response.status == 200, f"POST /v1/contacts/import: {await response.text()}"
    contact_id: int = await db.fetchval("SELECT id FROM contacts WHERE store_id = $1", store_id)
    return contact_id


async def _create_campaign(api: Client, token: str, db: asyncpg.Pool, store_id: int) -> int:
    response = await api.post(
        "/v1/campaigns",
        json={
            "name": "A's campaign",
            "message": "Hi {{first_name}}, 20% off today. Reply STOP to opt out",
            "audience": {"tags_any": ["vip"]},
        },
        headers=bearer(token),
    )
    assert response.status == 201, f"POST /v1/campaigns: {await response.text()}"
    campaign_id: int = await db.fetchval("SELECT id FROM campaigns WHERE store_id = $1", store_id)
    return campaign_id


CREATORS = {"contact": _create_contact, "campaign": _create_campaign}


def _path(template: str, ids: dict[str, int]) -> str:
    return _PARAM.sub(lambda match: str(ids[match.group(1)]), template)


async def test_another_stores_ids_answer_404_and_change_nothing(
    api: Client, db: asyncpg.Pool
) -> None:
    app = api.server.app
    assert app is not None
    routes = id_routes(app)
    unmapped = unmapped_params(routes)
    assert not unmapped, (
        "routes with an id parameter that the isolation matrix cannot fill; add them to "
        f"RESOURCES (and BODIES if they take one): {unmapped}"
    )

    store_a, token_a = await create_store(api, name="A")
    store_b, token_b = await create_store(api, name="B", sender_id="STOREB")
    needed = {RESOURCES[key] for _, _, params in routes for key in params}
    ids_of_a = {kind: await CREATORS[kind](api, token_a, db, store_a["id"]) for kind in needed}
    before_a = await _snapshot(db, store_a["id"])

    checked = []
    for method, template, params in routes:
        ids = {param: ids_of_a[RESOURCES[(collection, param)]] for collection, param in params}
        path = _path(template, ids)
        body = BODIES.get((method, template), {}) if method in {"POST", "PUT", "PATCH"} else None
        # Streams (SSE) must refuse before streaming; a hang fails here instead of timing out.
        async with asyncio.timeout(10):
            response = await api.request(method, path, json=body, headers=bearer(token_b))
            text = await response.text()
        assert response.status == 404, f"{method} {path} with B's token: {response.status} {text}"
        assert orjson.loads(text)["code"] == "not_found"
        checked.append(f"{method} {template}")

        if method == "GET" and not template.endswith("/events"):
            # The ids are real: the owner reads them.
            async with asyncio.timeout(10):
                own = await api.get(path, headers=bearer(token_a))
            assert own.status == 200, f"GET {path} with A's token: {own.status}"

    assert await _snapshot(db, store_a["id"]) == before_a
    # B's own view never shows A's data either.
    response = await api.get("/v1/store", headers=bearer(token_b))
    assert (await response.json())["id"] == store_b["id"]
    assert checked == [f"{m} {t}" for m, t, _ in routes]


def test_matrix_sees_id_routes_and_names_unmapped_ones(settings: Settings) -> None:
    app = create_app(settings)
    routes = {template for _, template, _ in id_routes(app)}
    # A guard against an empty matrix.
    assert {"/v1/contacts/{id}", "/v1/campaigns/{id}"} <= routes

    async def handler(request: web.Request) -> web.Response:
        return web.Response()

    app.router.add_get(r"/v1/widgets/{widget_id:\d+}/parts/{id}", handler)
    assert unmapped_params(id_routes(app)) == [
        "GET /v1/widgets/{widget_id}/parts/{id} (parts/{id})",
        "GET /v1/widgets/{widget_id}/parts/{id} (widgets/{widget_id})",
    ]
