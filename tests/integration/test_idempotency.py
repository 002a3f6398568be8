"""Idempotency-Key on mutating POSTs: replay, reuse, concurrency, failures, expiry.

Besides the real routes, the app under test gets a few test-only routes (added after
``create_app``, before the server starts) whose handlers count their runs, block on demand or
fail on demand, so that races and failures are deterministic.
"""

from __future__ import annotations

import asyncio
import io
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import asyncpg
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from api.app import create_app
from api.jsonio import json_response
from sender.config import Settings
from sender.db import idempotency as idem_db
from tests.integration.factories import ADMIN, Client, bearer, create_store, store_body


@dataclass
class Probe:
    """What the test-only handlers did."""

    runs: int = 0
    entered: asyncio.Event = field(default_factory=asyncio.Event)
    release: asyncio.Event = field(default_factory=asyncio.Event)
    fail_next: bool = False
    bodies: list[bytes] = field(default_factory=list)


@pytest.fixture
async def probe_api(settings: Settings) -> AsyncIterator[tuple[Client, Probe]]:
    probe = Probe()

    async def slow(request: web.Request) -> web.Response:
        probe.runs += 1
        probe.entered.set()
        await probe.release.wait()
        return json_response({"run": probe.runs}, status=201)

    async def flaky(request: web.Request) -> web.Response:
        probe.runs += 1
        if probe.fail_next:
            probe.fail_next = False
            raise RuntimeError("injected failure")
        return json_response({"run": probe.runs})

    async def stream(request: web.Request) -> web.Response:
        # Reads the raw stream, as a streaming import would.
        chunks = [chunk async for chunk in request.content.iter_chunked(7)]
        probe.bodies.append(b"".join(chunks))
        probe.runs += 1
        return json_response({"bytes": len(probe.bodies[-1])})

    app = create_app(settings)
    app.router.add_post("/v1/admin/test/slow", slow)
    app.router.add_post("/v1/test/flaky", flaky)
    app.router.add_post("/v1/test/stream", stream)
    app.router.add_post("/v1/providers/test/{secret}", flaky)
    client: Client = TestClient(TestServer(app, host="127.0.0.1"))
    await client.start_server()
    try:
        yield client, probe
    finally:
        probe.release.set()
        await client.close()


def _key(value: str) -> dict[str, str]:
    return {"Idempotency-Key": value}


async def test_replay_returns_the_first_answer_and_runs_once(api: Client, db: asyncpg.Pool) -> None:
    headers = {**ADMIN, **_key("create-athens-1")}
    first = await api.post("/v1/admin/stores", json=store_body(), headers=headers)
    assert first.status == 201
    assert "Idempotent-Replayed" not in first.headers
    first_body = await first.read()

    second = await api.post("/v1/admin/stores", json=store_body(), headers=headers)
    assert second.status == 201
    assert second.headers["Idempotent-Replayed"] == "true"
    assert second.headers["Content-Type"] == first.headers["Content-Type"]
    assert second.headers["Location"] == first.headers["Location"]
    assert await second.read() == first_body
    # One store, one ledger entry, one token: the handler ran once.
    assert await db.fetchval("SELECT count(*) FROM stores") == 1
    assert await db.fetchval("SELECT count(*) FROM credit_ledger") == 1
    assert await db.fetchval("SELECT count(*) FROM api_tokens") == 1


async def test_same_key_other_body_is_422(api: Client, db: asyncpg.Pool) -> None:
    headers = {**ADMIN, **_key("k-1")}
    assert (await api.post("/v1/admin/stores", json=store_body(), headers=headers)).status == 201
    response = await api.post("/v1/admin/stores", json=store_body(name="Another"), headers=headers)
    assert response.status == 422
    assert (await response.json(content_type=None))["code"] == "idempotency_key_reused"
    # Another path with the same key is another request too.
    store_id = await db.fetchval("SELECT id FROM stores")
    response = await api.post(
        f"/v1/admin/stores/{store_id}/credits", json=store_body(), headers=headers
    )
    assert (await response.json(content_type=None))["code"] == "idempotency_key_reused"
    assert await db.fetchval("SELECT count(*) FROM stores") == 1
    assert await db.fetchval("SELECT count(*) FROM credit_ledger") == 1


async def test_top_up_with_a_key_is_applied_once(api: Client, db: asyncpg.Pool) -> None:
    store, _ = await create_store(api, credits=0)
    url = f"/v1/admin/stores/{store['id']}/credits"
    headers = {**ADMIN, **_key("topup-2026-01")}
    answers = [await api.post(url, json={"amount": 500}, headers=headers) for _ in range(3)]
    assert [a.status for a in answers] == [200, 200, 200]
    assert [await a.json() for a in answers][1:] == [await answers[0].json()] * 2
    assert await db.fetchval("SELECT credits_available FROM stores") == 500
    assert await db.fetchval("SELECT count(*) FROM credit_ledger") == 1


