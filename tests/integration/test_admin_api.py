"""Admin endpoints: stores, credits (always through the ledger) and tokens."""

from __future__ import annotations

import io
from typing import Any

import asyncpg
import pytest

from sender.config import Settings
from tests.integration.factories import ADMIN, Client, bearer, create_store, store_body

STORE_FIELDS = {
    "id",
    "name",
    "sender_id",
    "timezone",
    "default_region",
    "subscription_status",
    "credits_available",
    "credits_reserved",
    "send_window",
    "rate_cap_per_s",
    "frequency_cap",
    "webhook_url",
    "created_at",
    "updated_at",
}


async def _problem(response: Any, status: int, code: str) -> dict[str, Any]:
    assert response.status == status, await response.text()
    assert response.content_type == "application/problem+json"
    body: dict[str, Any] = await response.json(content_type=None)
    assert body["code"] == code, body
    assert body["status"] == status
    return body


async def _counts(db: asyncpg.Pool) -> tuple[int, int, int]:
    row = await db.fetchrow(
        "SELECT (SELECT count(*) FROM stores) AS s, (SELECT count(*) FROM credit_ledger) AS l,"
        " (SELECT count(*) FROM api_tokens) AS t"
    )
    assert row is not None
    return row["s"], row["l"], row["t"]


async def test_create_store_returns_store_and_token_once(api: Client, db: asyncpg.Pool) -> None:
    response = await api.post(
        "/v1/admin/stores",
        json=store_body(
            send_window={"start": "09:00", "end": "21:00"},
            rate_cap_per_s=50,
            frequency_cap={"count": 2, "hours": 24},
        ),
        headers=ADMIN,
    )
    assert response.status == 201
    created = await response.json()
    store = created["store"]
    assert set(store) == STORE_FIELDS
    assert store["credits_available"] == 100_000
    assert store["credits_reserved"] == 0
    assert store["send_window"] == {"start": "09:00", "end": "21:00"}
    assert store["rate_cap_per_s"] == 50
    assert store["frequency_cap"] == {"count": 2, "hours": 24}
    assert store["webhook_url"] is None
    token = created["token"]
    assert token.startswith("cs_live_")
    # The token is stored only as a hash.
    hashes = await db.fetch("SELECT token_hash, token_prefix FROM api_tokens")
    assert len(hashes) == 1
    assert token.encode() not in bytes(hashes[0]["token_hash"])
    assert token.startswith(hashes[0]["token_prefix"])
    # Initial credits are a topup entry, and the ledger explains the balance.
    ledger = await db.fetch("SELECT kind, available_delta, reserved_delta FROM credit_ledger")
    assert [tuple(row) for row in ledger] == [("topup", 100_000, 0)]
    # The token works.
    own = await api.get("/v1/store", headers=bearer(token))
    assert own.status == 200
    assert (await own.json())["id"] == store["id"]


async def test_zero_credits_writes_no_ledger_entry(api: Client, db: asyncpg.Pool) -> None:
    store, _ = await create_store(api, credits=0)
    assert store["credits_available"] == 0
    assert await db.fetchval("SELECT count(*) FROM credit_ledger") == 0


@pytest.mark.parametrize(
    ("overrides", "code"),
    [
        ({"sender_id": "AB"}, "invalid_sender_id"),
        ({"sender_id": "ABCDEFGHIJKL"}, "invalid_sender_id"),
        ({"sender_id": "ATH-SHOES"}, "invalid_sender_id"),
        ({"sender_id": "123456789012345"}, "invalid_sender_id"),
        ({"timezone": "Mars/Olympus"}, "invalid_timezone"),
        ({"timezone": "../../etc/passwd"}, "invalid_timezone"),
        ({"default_region": "XX"}, "invalid_region"),
        ({"default_region": "GRC"}, "invalid_region"),
        ({"subscription_status": "trial"}, "validation_error"),
        ({"credits": -1}, "validation_error"),
        ({"credits": 1.5}, "validation_error"),
        ({"credits": "100"}, "validation_error"),
        ({"credits": True}, "validation_error"),
        ({"name": ""}, "validation_error"),
        ({"name": "   "}, "validation_error"),
        ({"name": "a\u0000b"}, "validation_error"),
        ({"name": 7}, "validation_error"),
        ({"send_window": {"start": "9:00", "end": "21:00"}}, "validation_error"),
        ({"send_window": {"start": "21:00", "end": "21:00"}}, "validation_error"),
        ({"rate_cap_per_s": 0}, "validation_error"),
        ({"frequency_cap": {"count": 0, "hours": 24}}, "validation_error"),
        ({"unexpected": 1}, "validation_error"),
    ],
)
async def test_create_store_rejects_bad_fields(
    api: Client, db: asyncpg.Pool, overrides: dict[str, Any], code: str
) -> None:
    response = await api.post("/v1/admin/stores", json=store_body(**overrides), headers=ADMIN)
    body = await _problem(response, 422, code)
    assert body["errors"]
    assert await _counts(db) == (0, 0, 0)


