"""A campaign's eligible contacts, as counts and cost groups (never row by row).

Every function takes the audience as three tag lists and an optional highest contact id, the
parameters shared by every query of ``sql/queries/audience.sql``.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from sender.campaigns import MAX_CUSTOM_FIELDS
from sender.db.pool import Connection, Pool
from sender.db.queries import sql

__all__ = [
    "MAX_CUSTOM_FIELDS",
    "AudienceFilter",
    "AudienceGroups",
    "SampleContact",
    "SignatureGroup",
    "cost_groups",
    "cost_groups_and_opted_out",
    "count_eligible",
    "credits_available",
    "sample_contact",
]


@dataclass(frozen=True, slots=True)
class AudienceFilter:
    """Which contacts of ``store_id`` a campaign reaches (see ``sender.campaigns.Audience``)."""

    store_id: int
    tags_any: Sequence[str] = ()
    tags_all: Sequence[str] = ()
    exclude_tags: Sequence[str] = ()
    #: Contacts with a higher id are left out; None: no limit.
    max_contact_id: int | None = None

    def args(self) -> tuple[Any, ...]:
        return (
            self.store_id,
            list(self.tags_any),
            list(self.tags_all),
            list(self.exclude_tags),
            self.max_contact_id,
        )


@dataclass(frozen=True, slots=True)
class SignatureGroup:
    """``contacts`` eligible contacts sharing these field signatures (``sms_text_sig``)."""

    contacts: int
    first_name_sig: int | None
    last_name_sig: int | None
    #: Signatures of the requested custom fields, in the order requested.
    custom_sigs: tuple[int | None, ...] = ()


@dataclass(frozen=True, slots=True)
class AudienceGroups:
    """The audience in cost groups, and how many contacts the filter matched but opted out."""

    groups: list[SignatureGroup]
    opted_out: int

    @property
    def recipients(self) -> int:
        return sum(group.contacts for group in self.groups)


@asynccontextmanager
async def _custom_plans(db: Pool | Connection) -> AsyncIterator[Connection]:
    """A connection in a transaction that plans every statement for its actual parameters.

    A cached generic plan evaluates the "empty list" guards and the custom-field positions
    for every row and cannot use the tags index; a custom plan folds them away.
    """
    async with contextlib.AsyncExitStack() as stack:
        conn: Connection = (
            await stack.enter_async_context(db.acquire()) if isinstance(db, Pool) else db
        )
        await stack.enter_async_context(conn.transaction())
        await conn.execute(sql("audience.force_custom_plans"))
        yield conn


async def cost_groups(
    db: Pool | Connection,
    audience: AudienceFilter,
    *,
    first_name: bool,
    last_name: bool,
    custom_fields: Sequence[str] = (),
    custom_max_length: int = 0,
) -> list[SignatureGroup]:
    """Eligible contacts grouped by the signatures of the fields a message uses.

    ``first_name``/``last_name`` say whether those fields are used (unused ones are not
    grouped on and come back None); ``custom_fields`` are custom field names (at most
    :data:`MAX_CUSTOM_FIELDS`), whose values are cut to ``custom_max_length`` characters before
    their signature is taken. One scan of the store's matching contacts.
    """
    found = await cost_groups_and_opted_out(
        db,
        audience,
        first_name=first_name,
        last_name=last_name,
        custom_fields=custom_fields,
        custom_max_length=custom_max_length,
    )
    return found.groups


async def cost_groups_and_opted_out(
    db: Pool | Connection,
    audience: AudienceFilter,
    *,
    first_name: bool,
    last_name: bool,
    custom_fields: Sequence[str] = (),
    custom_max_length: int = 0,
) -> AudienceGroups:
    """:func:`cost_groups`, and in the same scan how many matching contacts opted out."""
    if len(custom_fields) > MAX_CUSTOM_FIELDS:
        raise ValueError(f"at most {MAX_CUSTOM_FIELDS} custom fields can be costed at once")
    async with _custom_plans(db) as conn:
        if custom_fields:
            rows = await conn.fetch(
                sql("audience.cost_groups_custom"),
                *audience.args(),
                first_name,
                last_name,
                list(custom_fields),
                custom_max_length,
            )
        else:
            rows = await conn.fetch(
                sql("audience.cost_groups"), *audience.args(), first_name, last_name
            )
    groups: list[SignatureGroup] = []
    opted_out = 0
    for row in rows:
        if not row["eligible"]:
            opted_out += row["contacts"]
            continue
        custom = tuple(row["custom_sigs"]) if custom_fields else ()
        groups.append(
            SignatureGroup(row["contacts"], row["first_name_sig"], row["last_name_sig"], custom)
        )
    return AudienceGroups(groups=groups, opted_out=opted_out)


async def count_eligible(db: Pool | Connection, audience: AudienceFilter) -> int:
    async with _custom_plans(db) as conn:
        count: int = await conn.fetchval(sql("audience.count_eligible"), *audience.args())
    return count


@dataclass(frozen=True, slots=True)
class SampleContact:
    id: int
    first_name: str | None
    last_name: str | None
    custom: dict[str, Any]

    def fields(self) -> dict[str, str | None]:
        """Field values keyed as templates name them (``first_name``, ``custom.size``)."""
        out: dict[str, str | None] = {"first_name": self.first_name, "last_name": self.last_name}
        for key, value in self.custom.items():
            out[f"custom.{key}"] = value if isinstance(value, str) else None
        return out


async def sample_contact(db: Pool | Connection, audience: AudienceFilter) -> SampleContact | None:
    """The eligible contact with the lowest id."""
    async with _custom_plans(db) as conn:
        row = await conn.fetchrow(sql("audience.sample_contact"), *audience.args())
    return SampleContact(**dict(row)) if row is not None else None


async def credits_available(db: Pool | Connection, store_id: int) -> int:
    credits: int | None = await db.fetchval(sql("audience.credits_available"), store_id)
    return credits or 0
