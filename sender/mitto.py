"""The Mitto SMS REST API client: one long-lived session, one typed outcome per recipient.

Every provider answer, and every way a request can fail on the wire, becomes a
:class:`SendOutcome` classified as DESIGN.md section 8 says:

- accepted: HTTP 200, ``responseCode`` 0 and an ``id``.
- permanent: ``responseCode`` 2..9, HTTP 400, 401/403 (and any other 4xx but 429): never retry.
- throttled: HTTP 429 and 503, with ``Retry-After`` when given: retry when the limiter allows,
  without consuming an attempt.
- transient: nothing was delivered: the connection was refused, DNS failed, the connect timed
  out, the server dropped the connection before answering a byte (the mock's reset before
  reading), or ``responseCode`` 1 (provider internal error, no id).
- ambiguous: the provider may have sent it: read timeout after the request was written,
  500/502/504 and other 5xx, the connection dropped mid-response, or a 200 whose body cannot be
  understood.

The client never raises on a provider answer or a network failure; only programming errors
(not started, too many bulk recipients) and cancellation propagate. It is on the hot path of
every send, so it keeps per-request work to building the body and the outcome: headers, URLs
and the timeout object are built once.
"""

from __future__ import annotations

import asyncio
import enum
import math
import time
from collections import defaultdict, deque
from collections.abc import Sequence
from dataclasses import dataclass, replace
from email.utils import parsedate_to_datetime
from types import TracebackType
from typing import Any, Final

import aiohttp
import orjson
from yarl import URL

from sender.config import Settings

API_KEY_HEADER: Final = "X-Mitto-API-Key"


class OutcomeKind(enum.StrEnum):
    """How the sender must treat a recipient after one provider request."""

    #: The provider took the message; ``provider_id`` is set.
    ACCEPTED = "accepted"
    #: The provider refused it for good; never retry.
    PERMANENT = "permanent"
    #: The provider asked us to slow down; retry later without consuming an attempt.
    THROTTLED = "throttled"
    #: Not delivered to the provider; retry with back-off.
    TRANSIENT = "transient"
    #: The provider may or may not have it; the recipient becomes ``unknown``.
    AMBIGUOUS = "ambiguous"


# DESIGN.md section 8 error categories used by the client.
INVALID_NUMBER: Final = "invalid_number"
REJECTED: Final = "rejected"
RATE_LIMITED: Final = "rate_limited"
PROVIDER_ERROR: Final = "provider_error"
NETWORK: Final = "network"
TIMEOUT: Final = "timeout"


@dataclass(frozen=True, slots=True)
class SendOutcome:
    """The result of one provider request for one recipient."""

    kind: OutcomeKind
    to: str
    provider_id: str | None = None
    http_status: int | None = None
    response_code: int | None = None
    #: DESIGN.md section 8 category: invalid_number, rejected, rate_limited, provider_error,
    #: network, timeout, unknown. None when accepted.
    category: str | None = None
    #: The raw code: responseCode as a string, or "http_429", "connect_refused", "read_timeout"...
    error_code: str | None = None
    error_text: str | None = None
    #: Seconds the provider asked us to wait (Retry-After), when it said so.
    retry_after_s: float | None = None
    text_length: int | None = None

    @property
    def accepted(self) -> bool:
        return self.kind is OutcomeKind.ACCEPTED


# responseCode -> (kind, category). 0 is handled separately (it needs an id).
_RESPONSE_CODES: Final[dict[int, tuple[OutcomeKind, str]]] = {
    1: (OutcomeKind.TRANSIENT, PROVIDER_ERROR),
    2: (OutcomeKind.PERMANENT, REJECTED),
    3: (OutcomeKind.PERMANENT, REJECTED),
    4: (OutcomeKind.PERMANENT, REJECTED),
    5: (OutcomeKind.PERMANENT, REJECTED),
    6: (OutcomeKind.PERMANENT, REJECTED),
    7: (OutcomeKind.PERMANENT, INVALID_NUMBER),
    8: (OutcomeKind.PERMANENT, INVALID_NUMBER),
    9: (OutcomeKind.PERMANENT, REJECTED),
}
_RESPONSE_TEXTS: Final[dict[int, str]] = {
    1: "provider internal error",
    2: "invalid type",
    3: "empty message",
    4: "text invalid for the encoding",
    5: "empty sender",
    6: "invalid sender",
    7: "empty receiver",
    8: "invalid receiver",
    9: "character set error",
}


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header: delta-seconds or an HTTP-date.

    Fractions are accepted (some providers send them); a date in the past gives 0.0; anything
    unreadable gives None, as if the header were absent.
    """
    if value is None:
        return None
    value = value.strip()
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        pass
    else:
        return seconds if math.isfinite(seconds) and seconds >= 0 else None
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        return None  # RFC 9110 dates are GMT; a zone-less date is not one
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def parse_text_length(value: object) -> int | None:
    """``textLength`` as Mitto sends it: a number, or a string such as ``" 13"``."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return int(value) if value.is_integer() else None
    if isinstance(value, str):
        try:
            return int(value.strip())
        except ValueError:
            return None
    return None


