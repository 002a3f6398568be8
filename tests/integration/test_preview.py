"""Campaign preview: recipients and cost from grouped signatures, checked by brute force."""

from __future__ import annotations

import random
from typing import Any

import asyncpg

from sender.campaigns import Audience
from sender.costing import encode_signature, text_signature
from sender.links import UNSUBSCRIBE_INDEX, encode_link_code, short_url
from sender.segments import count_segments
from sender.templates import Template
from tests.integration.seeding import Client, Tenant, create_campaign, import_csv, problem, tenant

PUBLIC_URL = "http://127.0.0.1:8080"  # the test settings' public_base_url

CONTACTS = (
    "phone,first_name,last_name,tags,city\n"
    "6900000001,Maria,Papadopoulou,vip;athens,Athens\n"
    "6900000002,Μαρία,Οικονόμου,vip,Αθήνα\n"
    "6900000003,Jo€y,,vip;athens,\n"
    "6900000004,Zoë 😀,,athens,Patra\n"
    "6900000005,,,vip;athens;staff,\n"
    "6900000006,Nikos,,,Thessaloniki\n"
    "6900000007," + "W" * 50 + ",,vip,\n"
    "6900000008,Opted,Out,vip;athens,\n"
)


async def seeded(api: Client, db: asyncpg.Pool, *, credits: int = 100_000) -> Tenant:
    shop = await tenant(api, credits=credits)
    await import_csv(api, shop, CONTACTS)
    await db.execute("UPDATE contacts SET consent = 'opted_out' WHERE phone = '+306900000008'")
    # Another store's contacts never count.
    other = await tenant(api)
    await import_csv(api, other, CONTACTS)
    return shop


async def preview(api: Client, who: Tenant, campaign_id: int) -> dict[str, Any]:
    response = await api.get(f"/v1/campaigns/{campaign_id}/preview", headers=who.auth)
    body = await response.json()
    assert response.status == 200, body
    assert isinstance(body, dict)
    return body


async def brute_force(
    db: asyncpg.Pool, who: Tenant, message: str, audience: dict[str, list[str]]
) -> list[int]:
    """Exact segments of every eligible contact's message, rendered as the daemon would."""
    wanted = Audience.from_json(audience)
    rows = await db.fetch(
        "SELECT id, first_name, last_name, custom, tags FROM contacts"
        " WHERE store_id = $1 AND consent = 'opted_in' ORDER BY id",
        who.id,
    )
    template = Template.parse(message)
    out = []
    for row in rows:
        tags = set(row["tags"])
        if wanted.tags_any and not tags & set(wanted.tags_any):
            continue
        if not set(wanted.tags_all) <= tags or tags & set(wanted.exclude_tags):
            continue
        fields = {"first_name": row["first_name"], "last_name": row["last_name"]}
        fields |= {f"custom.{k}": v for k, v in row["custom"].items()}
        rid = row["id"] * 7919  # any recipient id: codes have a fixed length
        text = template.render(
            fields,
            lambda i, rid=rid: short_url(PUBLIC_URL, encode_link_code(rid, i, b"s"), "r"),
            short_url(PUBLIC_URL, encode_link_code(rid, UNSUBSCRIBE_INDEX, b"s"), "u"),
        )
        out.append(count_segments(text).segments)
    return out


async def test_preview_matches_brute_force_rendering(api: Client, db: asyncpg.Pool) -> None:
    shop = await seeded(api, db)
    cases: list[tuple[str, dict[str, list[str]]]] = [
        (
            "Hi {{first_name|there}}! 20% off " + "x" * 120,
            {"tags_any": [], "tags_all": [], "exclude_tags": []},
        ),
        (
            "Hi {{first_name}} {{last_name}}: {{link:https://shop.example/bf}} {{unsubscribe}}",
            {"tags_any": ["vip"], "tags_all": [], "exclude_tags": ["staff"]},
        ),
        (
            "{{custom.city|your city}}: " + "y" * 150,
            {"tags_any": [], "tags_all": ["athens"], "exclude_tags": []},
        ),
        (
            "Plain text, no fields",
            {"tags_any": ["athens", "vip"], "tags_all": [], "exclude_tags": []},
        ),
    ]
    for message, audience in cases:
        campaign = await create_campaign(api, shop, message=message, audience=audience)
        body = await preview(api, shop, campaign["id"])
        exact = await brute_force(db, shop, message, audience)
        assert body["recipients"] == len(exact), message
        assert body["segments"]["total"] >= sum(exact), message
        assert body["segments"]["max"] >= max(exact)
        assert body["segments"]["min"] >= min(exact)
        assert body["credits_required"] == body["segments"]["total"]
        assert body["credits_available"] == 100_000
        assert body["sufficient"] is True
        # The data has no two-unit character near a part boundary: the bound is exact.
        assert body["segments"]["total"] == sum(exact), message
        assert body["opted_out_excluded"] == 1  # +306900000008 matches every filter here


