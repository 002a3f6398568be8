"""The OpenAPI document: how fragments merge, that it matches the router, and that the
running app's answers match it (live conformance)."""

from __future__ import annotations

import copy
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from aiohttp import web
from jsonschema import Draft202012Validator

from api.app import create_app
from api.openapi import BASE, OpenApiError, document, load_fragments, merge
from sender.config import Settings
from tests.integration.factories import ADMIN, Client, bearer, create_store, store_body
from tests.integration.openapi_conformance import check_response

# --- merging ---------------------------------------------------------------------------------


def _base() -> dict[str, Any]:
    return copy.deepcopy(load_fragments()[BASE])


def _op(summary: str) -> dict[str, Any]:
    return {"summary": summary, "responses": {"200": {"description": "ok"}}}


def test_fragments_merge_paths_components_and_tags() -> None:
    merged = merge(
        {
            BASE: _base(),
            "a.json": {
                "openapi": "3.1.0",
                "info": {"title": "ignored", "version": "0"},
                "tags": [{"name": "a"}],
                "paths": {"/v1/things/{id}": {"get": _op("read")}},
                "components": {"schemas": {"Thing": {"type": "object"}}},
            },
            "b.json": {
                "tags": [{"name": "a", "description": "dup"}, {"name": "b"}],
                "paths": {
                    "/v1/things/{id}": {
                        "delete": {
                            "responses": {
                                "200": {
                                    "description": "ok",
                                    "content": {
                                        "application/json": {
                                            "schema": {"$ref": "#/components/schemas/Thing"}
                                        }
                                    },
                                }
                            }
                        }
                    }
                },
                # Identical definitions in two fragments are fine.
                "components": {"schemas": {"Thing": {"type": "object"}}},
            },
        }
    )
    assert set(merged["paths"]["/v1/things/{id}"]) == {"get", "delete"}
    assert merged["info"]["title"] == _base()["info"]["title"]
    assert [tag["name"] for tag in merged["tags"]] == ["a", "b"]
    assert "Problem" in merged["components"]["schemas"]


@pytest.mark.parametrize(
    ("fragment", "message"),
    [
        ({"paths": {"/healthz": {"get": _op("again")}}}, "already described"),
        ({"components": {"schemas": {"Problem": {"type": "string"}}}}, "conflicts"),
        (
            {"paths": {"/x": {"get": {"$ref": "#/components/schemas/Missing"}}}},
            "unresolved",
        ),
        ({"servers": []}, "unexpected top-level"),
        ({"openapi": "3.0.3"}, "3.1"),
        ({"paths": []}, "must be an object"),
        ({"paths": {"x": {}}}, "must start with /"),
        ({"tags": [{"description": "no name"}]}, "tags"),
    ],
)
def test_bad_fragments_fail_loudly(fragment: dict[str, Any], message: str) -> None:
    base = _base()
    base["paths"] = {"/healthz": {"get": _op("health")}}
    with pytest.raises(OpenApiError, match=message):
        merge({BASE: base, "z.json": fragment})


def test_shipped_document_is_valid_openapi_31() -> None:
    doc = document()
    assert doc["openapi"].startswith("3.1")
    for name, schema in doc["components"]["schemas"].items():
        try:
            Draft202012Validator.check_schema(schema)
        except Exception as exc:  # pragma: no cover - the message is the point
            raise AssertionError(f"components.schemas.{name}: {exc}") from exc
    operation_ids = [
        operation["operationId"]
        for item in doc["paths"].values()
        for operation in item.values()
        if isinstance(operation, dict) and "operationId" in operation
    ]
    assert len(operation_ids) == len(set(operation_ids)), "operationIds must be unique"


def _routes(app: web.Application) -> set[tuple[str, str]]:
    found = set()
    for route in app.router.routes():
        resource = route.resource
        if resource is None or route.method in {"HEAD", "*"}:
            continue
        found.add((route.method.lower(), resource.canonical))
    return found


def _documented(doc: dict[str, Any]) -> set[tuple[str, str]]:
    methods = {"get", "put", "post", "delete", "patch", "options", "head", "trace"}
    return {
        (method, path)
        for path, item in doc["paths"].items()
        for method in item
        if method in methods
    }


def test_every_route_is_documented_and_every_operation_exists(settings: Settings) -> None:
    app = create_app(settings)
    routes, documented = _routes(app), _documented(document())
    assert not routes - documented, (
        f"routes missing from the OpenAPI document: {routes - documented}"
    )
    assert not documented - routes, f"documented operations with no route: {documented - routes}"


async def test_document_is_served(api: Client) -> None:
    response = await api.get("/openapi.json")
    assert response.status == 200
    assert response.content_type == "application/json"
    assert await response.json() == document()


# --- live conformance ------------------------------------------------------------------------

Call = Callable[[str, str, str], Awaitable[None]]


