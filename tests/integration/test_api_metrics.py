"""GET /metrics: HTTP requests by route template and status, latency histogram per route."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from api.app import create_app
from api.metrics import METRICS
from sender.config import Settings
from tests.integration.factories import ADMIN, Client, bearer, create_store


async def _samples(api: Client) -> list[tuple[str, dict[str, str], float]]:
    response = await api.get("/metrics")
    assert response.status == 200
    assert response.headers["Content-Type"].startswith("text/plain")
    text = await response.text()
    return [
        (sample.name, sample.labels, sample.value)
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    ]


async def test_requests_are_counted_by_route_template(api: Client) -> None:
    store, token = await create_store(api)
    for _ in range(2):
        assert (await api.get(f"/v1/admin/stores/{store['id']}", headers=ADMIN)).status == 200
    assert (await api.get("/v1/admin/stores/424242", headers=ADMIN)).status == 404
    assert (await api.get("/v1/store", headers=bearer(token))).status == 200
    assert (await api.get("/no/such/path/123")).status == 404
    assert (await api.request("PROPFIND", "/healthz")).status == 405

    samples = await _samples(api)
    counts = {
        (labels["method"], labels["route"], labels["status"]): value
        for name, labels, value in samples
        if name == "sender_http_requests_total"
    }
    assert counts[("GET", "/v1/admin/stores/{id}", "200")] == 2
    assert counts[("GET", "/v1/admin/stores/{id}", "404")] == 1
    assert counts[("POST", "/v1/admin/stores", "201")] == 1
    assert counts[("GET", "/v1/store", "200")] == 1
    assert counts[("GET", "unmatched", "404")] == 1
    assert counts[("other", "unmatched", "405")] == 1
    # Route labels are registered templates (or "unmatched"), never raw paths or ids.
    app = api.server.app
    assert app is not None
    templates = {r.resource.canonical for r in app.router.routes() if r.resource is not None}
    routes = {labels["route"] for _, labels, _ in samples if "route" in labels}
    assert routes <= templates | {"unmatched"}

    durations = {
        (labels["method"], labels["route"]): value
        for name, labels, value in samples
        if name == "sender_http_request_duration_seconds_count"
    }
    assert durations[("GET", "/v1/admin/stores/{id}")] == 3
    buckets = [
        value
        for name, labels, value in samples
        if name == "sender_http_request_duration_seconds_bucket"
        and labels["route"] == "/v1/admin/stores/{id}"
        and labels["le"] == "+Inf"
    ]
    assert buckets == [3]


async def test_each_app_has_its_own_registry(settings: Settings) -> None:
    first, second = create_app(settings), create_app(settings)
    assert first[METRICS].registry is not second[METRICS].registry
    first[METRICS].observe("GET", "/healthz", 200, 0.01)
    assert (
        second[METRICS].registry.get_sample_value(
            "sender_http_requests_total", {"method": "GET", "route": "/healthz", "status": "200"}
        )
        is None
    )
