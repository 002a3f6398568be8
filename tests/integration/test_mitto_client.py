"""The real Mitto client against the real mock over HTTP, plus crafted answers the mock never
gives (non-JSON 200, missing ids, a body cut short) and the header/field parsers."""

from __future__ import annotations

import asyncio
import datetime as dt
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from email.utils import format_datetime
from typing import Any

import pytest
from aiohttp import web

from sender.config import Settings
from sender.mitto import (
    MittoClient,
    OutcomeKind,
    SendOutcome,
    parse_retry_after,
    parse_text_length,
)
from sender.mock_mitto import InProcessMock, free_port, run_mock

HEX32 = re.compile(r"[0-9a-f]{32}")
READ_TIMEOUT_S = 0.3


def make_client(base_url: str, **overrides: Any) -> MittoClient:
    kwargs: dict[str, Any] = {
        "base_url": base_url,
        "api_key": "dev-key",
        "connect_timeout_s": 1.0,
        "read_timeout_s": READ_TIMEOUT_S,
        "pool_limit": 100,
        "pool_limit_per_host": 100,
    }
    kwargs.update(overrides)
    return MittoClient(**kwargs)


@pytest.fixture
async def mock() -> AsyncIterator[InProcessMock]:
    async with run_mock() as m:
        yield m


@pytest.fixture
async def client(mock: InProcessMock) -> AsyncIterator[MittoClient]:
    async with make_client(mock.base_url) as c:
        yield c


async def send(client: MittoClient, **kw: Any) -> SendOutcome:
    args: dict[str, Any] = {"sender": "SHOP", "to": "306912345678", "text": "Hello, world!"}
    args.update(kw)
    return await client.send_one(**args)


# -- accepted ------------------------------------------------------------------------------


async def test_accepted_and_recorded_exactly(client: MittoClient, mock: InProcessMock) -> None:
    out = await send(client, reference="c1:r1")

    assert out.kind is OutcomeKind.ACCEPTED and out.accepted
    assert out.provider_id is not None and HEX32.fullmatch(out.provider_id)
    assert (out.http_status, out.response_code, out.text_length) == (200, 0, 13)
    assert out.category is None and out.error_code is None
    [msg] = await mock.messages()
    assert msg["id"] == out.provider_id
    assert (msg["to"], msg["from"], msg["text"], msg["reference"]) == (
        "306912345678",
        "SHOP",
        "Hello, world!",
        "c1:r1",
    )


async def test_unicode_text(client: MittoClient, mock: InProcessMock) -> None:
    text = "Γειά σου Μαρία, 20% έκπτωση 😀 “σήμερα”"
    out = await send(client, text=text, type_="Unicode")
    auto = await send(client, text=text, type_="auto")

    assert out.kind is OutcomeKind.ACCEPTED and auto.kind is OutcomeKind.ACCEPTED
    assert out.text_length == len(text)
    messages = await mock.messages()
    assert [m["text"] for m in messages] == [text, text]
    assert [m["type"] for m in messages] == ["Unicode", "Unicode"]


async def test_text_length_as_string(client: MittoClient, mock: InProcessMock) -> None:
    await mock.set_config(text_length_as_string=True)
    out = await send(client)

    assert out.kind is OutcomeKind.ACCEPTED
    assert out.text_length == 13


async def test_test_flag(client: MittoClient, mock: InProcessMock) -> None:
    out = await send(client, test=True)

    assert out.kind is OutcomeKind.ACCEPTED
    [msg] = await mock.messages()
    assert msg["test"] is True


async def test_many_concurrent_requests_share_the_pool(
    client: MittoClient, mock: InProcessMock
) -> None:
    # With 20 ms latency, 300 requests in series would take 6 s; the pool of 100 runs them
    # side by side.
    await mock.set_config(latency_ms=20)
    loop = asyncio.get_running_loop()
    started = loop.time()
    outs = await asyncio.gather(*(send(client, reference=f"r{i}") for i in range(300)))

    assert loop.time() - started < 2.0
    assert all(o.kind is OutcomeKind.ACCEPTED for o in outs)
    assert len({o.provider_id for o in outs}) == 300
    stats = await mock.stats()
    assert stats["accepted"] == 300
    assert 50 <= stats["in_flight_max"] <= 100


