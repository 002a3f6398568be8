"""The send path's guarantees, checked against the mock's own record and the database."""

from __future__ import annotations

from collections import Counter
from typing import Any

import asyncpg

from sender.mock_mitto.harness import MockAdmin

ACCEPTED_STATUSES = ("sent", "delivered", "undelivered", "unknown")
TERMINAL = ("sent", "delivered", "undelivered", "failed", "unknown", "cancelled", "skipped")


async def check_guarantees(
    pool: asyncpg.Pool, mock: MockAdmin, campaign_id: int, store_id: int, topped_up: int
) -> dict[str, Any]:
    """Assert every guarantee of DESIGN.md section 6; returns the figures for the test's report."""
    statuses = dict(
        await pool.fetch(
            "SELECT status, count(*) FROM campaign_recipients WHERE campaign_id = $1 GROUP BY 1",
            campaign_id,
        )
    )
    # No lost recipient: all terminal.
    assert set(statuses) <= set(TERMINAL), statuses

    # No double send: the provider never accepted one (to, reference) twice.
    messages = await mock.messages()
    pairs = Counter((m["to"], m["reference"]) for m in messages)
    duplicates = {pair: n for pair, n in pairs.items() if n > 1}
    assert not duplicates, f"duplicates at the provider: {list(duplicates.items())[:5]}"
    assert (await mock.stats())["duplicates"] == 0

    # Whatever the provider accepted belongs to a recipient the database counts as accepted.
    accepted_refs = {
        f"c{campaign_id}-r{row['id']}"
        for row in await pool.fetch(
            "SELECT id FROM campaign_recipients WHERE campaign_id = $1 AND status = ANY($2)",
            campaign_id,
            list(ACCEPTED_STATUSES),
        )
    }
    at_provider = {
        m["reference"] for m in messages if m["reference"].startswith(f"c{campaign_id}-")
    }
    assert at_provider <= accepted_refs, f"{len(at_provider - accepted_refs)} sent but not counted"
    sent_refs = {
        f"c{campaign_id}-r{row['id']}"
        for row in await pool.fetch(
            "SELECT id FROM campaign_recipients WHERE campaign_id = $1 AND status = 'sent'",
            campaign_id,
        )
    }
    assert sent_refs <= at_provider, "a recipient marked sent never reached the provider"

    # Campaign counters equal the recipients table.
    campaign = await pool.fetchrow("SELECT * FROM campaigns WHERE id = $1", campaign_id)
    assert campaign is not None
    for status in TERMINAL:
        assert campaign[f"{status}_count"] == statuses.get(status, 0), status
    assert campaign["total_recipients"] == sum(statuses.values())

    # Charges equal accepted segments (unknown counted as accepted), one per recipient.
    charged_segments = await pool.fetchval(
        "SELECT coalesce(sum(segments), 0) FROM campaign_recipients"
        " WHERE campaign_id = $1 AND status = ANY($2)",
        campaign_id,
        list(ACCEPTED_STATUSES),
    )
    ledger_charges = await pool.fetchrow(
        "SELECT coalesce(sum(-reserved_delta), 0) AS total, count(*) AS n,"
        " count(DISTINCT recipient_id) AS recipients"
        " FROM credit_ledger WHERE campaign_id = $1 AND kind = 'charge'",
        campaign_id,
    )
    assert ledger_charges is not None
    assert ledger_charges["total"] == charged_segments == campaign["credits_charged"]
    assert ledger_charges["n"] == ledger_charges["recipients"]

    # No overspend: available + reserved + charged equals what was topped up.
    store = await pool.fetchrow(
        "SELECT credits_available, credits_reserved FROM stores WHERE id = $1", store_id
    )
    assert store is not None
    all_charges = await pool.fetchval(
        "SELECT coalesce(sum(-reserved_delta), 0) FROM credit_ledger"
        " WHERE store_id = $1 AND kind = 'charge'",
        store_id,
    )
    assert store["credits_available"] + store["credits_reserved"] + all_charges == topped_up
    if campaign["status"] in ("sent", "failed"):
        assert store["credits_reserved"] == 0
    return {"statuses": statuses, "provider_messages": len(messages), "charged": charged_segments}
