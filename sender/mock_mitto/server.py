"""The mock Mitto SMS REST API: an aiohttp application with the provider and admin routes.

Provider routes (``X-Mitto-API-Key`` required): ``POST /sms``, ``/sms.json``, ``/smsbulk``.
Admin routes (no key, loopback use): ``/_mock/messages``, ``/_mock/stats``,
``/_mock/timeline``, ``/_mock/reset``, ``/_mock/config`` and ``/_mock/inbound``. See
``mitto-api.md``, last section.

The provider handlers are the benchmark's ceiling, so they stay lean: when no fault knob is
set they do no sleeping and draw no random numbers; bodies go through orjson; validation uses
precompiled regular expressions. Per request, faults apply in this order: reset before
reading the body, latency, the own token bucket (429), ``p_429``, ``p_503``, then after
validation ``p_internal_error``; after accepting, ``p_500_after_accept`` or
``p_hang_after_accept``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import random
import re
import time
from collections.abc import AsyncIterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Final

import aiohttp
import orjson
from aiohttp import web
from pydantic import ValidationError
from yarl import URL

from sender.mock_mitto import validate as v
from sender.mock_mitto.config import MockConfig
from sender.mock_mitto.dlr import DlrSender
from sender.mock_mitto.faults import TokenBucket, reset_connection
from sender.mock_mitto.record import MessageLog

log = logging.getLogger(__name__)

API_KEY_HEADER: Final = "X-Mitto-API-Key"
_JSON: Final = "application/json"
_RECORD_FLUSH_S: Final = 0.2


@dataclass(slots=True)
class MockStats:
    """Counters of ``GET /_mock/stats`` (per message where it says so, else per request)."""

    requests: int = 0  # provider requests (/sms, /sms.json, /smsbulk)
    accepted: int = 0  # messages
    rejected: int = 0  # messages answered with a responseCode other than 0
    throttled: int = 0  # requests answered 429
    unavailable: int = 0  # requests answered 503
    bad_requests: int = 0  # requests answered 400
    unauthorized: int = 0  # requests answered 401
    internal_errors: int = 0  # requests answered responseCode 1 (p_internal_error)
    errors_500: int = 0  # requests accepted, then answered 500
    hangs: int = 0  # requests accepted, then held for hang_s
    resets: int = 0  # connections reset before reading the body
    test: int = 0  # accepted messages with "test": true
    bulk_requests: int = 0
    in_flight: int = 0
    in_flight_max: int = 0

    def reset(self) -> None:
        """Zero every counter in place (handlers in flight hold this object)."""
        in_flight = self.in_flight
        for name in self.__dataclass_fields__:
            setattr(self, name, 0)
        self.in_flight = self.in_flight_max = in_flight


class _Timestamps:
    """Mitto-style timestamps (``2019-04-13T12:07:57.8625574Z``), formatted cheaply.

    The date-time prefix changes once a second, so it is cached; only the fraction is
    formatted per answer.
    """

    __slots__ = ("_prefix", "_second")

    def __init__(self) -> None:
        self._second = -1
        self._prefix = ""

    def __call__(self, now: float) -> str:
        second = int(now)
        if second != self._second:
            self._second = second
            self._prefix = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
        return f"{self._prefix}.{int((now - second) * 10_000_000):07d}Z"


class _BadRequest(Exception):
    """The request body is not a valid Mitto request (HTTP 400)."""


class MockServer:
    """State and handlers of one mock; :meth:`make_app` builds the aiohttp application."""

    def __init__(
        self,
        config: MockConfig | None = None,
        *,
        api_key: str = "dev-key",
        record_path: Path | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.api_key = api_key
        self.record = MessageLog(record_path)
        self.stats = MockStats()
        self._rng = rng or random.Random()
        self._timestamp = _Timestamps()
        self._config = config or MockConfig()
        self._pattern: re.Pattern[str] | None = None
        self._bucket: TokenBucket | None = None
        self._faulty = False
        self._apply(self._config)
        self.dlr = DlrSender(lambda: self._config.dlr, self._rng)
        self._http: aiohttp.ClientSession | None = None

    # -- configuration -------------------------------------------------------------------

    @property
    def config(self) -> MockConfig:
        return self._config

    def update_config(self, changes: dict[str, Any]) -> MockConfig:
        """Deep-merge ``changes`` into the live config; raises ValidationError if invalid."""
        self._apply(self._config.merged(changes))
        return self._config

    def _apply(self, cfg: MockConfig) -> None:
        old = self._config
        self._config = cfg
        pattern = cfg.invalid_receiver_pattern
        self._pattern = re.compile(pattern) if pattern is not None else None
        if cfg.rate_limit_per_s is None:
            self._bucket = None
        elif (
            self._bucket is None
            or old.rate_limit_per_s != cfg.rate_limit_per_s
            or old.rate_limit_burst != cfg.rate_limit_burst
        ):
            burst = cfg.rate_limit_burst or max(1, math.ceil(cfg.rate_limit_per_s))
            self._bucket = TokenBucket(cfg.rate_limit_per_s, burst)
        # One flag decides whether a request takes the fault path at all.
        self._faulty = bool(
            cfg.latency_ms
            or cfg.jitter_ms
            or cfg.p_429
            or cfg.p_503
            or cfg.p_reset
            or cfg.p_internal_error
            or cfg.p_500_after_accept
            or cfg.p_hang_after_accept
            or self._bucket is not None
        )

    # -- application ---------------------------------------------------------------------

    def make_app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/sms", self.handle_sms)
        app.router.add_post("/sms.json", self.handle_sms)
        app.router.add_post("/smsbulk", self.handle_bulk)
        app.router.add_post("/smsbulk.json", self.handle_bulk)
        app.router.add_get("/_mock/messages", self.handle_messages)
        app.router.add_get("/_mock/stats", self.handle_stats)
        app.router.add_get("/_mock/timeline", self.handle_timeline)
        app.router.add_post("/_mock/reset", self.handle_reset)
        app.router.add_get("/_mock/config", self.handle_get_config)
        app.router.add_put("/_mock/config", self.handle_put_config)
        app.router.add_post("/_mock/inbound", self.handle_inbound)
        app.cleanup_ctx.append(self._lifecycle)
        return app

    async def _lifecycle(self, app: web.Application) -> AsyncIterator[None]:
        self._http = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=1024, keepalive_timeout=30)
        )
        await self.dlr.start(self._http)
        flusher = (
            asyncio.create_task(self._flush_record()) if self.record.path is not None else None
        )
        try:
            yield
        finally:
            if flusher is not None:
                flusher.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await flusher
            await self.dlr.close()
            await self._http.close()
            self._http = None
            self.record.flush()
            self.record.close()

    async def _flush_record(self) -> None:
        while True:
            await asyncio.sleep(_RECORD_FLUSH_S)
            self.record.flush()

    # -- provider routes -----------------------------------------------------------------

    async def handle_sms(self, request: web.Request) -> web.StreamResponse:
        """``POST /sms`` and ``/sms.json``: one recipient."""
        stats = self.stats
        stats.requests += 1
        stats.in_flight += 1
        if stats.in_flight > stats.in_flight_max:
            stats.in_flight_max = stats.in_flight
        try:
            if request.headers.get(API_KEY_HEADER) != self.api_key:
                return self._unauthorized()
            if self._faulty:
                early = await self._before_body(request)
                if early is not None:
                    return early
            try:
                fields = _parse(await request.read(), bulk=False)
            except _BadRequest as exc:
                return self._bad_request(str(exc))
            answer, accepted = self._single(fields)
            if accepted and self._faulty:
                return await self._after_accept(answer)
            return _json(answer)
        finally:
            stats.in_flight -= 1

    async def handle_bulk(self, request: web.Request) -> web.StreamResponse:
        """``POST /smsbulk``: one text to many recipients."""
        stats = self.stats
        stats.requests += 1
        stats.bulk_requests += 1
        stats.in_flight += 1
        if stats.in_flight > stats.in_flight_max:
            stats.in_flight_max = stats.in_flight
        try:
            if request.headers.get(API_KEY_HEADER) != self.api_key:
                return self._unauthorized()
            if self._faulty:
                early = await self._before_body(request)
                if early is not None:
                    return early
            try:
                fields = _parse(await request.read(), bulk=True)
            except _BadRequest as exc:
                return self._bad_request(str(exc))
            if len(fields.to_list) > self._config.bulk_max:
                return self._bad_request(
                    f"too many recipients: {len(fields.to_list)} > {self._config.bulk_max}"
                )
            answer, accepted = self._bulk(fields)
            if accepted and self._faulty:
                return await self._after_accept(answer)
            return _json(answer)
        finally:
            stats.in_flight -= 1

    def _single(self, f: _Fields) -> tuple[dict[str, Any], bool]:
        """The answer to ``/sms`` and whether the message was accepted."""
        cfg = self._config
        now = time.time()
        code, encoding, segments = v.check_content(f.sender, f.text, f.type)
        if code == v.OK:
            code = v.check_receiver(f.to, self._pattern)
        if code == v.OK and cfg.p_internal_error and self._rng.random() < cfg.p_internal_error:
            self.stats.internal_errors += 1
            code = v.INTERNAL_ERROR
        answer: dict[str, Any] = {"timestamp": self._timestamp(now), "to": f.to}
        if code != v.OK:
            self.stats.rejected += 1
            answer["responseCode"] = code
            answer["textLength"] = self._text_length(0)
            answer["responseText"] = v.RESPONSE_TEXTS[code]
            return answer, False
        answer["id"] = self._accept(f, f.to, encoding, segments, now)
        answer["responseCode"] = 0
        answer["textLength"] = self._text_length(len(f.text))
        answer["responseText"] = "SMS sent"
        if f.test:
            answer["test"] = True
        return answer, True

    def _bulk(self, f: _Fields) -> tuple[dict[str, Any], bool]:
        """The answer to ``/smsbulk`` and whether any message was accepted."""
        cfg = self._config
        now = time.time()
        stamp = self._timestamp(now)
        code, encoding, segments = v.check_content(f.sender, f.text, f.type)
        if code == v.OK and not f.to_list:
            code = v.EMPTY_RECEIVER
        if code == v.OK and cfg.p_internal_error and self._rng.random() < cfg.p_internal_error:
            self.stats.internal_errors += 1
            code = v.INTERNAL_ERROR
        if code != v.OK:
            # A request-wide error: no element per number; the client applies the top code.
            self.stats.rejected += max(1, len(f.to_list))
            refusal = {
                "responseCode": code,
                "responseText": v.RESPONSE_TEXTS[code],
                "test": f.test,
                "messages": [],
            }
            return refusal, False
        elements: list[dict[str, Any]] = []
        first_error = v.OK
        accepted = 0
        text_length = self._text_length(len(f.text))
        for to in f.to_list:
            rc = v.check_receiver(to, self._pattern)
            if rc == v.OK:
                accepted += 1
                elements.append(
                    {
                        "id": self._accept(f, to, encoding, segments, now),
                        "to": to,
                        "timestamp": stamp,
                        "textLength": text_length,
                        "responseCode": 0,
                    }
                )
            else:
                self.stats.rejected += 1
                first_error = first_error or rc
                elements.append(
                    {
                        "to": to,
                        "timestamp": stamp,
                        "textLength": self._text_length(0),
                        "responseCode": rc,
                        "responseText": v.RESPONSE_TEXTS[rc],
                    }
                )
        top = v.OK if accepted else first_error
        answer = {
            "responseCode": top,
            "responseText": v.RESPONSE_TEXTS[top],
            "test": f.test,
            "messages": elements,
        }
        return answer, accepted > 0

    def _accept(self, f: _Fields, to: str, encoding: str, segments: int, now: float) -> str:
        """Record one accepted message, schedule its report; returns its id."""
        msgid = f"{self._rng.getrandbits(128):032x}"
        # Field order of record.Message.
        self.record.add(
            (msgid, to, f.sender, f.text, f.reference, encoding, segments, f.test, f.callback, now)
        )
        self.stats.accepted += 1
        if f.test:
            # A test message is neither delivered nor charged: no delivery report either.
            self.stats.test += 1
            return msgid
        url = f.callback or self._config.dlr.url
        if url:
            self.dlr.schedule(msgid, to, f.reference, url)
        return msgid

    async def _before_body(self, request: web.Request) -> web.StreamResponse | None:
        """The faults that act before the body is read; None lets the request through."""
        cfg = self._config
        rng = self._rng
        if cfg.p_reset and rng.random() < cfg.p_reset:
            self.stats.resets += 1
            reset_connection(request.transport)
            # The connection is gone; aiohttp drops whatever is returned.
            return web.Response(status=499)
        if cfg.latency_ms or cfg.jitter_ms:
            await asyncio.sleep((cfg.latency_ms + rng.random() * cfg.jitter_ms) / 1000.0)
        if self._bucket is not None:
            wait_s = self._bucket.take()
            if wait_s > 0:
                self.stats.throttled += 1
                # Retry-After is whole seconds (RFC 9110); round up so the hint is never early.
                return _throttled(429, max(1, math.ceil(wait_s)))
        if cfg.p_429 and rng.random() < cfg.p_429:
            self.stats.throttled += 1
            return _throttled(429, cfg.retry_after_s)
        if cfg.p_503 and rng.random() < cfg.p_503:
            self.stats.unavailable += 1
            return _throttled(503, cfg.retry_after_s)
        return None

    async def _after_accept(self, answer: dict[str, Any]) -> web.StreamResponse:
        """The faults that act after accepting: 500 or a hang; else the normal answer."""
        cfg = self._config
        if cfg.p_500_after_accept and self._rng.random() < cfg.p_500_after_accept:
            self.stats.errors_500 += 1
            # Not JSON on purpose: clients must cope with whatever a failing proxy returns.
            return web.Response(status=500, text="Internal Server Error")
        if cfg.p_hang_after_accept and self._rng.random() < cfg.p_hang_after_accept:
            self.stats.hangs += 1
            # The client times out first; its disconnect cancels this handler.
            await asyncio.sleep(cfg.hang_s)
        return _json(answer)

    def _text_length(self, n: int) -> int | str:
        return f" {n}" if self._config.text_length_as_string else n

    def _unauthorized(self) -> web.Response:
        self.stats.unauthorized += 1
        return web.Response(status=401, body=b'{"message":"Unauthorized"}', content_type=_JSON)

    def _bad_request(self, reason: str) -> web.Response:
        self.stats.bad_requests += 1
        return web.Response(status=400, body=orjson.dumps({"message": reason}), content_type=_JSON)

    # -- admin routes --------------------------------------------------------------------

    async def handle_messages(self, request: web.Request) -> web.StreamResponse:
        """``GET /_mock/messages``: every accepted message as NDJSON, streamed."""
        response = web.StreamResponse(headers={"Content-Type": "application/x-ndjson"})
        await response.prepare(request)
        for chunk in self.record.iter_ndjson():
            await response.write(chunk)
        await response.write_eof()
        return response

    async def handle_timeline(self, request: web.Request) -> web.Response:
        """``GET /_mock/timeline?bucket_ms=100&window_ms=100&since=UNIX``: arrivals over time.

        Accepted messages per bucket and the most that arrived in any sliding window, from
        the record's ``received_at`` (benchmarks: send rate over time, limiter accuracy).
        """
        try:
            bucket_s = float(request.query.get("bucket_ms", "100")) / 1000.0
            window_s = float(request.query.get("window_ms", "100")) / 1000.0
            since_raw = request.query.get("since")
            since = float(since_raw) if since_raw else None
        except ValueError:
            return _problem(400, "bucket_ms, window_ms and since must be numbers")
        if not (bucket_s > 0 and window_s > 0):
            return _problem(400, "bucket_ms and window_ms must be positive")
        return _json(self.record.timeline(bucket_s, window_s, since))

    async def handle_stats(self, request: web.Request) -> web.Response:
        """``GET /_mock/stats``."""
        return _json(self.stats_dict())

    def stats_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = asdict(self.stats)
        out["duplicates"] = self.record.duplicates
        out["messages"] = len(self.record)
        dlr = self.dlr.stats
        out["dlr_sent"] = dlr.sent
        out["dlr_failed"] = dlr.failed
        out["dlr_retried"] = dlr.retried
        out["dlr_duplicated"] = dlr.duplicated
        out["dlr_pending"] = self.dlr.pending
        return out

    async def handle_reset(self, request: web.Request) -> web.Response:
        """``POST /_mock/reset``: forget messages, counters and scheduled reports."""
        self.stats.reset()
        self.record.reset()
        await self.dlr.clear()
        if self._bucket is not None:
            self._bucket = TokenBucket(self._bucket.rate_per_s, self._bucket.burst)
        return _json({"reset": True})

    async def handle_get_config(self, request: web.Request) -> web.Response:
        """``GET /_mock/config``."""
        return _json(self._config.model_dump())

    async def handle_put_config(self, request: web.Request) -> web.Response:
        """``PUT /_mock/config``: merge the given keys into the live config."""
        try:
            changes = orjson.loads(await request.read())
        except orjson.JSONDecodeError:
            return _problem(400, "body is not JSON")
        if not isinstance(changes, dict):
            return _problem(400, "body must be a JSON object")
        try:
            cfg = self.update_config(changes)
        except ValidationError as exc:
            errors = [
                {"loc": ".".join(str(p) for p in e["loc"]), "msg": e["msg"]} for e in exc.errors()
            ]
            return _problem(400, "invalid config", errors=errors)
        log.info("config changed: %s", changes)
        return _json(cfg.model_dump())

    async def handle_inbound(self, request: web.Request) -> web.Response:
        """``POST /_mock/inbound``: play an inbound SMS (a reply such as STOP) to ``url``.

        Body: ``url``, ``from``, ``to``, ``text``, optional ``timestamp`` and ``method``
        (``POST`` sends JSON, ``GET`` a query string). Answers the target's status and body.
        """
        try:
            body = orjson.loads(await request.read())
        except orjson.JSONDecodeError:
            return _problem(400, "body is not JSON")
        if not isinstance(body, dict) or not isinstance(body.get("url"), str):
            return _problem(400, "body must be a JSON object with a 'url'")
        fields = {
            "from": str(body.get("from", "")),
            "to": str(body.get("to", "")),
            "text": str(body.get("text", "")),
            "timestamp": str(body.get("timestamp") or self._timestamp(time.time())),
        }
        method = str(body.get("method", "POST")).upper()
        assert self._http is not None
        timeout = aiohttp.ClientTimeout(total=10)
        try:
            if method == "GET":
                url = URL(body["url"]).extend_query(fields)
                async with self._http.get(url, timeout=timeout) as resp:
                    text = await resp.text()
            else:
                async with self._http.post(
                    body["url"],
                    data=orjson.dumps(fields),
                    timeout=timeout,
                    headers={"Content-Type": _JSON},
                ) as resp:
                    text = await resp.text()
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            return _problem(502, f"inbound target failed: {exc!r}")
        return _json({"status": resp.status, "body": text})


@dataclass(slots=True)
class _Fields:
    sender: str
    text: str
    type: str | None
    reference: str | None
    callback: str | None
    test: bool
    to: str  # /sms
    to_list: list[str]  # /smsbulk


def _parse(raw: bytes, *, bulk: bool) -> _Fields:
    """Decode a request body; wrong JSON or wrong field types raise _BadRequest (HTTP 400).

    Missing or null fields become empty values, so validation answers the empty-field codes;
    unknown fields (flash, validity, udh, pid) are ignored.
    """
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise _BadRequest("malformed JSON") from None
    if not isinstance(body, dict):
        raise _BadRequest("body must be a JSON object")
    sender = _opt_str(body, "from") or ""
    text = _opt_str(body, "text") or ""
    type_ = _opt_str(body, "type")
    reference = _opt_str(body, "reference")
    callback = _opt_str(body, "callback")
    test = body.get("test", False)
    if test is None:
        test = False
    elif not isinstance(test, bool):
        raise _BadRequest("'test' must be a boolean")
    if bulk:
        to_list = body.get("to")
        if to_list is None:
            to_list = []
        elif not isinstance(to_list, list) or not all(isinstance(t, str) for t in to_list):
            raise _BadRequest("'to' must be an array of strings")
        return _Fields(sender, text, type_, reference, callback, test, "", to_list)
    to = _opt_str(body, "to") or ""
    return _Fields(sender, text, type_, reference, callback, test, to, [])


def _opt_str(body: dict[str, Any], key: str) -> str | None:
    value = body.get(key)
    if value is None or isinstance(value, str):
        return value
    raise _BadRequest(f"{key!r} must be a string")


def _json(payload: Any, status: int = 200) -> web.Response:
    return web.Response(status=status, body=orjson.dumps(payload), content_type=_JSON)


def _problem(status: int, detail: str, **extra: Any) -> web.Response:
    return _json({"status": status, "detail": detail, **extra}, status=status)


def _throttled(status: int, retry_after_s: float | None) -> web.Response:
    headers = {}
    if retry_after_s is not None:
        # Whole seconds print as integers (the RFC form); fractions pass through for tests.
        headers["Retry-After"] = (
            str(int(retry_after_s)) if float(retry_after_s).is_integer() else str(retry_after_s)
        )
    text = "Too Many Requests" if status == 429 else "Service Unavailable"
    return web.Response(status=status, text=text, headers=headers)