async def test_preview_fields_and_sample(api: Client, db: asyncpg.Pool) -> None:
    shop = await seeded(api, db)
    message = "Hi {{first_name}}, {{link:https://shop.example/bf}} {{unsubscribe}}"
    campaign = await create_campaign(
        api, shop, message=message, audience={"tags_any": ["vip"], "exclude_tags": ["staff"]}
    )
    body = await preview(api, shop, campaign["id"])
    assert set(body) == {
        "campaign_id",
        "recipients",
        "opted_out_excluded",
        "encoding",
        "segments",
        "credits_required",
        "credits_available",
        "sufficient",
        "sample",
    }
    # vip, not staff, opted in: Maria, Μαρία, Jo€y, W*50.
    assert body["recipients"] == 4
    assert body["opted_out_excluded"] == 1
    assert body["encoding"] == "UCS-2"  # Μαρία
    code = "X" * 12
    assert body["sample"] == (f"Hi Maria, {PUBLIC_URL}/r/{code} {PUBLIC_URL}/u/{code}")


async def test_preview_with_no_recipients_and_insufficient_credits(
    api: Client, db: asyncpg.Pool
) -> None:
    shop = await seeded(api, db, credits=3)
    nobody = await create_campaign(api, shop, audience={"tags_any": ["nobody"]})
    body = await preview(api, shop, nobody["id"])
    assert (body["recipients"], body["segments"], body["sample"]) == (
        0,
        {"min": 0, "max": 0, "total": 0},
        None,
    )
    assert (body["credits_required"], body["credits_available"], body["sufficient"]) == (0, 3, True)
    everyone = await create_campaign(api, shop, message="Hello {{first_name}}")
    body = await preview(api, shop, everyone["id"])
    assert body["recipients"] == 7
    assert (body["credits_required"], body["sufficient"]) == (7, False)


async def test_preview_respects_the_audience_snapshot(api: Client, db: asyncpg.Pool) -> None:
    shop = await seeded(api, db)
    campaign = await create_campaign(api, shop, message="Hello")
    assert (await preview(api, shop, campaign["id"]))["recipients"] == 7
    third = await db.fetchval(
        "SELECT id FROM contacts WHERE store_id = $1 AND phone = '+306900000003'", shop.id
    )
    await db.execute(
        "UPDATE campaigns SET audience_max_contact_id = $1 WHERE id = $2", third, campaign["id"]
    )
    assert (await preview(api, shop, campaign["id"]))["recipients"] == 3


async def test_preview_of_missing_campaign(api: Client) -> None:
    shop = await tenant(api)
    await problem(
        await api.get("/v1/campaigns/424242/preview", headers=shop.auth), 404, "not_found"
    )


async def test_sql_signatures_agree_with_python(db: asyncpg.Pool) -> None:
    rng = random.Random(20240601)
    alphabet = "aZ09 .,'@£$ΔΩΣ^{}\\[~]|€\fαβγάέÇÄüàáç😀🎉\n-"
    samples = ["".join(rng.choice(alphabet) for _ in range(rng.randint(0, 60))) for _ in range(500)]
    rows = await db.fetch(
        "SELECT x, sms_text_sig(x) AS sig FROM unnest($1::text[]) WITH ORDINALITY AS t(x, n)"
        " ORDER BY n",
        samples,
    )
    for row in rows:
        sig = text_signature(row["x"])
        assert row["sig"] == (encode_signature(sig) if sig is not None else None), row["x"]


async def test_preview_with_several_custom_fields(api: Client, db: asyncpg.Pool) -> None:
    shop = await tenant(api)
    await import_csv(
        api,
        shop,
        "phone,first_name,city,size\n"
        "6900000001,Maria,Athens,M\n"
        "6900000002,Eleni,Αθήνα,\n"
        "6900000003,,Patra,XL\n"
        "6900000004,Nikos,,\n",
    )
    message = "{{first_name|Hi}}: {{custom.size|your size}} in {{custom.city|town}} " + "z" * 100
    campaign = await create_campaign(api, shop, message=message)
    body = await preview(api, shop, campaign["id"])
    exact = await brute_force(db, shop, message, {})
    assert body["recipients"] == 4
    assert body["segments"]["total"] == sum(exact)
    assert (body["segments"]["min"], body["segments"]["max"]) == (min(exact), max(exact))
    assert body["encoding"] == "UCS-2"


async def test_the_send_path_functions_agree(api: Client, db: asyncpg.Pool) -> None:
    from sender.db import audience as audience_db

    shop = await seeded(api, db)
    audience = audience_db.AudienceFilter(shop.id, tags_any=["vip"], exclude_tags=["staff"])
    found = await audience_db.cost_groups_and_opted_out(
        db, audience, first_name=True, last_name=False
    )
    assert found.recipients == await audience_db.count_eligible(db, audience) == 4
    assert found.opted_out == 1
    assert all(group.last_name_sig is None for group in found.groups)
    groups = await audience_db.cost_groups(db, audience, first_name=True, last_name=False)
    assert groups == found.groups
    sample = await audience_db.sample_contact(db, audience)
    assert sample is not None and sample.first_name == "Maria"
    async with db.acquire() as conn, conn.transaction():
        # Inside a caller's transaction too (the send path reserves credits in one).
        assert await audience_db.count_eligible(conn, audience) == 4


async def test_too_many_custom_fields_are_refused(api: Client, db: asyncpg.Pool) -> None:
    shop = await tenant(api)
    message = " ".join(f"{{{{custom.f{i}}}}}" for i in range(9))
    response = await api.post(
        "/v1/campaigns", json={"name": "x", "message": message}, headers=shop.auth
    )
    await problem(response, 422, "too_many_custom_fields")
    assert await db.fetchval("SELECT count(*) FROM campaigns") == 0