# -- responseCode 1..9 -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "kwargs", "kind", "category"),
    [
        (2, {"type_": "Klingon"}, OutcomeKind.PERMANENT, "rejected"),
        (3, {"text": ""}, OutcomeKind.PERMANENT, "rejected"),
        (4, {"text": "snow ☃ man"}, OutcomeKind.PERMANENT, "rejected"),
        (5, {"sender": ""}, OutcomeKind.PERMANENT, "rejected"),
        (6, {"sender": "WAYTOOLONGSENDER"}, OutcomeKind.PERMANENT, "rejected"),
        (7, {"to": ""}, OutcomeKind.PERMANENT, "invalid_number"),
        (8, {"to": "12"}, OutcomeKind.PERMANENT, "invalid_number"),
        (9, {"type_": "Binary", "text": "not hex"}, OutcomeKind.PERMANENT, "rejected"),
    ],
)
async def test_response_codes(
    client: MittoClient,
    mock: InProcessMock,
    code: int,
    kwargs: dict[str, Any],
    kind: OutcomeKind,
    category: str,
) -> None:
    out = await send(client, **kwargs)

    assert out.kind is kind
    assert (out.http_status, out.response_code, out.category) == (200, code, category)
    assert out.error_code == str(code)
    assert out.error_text
    assert out.provider_id is None
    assert await mock.messages() == []


async def test_response_code_1_is_transient(client: MittoClient, mock: InProcessMock) -> None:
    await mock.set_config(p_internal_error=1.0)
    out = await send(client)

    assert out.kind is OutcomeKind.TRANSIENT
    assert (out.response_code, out.category, out.error_code) == (1, "provider_error", "1")
    assert await mock.messages() == []


async def test_invalid_receiver_pattern(client: MittoClient, mock: InProcessMock) -> None:
    await mock.set_config(invalid_receiver_pattern="0000$")
    bad = await send(client, to="306900000000")
    good = await send(client, to="306900000001")

    assert (bad.kind, bad.response_code, bad.category) == (
        OutcomeKind.PERMANENT,
        8,
        "invalid_number",
    )
    assert good.kind is OutcomeKind.ACCEPTED


# -- HTTP statuses -----------------------------------------------------------------------------


async def test_401_wrong_key(mock: InProcessMock) -> None:
    async with make_client(mock.base_url, api_key="wrong") as c:
        out = await send(c)

    assert out.kind is OutcomeKind.PERMANENT
    assert (out.http_status, out.category, out.error_code) == (401, "rejected", "http_401")
    assert (await mock.stats())["unauthorized"] == 1


@pytest.mark.parametrize(("retry_after", "expected"), [(2, 2.0), (0.5, 0.5), (None, None)])
async def test_429(
    client: MittoClient,
    mock: InProcessMock,
    retry_after: float | None,
    expected: float | None,
) -> None:
    await mock.set_config(p_429=1.0, retry_after_s=retry_after)
    out = await send(client)

    assert out.kind is OutcomeKind.THROTTLED
    assert (out.http_status, out.category, out.error_code) == (429, "rate_limited", "http_429")
    assert out.retry_after_s == expected
    assert await mock.messages() == []


async def test_429_from_the_mock_token_bucket(client: MittoClient, mock: InProcessMock) -> None:
    await mock.set_config(rate_limit_per_s=2, rate_limit_burst=1)
    first = await send(client)
    second = await send(client)

    assert first.kind is OutcomeKind.ACCEPTED
    assert second.kind is OutcomeKind.THROTTLED
    assert second.retry_after_s == 1.0


async def test_503(client: MittoClient, mock: InProcessMock) -> None:
    await mock.set_config(p_503=1.0, retry_after_s=3)
    out = await send(client)

    assert out.kind is OutcomeKind.THROTTLED
    assert (out.http_status, out.category, out.error_code) == (503, "rate_limited", "http_503")
    assert out.retry_after_s == 3.0


async def test_500_after_accepting_is_ambiguous(client: MittoClient, mock: InProcessMock) -> None:
    await mock.set_config(p_500_after_accept=1.0)
    out = await send(client, reference="amb-1")

    assert out.kind is OutcomeKind.AMBIGUOUS
    assert (out.http_status, out.category, out.error_code) == (500, "provider_error", "http_500")
    assert out.provider_id is None
    [msg] = await mock.messages()
    assert msg["reference"] == "amb-1"
    assert (await mock.stats())["errors_500"] == 1