@pytest.fixture
def conform(api: Client) -> Callable[..., Awaitable[Any]]:
    doc = document()

    async def call(
        method: str,
        template: str,
        path: str | None = None,
        *,
        expect: int,
        **kwargs: Any,
    ) -> Any:
        response = await api.request(method, path or template, **kwargs)
        body = await response.read()
        assert response.status == expect, body
        check_response(doc, method, template, response.status, response.content_type, body)
        return response

    return call


async def test_operations_answer_as_documented(
    api: Client, conform: Callable[..., Awaitable[Any]]
) -> None:
    await conform("GET", "/healthz", expect=200)
    await conform("GET", "/readyz", expect=200)
    await conform("GET", "/metrics", expect=200)
    await conform("GET", "/openapi.json", expect=200)

    stores = "/v1/admin/stores"
    created = await conform(
        "POST",
        stores,
        json=store_body(send_window={"start": "08:00", "end": "20:00"}),
        headers=ADMIN,
        expect=201,
    )
    data = await created.json()
    store_id, token = data["store"]["id"], data["token"]
    await conform("POST", stores, json=store_body(sender_id="-"), headers=ADMIN, expect=422)
    await conform("POST", stores, json={}, headers=ADMIN, expect=422)
    await conform(
        "POST",
        stores,
        data=b"{",
        headers={**ADMIN, "Content-Type": "application/json"},
        expect=400,
    )
    await conform(
        "POST", stores, data=b"x", headers={**ADMIN, "Content-Type": "text/plain"}, expect=415
    )
    await conform("POST", stores, json=store_body(), expect=401)
    await conform("POST", stores, json=store_body(), headers=bearer(token), expect=403)
    keyed = {**ADMIN, "Idempotency-Key": "conformance"}
    await conform("POST", stores, json=store_body(), headers=keyed, expect=201)
    await conform("POST", stores, json=store_body(), headers=keyed, expect=201)
    await conform("POST", stores, json=store_body(name="x"), headers=keyed, expect=422)
    await conform(
        "POST", stores, json=store_body(), headers={**ADMIN, "Idempotency-Key": ""}, expect=400
    )

    one = "/v1/admin/stores/{id}"
    await conform("GET", one, f"{stores}/{store_id}", headers=ADMIN, expect=200)
    await conform("GET", one, f"{stores}/999999", headers=ADMIN, expect=404)
    await conform(
        "PATCH",
        one,
        f"{stores}/{store_id}",
        json={"frequency_cap": None},
        headers=ADMIN,
        expect=200,
    )
    await conform(
        "PATCH", one, f"{stores}/{store_id}", json={"timezone": "x"}, headers=ADMIN, expect=422
    )
    await conform("PATCH", one, f"{stores}/999999", json={}, headers=ADMIN, expect=404)

    credits = "/v1/admin/stores/{id}/credits"
    path = f"{stores}/{store_id}/credits"
    await conform("POST", credits, path, json={"amount": 10}, headers=ADMIN, expect=200)
    await conform("POST", credits, path, json={"amount": 0}, headers=ADMIN, expect=422)
    await conform(
        "POST",
        credits,
        f"{stores}/999999/credits",
        json={"amount": 1},
        headers=ADMIN,
        expect=404,
    )

    tokens = "/v1/admin/stores/{id}/tokens"
    path = f"{stores}/{store_id}/tokens"
    issued = await conform("POST", tokens, path, json={"name": "ci"}, headers=ADMIN, expect=201)
    token_id = (await issued.json())["id"]
    await conform("POST", tokens, f"{stores}/999999/tokens", json={}, headers=ADMIN, expect=404)
    revoke = "/v1/admin/stores/{id}/tokens/{tid}"
    await conform("DELETE", revoke, f"{path}/{token_id}", headers=ADMIN, expect=200)
    await conform("DELETE", revoke, f"{path}/999999", headers=ADMIN, expect=404)

    await conform("GET", "/v1/store", headers=bearer(token), expect=200)
    await conform("GET", "/v1/store", expect=401)
    await conform("GET", "/v1/store", headers=bearer("cs_live_x"), expect=401)
    webhook = "/v1/store/webhook"
    await conform(
        "PUT", webhook, json={"url": "https://shop.example/h"}, headers=bearer(token), expect=200
    )
    await conform("PUT", webhook, json={"url": "nope"}, headers=bearer(token), expect=422)
    await conform(
        "PUT",
        webhook,
        data=b"x",
        headers={**bearer(token), "Content-Type": "text/plain"},
        expect=415,
    )


async def test_rate_limited_answer_is_documented(settings: Settings) -> None:
    from aiohttp.test_utils import TestClient, TestServer

    app = create_app(settings.model_copy(update={"api_rate_limit_per_min": 1}))
    client: Client = TestClient(TestServer(app, host="127.0.0.1"))
    await client.start_server()
    try:
        _, token = await create_store(client)
        await client.get("/v1/store", headers=bearer(token))
        response = await client.get("/v1/store", headers=bearer(token))
        assert response.status == 429
        check_response(
            document(), "GET", "/v1/store", 429, response.content_type, await response.read()
        )
    finally:
        await client.close()
