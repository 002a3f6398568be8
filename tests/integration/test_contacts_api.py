"""Contacts API: streamed import (CSV, NDJSON), listing, read, edit, delete, tenancy."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import orjson
from aiohttp.test_utils import TestClient, TestServer

from api import importer
from api.app import create_app
from sender.config import Settings
from sender.db import pipeline
from tests.integration.pipeline_factories import sending_campaign
from tests.integration.seeding import Client, Tenant, count, import_csv, problem, tenant

CSV_HEADERS = {"Content-Type": "text/csv"}
NDJSON_HEADERS = {"Content-Type": "application/x-ndjson"}

FIRST_IMPORT = (
    "phone,first_name,last_name,tags,city,Not A Field\n"
    "6912345678,Maria,Papadopoulou,vip;new,Athens,x\n"
    "12,Bad,Number,,,\n"
    "+30 691 234 5679,Νίκος,,vip,,\n"
    "0030 6912345670,Eleni,,,Patra,\n"
    "69123456AB,Letters,,,,\n"
)


async def contact_by_phone(db: asyncpg.Pool, phone: str) -> asyncpg.Record:
    row = await db.fetchrow("SELECT * FROM contacts WHERE phone = $1", phone)
    assert row is not None
    return row


async def test_small_imports_do_not_start_workers(api: Client) -> None:
    shop = await tenant(api)
    await import_csv(api, shop, "phone\n" + "".join(f"69{i:08d}\n" for i in range(2_000)))
    assert api.app is not None and not api.app[importer.WORKERS].started


async def test_csv_import_inserts_normalizes_and_lists_rejects(
    api: Client, db: asyncpg.Pool
) -> None:
    shop = await tenant(api)
    result = await import_csv(api, shop, FIRST_IMPORT)
    assert result == {
        "inserted": 3,
        "updated": 0,
        "unchanged": 0,
        "duplicates": 0,
        "rejected": 2,
        "rejects": [
            {"line": 3, "value": "12", "reason": "not a valid phone number"},
            {"line": 6, "value": "69123456AB", "reason": "contains letters"},
        ],
        "ignored_columns": ["Not A Field"],
    }
    maria = await contact_by_phone(db, "+306912345678")
    assert maria["store_id"] == shop.id
    assert (maria["first_name"], maria["last_name"]) == ("Maria", "Papadopoulou")
    assert maria["tags"] == ["new", "vip"]
    assert maria["custom"] == {"city": "Athens"}
    assert maria["consent"] == "opted_in"
    assert (await contact_by_phone(db, "+306912345679"))["first_name"] == "Νίκος"
    assert (await contact_by_phone(db, "+306912345670"))["custom"] == {"city": "Patra"}


async def test_reimport_merges_tags_keeps_given_values_and_never_touches_consent(
    api: Client, db: asyncpg.Pool
) -> None:
    shop = await tenant(api)
    await import_csv(api, shop, FIRST_IMPORT)
    maria = await contact_by_phone(db, "+306912345678")
    response = await api.patch(
        f"/v1/contacts/{maria['id']}",
        json={"consent": "opted_out", "opt_out_reason": "STOP"},
        headers=shop.auth,
    )
    assert response.status == 200
    opted_out_at = (await contact_by_phone(db, "+306912345678"))["consent_changed_at"]

    second = (
        "phone,first_name,last_name,tags,size\n"
        "+306912345678,,Pappa,black-friday,M\n"  # empty first_name: keep "Maria"
        "6912345679,Νίκος,,vip,\n"  # nothing new: unchanged
        "6912345671,New,,,\n"  # a new contact
    )
    result = await import_csv(api, shop, second)
    assert (result["inserted"], result["updated"], result["unchanged"]) == (1, 1, 1)
    maria = await contact_by_phone(db, "+306912345678")
    assert (maria["first_name"], maria["last_name"]) == ("Maria", "Pappa")
    assert maria["tags"] == ["black-friday", "new", "vip"]
    assert maria["custom"] == {"city": "Athens", "size": "M"}
    assert maria["consent"] == "opted_out"
    assert maria["opt_out_reason"] == "STOP"
    assert maria["consent_changed_at"] == opted_out_at


async def test_the_last_row_for_a_phone_wins(api: Client, db: asyncpg.Pool) -> None:
    shop = await tenant(api)
    result = await import_csv(
        api,
        shop,
        "phone,first_name,tags\n6912345678,First,a\n+306912345678,Second,b\n6912345678,Third,c\n",
    )
    assert (result["inserted"], result["duplicates"]) == (1, 2)
    row = await contact_by_phone(db, "+306912345678")
    assert (row["first_name"], row["tags"]) == ("Third", ["c"])


async def test_ndjson_import(api: Client, db: asyncpg.Pool) -> None:
    shop = await tenant(api)
    lines = [
        {
            "phone": "6912345678",
            "first_name": "Maria",
            "tags": ["vip", "new"],
            "custom": {"a": "1"},
        },
        {"phone": "+306912345679", "tags": "x;y"},
        {"phone": "nope"},
        {"phone": "6912345670", "custom": {"bad key": "v"}},
    ]
    body = b"\n".join(orjson.dumps(line) for line in lines) + b"\n\n{oops\n"
    response = await api.post(
        "/v1/contacts/import", data=body, headers={**shop.auth, **NDJSON_HEADERS}
    )
    result = await response.json()
    assert response.status == 200, result
    assert (result["inserted"], result["rejected"]) == (2, 3)
    assert [(r["line"], r["reason"]) for r in result["rejects"]] == [
        (3, "contains letters"),
        (4, "invalid custom field name bad key"),
        (6, "not valid JSON"),
    ]
    assert (await contact_by_phone(db, "+306912345679"))["tags"] == ["x", "y"]


async def test_import_problems_write_nothing(api: Client, db: asyncpg.Pool) -> None:
    shop = await tenant(api)
    url = "/v1/contacts/import"
    cases: list[tuple[dict[str, str], bytes, int, str]] = [
        ({"Content-Type": "application/json"}, b'{"phone": "1"}', 415, "unsupported_media_type"),
        (
            {"Content-Type": "text/csv; charset=latin-1"},
            b"phone\n1\n",
            415,
            "unsupported_media_type",
        ),
        (CSV_HEADERS, b"first_name\nMaria\n", 422, "missing_phone_column"),
        (CSV_HEADERS, b"", 422, "empty_body"),
        (NDJSON_HEADERS, b"\n", 422, "empty_body"),
        (CSV_HEADERS, b"phone\n6912345678\n69\xff\n", 422, "invalid_encoding"),
        (CSV_HEADERS, b'phone,first_name\n6912345678,"open\n', 422, "malformed_csv"),
    ]
    for headers, body, status, code in cases:
        response = await api.post(url, data=body, headers={**shop.auth, **headers})
        await problem(response, status, code)
    assert await count(db, "contacts") == 0


async def test_unauthenticated_import_is_refused(api: Client, db: asyncpg.Pool) -> None:
    response = await api.post(
        "/v1/contacts/import", data=b"phone\n6912345678\n", headers=CSV_HEADERS
    )
    await problem(response, 401, "missing_token")
    assert await count(db, "contacts") == 0


async def _chunks(data: bytes, size: int) -> AsyncIterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]


async def test_body_limit_is_enforced_while_streaming(settings: Settings, db: asyncpg.Pool) -> None:
    small = settings.model_copy(update={"max_body_bytes": 2_000})
    client: Client = TestClient(TestServer(create_app(small), host="127.0.0.1"))
    await client.start_server()
    try:
        shop = await tenant(client)
        rows = "".join(f"69{i:08d},Name\n" for i in range(200))
        body = ("phone,first_name\n" + rows).encode()
        assert len(body) > 2_000
        # Chunked: no Content-Length, so the limit can only be found while reading.
        response = await client.post(
            "/v1/contacts/import", data=_chunks(body, 500), headers={**shop.auth, **CSV_HEADERS}
        )
        await problem(response, 413, "payload_too_large")
        response = await client.post(
            "/v1/contacts/import", data=body, headers={**shop.auth, **CSV_HEADERS}
        )
        await problem(response, 413, "payload_too_large")
    finally:
        await client.close()
    assert await count(db, "contacts") == 0


async def test_big_streamed_import_uses_workers_and_is_atomic(
    api: Client, db: asyncpg.Pool
) -> None:
    shop = await tenant(api)
    rows = "".join(f"69{i:08d},Name{i},,t{i % 3}\n" for i in range(12_000))
    body = ("phone,first_name,last_name,tags\n" + rows).encode()
    response = await api.post(
        "/v1/contacts/import", data=_chunks(body, 64 * 1024), headers={**shop.auth, **CSV_HEADERS}
    )
    result = await response.json()
    assert response.status == 200, result
    assert (result["inserted"], result["rejected"]) == (12_000, 0)
    assert api.app is not None and api.app[importer.WORKERS].started
    assert await count(db, "contacts") == 12_000
    assert await db.fetchval("SELECT count(*) FROM contacts WHERE tags = '{t1}'") == 4_000

    # A broken byte near the end fails the whole upload: nothing of it is applied.
    broken = ("phone,first_name\n" + "".join(f"68{i:08d},X\n" for i in range(12_000))).encode()
    response = await api.post(
        "/v1/contacts/import",
        data=_chunks(broken[:-20] + b"\xff" + broken[-20:], 64 * 1024),
        headers={**shop.auth, **CSV_HEADERS},
    )
    await problem(response, 422, "invalid_encoding")
    assert await count(db, "contacts") == 12_000


async def _contact_ids(api: Client, who: Tenant, query: str = "") -> list[int]:
    response = await api.get(f"/v1/contacts{query}", headers=who.auth)
    body = await response.json()
    assert response.status == 200, body
    return [item["id"] for item in body["items"]]


async def test_list_paginates_with_cursor_and_filters_by_tag(api: Client) -> None:
    shop = await tenant(api)
    rows = "".join(f"69{i:08d},{'vip' if i % 2 else ''}\n" for i in range(7))
    await import_csv(api, shop, "phone,tags\n" + rows)
    seen: list[int] = []
    cursor = ""
    pages = 0
    while True:
        response = await api.get(f"/v1/contacts?limit=3{cursor}", headers=shop.auth)
        body = await response.json()
        pages += 1
        seen += [item["id"] for item in body["items"]]
        if body["next_cursor"] is None:
            break
        cursor = f"&cursor={body['next_cursor']}"
    assert pages == 3
    assert len(seen) == 7 and seen == sorted(seen)
    assert set(body["items"][0]) == {
        "id",
        "phone",
        "first_name",
        "last_name",
        "custom",
        "tags",
        "consent",
        "consent_changed_at",
        "opt_out_reason",
        "created_at",
        "updated_at",
    }
    assert len(await _contact_ids(api, shop, "?tag=vip")) == 3
    assert await _contact_ids(api, shop, "?tag=nobody") == []


async def test_list_parameter_problems(api: Client) -> None:
    shop = await tenant(api)
    for query, code in [
        ("?cursor=garbage", "invalid_cursor"),
        ("?cursor=YzEuMQ==", "invalid_cursor"),  # padded: not the canonical spelling
        ("?cursor=", "invalid_cursor"),
        ("?limit=0", "invalid_parameter"),
        ("?limit=501", "invalid_parameter"),
        ("?limit=ten", "invalid_parameter"),
    ]:
        await problem(await api.get(f"/v1/contacts{query}", headers=shop.auth), 400, code)


async def test_get_patch_and_delete(api: Client, db: asyncpg.Pool) -> None:
    shop = await tenant(api)
    await import_csv(api, shop, "phone,first_name,tags,city\n6912345678,Maria,b;a,Athens\n")
    contact_id = (await contact_by_phone(db, "+306912345678"))["id"]
    url = f"/v1/contacts/{contact_id}"

    response = await api.get(url, headers=shop.auth)
    body = await response.json()
    assert (body["phone"], body["tags"], body["custom"]) == (
        "+306912345678",
        ["a", "b"],
        {"city": "Athens"},
    )

    patch: dict[str, Any] = {
        "first_name": " Μαρία ",
        "last_name": None,
        "add_tags": ["vip"],
        "remove_tags": ["a"],
        "custom": {"size": "M", "city": None},
    }
    response = await api.patch(url, json=patch, headers=shop.auth)
    body = await response.json()
    assert response.status == 200, body
    assert (body["first_name"], body["last_name"]) == ("Μαρία", None)
    assert body["tags"] == ["b", "vip"]
    assert body["custom"] == {"size": "M"}
    assert body["consent"] == "opted_in"
    first_consent_at = body["consent_changed_at"]

    response = await api.patch(url, json={"tags": ["z", "y", "z"]}, headers=shop.auth)
    assert (await response.json())["tags"] == ["y", "z"]

    response = await api.patch(
        url, json={"consent": "opted_out", "opt_out_reason": "asked by phone"}, headers=shop.auth
    )
    body = await response.json()
    assert (body["consent"], body["opt_out_reason"]) == ("opted_out", "asked by phone")
    assert body["consent_changed_at"] > first_consent_at
    # Opting out again keeps the time and reason of the first opt-out.
    again = await (await api.patch(url, json={"consent": "opted_out"}, headers=shop.auth)).json()
    assert (again["consent_changed_at"], again["opt_out_reason"]) == (
        body["consent_changed_at"],
        "asked by phone",
    )
    back = await (await api.patch(url, json={"consent": "opted_in"}, headers=shop.auth)).json()
    assert (back["consent"], back["opt_out_reason"]) == ("opted_in", None)
    assert back["consent_changed_at"] > body["consent_changed_at"]

    response = await api.delete(url, headers=shop.auth)
    assert response.status == 204
    await problem(await api.get(url, headers=shop.auth), 404, "not_found")
    await problem(await api.delete(url, headers=shop.auth), 404, "not_found")


async def _recipients(db: asyncpg.Pool, campaign_id: int) -> list[tuple[str, int | None, str]]:
    rows = await db.fetch(
        "SELECT phone, contact_id, status FROM campaign_recipients"
        " WHERE campaign_id = $1 ORDER BY phone",
        campaign_id,
    )
    return [(r["phone"], r["contact_id"], r["status"]) for r in rows]


async def test_deleting_a_contact_keeps_its_recipients_unlinked(
    api: Client, db: asyncpg.Pool
) -> None:
    shop = await tenant(api)
    other = await tenant(api)
    await import_csv(api, shop, "phone,first_name\n6912345678,Maria\n6912345679,Nikos\n")
    await import_csv(api, other, "phone,first_name\n6912345678,Theirs\n")
    maria, nikos, theirs = (r["id"] for r in await db.fetch("SELECT id FROM contacts ORDER BY id"))
    first = await sending_campaign(db, shop.id, reserve=2, recipients=2)
    second = await sending_campaign(db, shop.id, reserve=2, recipients=2)
    their_campaign = await sending_campaign(db, other.id, reserve=1, recipients=1)

    response = await api.delete(f"/v1/contacts/{maria}", headers=shop.auth)
    assert response.status == 204

    assert await db.fetchval("SELECT count(*) FROM contacts WHERE id = $1", maria) == 0
    for campaign_id in (first, second):
        assert await _recipients(db, campaign_id) == [
            ("+306912345678", None, "pending"),
            ("+306912345679", nikos, "pending"),
        ]
    assert await _recipients(db, their_campaign) == [("+306912345678", theirs, "pending")]


async def test_deleting_a_contact_waits_for_a_dispatch_in_progress(
    api: Client, db: asyncpg.Pool
) -> None:
    shop = await tenant(api)
    await import_csv(api, shop, "phone,first_name\n6912345678,Maria\n")
    maria = (await contact_by_phone(db, "+306912345678"))["id"]
    campaign_id = await sending_campaign(db, shop.id, reserve=1, recipients=1, materialize=False)
    async with db.acquire() as conn:
        dispatch = conn.transaction()
        await dispatch.start()
        target = await pipeline.lock_campaign_for_dispatch(conn, campaign_id)
        assert target is not None
        assert await pipeline.materialize(conn, target, 5000) == 1
        # The recipient row is not committed yet: the deletion must not miss it.
        deletion = asyncio.create_task(api.delete(f"/v1/contacts/{maria}", headers=shop.auth))
        await asyncio.sleep(0.3)
        assert not deletion.done()
        await dispatch.commit()
    response = await asyncio.wait_for(deletion, 10)
    assert response.status == 204
    assert await _recipients(db, campaign_id) == [("+306912345678", None, "pending")]


async def test_bad_patches_change_nothing(api: Client, db: asyncpg.Pool) -> None:
    shop = await tenant(api)
    await import_csv(api, shop, "phone,first_name,tags\n6912345678,Maria,vip\n")
    before = await contact_by_phone(db, "+306912345678")
    url = f"/v1/contacts/{before['id']}"
    response = await api.patch(
        url, data=b"{not json", headers={**shop.auth, "Content-Type": "application/json"}
    )
    await problem(response, 400, "malformed_json")
    response = await api.patch(
        url, data=b"[]", headers={**shop.auth, "Content-Type": "application/json"}
    )
    await problem(response, 400, "malformed_json")
    bad_bodies: list[dict[str, Any]] = [
        {"first_name": 42},
        {"first_name": "x" * 51},
        {"tags": "vip"},
        {"tags": ["x" * 65]},
        {"custom": {"Bad Key": "v"}},
        {"custom": {"note": "y" * 101}},
        {"consent": "maybe"},
        {"opt_out_reason": "no consent given"},
        {"phone": "+306900000000"},
    ]
    for bad in bad_bodies:
        response = await api.patch(url, json=bad, headers=shop.auth)
        await problem(response, 422, "validation_error")
    response = await api.patch(url, data=b"{}", headers={**shop.auth, "Content-Type": "text/plain"})
    await problem(response, 415, "unsupported_media_type")
    assert await contact_by_phone(db, "+306912345678") == before


async def test_another_stores_contacts_are_invisible_and_untouched(
    api: Client, db: asyncpg.Pool
) -> None:
    mine = await tenant(api)
    theirs = await tenant(api)
    await import_csv(api, theirs, "phone,first_name\n6912345678,Theirs\n")
    their_contact = await contact_by_phone(db, "+306912345678")
    url = f"/v1/contacts/{their_contact['id']}"
    await problem(await api.get(url, headers=mine.auth), 404, "not_found")
    await problem(
        await api.patch(url, json={"first_name": "Mine"}, headers=mine.auth), 404, "not_found"
    )
    await problem(await api.delete(url, headers=mine.auth), 404, "not_found")
    await problem(
        await api.get("/v1/contacts/99999999999999999999", headers=mine.auth), 404, "not_found"
    )
    assert await _contact_ids(api, mine) == []
    # The same phone imported by another store is that store's own contact.
    result = await import_csv(api, mine, "phone,first_name\n6912345678,Mine\n")
    assert result["inserted"] == 1
    rows = await db.fetch("SELECT store_id, first_name FROM contacts ORDER BY id")
    assert [(r["store_id"], r["first_name"]) for r in rows] == [
        (theirs.id, "Theirs"),
        (mine.id, "Mine"),
    ]
