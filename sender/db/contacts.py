"""Contact rows: the bulk import session and single-contact reads and edits."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

import asyncpg

from sender.db.pool import Connection, Pool, Record
from sender.db.queries import sql
from sender.errors import DatabaseError

__all__ = [
    "Contact",
    "ContactImport",
    "ContactPatch",
    "ImportCounts",
    "delete",
    "get",
    "import_session",
    "list_page",
    "store_region",
    "update",
]

# Must match the table created by contacts.create_staging (COPY addresses it by name).
_STAGING_TABLE: Final = "contact_import"
_STAGING_COLUMNS: Final = ("line", "phone", "first_name", "last_name", "tags", "custom")


@dataclass(frozen=True, slots=True)
class Contact:
    id: int
    phone: str
    first_name: str | None
    last_name: str | None
    custom: dict[str, str]
    tags: list[str]
    consent: str
    consent_changed_at: datetime
    opt_out_reason: str | None
    created_at: datetime
    updated_at: datetime


def _contact(row: Record) -> Contact:
    return Contact(**dict(row))


@dataclass(frozen=True, slots=True)
class ImportCounts:
    """``phones`` distinct valid phones = inserted + updated + unchanged; ``rows`` staged."""

    inserted: int
    updated: int
    phones: int
    rows: int

    @property
    def unchanged(self) -> int:
        return self.phones - self.inserted - self.updated

    @property
    def duplicates(self) -> int:
        """Valid rows superseded by a later row for the same phone."""
        return self.rows - self.phones


async def store_region(db: Pool | Connection, store_id: int) -> str:
    region: str | None = await db.fetchval(sql("contacts.store_region"), store_id)
    if region is None:
        raise DatabaseError(f"store {store_id} does not exist")
    return region


class ContactImport:
    """One import in progress: rows are staged with COPY, then upserted in one statement.

    Everything happens in one transaction: an import that fails half way (a broken file, a
    client that goes away) leaves the contacts as they were.
    """

    def __init__(self, conn: Connection, store_id: int) -> None:
        self._conn = conn
        self._store_id = store_id

    async def stage(self, rows: Sequence[Sequence[Any]]) -> None:
        """Copy rows (``StagedContact`` tuples) into the staging table."""
        if not rows:
            return
        try:
            await self._conn.copy_records_to_table(
                _STAGING_TABLE, records=rows, columns=_STAGING_COLUMNS
            )
        except asyncpg.PostgresError as exc:
            raise DatabaseError(f"staging contacts failed: {exc}") from exc

    async def apply(self) -> ImportCounts:
        """Upsert the staged rows into the store's contacts (the last row per phone wins)."""
        conn, store_id = self._conn, self._store_id
        try:
            await conn.execute(sql("contacts.import_lock"), store_id)
            # Several statements and no parameters: sent as one simple query.
            await conn.execute(sql("contacts.import_latest"))
            status = await conn.execute(sql("contacts.import_update"), store_id)
            inserted = await conn.fetchrow(sql("contacts.import_insert"), store_id)
            sizes = await conn.fetchrow(sql("contacts.import_sizes"))
        except asyncpg.PostgresError as exc:
            raise DatabaseError(f"importing contacts failed: {exc}") from exc
        assert inserted is not None and sizes is not None
        return ImportCounts(
            inserted=inserted["inserted"],
            updated=int(status.split()[-1]) + inserted["updated"],
            phones=sizes["phones"],
            rows=sizes["rows"],
        )


@asynccontextmanager
async def import_session(pool: Pool, store_id: int) -> AsyncIterator[ContactImport]:
    """A connection, a transaction and an empty staging table for one import."""
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute(sql("contacts.create_staging"))
        yield ContactImport(conn, store_id)


async def list_page(
    db: Pool | Connection, store_id: int, *, after_id: int, tag: str | None, limit: int
) -> list[Contact]:
    """Contacts with ``id > after_id`` in id order, optionally only those tagged ``tag``."""
    rows = await db.fetch(sql("contacts.list"), store_id, after_id, tag, limit)
    return [_contact(row) for row in rows]


async def get(db: Pool | Connection, store_id: int, contact_id: int) -> Contact | None:
    row = await db.fetchrow(sql("contacts.get"), contact_id, store_id)
    return _contact(row) if row is not None else None


@dataclass(frozen=True, slots=True)
class ContactPatch:
    """What an edit changes; ``set_*`` flags tell "clear" (None) from "keep"."""

    set_first_name: bool = False
    first_name: str | None = None
    set_last_name: bool = False
    last_name: str | None = None
    tags: list[str] | None = None
    add_tags: tuple[str, ...] = ()
    remove_tags: tuple[str, ...] = ()
    custom_set: dict[str, str] | None = None
    custom_remove: tuple[str, ...] = ()
    consent: str | None = None
    opt_out_reason: str | None = None


async def update(
    db: Pool | Connection, store_id: int, contact_id: int, patch: ContactPatch
) -> Contact | None:
    row = await db.fetchrow(
        sql("contacts.update"),
        contact_id,
        store_id,
        patch.set_first_name,
        patch.first_name,
        patch.set_last_name,
        patch.last_name,
        patch.tags,
        list(patch.add_tags),
        list(patch.remove_tags),
        patch.custom_set or {},
        list(patch.custom_remove),
        patch.consent,
        patch.opt_out_reason,
    )
    return _contact(row) if row is not None else None


async def delete(db: Pool | Connection, store_id: int, contact_id: int) -> bool:
    """Delete a contact; its campaign recipients stay, with ``contact_id`` set NULL.

    Two statements in one transaction: the first waits out a dispatch of the store that is
    materializing recipients (and holds off new ones), so the second, with a fresh snapshot,
    sees every recipient row of the contact.
    """
    async with AsyncExitStack() as stack:
        conn: Connection = (
            await stack.enter_async_context(db.acquire()) if isinstance(db, Pool) else db
        )
        await stack.enter_async_context(conn.transaction())
        await conn.execute(sql("contacts.delete_hold_dispatch"), store_id)
        return await conn.fetchval(sql("contacts.delete"), contact_id, store_id) is not None
