"""The schema protects the guarantees even against buggy code: constraints are tested here."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest

from sender.db.migrations import apply_migrations, available_migrations
from sender.errors import MigrationError
from tests.conftest import ServiceUrls


async def _store(db: asyncpg.Pool, credits: int = 0) -> int:
    store_id: int = await db.fetchval(
        "INSERT INTO stores (name, sender_id, timezone, credits_available)"
        " VALUES ('Shop', 'SHOP', 'Europe/Athens', $1) RETURNING id",
        credits,
    )
    return store_id


async def test_every_migration_applies_to_an_empty_database(service_urls: ServiceUrls) -> None:
    name = "sender_empty_migrate_test"
    admin = await asyncpg.connect(service_urls.admin_dsn)
    await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    await admin.execute(f'CREATE DATABASE "{name}"')
    try:
        dsn = service_urls.dsn_for(name)
        applied = await apply_migrations(dsn)
        assert applied == [f"{m.version}_{m.name}" for m in available_migrations()]
        assert await apply_migrations(dsn) == []
        conn = await asyncpg.connect(dsn)
        try:
            tables = {
                r["tablename"]
                for r in await conn.fetch(
                    "SELECT tablename FROM pg_tables WHERE schemaname = 'public'"
                )
            }
        finally:
            await conn.close()
        assert {
            "stores",
            "api_tokens",
            "contacts",
            "campaigns",
            "campaign_recipients",
            "campaign_events",
            "credit_ledger",
            "idempotency_keys",
            "webhook_outbox",
            "sender_migrations",
        } <= tables
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


async def test_concurrent_migrate_runs_apply_each_file_once(service_urls: ServiceUrls) -> None:
    name = "sender_concurrent_migrate_test"
    admin = await asyncpg.connect(service_urls.admin_dsn)
    await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    await admin.execute(f'CREATE DATABASE "{name}"')
    try:
        dsn = service_urls.dsn_for(name)
        first, second = await asyncio.gather(apply_migrations(dsn), apply_migrations(dsn))
        assert sorted([first, second], key=len) == [
            [],
            [f"{m.version}_{m.name}" for m in available_migrations()],
        ]
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


async def test_a_changed_applied_migration_is_refused(database_url: str) -> None:
    conn = await asyncpg.connect(database_url)
    try:
        await conn.execute(
            "UPDATE sender_migrations SET checksum = 'edited' WHERE version = '0001'"
        )
    finally:
        await conn.close()
    with pytest.raises(MigrationError, match="changed after it was applied"):
        await apply_migrations(database_url)


async def test_unreachable_database_is_a_clear_error() -> None:
    with pytest.raises(MigrationError, match="cannot connect"):
        await apply_migrations("postgresql://postgres@127.0.0.1:1/none")


async def test_credits_never_go_negative(db: asyncpg.Pool) -> None:
    store_id = await _store(db, credits=10)
    with pytest.raises(asyncpg.CheckViolationError):
        await db.execute(
            "UPDATE stores SET credits_available = credits_available - 11 WHERE id = $1", store_id
        )
    with pytest.raises(asyncpg.CheckViolationError):
        await db.execute("UPDATE stores SET credits_reserved = -1 WHERE id = $1", store_id)
    assert await db.fetchval("SELECT credits_available FROM stores WHERE id = $1", store_id) == 10


async def test_sender_id_shape_is_enforced(db: asyncpg.Pool) -> None:
    for bad in ("AB", "TOOLONGSENDER1", "bad id", "123456789012345"):
        with pytest.raises(asyncpg.CheckViolationError):
            await db.execute(
                "INSERT INTO stores (name, sender_id, timezone) VALUES ('x', $1, 'UTC')", bad
            )
    await db.execute(
        "INSERT INTO stores (name, sender_id, timezone) VALUES ('x', '12345678901234', 'UTC')"
    )


async def test_one_contact_per_phone_per_store(db: asyncpg.Pool) -> None:
    store_a = await _store(db)
    store_b = await _store(db)
    insert = "INSERT INTO contacts (store_id, phone) VALUES ($1, $2)"
    await db.execute(insert, store_a, "+306912345678")
    await db.execute(insert, store_b, "+306912345678")
    with pytest.raises(asyncpg.UniqueViolationError):
        await db.execute(insert, store_a, "+306912345678")


async def test_contacts_reject_non_e164_phones(db: asyncpg.Pool) -> None:
    store_id = await _store(db)
    with pytest.raises(asyncpg.CheckViolationError):
        await db.execute(
            "INSERT INTO contacts (store_id, phone) VALUES ($1, '6912345678')", store_id
        )


async def test_one_recipient_per_campaign_and_contact(db: asyncpg.Pool) -> None:
    store_id = await _store(db)
    contact_id = await db.fetchval(
        "INSERT INTO contacts (store_id, phone) VALUES ($1, '+306912345678') RETURNING id", store_id
    )
    campaign_id = await db.fetchval(
        "INSERT INTO campaigns (store_id, name, message) VALUES ($1, 'c', 'hi') RETURNING id",
        store_id,
    )
    insert = (
        "INSERT INTO campaign_recipients (campaign_id, store_id, contact_id, batch_no, phone)"
        " VALUES ($1, $2, $3, 0, '+306912345678')"
    )
    await db.execute(insert, campaign_id, store_id, contact_id)
    with pytest.raises(asyncpg.UniqueViolationError):
        await db.execute(insert, campaign_id, store_id, contact_id)


async def test_a_recipient_is_charged_at_most_once(db: asyncpg.Pool) -> None:
    store_id = await _store(db)
    charge = (
        "INSERT INTO credit_ledger (store_id, recipient_id, kind, available_delta, reserved_delta)"
        " VALUES ($1, $2, 'charge', 0, -1)"
    )
    await db.execute(charge, store_id, 42)
    with pytest.raises(asyncpg.UniqueViolationError):
        await db.execute(charge, store_id, 42)
    # A different recipient is charged normally.
    await db.execute(charge, store_id, 43)


async def test_ledger_entries_must_balance_by_kind(db: asyncpg.Pool) -> None:
    store_id = await _store(db)
    bad_entries = [
        ("topup", -5, 0, None),
        ("reserve", -5, 4, None),
        ("charge", 0, -1, None),  # a charge must name its recipient
        ("release", 5, 5, None),
    ]
    for kind, available, reserved, recipient in bad_entries:
        with pytest.raises(asyncpg.CheckViolationError):
            await db.execute(
                "INSERT INTO credit_ledger"
                " (store_id, recipient_id, kind, available_delta, reserved_delta)"
                " VALUES ($1, $2, $3, $4, $5)",
                store_id,
                recipient,
                kind,
                available,
                reserved,
            )


async def test_status_values_are_constrained(db: asyncpg.Pool) -> None:
    store_id = await _store(db)
    with pytest.raises(asyncpg.CheckViolationError):
        await db.execute(
            "INSERT INTO campaigns (store_id, name, message, status)"
            " VALUES ($1, 'c', 'hi', 'bogus')",
            store_id,
        )


async def test_text_signature_matches_python_counting(db: asyncpg.Pool) -> None:
    from sender.segments import count_segments

    samples = ["Maria", "Μαρία", "a€[", "😀x", "Zoë", "Ελένη", "Σ", "{~}|", "Ñoño"]
    rows = await db.fetch("SELECT x, sms_text_sig(x) AS sig FROM unnest($1::text[]) AS x", samples)
    for row in rows:
        sig = row["sig"]
        info = count_segments(row["x"])
        gsm, chars, septets, units = sig >> 30, (sig >> 20) & 1023, (sig >> 10) & 1023, sig & 1023
        assert bool(gsm) == (info.encoding == "GSM-7"), row["x"]
        assert chars == info.characters
        if gsm:
            assert septets == info.units
        else:
            assert units == info.units
    assert await db.fetchval("SELECT sms_text_sig('')") is None