async def test_hang_past_read_timeout_is_ambiguous(
    client: MittoClient, mock: InProcessMock
) -> None:
    await mock.set_config(p_hang_after_accept=1.0, hang_s=2)
    loop = asyncio.get_running_loop()
    started = loop.time()
    out = await send(client, reference="hang-1")
    elapsed = loop.time() - started

    assert out.kind is OutcomeKind.AMBIGUOUS
    assert (out.category, out.error_code) == ("timeout", "read_timeout")
    assert READ_TIMEOUT_S <= elapsed < 1.5
    [msg] = await mock.messages()
    assert msg["reference"] == "hang-1"
    assert (await mock.stats())["hangs"] == 1


async def test_connection_refused_is_transient() -> None:
    async with make_client(f"http://127.0.0.1:{free_port()}") as c:
        out = await send(c)

    assert out.kind is OutcomeKind.TRANSIENT
    assert (out.category, out.error_code, out.http_status) == ("network", "connect_refused", None)


async def test_reset_before_reading_is_transient(client: MittoClient, mock: InProcessMock) -> None:
    await mock.set_config(p_reset=1.0)
    out = await send(client)

    assert out.kind is OutcomeKind.TRANSIENT
    assert out.category == "network"
    assert out.error_code in ("connection_reset", "server_disconnected")
    assert await mock.messages() == []
    assert (await mock.stats())["resets"] == 1
    # The pool recovers: the next request on a fresh connection goes through.
    await mock.set_config(p_reset=0.0)
    assert (await send(client)).kind is OutcomeKind.ACCEPTED


# -- bulk --------------------------------------------------------------------------------------


async def test_bulk_mixed_valid_and_invalid(client: MittoClient, mock: InProcessMock) -> None:
    await mock.set_config(invalid_receiver_pattern="0000$")
    numbers = ["306912345678", "12", "306900000000", "306912345679", "306912345678"]
    outs = await client.send_bulk(sender="SHOP", to=numbers, text="Sale!", reference="b1")

    assert [o.to for o in outs] == numbers
    assert [o.kind for o in outs] == [
        OutcomeKind.ACCEPTED,
        OutcomeKind.PERMANENT,
        OutcomeKind.PERMANENT,
        OutcomeKind.ACCEPTED,
        OutcomeKind.ACCEPTED,
    ]
    assert [o.response_code for o in outs] == [0, 8, 8, 0, 0]
    assert outs[1].category == outs[2].category == "invalid_number"
    messages = await mock.messages()
    assert [m["to"] for m in messages] == ["306912345678", "306912345679", "306912345678"]
    assert [m["id"] for m in messages] == [outs[0].provider_id, outs[3].provider_id,
                                           outs[4].provider_id]  # fmt: skip
    assert all(m["text"] == "Sale!" and m["reference"] == "b1" for m in messages)
    # The number listed twice got two messages with one (to, reference): a duplicate.
    assert (await mock.stats())["duplicates"] == 1


async def test_bulk_request_wide_error_applies_to_every_number(
    client: MittoClient, mock: InProcessMock
) -> None:
    outs = await client.send_bulk(sender="SHOP", to=["306912345678", "306912345679"], text="")

    assert [(o.kind, o.response_code, o.to) for o in outs] == [
        (OutcomeKind.PERMANENT, 3, "306912345678"),
        (OutcomeKind.PERMANENT, 3, "306912345679"),
    ]


async def test_bulk_throttled_applies_to_every_number(
    client: MittoClient, mock: InProcessMock
) -> None:
    await mock.set_config(p_503=1.0)
    numbers = ["306912345678", "306912345679", "306912345670"]
    outs = await client.send_bulk(sender="SHOP", to=numbers, text="Sale!")

    assert [o.to for o in outs] == numbers
    assert {(o.kind, o.http_status, o.retry_after_s) for o in outs} == {
        (OutcomeKind.THROTTLED, 503, 1.0)
    }


async def test_bulk_over_the_mock_limit_is_http_400(mock: InProcessMock) -> None:
    await mock.set_config(bulk_max=2)
    async with make_client(mock.base_url) as c:
        outs = await c.send_bulk(sender="SHOP", to=["306912345678"] * 3, text="x")

    assert {(o.kind, o.error_code) for o in outs} == {(OutcomeKind.PERMANENT, "http_400")}


async def test_bulk_over_client_limit_is_a_programming_error(mock: InProcessMock) -> None:
    async with make_client(mock.base_url, bulk_max=2) as c:
        with pytest.raises(ValueError, match="bulk_max"):
            await c.send_bulk(sender="SHOP", to=["306912345678"] * 3, text="x")
        assert await c.send_bulk(sender="SHOP", to=[], text="x") == []


