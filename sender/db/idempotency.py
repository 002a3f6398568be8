"""Idempotency-key rows: claim a key, finish it with the response, or give it back."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sender.db.pool import Connection, Pool
from sender.db.queries import sql


@dataclass(frozen=True, slots=True)
class StoredKey:
    fingerprint: bytes
    state: str
    response_status: int | None
    response_headers: dict[str, str] | None
    response_body: bytes | None
    expires_at: datetime


async def claim(
    db: Pool | Connection,
    *,
    scope: str,
    key: str,
    method: str,
    path: str,
    fingerprint: bytes,
    ttl_s: float,
    lease_s: float,
) -> bool:
    """True when this request now owns the key (new, expired, or abandoned in progress)."""
    owned = await db.fetchval(
        sql("idempotency.claim"), scope, key, method, path, fingerprint, ttl_s, lease_s
    )
    return owned is not None


async def get(db: Pool | Connection, *, scope: str, key: str) -> StoredKey | None:
    row = await db.fetchrow(sql("idempotency.get"), scope, key)
    if row is None:
        return None
    body = row["response_body"]
    return StoredKey(
        fingerprint=bytes(row["fingerprint"]),
        state=row["state"],
        response_status=row["response_status"],
        response_headers=row["response_headers"],
        response_body=bytes(body) if body is not None else None,
        expires_at=row["expires_at"],
    )


async def complete(
    db: Pool | Connection,
    *,
    scope: str,
    key: str,
    fingerprint: bytes,
    status: int,
    headers: dict[str, str],
    body: bytes,
) -> None:
    await db.execute(sql("idempotency.complete"), scope, key, fingerprint, status, headers, body)


async def release(db: Pool | Connection, *, scope: str, key: str, fingerprint: bytes) -> None:
    await db.execute(sql("idempotency.release"), scope, key, fingerprint)


async def delete_expired(db: Pool | Connection, *, limit: int) -> int:
    """Remove up to ``limit`` expired keys; returns how many went."""
    status: str = await db.execute(sql("idempotency.delete_expired"), limit)
    return int(status.rsplit(" ", 1)[-1])