def _response_code(value: object) -> int | None:
    """``responseCode`` as a number or a numeric string; None if absent or unreadable."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        try:
            return int(value.strip())
        except ValueError:
            return None
    return None


def _provider_id(value: object) -> str | None:
    if isinstance(value, str) and value.strip():
        return value
    return None


def classify_element(to: str, element: dict[str, Any], http_status: int) -> SendOutcome:
    """One recipient's outcome from a 200 answer (``/sms`` body or a ``/smsbulk`` element)."""
    code = _response_code(element.get("responseCode", 0))
    text = element.get("responseText")
    text = text if isinstance(text, str) else None
    text_length = parse_text_length(element.get("textLength"))
    if code == 0:
        provider_id = _provider_id(element.get("id"))
        if provider_id is not None:
            return SendOutcome(
                OutcomeKind.ACCEPTED,
                to,
                provider_id=provider_id,
                http_status=http_status,
                response_code=0,
                text_length=text_length,
            )
        # "Sent" without an id cannot be reconciled by reports, yet the provider may have it.
        return SendOutcome(
            OutcomeKind.AMBIGUOUS,
            to,
            http_status=http_status,
            response_code=0,
            category=PROVIDER_ERROR,
            error_code="missing_id",
            error_text="responseCode 0 without an id",
            text_length=text_length,
        )
    if code is None:
        return _malformed(to, http_status, "responseCode missing or not a number")
    kind, category = _RESPONSE_CODES.get(code, (OutcomeKind.PERMANENT, REJECTED))
    return SendOutcome(
        kind,
        to,
        http_status=http_status,
        response_code=code,
        category=category,
        error_code=str(code),
        error_text=text or _RESPONSE_TEXTS.get(code, f"responseCode {code}"),
        text_length=text_length,
    )


def _malformed(to: str, http_status: int, why: str) -> SendOutcome:
    return SendOutcome(
        OutcomeKind.AMBIGUOUS,
        to,
        http_status=http_status,
        category=PROVIDER_ERROR,
        error_code="bad_body",
        error_text=why,
    )


def classify_http(to: str, status: int, headers: Any, body: bytes | None) -> SendOutcome | None:
    """The outcome decided by the HTTP status alone, or None for a 2xx (read the body)."""
    if 200 <= status < 300:
        return None
    if status in (429, 503):
        return SendOutcome(
            OutcomeKind.THROTTLED,
            to,
            http_status=status,
            category=RATE_LIMITED,
            error_code=f"http_{status}",
            error_text=_snippet(body) or ("too many requests" if status == 429 else "unavailable"),
            retry_after_s=parse_retry_after(headers.get("Retry-After")),
        )
    if status >= 500:
        return SendOutcome(
            OutcomeKind.AMBIGUOUS,
            to,
            http_status=status,
            category=PROVIDER_ERROR,
            error_code=f"http_{status}",
            error_text=_snippet(body) or f"HTTP {status}",
        )
    # 400 malformed, 401/403 key or IP not allowed, other 4xx and unfollowed 3xx: the request
    # was refused as a whole and repeating it cannot help.
    return SendOutcome(
        OutcomeKind.PERMANENT,
        to,
        http_status=status,
        category=REJECTED,
        error_code=f"http_{status}",
        error_text=_snippet(body) or f"HTTP {status}",
    )


def _snippet(body: bytes | None) -> str | None:
    if not body:
        return None
    return body[:200].decode("utf-8", errors="replace").strip() or None