async def test_client_errors_are_stored_and_replayed(api: Client, db: asyncpg.Pool) -> None:
    headers = {**ADMIN, **_key("bad-1")}
    bad = store_body(sender_id="!")
    first = await api.post("/v1/admin/stores", json=bad, headers=headers)
    assert first.status == 422
    second = await api.post("/v1/admin/stores", json=bad, headers=headers)
    assert second.status == 422
    assert second.headers["Idempotent-Replayed"] == "true"
    assert second.content_type == "application/problem+json"
    assert await second.read() == await first.read()
    assert await db.fetchval("SELECT count(*) FROM stores") == 0


async def test_concurrent_requests_with_one_key(
    probe_api: tuple[Client, Probe], db: asyncpg.Pool
) -> None:
    client, probe = probe_api
    headers = {**ADMIN, **_key("race")}
    first = asyncio.create_task(client.post("/v1/admin/test/slow", json={}, headers=headers))
    await asyncio.wait_for(probe.entered.wait(), timeout=10)
    second = await client.post("/v1/admin/test/slow", json={}, headers=headers)
    assert second.status == 409
    problem = await second.json(content_type=None)
    assert problem["code"] == "idempotency_in_progress"
    assert second.headers["Retry-After"] == "1"
    probe.release.set()
    done = await first
    assert done.status == 201
    assert probe.runs == 1
    # Once finished, the same key replays.
    third = await client.post("/v1/admin/test/slow", json={}, headers=headers)
    assert third.status == 201
    assert third.headers["Idempotent-Replayed"] == "true"
    assert probe.runs == 1


async def test_gathered_requests_run_the_handler_once(
    probe_api: tuple[Client, Probe],
) -> None:
    client, probe = probe_api
    headers = {**ADMIN, **_key("gather")}

    async def release_soon() -> None:
        await probe.entered.wait()
        await asyncio.sleep(0.2)
        probe.release.set()

    releaser = asyncio.create_task(release_soon())
    answers = await asyncio.gather(
        *(client.post("/v1/admin/test/slow", json={}, headers=headers) for _ in range(2))
    )
    await releaser
    assert sorted(a.status for a in answers) == [201, 409]
    assert probe.runs == 1


async def test_server_errors_release_the_key(
    probe_api: tuple[Client, Probe], db: asyncpg.Pool, api: Client
) -> None:
    client, probe = probe_api
    _, token = await create_store(api)
    headers = {**bearer(token), **_key("flaky-1")}
    probe.fail_next = True
    response = await client.post("/v1/test/flaky", json={"a": 1}, headers=headers)
    assert response.status == 500
    assert await db.fetchval("SELECT count(*) FROM idempotency_keys") == 0
    response = await client.post("/v1/test/flaky", json={"a": 1}, headers=headers)
    assert response.status == 200
    assert "Idempotent-Replayed" not in response.headers
    assert probe.runs == 2
    state = await db.fetchrow("SELECT scope, state, response_status FROM idempotency_keys")
    assert state is not None
    assert state["state"] == "done"
    assert state["response_status"] == 200


async def test_keys_are_scoped_per_store(
    probe_api: tuple[Client, Probe], api: Client, db: asyncpg.Pool
) -> None:
    client, probe = probe_api
    store_a, token_a = await create_store(api)
    store_b, token_b = await create_store(api, name="B")
    for token in (token_a, token_b):
        response = await client.post(
            "/v1/test/flaky", json={"same": True}, headers={**bearer(token), **_key("shared")}
        )
        assert response.status == 200
        assert "Idempotent-Replayed" not in response.headers
    assert probe.runs == 2
    scopes = {row["scope"] for row in await db.fetch("SELECT scope FROM idempotency_keys")}
    assert scopes == {f"store:{store_a['id']}", f"store:{store_b['id']}"}


async def test_expired_keys_are_replaced(api: Client, db: asyncpg.Pool) -> None:
    headers = {**ADMIN, **_key("old")}
    assert (await api.post("/v1/admin/stores", json=store_body(), headers=headers)).status == 201
    await db.execute("UPDATE idempotency_keys SET expires_at = now() - interval '1 second'")
    # An expired key is free again, even for another body.
    response = await api.post("/v1/admin/stores", json=store_body(name="New"), headers=headers)
    assert response.status == 201
    assert "Idempotent-Replayed" not in response.headers
    assert await db.fetchval("SELECT count(*) FROM stores") == 2
    assert await db.fetchval("SELECT expires_at > now() FROM idempotency_keys")


