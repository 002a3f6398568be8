"""Campaigns API: validated create, list, read, edit and delete before sending, tenancy."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg

from sender.links import short_url_length
from sender.segments import count_segments
from sender.templates import Template
from tests.integration.seeding import (
    Client,
    campaign_body,
    count,
    create_campaign,
    problem,
    tenant,
)

PAYLOAD_KEYS = {
    "id",
    "name",
    "message",
    "audience",
    "status",
    "priority",
    "scheduled_at",
    "encoding",
    "segments_estimate",
    "created_at",
    "updated_at",
    "started_at",
    "finished_at",
    "total_recipients",
}


def future(days: int = 1) -> str:
    return (datetime.now(UTC) + timedelta(days=days)).isoformat()


async def test_create_returns_the_campaign_with_its_worst_case(api: Client) -> None:
    shop = await tenant(api)
    message = "Hi {{first_name}}, 20% off: {{link:https://shop.example/bf}} {{unsubscribe}}"
    body = await create_campaign(
        api,
        shop,
        message=message,
        audience={"tags_any": ["vip", " vip "], "exclude_tags": ["x"]},
        priority="high",
        scheduled_at=future(),
    )
    assert set(body) == PAYLOAD_KEYS
    assert body["status"] == "draft"
    assert body["priority"] == "high"
    assert body["audience"] == {"tags_any": ["vip"], "tags_all": [], "exclude_tags": ["x"]}
    worst = count_segments(
        Template.parse(message).worst_case_text(short_url_length("http://127.0.0.1:8080"))
    )
    assert (body["encoding"], body["segments_estimate"]) == (worst.encoding, worst.segments)
    assert body["scheduled_at"] is not None
    assert body["started_at"] is None and body["total_recipients"] is None

    response = await api.get(f"/v1/campaigns/{body['id']}", headers=shop.auth)
    assert await response.json() == body


async def test_greek_message_is_ucs2(api: Client) -> None:
    shop = await tenant(api)
    body = await create_campaign(api, shop, message="Καλημέρα {{first_name}}!")
    assert (body["encoding"], body["segments_estimate"]) == ("UCS-2", 1)


async def test_invalid_campaigns_are_refused_and_nothing_is_written(
    api: Client, db: asyncpg.Pool
) -> None:
    shop = await tenant(api)
    url = "/v1/campaigns"

    response = await api.post(
        url, data=b"{bad", headers={**shop.auth, "Content-Type": "application/json"}
    )
    await problem(response, 400, "malformed_json")
    response = await api.post(
        url, data=b"name=x", headers={**shop.auth, "Content-Type": "text/plain"}
    )
    await problem(response, 415, "unsupported_media_type")

    cases: list[tuple[dict[str, Any], str]] = [
        ({"message": "hi"}, "validation_error"),  # no name
        ({"name": "x"}, "validation_error"),  # no message
        (campaign_body(name=""), "validation_error"),
        (campaign_body(name=5), "validation_error"),
        (campaign_body(message=["hi"]), "validation_error"),
        (campaign_body(priority="urgent"), "validation_error"),
        (campaign_body(color="red"), "validation_error"),
        (campaign_body(message=""), "empty_message"),
        (campaign_body(message="   "), "empty_message"),
        (campaign_body(message="Hi {{first_name"), "invalid_template"),
        (campaign_body(message="{{link:ftp://x}}"), "invalid_template"),
        (campaign_body(audience=["vip"]), "invalid_audience"),
        (campaign_body(audience={"tags": ["vip"]}), "invalid_audience"),
        (campaign_body(audience={"tags_any": "vip"}), "invalid_audience"),
        (campaign_body(audience={"tags_any": [""]}), "invalid_audience"),
        (campaign_body(audience={"tags_all": [1]}), "invalid_audience"),
        (campaign_body(scheduled_at=future(-1)), "scheduled_at_in_past"),
        (campaign_body(scheduled_at="2030-01-01T09:00:00"), "validation_error"),  # no timezone
        (campaign_body(scheduled_at="next tuesday"), "validation_error"),
    ]
    for body, code in cases:
        response = await api.post(url, json=body, headers=shop.auth)
        await problem(response, 422, code)

    response = await api.post(
        url, json=campaign_body(message="Hi {{city}} {{first_name}} {{ zip }}"), headers=shop.auth
    )
    body = await problem(response, 422, "unknown_placeholder")
    assert body["placeholders"] == ["city", "zip"]
    assert "{{city}}" in body["detail"] and "{{zip}}" in body["detail"]

    response = await api.post(url, json=campaign_body(message="😀" * 2000), headers=shop.auth)
    body = await problem(response, 422, "message_too_long")
    assert body["max_segments"] == 10
    assert body["segments"] == count_segments("😀" * 2000).segments > 10

    assert await count(db, "campaigns") == 0


async def test_list_paginates_newest_first_and_filters_by_status(
    api: Client, db: asyncpg.Pool
) -> None:
    shop = await tenant(api)
    ids = [(await create_campaign(api, shop, name=f"c{i}"))["id"] for i in range(5)]
    await db.execute("UPDATE campaigns SET status = 'sent' WHERE id = ANY($1)", ids[:2])
    seen: list[int] = []
    query = "?limit=2"
    while True:
        response = await api.get(f"/v1/campaigns{query}", headers=shop.auth)
        body = await response.json()
        assert response.status == 200, body
        seen += [item["id"] for item in body["items"]]
        if body["next_cursor"] is None:
            break
        query = f"?limit=2&cursor={body['next_cursor']}"
    assert seen == sorted(ids, reverse=True)
    response = await api.get("/v1/campaigns?status=sent", headers=shop.auth)
    assert [c["id"] for c in (await response.json())["items"]] == sorted(ids[:2], reverse=True)
    response = await api.get("/v1/campaigns?status=draft&limit=500", headers=shop.auth)
    assert len((await response.json())["items"]) == 3
    await problem(
        await api.get("/v1/campaigns?status=done", headers=shop.auth), 400, "invalid_parameter"
    )
    await problem(
        await api.get("/v1/campaigns?cursor=zzz", headers=shop.auth), 400, "invalid_cursor"
    )


async def test_patch_a_draft_revalidates_and_recomputes(api: Client) -> None:
    shop = await tenant(api)
    created = await create_campaign(api, shop, message="Hello")
    url = f"/v1/campaigns/{created['id']}"
    response = await api.patch(
        url,
        json={"message": "Γεια σου {{first_name}}", "priority": "low", "scheduled_at": future(2)},
        headers=shop.auth,
    )
    body = await response.json()
    assert response.status == 200, body
    assert (body["message"], body["priority"], body["encoding"]) == (
        "Γεια σου {{first_name}}",
        "low",
        "UCS-2",
    )
    assert body["name"] == created["name"]
    assert body["scheduled_at"] is not None
    assert body["updated_at"] > created["updated_at"]
    response = await api.patch(url, json={"scheduled_at": None}, headers=shop.auth)
    assert (await response.json())["scheduled_at"] is None

    for bad, code in [
        ({"message": "{{nope}}"}, "unknown_placeholder"),
        ({"message": ""}, "empty_message"),
        ({"name": None}, "validation_error"),
        ({"audience": {"tags_any": [None]}}, "invalid_audience"),
        ({"scheduled_at": future(-1)}, "scheduled_at_in_past"),
        ({"status": "sending"}, "validation_error"),
    ]:
        await problem(await api.patch(url, json=bad, headers=shop.auth), 422, code)
    response = await api.get(url, headers=shop.auth)
    assert (await response.json())["message"] == "Γεια σου {{first_name}}"


async def test_started_campaigns_cannot_be_changed_or_deleted(
    api: Client, db: asyncpg.Pool
) -> None:
    shop = await tenant(api)
    created = await create_campaign(api, shop)
    url = f"/v1/campaigns/{created['id']}"
    for status in ("sending", "paused", "sent", "failed", "cancelled"):
        await db.execute("UPDATE campaigns SET status = $1 WHERE id = $2", status, created["id"])
        before = await db.fetchrow("SELECT * FROM campaigns WHERE id = $1", created["id"])
        body = await problem(
            await api.patch(url, json={"name": "renamed"}, headers=shop.auth),
            409,
            "invalid_status_transition",
        )
        assert body["current_status"] == status
        assert status in body["detail"]
        body = await problem(
            await api.delete(url, headers=shop.auth), 409, "invalid_status_transition"
        )
        assert body["current_status"] == status
        assert await db.fetchrow("SELECT * FROM campaigns WHERE id = $1", created["id"]) == before


async def test_scheduled_campaign_edit_and_delete_releases_its_reservation(
    api: Client, db: asyncpg.Pool
) -> None:
    shop = await tenant(api, credits=1000)
    created = await create_campaign(api, shop, scheduled_at=future())
    url = f"/v1/campaigns/{created['id']}"
    # What POST /send does for a future schedule: reserve, then mark scheduled.
    async with db.acquire() as conn, conn.transaction():
        await conn.execute(
            "UPDATE stores SET credits_available = credits_available - 40,"
            " credits_reserved = credits_reserved + 40 WHERE id = $1",
            shop.id,
        )
        await conn.execute(
            "INSERT INTO credit_ledger"
            " (store_id, campaign_id, kind, available_delta, reserved_delta)"
            " VALUES ($1, $2, 'reserve', -40, 40)",
            shop.id,
            created["id"],
        )
        await conn.execute(
            "UPDATE campaigns SET status = 'scheduled', credits_reserved = 40 WHERE id = $1",
            created["id"],
        )
    response = await api.patch(
        url, json={"name": "moved", "scheduled_at": future(3)}, headers=shop.auth
    )
    assert (await response.json())["status"] == "scheduled"
    for change in ({"message": "A longer message than before"}, {"audience": None}):
        body = await problem(
            await api.patch(url, json=change, headers=shop.auth), 409, "campaign_scheduled"
        )
        assert body["current_status"] == "scheduled"
    body = await problem(
        await api.patch(url, json={"scheduled_at": None}, headers=shop.auth),
        422,
        "scheduled_at_required",
    )
    assert "cancel" in body["detail"]

    response = await api.delete(url, headers=shop.auth)
    assert response.status == 204
    store = await db.fetchrow(
        "SELECT credits_available, credits_reserved FROM stores WHERE id = $1", shop.id
    )
    assert (store["credits_available"], store["credits_reserved"]) == (1000, 0)
    kinds = await db.fetch(
        "SELECT kind, available_delta FROM credit_ledger WHERE store_id = $1 ORDER BY id", shop.id
    )
    assert [(k["kind"], k["available_delta"]) for k in kinds][-2:] == [
        ("reserve", -40),
        ("release", 40),
    ]
    await problem(await api.get(url, headers=shop.auth), 404, "not_found")


async def test_delete_a_draft(api: Client, db: asyncpg.Pool) -> None:
    shop = await tenant(api)
    created = await create_campaign(api, shop)
    response = await api.delete(f"/v1/campaigns/{created['id']}", headers=shop.auth)
    assert response.status == 204
    assert await count(db, "campaigns") == 0
    assert await count(db, "credit_ledger") == 1  # the store's initial top-up only


async def test_another_stores_campaigns_are_invisible_and_untouched(
    api: Client, db: asyncpg.Pool
) -> None:
    mine = await tenant(api)
    theirs = await tenant(api)
    created = await create_campaign(api, theirs)
    before = await db.fetchrow("SELECT * FROM campaigns WHERE id = $1", created["id"])
    url = f"/v1/campaigns/{created['id']}"
    await problem(await api.get(url, headers=mine.auth), 404, "not_found")
    await problem(await api.get(f"{url}/preview", headers=mine.auth), 404, "not_found")
    await problem(await api.patch(url, json={"name": "mine"}, headers=mine.auth), 404, "not_found")
    await problem(await api.delete(url, headers=mine.auth), 404, "not_found")
    response = await api.get("/v1/campaigns", headers=mine.auth)
    assert (await response.json()) == {"items": [], "next_cursor": None}
    assert await db.fetchrow("SELECT * FROM campaigns WHERE id = $1", created["id"]) == before
