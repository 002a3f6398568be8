"""Store rows: create, read, partial update, credit top-ups and the outbound webhook.

Balances move only together with a ``credit_ledger`` entry (``topup``), never by overwriting
``credits_available``, so the ledger always explains the balance.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, time

import asyncpg

from sender.db.pool import Connection, Pool, Record
from sender.db.queries import sql
from sender.errors import ValidationProblem


@dataclass(frozen=True, slots=True)
class SendWindow:
    """Local time of day between which a store's messages may leave."""

    start: time
    end: time


@dataclass(frozen=True, slots=True)
class FrequencyCap:
    """At most ``count`` messages per contact within ``hours``, across campaigns."""

    count: int
    hours: int


@dataclass(frozen=True, slots=True)
class Store:
    id: int
    name: str
    sender_id: str
    timezone: str
    default_region: str
    subscription_status: str
    credits_available: int
    credits_reserved: int
    send_window: SendWindow | None
    rate_cap_per_s: float | None
    frequency_cap: FrequencyCap | None
    webhook_url: str | None
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class NewStore:
    name: str
    sender_id: str
    timezone: str
    default_region: str
    subscription_status: str
    send_window: SendWindow | None = None
    rate_cap_per_s: float | None = None
    frequency_cap: FrequencyCap | None = None


@dataclass(frozen=True, slots=True)
class StoreChanges:
    """A partial update; ``None`` on a required field leaves it unchanged.

    The ``set_*`` flags say whether a nullable setting is replaced (by its value, which may be
    ``None`` to clear it).
    """

    name: str | None = None
    sender_id: str | None = None
    timezone: str | None = None
    default_region: str | None = None
    subscription_status: str | None = None
    set_send_window: bool = False
    send_window: SendWindow | None = None
    set_rate_cap: bool = False
    rate_cap_per_s: float | None = None
    set_frequency_cap: bool = False
    frequency_cap: FrequencyCap | None = None


def _store(row: Record) -> Store:
    start, end = row["send_window_start"], row["send_window_end"]
    count, hours = row["frequency_cap_count"], row["frequency_cap_hours"]
    return Store(
        id=row["id"],
        name=row["name"],
        sender_id=row["sender_id"],
        timezone=row["timezone"],
        default_region=row["default_region"],
        subscription_status=row["subscription_status"],
        credits_available=row["credits_available"],
        credits_reserved=row["credits_reserved"],
        send_window=SendWindow(start, end) if start is not None and end is not None else None,
        rate_cap_per_s=row["rate_cap_per_s"],
        frequency_cap=FrequencyCap(count, hours)
        if count is not None and hours is not None
        else None,
        webhook_url=row["webhook_url"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
    )


async def create(conn: Connection, new: NewStore) -> Store:
    """Insert a store with a zero balance (credits arrive through :func:`topup`)."""
    window, cap = new.send_window, new.frequency_cap
    row = await conn.fetchrow(
        sql("stores.create"),
        new.name,
        new.sender_id,
        new.timezone,
        new.default_region,
        new.subscription_status,
        window.start if window else None,
        window.end if window else None,
        new.rate_cap_per_s,
        cap.count if cap else None,
        cap.hours if cap else None,
    )
    assert row is not None
    return _store(row)


async def get(db: Pool | Connection, store_id: int) -> Store | None:
    row = await db.fetchrow(sql("stores.get"), store_id)
    return _store(row) if row is not None else None


async def exists(db: Pool | Connection, store_id: int) -> bool:
    found: bool = await db.fetchval(sql("stores.exists"), store_id)
    return found


async def update(db: Pool | Connection, store_id: int, changes: StoreChanges) -> Store | None:
    """Apply ``changes``; ``None`` when the store does not exist."""
    window, cap = changes.send_window, changes.frequency_cap
    row = await db.fetchrow(
        sql("stores.update"),
        store_id,
        changes.name,
        changes.sender_id,
        changes.timezone,
        changes.default_region,
        changes.subscription_status,
        changes.set_send_window,
        window.start if window else None,
        window.end if window else None,
        changes.set_rate_cap,
        changes.rate_cap_per_s,
        changes.set_frequency_cap,
        cap.count if cap else None,
        cap.hours if cap else None,
    )
    return _store(row) if row is not None else None


async def topup(
    db: Pool | Connection, store_id: int, amount: int, note: str | None = None
) -> Store | None:
    """Add ``amount`` (> 0) credits with a ``topup`` ledger entry; ``None`` if no such store."""
    try:
        row = await db.fetchrow(sql("stores.topup"), store_id, amount, note)
    except asyncpg.NumericValueOutOfRangeError:
        raise ValidationProblem(
            "the top-up would take the balance past its maximum",
            code="credits_overflow",
            errors=[{"field": "amount", "message": "balance would overflow"}],
        ) from None
    return _store(row) if row is not None else None


async def set_webhook(db: Pool | Connection, store_id: int, url: str, secret: str) -> bool:
    """Store the completion webhook and its signing secret; False if no such store."""
    found = await db.fetchval(sql("stores.set_webhook"), store_id, url, secret)
    return found is not None
