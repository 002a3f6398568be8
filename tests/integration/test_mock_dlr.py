"""Delivery reports from the mock arrive at a small test HTTP endpoint, as POST JSON or as a
GET query, with the configured statuses, duplicates and reordering."""

from __future__ import annotations

import asyncio
import re
from collections import Counter
from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web

from sender.mitto import MittoClient, OutcomeKind
from sender.mock_mitto import InProcessMock, run_mock

ISO = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z")


class Receiver:
    """An aiohttp endpoint that records every report it gets, in arrival order."""

    def __init__(self) -> None:
        self.reports: list[dict[str, Any]] = []
        self.methods: list[str] = []
        self.paths: list[str] = []
        self.arrived_at: list[float] = []
        self.status = 200
        self._changed = asyncio.Event()
        self.url = ""

    async def handle(self, request: web.Request) -> web.Response:
        if request.method == "POST":
            report = await request.json()
        else:
            report = dict(request.query)
        self.reports.append(report)
        self.methods.append(request.method)
        self.paths.append(request.path)
        self.arrived_at.append(asyncio.get_running_loop().time())
        self._changed.set()
        return web.Response(status=self.status)

    async def wait_for(self, count: int, timeout_s: float = 3.0) -> list[dict[str, Any]]:
        async with asyncio.timeout(timeout_s):
            while len(self.reports) < count:
                self._changed.clear()
                await self._changed.wait()
        return self.reports


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    rec = Receiver()
    app = web.Application()
    app.router.add_route("*", "/dlr", rec.handle)
    app.router.add_route("*", "/other", rec.handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    rec.url = f"http://127.0.0.1:{runner.addresses[0][1]}"
    yield rec
    await runner.cleanup()


@pytest.fixture
async def mock() -> AsyncIterator[InProcessMock]:
    async with run_mock(seed=4) as m:
        yield m


async def eventually(mock: InProcessMock, **expected: int) -> dict[str, Any]:
    """Poll the mock's stats until they show ``expected`` (the receiver may see a report a
    moment before the mock has read its answer)."""
    async with asyncio.timeout(3):
        while True:
            stats = await mock.stats()
            if all(stats[k] == v for k, v in expected.items()):
                return stats
            await asyncio.sleep(0.02)


@pytest.fixture
async def client(mock: InProcessMock) -> AsyncIterator[MittoClient]:
    async with MittoClient(
        base_url=mock.base_url,
        api_key="dev-key",
        connect_timeout_s=1,
        read_timeout_s=1,
        pool_limit=10,
        pool_limit_per_host=10,
    ) as c:
        yield c


async def send_n(
    client: MittoClient, n: int, *, callback: str | None = None, test: bool = False
) -> list[tuple[str, str, str]]:
    """Send n messages one after the other; returns (provider id, to, reference) in order."""
    sent = []
    for i in range(n):
        to, reference = f"3069{i:08d}", f"camp-1:{i}"
        out = await client.send_one(
            sender="SHOP", to=to, text="hi", reference=reference, callback=callback, test=test
        )
        assert out.kind is OutcomeKind.ACCEPTED
        assert out.provider_id is not None
        sent.append((out.provider_id, to, reference))
    return sent


async def test_post_json_reports(
    mock: InProcessMock, client: MittoClient, receiver: Receiver
) -> None:
    await mock.set_config(
        dlr={"url": receiver.url + "/dlr?secret=s1", "delay_ms": 50, "mix": {"Delivered": 1}}
    )
    loop = asyncio.get_running_loop()
    started = loop.time()
    sent = await send_n(client, 5)
    reports = await receiver.wait_for(5)

    assert set(receiver.methods) == {"POST"}
    assert min(receiver.arrived_at) - started >= 0.05
    assert sorted((r["msgid"], r["to"], r["reference"]) for r in reports) == sorted(sent)
    for r in reports:
        assert (r["status"], r["errorcode"]) == ("Delivered", 0)
        assert ISO.fullmatch(r["timestamp"])
    await eventually(mock, dlr_sent=5, dlr_pending=0)
    assert len(receiver.reports) == 5


async def test_get_query_reports(
    mock: InProcessMock, client: MittoClient, receiver: Receiver
) -> None:
    await mock.set_config(
        dlr={
            "url": receiver.url + "/dlr?secret=s1",
            "method": "GET",
            "delay_ms": 20,
            "mix": {"Undelivered": 1},
        }
    )
    sent = await send_n(client, 3)
    reports = await receiver.wait_for(3)

    assert set(receiver.methods) == {"GET"}
    assert sorted((r["msgid"], r["to"], r["reference"]) for r in reports) == sorted(sent)
    for r in reports:
        # A query string carries strings; the original query is kept.
        assert (r["status"], r["errorcode"], r["secret"]) == ("Undelivered", "1", "s1")
        assert ISO.fullmatch(r["timestamp"])


async def test_status_mix(mock: InProcessMock, client: MittoClient, receiver: Receiver) -> None:
    await mock.set_config(
        dlr={
            "url": receiver.url + "/dlr",
            "delay_ms": 10,
            "mix": {"Delivered": 0.5, "Expired": 0.25, "Rejected": 0.25},
        }
    )
    await send_n(client, 60)
    reports = await receiver.wait_for(60)

    # Seeded: the draw is reproducible, and these bounds hold for any sane generator.
    counts = Counter(r["status"] for r in reports)
    assert set(counts) == {"Delivered", "Expired", "Rejected"}
    assert counts["Delivered"] >= 15
    codes = {r["status"]: r["errorcode"] for r in reports}
    assert codes["Delivered"] == 0 and codes["Rejected"] != 0


async def test_duplicates(mock: InProcessMock, client: MittoClient, receiver: Receiver) -> None:
    await mock.set_config(dlr={"url": receiver.url + "/dlr", "delay_ms": 10, "p_duplicate": 1.0})
    sent = await send_n(client, 4)
    reports = await receiver.wait_for(8)
    await eventually(mock, dlr_duplicated=4, dlr_sent=8, dlr_pending=0)

    assert len(receiver.reports) == 8
    per_id = Counter(r["msgid"] for r in reports)
    assert per_id == {msgid: 2 for msgid, _, _ in sent}
    # Both copies say the same thing.
    by_id: dict[str, list[dict[str, Any]]] = {}
    for r in reports:
        by_id.setdefault(r["msgid"], []).append(r)
    assert all(a == b for a, b in by_id.values())


async def test_in_order_without_reorder(
    mock: InProcessMock, client: MittoClient, receiver: Receiver
) -> None:
    await mock.set_config(dlr={"url": receiver.url + "/dlr", "delay_ms": 30, "concurrency": 1})
    sent = await send_n(client, 20)
    reports = await receiver.wait_for(20)

    assert [r["msgid"] for r in reports] == [msgid for msgid, _, _ in sent]


async def test_reorder(mock: InProcessMock, client: MittoClient, receiver: Receiver) -> None:
    await mock.set_config(
        dlr={
            "url": receiver.url + "/dlr",
            "delay_ms": 10,
            "reorder": True,
            "reorder_window_ms": 300,
            "concurrency": 1,
        }
    )
    sent = await send_n(client, 20)
    reports = await receiver.wait_for(20)

    arrived = [r["msgid"] for r in reports]
    expected = [msgid for msgid, _, _ in sent]
    assert sorted(arrived) == sorted(expected)
    assert arrived != expected


async def test_duplicates_with_reorder(
    mock: InProcessMock, client: MittoClient, receiver: Receiver
) -> None:
    await mock.set_config(
        dlr={
            "url": receiver.url + "/dlr",
            "method": "GET",
            "delay_ms": 10,
            "p_duplicate": 1.0,
            "reorder": True,
            "reorder_window_ms": 200,
        }
    )
    sent = await send_n(client, 10)
    reports = await receiver.wait_for(20)

    assert Counter(r["msgid"] for r in reports) == {msgid: 2 for msgid, _, _ in sent}


async def test_callback_overrides_the_registered_url(
    mock: InProcessMock, client: MittoClient, receiver: Receiver
) -> None:
    await mock.set_config(dlr={"url": receiver.url + "/dlr", "delay_ms": 10})
    [(own, _, _)] = await send_n(client, 1, callback=receiver.url + "/other")
    out = await client.send_one(sender="SHOP", to="306912345678", text="hi")
    await receiver.wait_for(2)

    assert out.provider_id is not None
    paths = {r["msgid"]: p for r, p in zip(receiver.reports, receiver.paths, strict=True)}
    assert paths == {own: "/other", out.provider_id: "/dlr"}


async def test_no_report_without_url_or_for_test_messages(
    mock: InProcessMock, client: MittoClient, receiver: Receiver
) -> None:
    await send_n(client, 2)  # no URL registered yet
    await mock.set_config(dlr={"url": receiver.url + "/dlr", "delay_ms": 10})
    await send_n(client, 2, test=True)
    await asyncio.sleep(0.15)

    assert receiver.reports == []
    assert (await mock.stats())["dlr_pending"] == 0


async def test_reports_for_ambiguous_sends(
    mock: InProcessMock, client: MittoClient, receiver: Receiver
) -> None:
    # The provider kept the message although the client saw a 500: its report reconciles it.
    await mock.set_config(
        p_500_after_accept=1.0, dlr={"url": receiver.url + "/dlr", "delay_ms": 10}
    )
    out = await client.send_one(sender="SHOP", to="306912345678", text="hi", reference="amb")
    [report] = await receiver.wait_for(1)

    assert out.kind is OutcomeKind.AMBIGUOUS
    [msg] = await mock.messages()
    assert (report["msgid"], report["reference"]) == (msg["id"], "amb")


async def test_failing_receiver_is_retried_then_given_up(
    mock: InProcessMock, client: MittoClient, receiver: Receiver
) -> None:
    receiver.status = 503
    await mock.set_config(dlr={"url": receiver.url + "/dlr", "delay_ms": 0, "max_attempts": 2})
    await send_n(client, 1)
    await receiver.wait_for(2)  # first try, then one retry after 0.5 s
    stats = await eventually(mock, dlr_failed=1)

    assert (stats["dlr_sent"], stats["dlr_retried"], stats["dlr_pending"]) == (0, 1, 0)
    assert len({r["msgid"] for r in receiver.reports}) == 1


async def test_reset_drops_scheduled_reports(
    mock: InProcessMock, client: MittoClient, receiver: Receiver
) -> None:
    await mock.set_config(dlr={"url": receiver.url + "/dlr", "delay_ms": 200})
    await send_n(client, 3)
    assert (await mock.stats())["dlr_pending"] == 3
    await mock.reset()
    await asyncio.sleep(0.3)

    assert receiver.reports == []
    assert (await mock.stats())["dlr_pending"] == 0
