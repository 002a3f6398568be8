"""What a campaign costs: eligible contacts grouped by text signature, priced per group.

Shared by the preview and the send endpoint so that what a store is shown is exactly what is
reserved. The per-recipient figure is an upper bound of what the daemon charges (it counts the
rendered text), exact unless an escape or surrogate pair straddles a segment boundary.
"""

from __future__ import annotations

from dataclasses import dataclass

from sender import costing
from sender.db import audience as audience_db
from sender.db.pool import Connection, Pool
from sender.templates import MAX_CUSTOM_VALUE_LENGTH, Template


@dataclass(frozen=True, slots=True)
class PricedAudience:
    cost: costing.AudienceCost
    #: Contacts the tag filter matched that opted out (and so are not recipients).
    opted_out: int


async def price_audience(
    db: Pool | Connection,
    audience: audience_db.AudienceFilter,
    template: Template,
    public_url: str,
) -> PricedAudience:
    """One scan of the store's matching contacts, grouped by the signatures the message uses."""
    used = template.fields
    custom = sorted(key.removeprefix("custom.") for key in used if key.startswith("custom."))
    found = await audience_db.cost_groups_and_opted_out(
        db,
        audience,
        first_name="first_name" in used,
        last_name="last_name" in used,
        custom_fields=custom,
        custom_max_length=MAX_CUSTOM_VALUE_LENGTH,
    )
    groups = []
    for group in found.groups:
        signatures: dict[str, int | None] = {
            "first_name": group.first_name_sig,
            "last_name": group.last_name_sig,
        }
        keys = (f"custom.{name}" for name in custom)
        signatures.update(zip(keys, group.custom_sigs, strict=True))
        groups.append(costing.CostGroup(count=group.contacts, signatures=signatures))
    cost = costing.estimate(template, groups, costing.sample_short_url(public_url))
    return PricedAudience(cost=cost, opted_out=found.opted_out)