def _network_failure(to: str, exc: BaseException) -> SendOutcome:
    """Classify an exception raised before the response headers arrived."""
    kind = OutcomeKind.TRANSIENT
    category = NETWORK
    if isinstance(exc, aiohttp.ConnectionTimeoutError):
        code = "connect_timeout"
    elif isinstance(exc, aiohttp.SocketTimeoutError):
        # The request was written and no answer came in time: the provider may have it.
        kind, category, code = OutcomeKind.AMBIGUOUS, TIMEOUT, "read_timeout"
    elif isinstance(exc, aiohttp.ClientConnectorDNSError):
        code = "dns"
    elif isinstance(exc, aiohttp.ClientSSLError | aiohttp.ServerFingerprintMismatch):
        code = "tls"
    elif isinstance(exc, aiohttp.ClientConnectorError):
        if isinstance(exc.os_error, ConnectionRefusedError):
            code = "connect_refused"
        else:
            code = "connect_error"
    elif isinstance(exc, aiohttp.ServerDisconnectedError):
        # Closed before a single response byte: the provider did not take the request (the
        # mock's reset before reading, a stale keep-alive connection).
        code = "server_disconnected"
    elif isinstance(exc, aiohttp.ClientOSError | ConnectionResetError):
        code = "connection_reset"
    elif isinstance(exc, TimeoutError):
        kind, category, code = OutcomeKind.AMBIGUOUS, TIMEOUT, "timeout"
    else:
        # A malformed status line or headers: something answered, so it may have been sent.
        kind, category, code = OutcomeKind.AMBIGUOUS, PROVIDER_ERROR, "bad_response"
    return SendOutcome(
        kind, to, category=category, error_code=code, error_text=str(exc) or type(exc).__name__
    )


class MittoClient:
    """Client of the Mitto SMS REST API; one per process, shared by every sender task.

    ``start`` (or ``async with``) opens the session; ``close`` closes it. ``connect_timeout_s``
    bounds opening a TCP connection; ``read_timeout_s`` bounds each wait for data once the
    request is written. Waiting for a free pooled connection is not bounded here: the
    caller's in-flight cap decides how many requests wait.
    """

    def __init__(
        self,
        *,
        base_url: str,
        api_key: str,
        connect_timeout_s: float,
        read_timeout_s: float,
        pool_limit: int,
        pool_limit_per_host: int,
        bulk_max: int = 1000,
        keepalive_timeout_s: float = 30.0,
    ) -> None:
        base = URL(base_url.rstrip("/"))
        self.base_url = str(base)
        self.bulk_max = bulk_max
        self._sms_url = base / "sms"
        self._bulk_url = base / "smsbulk"
        self._headers = {API_KEY_HEADER: api_key, "Content-Type": "application/json"}
        self._timeout = aiohttp.ClientTimeout(
            total=None, connect=None, sock_connect=connect_timeout_s, sock_read=read_timeout_s
        )
        self._pool_limit = pool_limit
        self._pool_limit_per_host = pool_limit_per_host
        self._keepalive_timeout_s = keepalive_timeout_s
        self._session: aiohttp.ClientSession | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> MittoClient:
        return cls(
            base_url=settings.mitto_url,
            api_key=settings.mitto_api_key,
            connect_timeout_s=settings.mitto_connect_timeout_s,
            read_timeout_s=settings.mitto_read_timeout_s,
            pool_limit=settings.http_pool_limit,
            pool_limit_per_host=settings.http_pool_limit_per_host,
            bulk_max=settings.mitto_bulk_max,
        )

    async def start(self) -> None:
        if self._session is not None:
            return
        connector = aiohttp.TCPConnector(
            limit=self._pool_limit,
            limit_per_host=self._pool_limit_per_host,
            keepalive_timeout=self._keepalive_timeout_s,
            ttl_dns_cache=300,
        )
        self._session = aiohttp.ClientSession(
            connector=connector,
            headers=self._headers,
            timeout=self._timeout,
            # Fewer headers built and sent per request; the provider looks at none of them, and
            # without Accept-Encoding its answers are never compressed.
            skip_auto_headers=("User-Agent", "Accept", "Accept-Encoding"),
            # Every status is classified into an outcome, never raised.
            raise_for_status=False,
        )

    async def close(self) -> None:
        session, self._session = self._session, None
        if session is not None:
            await session.close()

    async def __aenter__(self) -> MittoClient:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def send_one(
        self,
        *,
        sender: str,
        to: str,
        text: str,
        reference: str | None = None,
        type_: str | None = None,
        callback: str | None = None,
        test: bool = False,
    ) -> SendOutcome:
        """Send one message via ``POST /sms``; ``to`` is E.164 digits without ``+``."""
        body: dict[str, Any] = {"from": sender, "to": to, "text": text}
        if reference is not None:
            body["reference"] = reference
        if type_ is not None:
            body["type"] = type_
        if callback is not None:
            body["callback"] = callback
        if test:
            body["test"] = True
        status, headers, raw, failure = await self._post(self._sms_url, body, to)
        if failure is not None:
            return failure
        decided = classify_http(to, status, headers, raw)
        if decided is not None:
            return decided
        if raw is None:
            return _body_lost(to, status)
        try:
            answer = orjson.loads(raw)
        except orjson.JSONDecodeError:
            return _malformed(to, status, "body is not JSON")
        if not isinstance(answer, dict):
            return _malformed(to, status, "body is not a JSON object")
        return classify_element(to, answer, status)

    async def send_bulk(
        self,
        *,
        sender: str,
        to: Sequence[str],
        text: str,
        reference: str | None = None,
        type_: str | None = None,
        callback: str | None = None,
    ) -> list[SendOutcome]:
        """Send one text to many numbers via ``POST /smsbulk``: one outcome per number, in order.

        A number listed twice gets two messages and two outcomes. Raises ValueError when
        ``to`` has more than ``bulk_max`` numbers (split the batch before calling).
        """
        if len(to) > self.bulk_max:
            raise ValueError(f"{len(to)} recipients exceed bulk_max={self.bulk_max}")
        if not to:
            return []
        body: dict[str, Any] = {"from": sender, "to": list(to), "text": text}
        if reference is not None:
            body["reference"] = reference
        if type_ is not None:
            body["type"] = type_
        if callback is not None:
            body["callback"] = callback
        status, headers, raw, failure = await self._post(self._bulk_url, body, to[0])
        if failure is None:
            failure = classify_http(to[0], status, headers, raw)
        if failure is None and raw is None:
            failure = _body_lost(to[0], status)
        if failure is not None:
            return [failure if n == to[0] else replace(failure, to=n) for n in to]
        assert raw is not None
        return _classify_bulk(to, status, raw)

    async def _post(
        self, url: URL, body: dict[str, Any], to: str
    ) -> tuple[int, Any, bytes | None, SendOutcome | None]:
        """POST ``body``: (status, headers, raw body or None if it was lost, failure)."""
        session = self._session
        if session is None:
            raise RuntimeError("MittoClient.start() was not called")
        try:
            resp = await session.post(url, data=orjson.dumps(body), allow_redirects=False)
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            return 0, None, None, _network_failure(to, exc)
        # Headers arrived: from here on the provider has seen the request, so a failure
        # while reading the body leaves the status to decide, or ambiguity for a 2xx.
        try:
            raw: bytes | None = await resp.read()
        except asyncio.CancelledError:
            resp.close()
            raise
        except (aiohttp.ClientError, TimeoutError, OSError):
            resp.close()
            raw = None
        else:
            resp.release()
        return resp.status, resp.headers, raw, None