async def test_abandoned_in_progress_key_is_taken_over(
    probe_api: tuple[Client, Probe], db: asyncpg.Pool, api: Client
) -> None:
    client, probe = probe_api
    _, token = await create_store(api)
    headers = {**bearer(token), **_key("crashed")}
    assert (await client.post("/v1/test/flaky", json={}, headers=headers)).status == 200
    # As if the process had died mid-request long ago: in progress, no answer.
    await db.execute(
        "UPDATE idempotency_keys SET state = 'in_progress', response_status = NULL,"
        " response_body = NULL, created_at = now() - interval '1 hour'"
    )
    response = await client.post("/v1/test/flaky", json={}, headers=headers)
    assert response.status == 200
    assert probe.runs == 2
    # A recent in-progress row is respected.
    await db.execute("UPDATE idempotency_keys SET state = 'in_progress', created_at = now()")
    response = await client.post("/v1/test/flaky", json={}, headers=headers)
    assert response.status == 409


@pytest.mark.parametrize("key", ["", "x" * 256, "caf\u00e9", "a\tb"])
async def test_invalid_keys_are_400(api: Client, db: asyncpg.Pool, key: str) -> None:
    headers = {**ADMIN, "Idempotency-Key": key}
    try:
        response = await api.post("/v1/admin/stores", json=store_body(), headers=headers)
    except ValueError:
        pytest.skip("the client refuses to send this header value")
    assert response.status == 400
    assert (await response.json(content_type=None))["code"] == "invalid_idempotency_key"
    assert await db.fetchval("SELECT count(*) FROM stores") == 0


async def test_longest_key_is_accepted(api: Client) -> None:
    headers = {**ADMIN, **_key("k" * 255)}
    assert (await api.post("/v1/admin/stores", json=store_body(), headers=headers)).status == 201


async def test_handlers_can_still_stream_the_body(
    probe_api: tuple[Client, Probe], api: Client
) -> None:
    client, probe = probe_api
    _, token = await create_store(api)
    payload = b"phone,first_name\n+306912345678,Maria\n" * 100
    headers = {**bearer(token), **_key("import-1"), "Content-Type": "text/csv"}
    response = await client.post("/v1/test/stream", data=payload, headers=headers)
    assert response.status == 200
    assert probe.bodies == [payload]
    replay = await client.post("/v1/test/stream", data=payload, headers=headers)
    assert replay.headers["Idempotent-Replayed"] == "true"
    assert probe.runs == 1


async def test_requests_without_a_key_and_provider_routes_store_nothing(
    probe_api: tuple[Client, Probe], api: Client, db: asyncpg.Pool
) -> None:
    client, _ = probe_api
    assert (await api.post("/v1/admin/stores", json=store_body(), headers=ADMIN)).status == 201
    response = await client.post(
        "/v1/providers/test/test-dlr-secret", json={}, headers=_key("provider")
    )
    assert response.status == 200
    assert await db.fetchval("SELECT count(*) FROM idempotency_keys") == 0


async def test_non_post_requests_ignore_the_key(api: Client, db: asyncpg.Pool) -> None:
    _, token = await create_store(api)
    headers = {**bearer(token), **_key("put")}
    for _ in range(2):
        response = await api.put(
            "/v1/store/webhook", json={"url": "https://x.example/"}, headers=headers
        )
        assert response.status == 200
        assert "Idempotent-Replayed" not in response.headers
    assert await db.fetchval("SELECT count(*) FROM idempotency_keys") == 0


async def test_oversized_body_with_a_key_is_413(
    api: Client, db: asyncpg.Pool, settings: Settings
) -> None:
    body = io.BytesIO(b'{"name": "' + b"x" * settings.max_json_body_bytes + b'"}')
    response = await api.post(
        "/v1/admin/stores",
        data=body,
        headers={**ADMIN, **_key("big"), "Content-Type": "application/json"},
    )
    assert response.status == 413
    assert await db.fetchval("SELECT count(*) FROM stores") == 0


async def test_expired_keys_are_purged_in_slices(api: Client, db: asyncpg.Pool) -> None:
    for index in range(5):
        headers = {**ADMIN, **_key(f"purge-{index}")}
        response = await api.post("/v1/admin/stores/1/credits", json={"amount": 1}, headers=headers)
        assert response.status in {200, 404}
    await db.execute(
        "UPDATE idempotency_keys SET expires_at = now() - interval '1 minute'"
        " WHERE key <> 'purge-4'"
    )
    assert await idem_db.delete_expired(db, limit=3) == 3
    assert await idem_db.delete_expired(db, limit=3) == 1
    assert await idem_db.delete_expired(db, limit=3) == 0
    assert [row["key"] for row in await db.fetch("SELECT key FROM idempotency_keys")] == ["purge-4"]
