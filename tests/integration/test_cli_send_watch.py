"""``sender campaign send|watch|cancel`` and the SSE stream they use, against the running API."""

from __future__ import annotations

import asyncio
import io

import asyncpg

from sender.cli_campaign import cancel, send, watch
from tests.integration.seeding import Client, create_campaign, import_csv, tenant


def base_url(api: Client) -> str:
    return str(api.make_url("")).rstrip("/")


async def test_events_stream_snapshot_then_end_for_a_draft(api: Client) -> None:
    shop = await tenant(api, credits=5)
    campaign = await create_campaign(api, shop, message="Hi")
    response = await api.get(
        f"/v1/campaigns/{campaign['id']}/events",
        headers={"Authorization": f"Bearer {shop.token}"},
    )
    assert response.status == 200
    assert response.headers["Content-Type"].startswith("text/event-stream")
    text = await response.text()
    events = [line.split(": ", 1)[1] for line in text.splitlines() if line.startswith("event:")]
    assert events == ["status", "progress", "end"]


async def test_send_confirms_then_watch_follows_to_the_end(api: Client, db: asyncpg.Pool) -> None:
    shop = await tenant(api, credits=10)
    await import_csv(api, shop, "phone,first_name\n6912345678,Maria\n6912345679,Eleni\n")
    campaign = await create_campaign(api, shop, message="Hi {{first_name}}")
    out, err = io.StringIO(), io.StringIO()
    status = await send(
        base_url(api), shop.token, campaign["id"], yes=True, watch_after=False, out=out, err=err
    )
    assert status == 0, err.getvalue()
    assert "sending: 2 recipients, 2 credits reserved" in out.getvalue()

    async def finish_later() -> None:
        await asyncio.sleep(1.2)
        await db.execute(
            "UPDATE campaigns SET status = 'sent', sent_count = 2, total_recipients = 2,"
            " finished_at = now() WHERE id = $1",
            campaign["id"],
        )

    out = io.StringIO()
    finisher = asyncio.create_task(finish_later())
    status = await watch(base_url(api), shop.token, campaign["id"], out=out, err=err)
    await finisher
    assert status == 0
    drawn = out.getvalue()
    assert "[sending]" in drawn and "[sent]" in drawn
    assert drawn.rstrip().endswith(f"campaign {campaign['id']}: sent; sent 2, failed 0, unknown 0")


async def test_send_without_a_terminal_needs_yes(api: Client, db: asyncpg.Pool) -> None:
    shop = await tenant(api, credits=10)
    await import_csv(api, shop, "phone\n6912345678\n")
    campaign = await create_campaign(api, shop, message="Hi")
    out, err = io.StringIO(), io.StringIO()
    status = await send(
        base_url(api), shop.token, campaign["id"], yes=False, watch_after=False, out=out, err=err
    )
    assert status == 1
    assert "pass --yes" in err.getvalue()
    assert (
        await db.fetchval("SELECT status FROM campaigns WHERE id = $1", campaign["id"]) == "draft"
    )


async def test_cancel_prints_what_it_did(api: Client) -> None:
    shop = await tenant(api, credits=10)
    await import_csv(api, shop, "phone\n6912345678\n")
    campaign = await create_campaign(api, shop, message="Hi")
    out, err = io.StringIO(), io.StringIO()
    assert (
        await send(
            base_url(api), shop.token, campaign["id"], yes=True, watch_after=False, out=out, err=err
        )
        == 0
    )
    out = io.StringIO()
    status = await cancel(base_url(api), shop.token, campaign["id"], yes=True, out=out, err=err)
    assert status == 0
    assert "cancelled (was sending)" in out.getvalue()
    status = await cancel(base_url(api), shop.token, campaign["id"], yes=True, out=out, err=err)
    assert status == 1
    assert "invalid_status_transition" in err.getvalue()
