"""Schema migrations: ordered ``sql/migrations/NNNN_name.sql`` files, each applied once.

Each file runs in its own transaction and is recorded with its checksum in
``sender_migrations``. A session advisory lock makes two concurrent ``sender migrate`` runs
safe: the second waits, then finds nothing left to do.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from importlib import resources

import asyncpg

from sender.errors import MigrationError

# Any constant works as long as nothing else uses it; this one spells "sndr".
MIGRATION_LOCK_ID = 0x736E6472
_FILE_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")

_CREATE_TABLE = """
CREATE TABLE IF NOT EXISTS sender_migrations (
    version    text PRIMARY KEY,
    name       text NOT NULL,
    checksum   text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
)
"""


@dataclass(frozen=True, slots=True)
class Migration:
    version: str
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()


def available_migrations() -> list[Migration]:
    """The migrations shipped in the package, in order; rejects badly named files."""
    folder = resources.files("sql") / "migrations"
    found: list[Migration] = []
    for entry in folder.iterdir():
        if not entry.name.endswith(".sql"):
            continue
        match = _FILE_NAME.match(entry.name)
        if match is None:
            raise MigrationError(f"migration file {entry.name!r} is not named NNNN_name.sql")
        found.append(Migration(match.group(1), match.group(2), entry.read_text(encoding="utf-8")))
    found.sort(key=lambda m: m.version)
    versions = [m.version for m in found]
    if len(set(versions)) != len(versions):
        raise MigrationError("two migration files share a version number")
    return found


async def apply_migrations(dsn: str) -> list[str]:
    """Apply every pending migration; returns the names applied (empty when up to date)."""
    try:
        conn = await asyncpg.connect(dsn)
    except (OSError, asyncpg.PostgresError) as exc:
        raise MigrationError(f"cannot connect to the database: {exc}") from exc
    try:
        await conn.execute("SELECT pg_advisory_lock($1)", MIGRATION_LOCK_ID)
        try:
            return await _apply_locked(conn)
        finally:
            await conn.execute("SELECT pg_advisory_unlock($1)", MIGRATION_LOCK_ID)
    finally:
        await conn.close()


async def _apply_locked(conn: asyncpg.Connection) -> list[str]:
    await conn.execute(_CREATE_TABLE)
    rows = await conn.fetch("SELECT version, checksum FROM sender_migrations")
    applied = {row["version"]: row["checksum"] for row in rows}
    done: list[str] = []
    for migration in available_migrations():
        label = f"{migration.version}_{migration.name}"
        if migration.version in applied:
            if applied[migration.version] != migration.checksum:
                raise MigrationError(
                    f"migration {label} was changed after it was applied; "
                    "add a new migration instead of editing an applied one"
                )
            continue
        try:
            async with conn.transaction():
                await conn.execute(migration.sql)
                await conn.execute(
                    "INSERT INTO sender_migrations (version, name, checksum) VALUES ($1, $2, $3)",
                    migration.version,
                    migration.name,
                    migration.checksum,
                )
        except asyncpg.PostgresError as exc:
            raise MigrationError(f"migration {label} failed and was rolled back: {exc}") from exc
        done.append(label)
    return done