# -- crafted answers ---------------------------------------------------------------------------

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@pytest.fixture
async def crafted() -> AsyncIterator[Callable[[Handler], Awaitable[MittoClient]]]:
    """Serve one handler on /sms and /smsbulk; returns a started client pointed at it."""
    runners: list[web.AppRunner] = []
    clients: list[MittoClient] = []

    async def start(handler: Handler) -> MittoClient:
        app = web.Application()
        app.router.add_post("/sms", handler)
        app.router.add_post("/smsbulk", handler)
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
        await runner.setup()
        runners.append(runner)
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        c = make_client(f"http://127.0.0.1:{runner.addresses[0][1]}")
        await c.start()
        clients.append(c)
        return c

    yield start
    for c in clients:
        await c.close()
    for r in runners:
        await r.cleanup()


def answer(body: bytes | str, status: int = 200, ctype: str = "application/json") -> Handler:
    async def handler(request: web.Request) -> web.StreamResponse:
        await request.read()
        raw = body.encode() if isinstance(body, str) else body
        return web.Response(status=status, body=raw, content_type=ctype)

    return handler


async def test_tolerant_parsing_of_a_200(crafted: Any) -> None:
    c = await crafted(
        answer(
            '{"id": "715118ef01aa4480bbd67324a0459b0b", "responseCode": "0", '
            '"textLength": " 13", "responseText": "SMS sent successfully.", "surprise": [1]}'
        )
    )
    out = await send(c)

    assert out.kind is OutcomeKind.ACCEPTED
    assert out.provider_id == "715118ef01aa4480bbd67324a0459b0b"
    assert out.text_length == 13


@pytest.mark.parametrize(
    ("body", "error_code"),
    [
        ("<html>oops</html>", "bad_body"),
        ("[1, 2]", "bad_body"),
        ('{"responseCode": "zero"}', "bad_body"),
        ('{"responseCode": 0, "textLength": 5}', "missing_id"),
    ],
)
async def test_unreadable_200_is_ambiguous(crafted: Any, body: str, error_code: str) -> None:
    c = await crafted(answer(body))
    out = await send(c)

    assert (out.kind, out.http_status, out.error_code) == (
        OutcomeKind.AMBIGUOUS,
        200,
        error_code,
    )


@pytest.mark.parametrize("status", [500, 502, 504, 599])
async def test_5xx_with_a_non_json_body_is_ambiguous(crafted: Any, status: int) -> None:
    c = await crafted(answer("<html><body>Bad Gateway</body></html>", status, "text/html"))
    out = await send(c)

    assert (out.kind, out.http_status, out.category) == (
        OutcomeKind.AMBIGUOUS,
        status,
        "provider_error",
    )
    assert out.error_text is not None and "Bad Gateway" in out.error_text


@pytest.mark.parametrize("status", [400, 403, 404])
async def test_other_4xx_are_permanent(crafted: Any, status: int) -> None:
    c = await crafted(answer('{"message": "no"}', status))
    out = await send(c)

    assert (out.kind, out.error_code) == (OutcomeKind.PERMANENT, f"http_{status}")


async def test_retry_after_as_http_date(crafted: Any) -> None:
    when = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=30)

    async def handler(request: web.Request) -> web.StreamResponse:
        await request.read()
        return web.Response(status=429, headers={"Retry-After": format_datetime(when, True)})

    c = await crafted(handler)
    out = await send(c)

    assert out.kind is OutcomeKind.THROTTLED
    assert out.retry_after_s is not None and 25 < out.retry_after_s <= 30


async def test_connection_dropped_mid_response_is_ambiguous(crafted: Any) -> None:
    async def handler(request: web.Request) -> web.StreamResponse:
        await request.read()
        resp = web.StreamResponse(headers={"Content-Type": "application/json"})
        resp.content_length = 500
        await resp.prepare(request)
        await resp.write(b'{"id": "715118ef01aa4480bbd6')
        assert request.transport is not None
        request.transport.close()
        return resp

    c = await crafted(handler)
    out = await send(c)

    assert (out.kind, out.http_status, out.error_code) == (
        OutcomeKind.AMBIGUOUS,
        200,
        "body_read_error",
    )