@pytest.mark.parametrize(
    "missing",
    ["name", "sender_id", "timezone", "default_region", "subscription_status", "credits"],
)
async def test_create_store_requires_fields(api: Client, db: asyncpg.Pool, missing: str) -> None:
    body = store_body()
    del body[missing]
    response = await api.post("/v1/admin/stores", json=body, headers=ADMIN)
    problem = await _problem(response, 422, "validation_error")
    assert problem["errors"][0]["field"] == missing
    assert await _counts(db) == (0, 0, 0)


async def test_numeric_sender_and_lowercase_region_are_accepted(api: Client) -> None:
    store, _ = await create_store(api, sender_id="12345678901234", default_region="cy")
    assert store["sender_id"] == "12345678901234"
    assert store["default_region"] == "CY"


async def test_bad_bodies_write_nothing(api: Client, db: asyncpg.Pool, settings: Settings) -> None:
    cases = [
        (
            {"data": b"{not json", "headers": {"Content-Type": "application/json"}},
            400,
            "malformed_json",
        ),
        (
            {"data": b"[1, 2]", "headers": {"Content-Type": "application/json"}},
            400,
            "malformed_json",
        ),
        ({"data": b"", "headers": {"Content-Type": "application/json"}}, 400, "malformed_json"),
        (
            {"data": b"name=x", "headers": {"Content-Type": "text/plain"}},
            415,
            "unsupported_media_type",
        ),
        (
            {
                "data": io.BytesIO(b'{"name": "' + b"x" * settings.max_json_body_bytes + b'"}'),
                "headers": {"Content-Type": "application/json"},
            },
            413,
            "payload_too_large",
        ),
    ]
    for kwargs, status, code in cases:
        headers = {**ADMIN, **kwargs.pop("headers")}
        response = await api.post("/v1/admin/stores", headers=headers, **kwargs)
        await _problem(response, status, code)
    assert await _counts(db) == (0, 0, 0)


async def test_admin_routes_need_the_admin_token(api: Client, db: asyncpg.Pool) -> None:
    _, token = await create_store(api)
    before = await _counts(db)
    response = await api.post("/v1/admin/stores", json=store_body())
    await _problem(response, 401, "missing_token")
    response = await api.post("/v1/admin/stores", json=store_body(), headers=bearer(token))
    await _problem(response, 403, "admin_only")
    response = await api.post("/v1/admin/stores", json=store_body(), headers=bearer("nope"))
    await _problem(response, 403, "admin_only")
    assert await _counts(db) == before


async def test_get_and_patch_store(api: Client) -> None:
    store, _ = await create_store(api)
    url = f"/v1/admin/stores/{store['id']}"
    response = await api.get(url, headers=ADMIN)
    assert response.status == 200
    assert (await response.json()) == store

    response = await api.patch(
        url,
        json={
            "subscription_status": "past_due",
            "name": "Athens Shoes & Bags",
            "sender_id": "306912345678",
            "timezone": "Europe/Nicosia",
            "default_region": "CY",
            "send_window": {"start": "22:00", "end": "06:00"},
            "rate_cap_per_s": 12.5,
            "frequency_cap": {"count": 1, "hours": 12},
        },
        headers=ADMIN,
    )
    assert response.status == 200
    patched = await response.json()
    assert patched["subscription_status"] == "past_due"
    assert patched["name"] == "Athens Shoes & Bags"
    assert patched["sender_id"] == "306912345678"
    assert patched["timezone"] == "Europe/Nicosia"
    assert patched["default_region"] == "CY"
    assert patched["send_window"] == {"start": "22:00", "end": "06:00"}
    assert patched["rate_cap_per_s"] == 12.5
    assert patched["frequency_cap"] == {"count": 1, "hours": 12}
    assert patched["credits_available"] == store["credits_available"]
    assert patched["updated_at"] >= store["updated_at"]

    # Only given fields change; null clears the optional settings.
    response = await api.patch(
        url,
        json={"send_window": None, "rate_cap_per_s": None, "frequency_cap": None},
        headers=ADMIN,
    )
    cleared = await response.json()
    assert cleared["send_window"] is None
    assert cleared["rate_cap_per_s"] is None
    assert cleared["frequency_cap"] is None
    assert cleared["subscription_status"] == "past_due"

    response = await api.patch(url, json={}, headers=ADMIN)
    assert response.status == 200
    assert (await response.json())["name"] == "Athens Shoes & Bags"


@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"name": None}, "validation_error"),
        ({"subscription_status": None}, "validation_error"),
        ({"subscription_status": "paused"}, "validation_error"),
        ({"sender_id": "x"}, "invalid_sender_id"),
        ({"timezone": "Nowhere"}, "invalid_timezone"),
        ({"default_region": "ZZ"}, "invalid_region"),
        ({"credits_available": 5}, "validation_error"),
    ],
)
async def test_patch_rejects_bad_fields(
    api: Client, db: asyncpg.Pool, body: dict[str, Any], code: str
) -> None:
    store, _ = await create_store(api)
    before = await db.fetchrow("SELECT * FROM stores")
    response = await api.patch(f"/v1/admin/stores/{store['id']}", json=body, headers=ADMIN)
    await _problem(response, 422, code)
    assert await db.fetchrow("SELECT * FROM stores") == before