def _body_lost(to: str, status: int) -> SendOutcome:
    return SendOutcome(
        OutcomeKind.AMBIGUOUS,
        to,
        http_status=status,
        category=PROVIDER_ERROR,
        error_code="body_read_error",
        error_text="connection dropped while reading the answer",
    )


def _classify_bulk(to: Sequence[str], status: int, raw: bytes) -> list[SendOutcome]:
    """Outcomes of a 2xx ``/smsbulk`` answer, one per requested number, in request order."""
    try:
        answer = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return [_malformed(n, status, "body is not JSON") for n in to]
    if not isinstance(answer, dict):
        return [_malformed(n, status, "body is not a JSON object") for n in to]
    top_code = _response_code(answer.get("responseCode", 0))
    elements = answer.get("messages")
    if not isinstance(elements, list):
        elements = []
    # Match elements to numbers by "to", in order, so a number listed twice takes two
    # elements; an element without "to" takes the number at its own position.
    by_number: defaultdict[str, deque[dict[str, Any]]] = defaultdict(deque)
    for index, element in enumerate(elements):
        if not isinstance(element, dict):
            continue
        number = element.get("to")
        if not isinstance(number, str):
            if index >= len(to):
                continue
            number = to[index]
        by_number[number].append(element)
    outcomes: list[SendOutcome] = []
    for number in to:
        queue = by_number.get(number)
        if queue:
            element = queue.popleft()
            if top_code and "responseCode" not in element:
                # An element without its own code shares the request's refusal.
                element = {**element, "responseCode": top_code}
            outcomes.append(classify_element(number, element, status))
        elif top_code:
            # A request-wide refusal (empty text, invalid sender...) lists no numbers.
            outcomes.append(classify_element(number, answer, status))
        else:
            outcomes.append(
                SendOutcome(
                    OutcomeKind.AMBIGUOUS,
                    number,
                    http_status=status,
                    category=PROVIDER_ERROR,
                    error_code="missing_from_answer",
                    error_text="number absent from the bulk answer",
                )
            )
    return outcomes