async def test_bulk_answer_missing_a_number_is_ambiguous_for_it(crafted: Any) -> None:
    c = await crafted(
        answer(
            '{"responseCode": 0, "messages": ['
            '{"id": "aa000000000000000000000000000001", "to": "306912345678", "textLength": 3},'
            '{"to": "306912345670", "responseCode": 8, "responseText": "Invalid receiver"}]}'
        )
    )
    outs = await c.send_bulk(
        sender="SHOP", to=["306912345678", "306912345679", "306912345670"], text="abc"
    )

    assert [(o.kind, o.error_code) for o in outs] == [
        (OutcomeKind.ACCEPTED, None),
        (OutcomeKind.AMBIGUOUS, "missing_from_answer"),
        (OutcomeKind.PERMANENT, "8"),
    ]
    assert outs[0].provider_id == "aa000000000000000000000000000001"


async def test_bulk_elements_without_to_match_by_position(crafted: Any) -> None:
    c = await crafted(
        answer(
            '{"responseCode": 0, "messages": [{"id": "aa000000000000000000000000000001"},'
            ' {"id": "aa000000000000000000000000000002"}]}'
        )
    )
    outs = await c.send_bulk(sender="SHOP", to=["306912345678", "306912345679"], text="abc")

    assert [o.provider_id for o in outs] == [
        "aa000000000000000000000000000001",
        "aa000000000000000000000000000002",
    ]


# -- lifecycle and settings ------------------------------------------------------------------


async def test_send_before_start_is_a_programming_error() -> None:
    c = make_client("http://127.0.0.1:9")
    with pytest.raises(RuntimeError, match="start"):
        await send(c)


def test_the_daemons_event_loop_uvloop() -> None:
    """The daemon runs on uvloop, whose transports differ from asyncio's: same outcomes."""
    import uvloop

    async def scenario() -> list[SendOutcome]:
        async with run_mock() as m, make_client(m.base_url) as c:
            outs = list(await asyncio.gather(*(send(c, reference=f"u{i}") for i in range(50))))
            await m.set_config(p_reset=1.0)
            outs.append(await send(c))
            await m.set_config(p_reset=0.0, p_hang_after_accept=1.0, hang_s=2)
            outs.append(await send(c))
            await m.set_config(p_hang_after_accept=0.0)
            outs.append(await send(c))
            return outs

    outs = uvloop.run(scenario())
    assert all(o.kind is OutcomeKind.ACCEPTED for o in outs[:50])
    assert (outs[50].kind, outs[50].category) == (OutcomeKind.TRANSIENT, "network")
    assert (outs[51].kind, outs[51].error_code) == (OutcomeKind.AMBIGUOUS, "read_timeout")
    assert outs[52].kind is OutcomeKind.ACCEPTED


def test_from_settings() -> None:
    settings = Settings(
        mitto_base_url="http://127.0.0.1:9999/",
        mitto_api_key="k",
        mitto_read_timeout_s=2.5,
        mitto_bulk_max=50,
    )
    c = MittoClient.from_settings(settings)

    assert c.base_url == "http://127.0.0.1:9999"
    assert c.bulk_max == 50


# -- parsers -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2", 2.0),
        (" 3 ", 3.0),
        ("1.5", 1.5),
        ("0", 0.0),
        (None, None),
        ("", None),
        ("-1", None),
        ("nan", None),
        ("soon", None),
        ("Wed, 21 Oct 2015 07:28:00 GMT", 10.0),
        ("Wed, 21 Oct 2015 07:27:00 GMT", 0.0),
    ],
)
def test_parse_retry_after(value: str | None, expected: float | None) -> None:
    now = dt.datetime(2015, 10, 21, 7, 27, 50, tzinfo=dt.UTC).timestamp()
    assert parse_retry_after(value, now=now) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [(13, 13), ("13", 13), (" 13", 13), (13.0, 13), (0, 0), ("x", None), (None, None),
     (True, None), (1.5, None)],
)  # fmt: skip
def test_parse_text_length(value: object, expected: int | None) -> None:
    assert parse_text_length(value) == expected


async def test_bulk_element_without_code_shares_the_top_code(crafted: Any) -> None:
    c = await crafted(
        answer('{"responseCode": 6, "messages": [{"to": "306912345678"}, {"to": "306912345679"}]}')
    )
    outs = await c.send_bulk(sender="SHOP", to=["306912345678", "306912345679"], text="abc")

    assert [(o.kind, o.response_code) for o in outs] == [(OutcomeKind.PERMANENT, 6)] * 2
