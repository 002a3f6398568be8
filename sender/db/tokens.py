"""API token rows (hashes only)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sender.db.pool import Connection, Pool
from sender.db.queries import sql


@dataclass(frozen=True, slots=True)
class ActiveToken:
    id: int
    store_id: int
    token_hash: bytes


@dataclass(frozen=True, slots=True)
class TokenInfo:
    id: int
    store_id: int
    token_prefix: str
    name: str
    scopes: list[str]
    created_at: datetime
    revoked_at: datetime | None


async def find_active(db: Pool | Connection, token_hash: bytes) -> ActiveToken | None:
    row = await db.fetchrow(sql("tokens.find_active"), token_hash)
    if row is None:
        return None
    return ActiveToken(id=row["id"], store_id=row["store_id"], token_hash=bytes(row["token_hash"]))


async def create(
    db: Pool | Connection,
    *,
    store_id: int,
    token_hash: bytes,
    token_prefix: str,
    name: str = "",
    scopes: list[str] | None = None,
) -> TokenInfo:
    row = await db.fetchrow(
        sql("tokens.create"), store_id, token_hash, token_prefix, name, scopes or []
    )
    assert row is not None
    return TokenInfo(**dict(row))


async def revoke(db: Pool | Connection, *, token_id: int, store_id: int) -> TokenInfo | None:
    row = await db.fetchrow(sql("tokens.revoke"), token_id, store_id)
    return TokenInfo(**dict(row)) if row is not None else None
