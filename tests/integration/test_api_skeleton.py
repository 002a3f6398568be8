"""The app skeleton: health, request ids, problem+json for unknown routes and auth failures."""

from __future__ import annotations

from aiohttp.test_utils import TestClient

Client = TestClient[object, object]


async def test_healthz_and_readyz(api: Client) -> None:
    response = await api.get("/healthz")
    assert response.status == 200
    assert (await response.json())["status"] == "ok"
    response = await api.get("/readyz")
    assert response.status == 200
    assert (await response.json())["checks"] == {"postgres": "ok", "redis": "ok"}


async def test_request_id_is_echoed_or_generated(api: Client) -> None:
    response = await api.get("/healthz", headers={"X-Request-Id": "abc-123"})
    assert response.headers["X-Request-Id"] == "abc-123"
    response = await api.get("/healthz")
    assert len(response.headers["X-Request-Id"]) == 32


async def test_unknown_route_is_problem_json(api: Client) -> None:
    for path in ("/nope", "/v1/nope"):
        response = await api.get(path)
        assert response.status == 404
        assert response.content_type == "application/problem+json"
        body = await response.json(content_type=None)
        assert body["code"] == "not_found"
        assert body["status"] == 404