async def test_unknown_store_is_404(api: Client, db: asyncpg.Pool) -> None:
    await create_store(api)
    before = await _counts(db)
    for store_id in ("999999", "abc", "0", "-1", "99999999999999999999999"):
        base = f"/v1/admin/stores/{store_id}"
        for method, path, body in (
            ("GET", base, None),
            ("PATCH", base, {"name": "x"}),
            ("POST", f"{base}/credits", {"amount": 5}),
            ("POST", f"{base}/tokens", {"name": "x"}),
            ("DELETE", f"{base}/tokens/1", None),
        ):
            response = await api.request(method, path, json=body, headers=ADMIN)
            await _problem(response, 404, "not_found")
    assert await _counts(db) == before


async def test_top_up_goes_through_the_ledger(api: Client, db: asyncpg.Pool) -> None:
    store, _ = await create_store(api, credits=100)
    url = f"/v1/admin/stores/{store['id']}/credits"
    response = await api.post(url, json={"amount": 50, "note": "invoice 42"}, headers=ADMIN)
    assert response.status == 200
    assert (await response.json())["credits_available"] == 150
    response = await api.post(url, json={"amount": 7}, headers=ADMIN)
    assert (await response.json())["credits_available"] == 157
    ledger = await db.fetch("SELECT kind, available_delta, note FROM credit_ledger ORDER BY id")
    assert [tuple(row) for row in ledger] == [
        ("topup", 100, "initial credits"),
        ("topup", 50, "invoice 42"),
        ("topup", 7, None),
    ]
    balance = await db.fetchval("SELECT credits_available FROM stores")
    assert balance == sum(row["available_delta"] for row in ledger)


@pytest.mark.parametrize(
    "body", [{"amount": 0}, {"amount": -5}, {"amount": "5"}, {"note": "x"}, {"amount": 10**13}]
)
async def test_top_up_rejects_bad_amounts(
    api: Client, db: asyncpg.Pool, body: dict[str, Any]
) -> None:
    store, _ = await create_store(api, credits=100)
    before = await _counts(db)
    response = await api.post(f"/v1/admin/stores/{store['id']}/credits", json=body, headers=ADMIN)
    await _problem(response, 422, "validation_error")
    assert await _counts(db) == before
    assert await db.fetchval("SELECT credits_available FROM stores") == 100


async def test_issue_and_revoke_tokens(api: Client, db: asyncpg.Pool) -> None:
    store, first = await create_store(api)
    other, _ = await create_store(api, name="Other")
    response = await api.post(
        f"/v1/admin/stores/{store['id']}/tokens", json={"name": "backend"}, headers=ADMIN
    )
    assert response.status == 201
    issued = await response.json()
    assert issued["name"] == "backend"
    assert issued["store_id"] == store["id"]
    assert issued["revoked_at"] is None
    assert issued["token"].startswith(issued["token_prefix"])
    second = issued["token"]
    assert (await api.get("/v1/store", headers=bearer(second))).status == 200

    # A token id of one store cannot be revoked through another store's path.
    response = await api.delete(
        f"/v1/admin/stores/{other['id']}/tokens/{issued['id']}", headers=ADMIN
    )
    await _problem(response, 404, "not_found")
    assert (await api.get("/v1/store", headers=bearer(second))).status == 200

    response = await api.delete(
        f"/v1/admin/stores/{store['id']}/tokens/{issued['id']}", headers=ADMIN
    )
    assert response.status == 200
    revoked = await response.json()
    assert revoked["revoked_at"] is not None
    # Revoked at once; the other token of the store keeps working.
    await _problem(await api.get("/v1/store", headers=bearer(second)), 401, "invalid_token")
    assert (await api.get("/v1/store", headers=bearer(first))).status == 200
    # Revoking again is harmless and keeps the first revocation time.
    response = await api.delete(
        f"/v1/admin/stores/{store['id']}/tokens/{issued['id']}", headers=ADMIN
    )
    assert (await response.json())["revoked_at"] == revoked["revoked_at"]


async def test_token_name_defaults_and_validates(api: Client) -> None:
    store, _ = await create_store(api)
    url = f"/v1/admin/stores/{store['id']}/tokens"
    response = await api.post(url, json={}, headers=ADMIN)
    assert response.status == 201
    assert (await response.json())["name"] == ""
    await _problem(await api.post(url, json={"name": 5}, headers=ADMIN), 422, "validation_error")
    await _problem(
        await api.post(url, json={"name": "x" * 101}, headers=ADMIN), 422, "validation_error"
    )
