"""The mock Mitto API over raw HTTP: auth, validation, answers, record, stats, admin API,
fault knobs, the CLI's config layering and the subprocess harness."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
from aiohttp import web

from sender.mock_mitto import InProcessMock, MockProcess, run_mock
from sender.mock_mitto.cli import build_parser, config_from_args

KEY = {"X-Mitto-API-Key": "dev-key"}
HEX32 = re.compile(r"[0-9a-f]{32}")
TIMESTAMP = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{7}Z")
ISO = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z")


@pytest.fixture
async def mock() -> AsyncIterator[InProcessMock]:
    async with run_mock(seed=7) as m:
        yield m


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as s:
        yield s


async def post(
    http: aiohttp.ClientSession,
    url: str,
    body: Any,
    headers: dict[str, str] | None = None,
) -> tuple[int, Any, dict[str, str]]:
    data = body if isinstance(body, bytes) else orjson.dumps(body)
    async with http.post(url, data=data, headers=KEY if headers is None else headers) as r:
        raw = await r.read()
        try:
            parsed = orjson.loads(raw)
        except orjson.JSONDecodeError:
            parsed = raw.decode()
        return r.status, parsed, dict(r.headers)


def sms(**fields: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"from": "SHOP", "to": "306912345678", "text": "Hello, world!"}
    body.update(fields)
    return {k: v for k, v in body.items() if v is not ...}


# -- answers -------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/sms", "/sms.json"])
async def test_sms_answer_shape(
    mock: InProcessMock, http: aiohttp.ClientSession, path: str
) -> None:
    status, body, headers = await post(http, mock.base_url + path, sms())

    assert status == 200
    assert headers["Content-Type"].startswith("application/json")
    assert HEX32.fullmatch(body["id"])
    assert TIMESTAMP.fullmatch(body["timestamp"])
    assert body["to"] == "306912345678"
    assert (body["responseCode"], body["textLength"], body["responseText"]) == (0, 13, "SMS sent")
    assert "test" not in body


async def test_text_length_as_string(mock: InProcessMock, http: aiohttp.ClientSession) -> None:
    await mock.set_config(text_length_as_string=True)
    _, body, _ = await post(http, mock.base_url + "/sms", sms())

    assert body["textLength"] == " 13"


@pytest.mark.parametrize(
    ("fields", "code"),
    [
        ({}, 0),
        ({"type": "GSM", "text": "Ünicode-free? Ä ö ñ ü à € [x]"}, 0),
        ({"type": "auto", "text": "emoji 😀"}, 0),
        ({"type": "unicode", "text": "emoji 😀"}, 0),
        ({"type": "Byte", "text": "48656c6c6f"}, 0),
        ({"from": "306912345678"}, 0),
        ({"flash": True, "validity": 60, "udh": "00", "pid": 0, "unknown": {"x": 1}}, 0),
        ({"type": "Klingon"}, 2),
        ({"text": ""}, 3),
        ({"text": ...}, 3),
        ({"text": "emoji 😀"}, 4),
        ({"from": ""}, 5),
        ({"from": ...}, 5),
        ({"from": "AB"}, 6),
        ({"from": "TWELVECHARSX"}, 6),
        ({"from": "123456789012345"}, 6),
        ({"from": "SH@P"}, 6),
        ({"to": ""}, 7),
        ({"to": ...}, 7),
        ({"to": "+306912345678"}, 8),
        ({"to": "12345"}, 8),
        ({"to": "1234567890123456"}, 8),
        ({"type": "Binary", "text": "abc"}, 9),
        ({"type": "Binary", "text": "zz"}, 9),
    ],
)
async def test_validation_codes(
    mock: InProcessMock, http: aiohttp.ClientSession, fields: dict[str, Any], code: int
) -> None:
    status, body, _ = await post(http, mock.base_url + "/sms", sms(**fields))

    assert status == 200
    assert body["responseCode"] == code
    assert isinstance(body["responseText"], str) and body["responseText"]
    if code:
        assert "id" not in body
        assert body["textLength"] == 0
    stats = await mock.stats()
    assert (stats["accepted"], stats["rejected"]) == ((1, 0) if code == 0 else (0, 1))


@pytest.mark.parametrize("headers", [{}, {"X-Mitto-API-Key": "nope"}])
async def test_missing_or_wrong_key_is_401(
    mock: InProcessMock, http: aiohttp.ClientSession, headers: dict[str, str]
) -> None:
    for path in ("/sms", "/smsbulk"):
        status, _, _ = await post(http, mock.base_url + path, sms(), headers=headers)
        assert status == 401
    stats = await mock.stats()
    assert (stats["unauthorized"], stats["accepted"]) == (2, 0)


@pytest.mark.parametrize(
    "body",
    [
        b"{not json",
        b"[1, 2]",
        orjson.dumps(sms(to=306912345678)),
        orjson.dumps(sms(text=["a"])),
        orjson.dumps(sms(reference=7)),
        orjson.dumps(sms(test="yes")),
    ],
)
async def test_malformed_is_400(
    mock: InProcessMock, http: aiohttp.ClientSession, body: bytes
) -> None:
    status, answer, _ = await post(http, mock.base_url + "/sms", body)

    assert status == 400
    assert answer["message"]
    assert (await mock.stats())["bad_requests"] == 1


async def test_test_flag(mock: InProcessMock, http: aiohttp.ClientSession) -> None:
    _, body, _ = await post(http, mock.base_url + "/sms", sms(test=True))

    assert body["test"] is True
    assert (await mock.stats())["test"] == 1


# -- bulk ----------------------------------------------------------------------------------------


async def test_bulk_answer(mock: InProcessMock, http: aiohttp.ClientSession) -> None:
    numbers = ["306912345678", "bad", "306912345679", "306912345678"]
    status, body, _ = await post(http, mock.base_url + "/smsbulk", sms(to=numbers))

    assert status == 200
    assert (body["responseCode"], body["test"]) == (0, False)
    elements = body["messages"]
    assert [e["to"] for e in elements] == numbers
    assert [e["responseCode"] for e in elements] == [0, 8, 0, 0]
    assert [("id" in e) for e in elements] == [True, False, True, True]
    assert len({e["id"] for e in elements if "id" in e}) == 3
    assert elements[0]["textLength"] == 13
    stats = await mock.stats()
    assert (stats["accepted"], stats["rejected"], stats["bulk_requests"]) == (3, 1, 1)


async def test_bulk_all_invalid_answers_the_first_error(
    mock: InProcessMock, http: aiohttp.ClientSession
) -> None:
    _, body, _ = await post(http, mock.base_url + "/smsbulk", sms(to=["", "1"]))

    assert body["responseCode"] == 7
    assert [e["responseCode"] for e in body["messages"]] == [7, 8]


@pytest.mark.parametrize(("to", "code"), [([], 7), (None, 7)])
async def test_bulk_without_numbers(
    mock: InProcessMock, http: aiohttp.ClientSession, to: Any, code: int
) -> None:
    _, body, _ = await post(http, mock.base_url + "/smsbulk", sms(to=to))

    assert (body["responseCode"], body["messages"]) == (code, [])


async def test_bulk_limit_is_400(mock: InProcessMock, http: aiohttp.ClientSession) -> None:
    await mock.set_config(bulk_max=3)
    ok, _, _ = await post(http, mock.base_url + "/smsbulk", sms(to=["306912345678"] * 3))
    too_many, _, _ = await post(http, mock.base_url + "/smsbulk", sms(to=["306912345678"] * 4))
    not_list, _, _ = await post(http, mock.base_url + "/smsbulk", sms(to="306912345678"))

    assert (ok, too_many, not_list) == (200, 400, 400)


# -- record and stats ---------------------------------------------------------------------------


async def test_record_shows_exactly_what_was_sent(
    mock: InProcessMock, http: aiohttp.ClientSession
) -> None:
    sent = [
        sms(to="306912345670", text="first", reference="c1:1"),
        sms(to="306912345671", text="Γειά 😀", type="Unicode", reference="c1:2"),
        sms(to="306912345672", text="third", callback="http://127.0.0.1:1/cb"),
    ]
    ids = [(await post(http, mock.base_url + "/sms", body))[1]["id"] for body in sent]
    await post(http, mock.base_url + "/sms", sms(to="1"))  # rejected: not recorded

    async with http.get(mock.admin_url + "/messages") as resp:
        assert resp.headers["Content-Type"].startswith("application/x-ndjson")
        lines = (await resp.read()).splitlines()
    messages = [orjson.loads(line) for line in lines]

    assert [m["id"] for m in messages] == ids
    assert [(m["to"], m["text"], m["reference"], m["from"]) for m in messages] == [
        ("306912345670", "first", "c1:1", "SHOP"),
        ("306912345671", "Γειά 😀", "c1:2", "SHOP"),
        ("306912345672", "third", None, "SHOP"),
    ]
    assert [m["type"] for m in messages] == ["GSM", "Unicode", "GSM"]
    assert [m["segments"] for m in messages] == [1, 1, 1]
    assert messages[2]["callback"] == "http://127.0.0.1:1/cb"
    assert all(ISO.fullmatch(m["received_at"]) for m in messages)


async def test_duplicates_count_repeated_to_reference_pairs(
    mock: InProcessMock, http: aiohttp.ClientSession
) -> None:
    pairs = [
        ("306912345670", "a"),
        ("306912345670", "a"),  # duplicate
        ("306912345670", "b"),
        ("306912345671", "a"),
        ("306912345670", "a"),  # duplicate
        ("306912345671", None),
        ("306912345671", None),  # duplicate: no reference is the pair (to, None)
    ]
    for to, reference in pairs:
        await post(http, mock.base_url + "/sms", sms(to=to, reference=reference))
    # Bulk messages share the request's reference.
    await post(http, mock.base_url + "/smsbulk", sms(to=["306912345671", "306912345672"],
                                                     reference="b"))  # fmt: skip

    stats = await mock.stats()
    assert (stats["accepted"], stats["duplicates"], stats["requests"]) == (9, 3, 8)


async def test_segments_are_recorded(mock: InProcessMock, http: aiohttp.ClientSession) -> None:
    await post(http, mock.base_url + "/sms", sms(text="x" * 160))
    await post(http, mock.base_url + "/sms", sms(text="x" * 161))
    await post(http, mock.base_url + "/sms", sms(text="€" * 80))  # extension: two septets each
    await post(http, mock.base_url + "/sms", sms(text="€" * 81))
    await post(http, mock.base_url + "/sms", sms(text="😀" * 35, type="Unicode"))
    await post(http, mock.base_url + "/sms", sms(text="😀" * 36, type="Unicode"))

    assert [m["segments"] for m in await mock.messages()] == [1, 2, 1, 2, 1, 2]


async def test_reset_forgets_everything(mock: InProcessMock, http: aiohttp.ClientSession) -> None:
    await post(http, mock.base_url + "/sms", sms(reference="x"))
    await post(http, mock.base_url + "/sms", sms(reference="x"))
    await mock.reset()

    assert await mock.messages() == []
    stats = await mock.stats()
    assert (stats["accepted"], stats["duplicates"], stats["requests"]) == (0, 0, 0)
    await post(http, mock.base_url + "/sms", sms(reference="x"))
    assert (await mock.stats())["duplicates"] == 0


async def test_record_file(tmp_path: Path, http: aiohttp.ClientSession) -> None:
    path = tmp_path / "sub" / "record.ndjson"
    async with run_mock(record_path=path) as m:
        for i in range(3):
            await post(http, m.base_url + "/sms", sms(reference=f"r{i}"))
        # The file is flushed periodically (0.2 s) and on shutdown.
        await asyncio.sleep(0.3)
        lines = path.read_bytes().splitlines()
        assert [orjson.loads(line)["reference"] for line in lines] == ["r0", "r1", "r2"]
        await m.reset()
        assert path.read_bytes() == b""
        await post(http, m.base_url + "/sms", sms(reference="after"))
    [line] = path.read_bytes().splitlines()
    assert orjson.loads(line)["reference"] == "after"


# -- config --------------------------------------------------------------------------------------


async def test_config_get_and_merge(mock: InProcessMock, http: aiohttp.ClientSession) -> None:
    initial = await mock.config()
    assert initial["latency_ms"] == 0 and initial["retry_after_s"] == 1
    assert initial["dlr"]["method"] == "POST" and initial["dlr"]["delay_ms"] == 500
    for key in (
        "latency_ms", "jitter_ms", "p_429", "retry_after_s", "p_503", "p_500_after_accept",
        "p_hang_after_accept", "hang_s", "p_reset", "invalid_receiver_pattern",
        "rate_limit_per_s", "rate_limit_burst", "bulk_max",
    ):  # fmt: skip
        assert key in initial
    assert set(initial["dlr"]) >= {"url", "method", "delay_ms", "mix", "p_duplicate", "reorder"}

    merged = await mock.set_config(p_429=0.25, dlr={"delay_ms": 10, "method": "get"})

    assert merged["p_429"] == 0.25 and merged["p_503"] == 0.0
    assert (merged["dlr"]["delay_ms"], merged["dlr"]["method"]) == (10, "GET")
    assert merged["dlr"]["mix"] == initial["dlr"]["mix"]
    merged = await mock.set_config(dlr={"mix": {"Rejected": 1}})
    assert merged["dlr"]["mix"] == {"Rejected": 1}
    assert merged["dlr"]["delay_ms"] == 10
    assert await mock.config() == merged


@pytest.mark.parametrize(
    "body",
    [
        {"p_429": 2},
        {"no_such_knob": 1},
        {"dlr": {"method": "PATCH"}},
        {"dlr": {"mix": {"Lost": 1}}},
        {"invalid_receiver_pattern": "("},
        {"rate_limit_burst": 5},
    ],
)
async def test_config_refuses_bad_values(
    mock: InProcessMock, http: aiohttp.ClientSession, body: dict[str, Any]
) -> None:
    before = await mock.config()
    async with http.put(mock.admin_url + "/config", data=orjson.dumps(body)) as resp:
        assert resp.status == 400
        assert (await resp.json())["errors"]
    assert await mock.config() == before


# -- fault knobs -------------------------------------------------------------------------------


async def test_latency_and_jitter(mock: InProcessMock, http: aiohttp.ClientSession) -> None:
    await mock.set_config(latency_ms=100, jitter_ms=50)
    loop = asyncio.get_running_loop()
    started = loop.time()
    status, _, _ = await post(http, mock.base_url + "/sms", sms())
    elapsed = loop.time() - started

    assert status == 200
    assert 0.1 <= elapsed < 0.5


async def test_token_bucket(mock: InProcessMock, http: aiohttp.ClientSession) -> None:
    await mock.set_config(rate_limit_per_s=2, rate_limit_burst=3)
    statuses = []
    retry_after = None
    for _ in range(5):
        status, _, headers = await post(http, mock.base_url + "/sms", sms())
        statuses.append(status)
        if status == 429:
            retry_after = headers["Retry-After"]
    assert statuses == [200, 200, 200, 429, 429]
    assert retry_after == "1"
    await asyncio.sleep(0.55)  # one token refills in 0.5 s
    assert (await post(http, mock.base_url + "/sms", sms()))[0] == 200
    stats = await mock.stats()
    assert (stats["accepted"], stats["throttled"]) == (4, 2)


async def test_429_and_503_headers(mock: InProcessMock, http: aiohttp.ClientSession) -> None:
    await mock.set_config(p_429=1.0, retry_after_s=7)
    s429, _, h429 = await post(http, mock.base_url + "/sms", sms())
    await mock.set_config(p_429=0.0, p_503=1.0, retry_after_s=None)
    s503, body503, h503 = await post(http, mock.base_url + "/smsbulk", sms(to=["306912345678"]))

    assert (s429, h429["Retry-After"]) == (429, "7")
    assert s503 == 503 and "Retry-After" not in h503
    assert body503 == "Service Unavailable"  # not JSON on purpose
    stats = await mock.stats()
    assert (stats["throttled"], stats["unavailable"], stats["accepted"]) == (1, 1, 0)


async def test_share_of_429(mock: InProcessMock, http: aiohttp.ClientSession) -> None:
    await mock.set_config(p_429=0.5)
    statuses = [(await post(http, mock.base_url + "/sms", sms()))[0] for _ in range(200)]

    assert 60 < statuses.count(429) < 140
    assert statuses.count(200) + statuses.count(429) == 200


async def test_500_after_accept_records(mock: InProcessMock, http: aiohttp.ClientSession) -> None:
    await mock.set_config(p_500_after_accept=1.0)
    status, body, _ = await post(http, mock.base_url + "/smsbulk", sms(to=["306912345678"] * 2))

    assert (status, body) == (500, "Internal Server Error")
    assert len(await mock.messages()) == 2
    assert (await mock.stats())["errors_500"] == 1


async def test_reset_before_reading(mock: InProcessMock, http: aiohttp.ClientSession) -> None:
    await mock.set_config(p_reset=1.0)
    with pytest.raises(aiohttp.ClientError):
        await post(http, mock.base_url + "/sms", sms())

    assert await mock.messages() == []
    assert (await mock.stats())["resets"] == 1


async def test_hang_after_accept(mock: InProcessMock) -> None:
    await mock.set_config(p_hang_after_accept=1.0, hang_s=2)
    timeout = aiohttp.ClientTimeout(sock_read=0.2)
    async with aiohttp.ClientSession(timeout=timeout) as http:
        with pytest.raises(TimeoutError):
            await post(http, mock.base_url + "/sms", sms())

    assert len(await mock.messages()) == 1
    assert (await mock.stats())["hangs"] == 1


async def test_in_flight_high_water_mark(mock: InProcessMock, http: aiohttp.ClientSession) -> None:
    await mock.set_config(latency_ms=50)
    await asyncio.gather(*(post(http, mock.base_url + "/sms", sms()) for _ in range(20)))

    stats = await mock.stats()
    assert stats["in_flight_max"] == 20
    assert stats["in_flight"] == 0


# -- inbound -------------------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["POST", "GET"])
async def test_inbound_plays_a_reply(mock: InProcessMock, method: str) -> None:
    received: list[dict[str, str]] = []

    async def inbound(request: web.Request) -> web.Response:
        if request.method == "POST":
            received.append(await request.json())
        else:
            received.append(dict(request.query))
        return web.Response(text="thanks")

    app = web.Application()
    app.router.add_route("*", "/in", inbound)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    try:
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        url = f"http://127.0.0.1:{runner.addresses[0][1]}/in?secret=s3"
        result = await mock.inbound(
            url=url, from_="306912345678", to="SHOP", text="STOP", method=method
        )
    finally:
        await runner.cleanup()

    assert result == {"status": 200, "body": "thanks"}
    [fields] = received
    assert (fields["from"], fields["to"], fields["text"]) == ("306912345678", "SHOP", "STOP")
    assert ISO.fullmatch(fields["timestamp"]) or TIMESTAMP.fullmatch(fields["timestamp"])


# -- CLI and subprocess --------------------------------------------------------------------------


def test_cli_config_layers(tmp_path: Path) -> None:
    config_file = tmp_path / "mock.json"
    config_file.write_bytes(
        orjson.dumps({"p_429": 0.1, "latency_ms": 5, "dlr": {"delay_ms": 100, "reorder": True}})
    )
    args = build_parser().parse_args(
        [
            "--config", str(config_file), "--latency-ms", "7", "--retry-after-s", "none",
            "--dlr-mix", "Delivered=0.5,Expired=0.5", "--dlr-method", "get",
            "--text-length-as-string", "--rate-limit-per-s", "50",
        ]
    )  # fmt: skip
    cfg = config_from_args(args)

    assert (cfg.p_429, cfg.latency_ms, cfg.retry_after_s) == (0.1, 7, None)
    assert (cfg.rate_limit_per_s, cfg.text_length_as_string) == (50, True)
    assert (cfg.dlr.delay_ms, cfg.dlr.reorder, cfg.dlr.method) == (100, True, "GET")
    assert cfg.dlr.mix == {"Delivered": 0.5, "Expired": 0.5}
    default = config_from_args(build_parser().parse_args([]))
    assert (default.retry_after_s, default.text_length_as_string) == (1, False)
    with pytest.raises(ValueError, match="p_503"):
        config_from_args(build_parser().parse_args(["--p-503", "1.5"]))


async def test_subprocess_mock(tmp_path: Path, http: aiohttp.ClientSession) -> None:
    record = tmp_path / "record.ndjson"
    proc = MockProcess({"text_length_as_string": True}, api_key="k2", record_path=record)
    proc.start()
    try:
        status, body, _ = await post(
            http, proc.base_url + "/sms", sms(reference="p1"), {"X-Mitto-API-Key": "k2"}
        )
        assert (status, body["textLength"]) == (200, " 13")
        assert (await proc.stats())["accepted"] == 1
    finally:
        await proc.aclose()
        exit_code = proc.stop()
    # SIGTERM shut it down cleanly, flushing the record.
    assert exit_code == 0
    [line] = record.read_bytes().splitlines()
    assert orjson.loads(line)["reference"] == "p1"
    # It starts again on the same port.
    async with proc:
        assert (await proc.stats())["accepted"] == 0
