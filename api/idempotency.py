"""Client idempotency keys (``Idempotency-Key``) for every mutating POST under /v1.

A key belongs to a scope (``admin`` or ``store:<id>``, known only after authentication) and
to the first request's fingerprint: SHA-256 of method, path and body bytes.

- First request with a key: the key is claimed (``in_progress``), the handler runs, and its
  answer (status, content-type, location, body) is stored. Answers of 4xx are stored too: the
  request was understood and answered, and the same request gets the same answer.
- Same key, same fingerprint, finished: the stored answer is replayed byte for byte with
  ``Idempotent-Replayed: true``; the handler does not run again.
- Same key, other fingerprint: 422 ``idempotency_key_reused``.
- Same key while the first request still runs: 409 ``idempotency_in_progress``.
- 5xx or a crash: the key is released so the client can retry with the same key.
- Expired keys (24 h) are replaced by a new first request and purged in the background.

Provider callbacks (/v1/providers/*) are excluded: they carry no client key and are
deduplicated by provider message id.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import random
import re
from collections.abc import AsyncIterator
from typing import Any

from aiohttp import web
from aiohttp.streams import StreamReader

from api.jsonio import read_body
from api.keys import DB, SETTINGS, STORE
from api.problems import from_http_exception, from_problem
from sender.db import idempotency as idem_db
from sender.errors import Conflict, ProblemError, ValidationProblem

log = logging.getLogger("api.idempotency")

HEADER = "Idempotency-Key"
REPLAYED_HEADER = "Idempotent-Replayed"
KEY_TTL_S = 24 * 3600.0
# A key left in progress this long belongs to a request whose process died; a retry with the
# same body may take it over. Far above any handler's run time.
IN_PROGRESS_LEASE_S = 300.0
PURGE_INTERVAL_S = 600.0
PURGE_BATCH = 10_000

_VALID_KEY = re.compile(r"^[\x21-\x7e]([\x20-\x7e]{0,253}[\x21-\x7e])?$")
# Headers of the answer worth replaying; the rest (date, request id, rate limits) belong to
# the replaying request.
_STORED_HEADERS = ("Content-Type", "Location")


def applies_to(request: web.Request) -> bool:
    path = request.path
    return (
        request.method == "POST"
        and path.startswith("/v1/")
        and not path.startswith("/v1/providers/")
        and request.match_info.http_exception is None
    )


def scope_of(request: web.Request) -> str:
    if request.path.startswith("/v1/admin/"):
        return "admin"
    return f"store:{request[STORE].store_id}"


def fingerprint(method: str, path_qs: str, body: bytes) -> bytes:
    digest = hashlib.sha256()
    # Length-prefixed parts: no two different requests hash the same concatenation.
    for part in (method.encode(), path_qs.encode(), body):
        digest.update(len(part).to_bytes(8, "big"))
        digest.update(part)
    return digest.digest()


def _validated_key(raw: str) -> str:
    if not _VALID_KEY.match(raw):
        raise ProblemError(
            f"{HEADER} must be 1 to 255 printable ASCII characters",
            code="invalid_idempotency_key",
        )
    return raw


def _rewind(request: web.Request, body: bytes) -> None:
    """Let the handler read the body the middleware already consumed.

    aiohttp's request stream can be read once; handlers read JSON through ``read_json`` and
    may stream large bodies (contact imports) from ``request.content``. A fresh stream holding
    the same bytes serves both. aiohttp has no public way to replace the payload, hence the
    two private attributes (``content`` is cached on first access).
    """
    # The limit covers the whole body, so feeding it never applies flow control to the
    # connection (whose body has already been read to the end).
    limit = max(2**16, len(body))
    stream = StreamReader(request.protocol, limit, loop=asyncio.get_running_loop())
    if body:
        stream.feed_data(body)
    stream.feed_eof()
    request._payload = stream
    request._cache.pop("content", None)


def _in_progress() -> Conflict:
    return Conflict(
        f"a request with this {HEADER} is still being processed; retry shortly",
        code="idempotency_in_progress",
        headers={"Retry-After": "1"},
    )


def _replay(stored: idem_db.StoredKey) -> web.Response:
    headers = dict(stored.response_headers or {})
    headers[REPLAYED_HEADER] = "true"
    return web.Response(
        status=stored.response_status or 200, body=stored.response_body, headers=headers
    )


async def _run(request: web.Request, handler: Any) -> web.StreamResponse:
    """The handler's answer as a response, including the problems it raised."""
    try:
        response: web.StreamResponse = await handler(request)
    except ProblemError as exc:
        return from_problem(exc)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return from_http_exception(exc)
    return response


@web.middleware
async def idempotency_middleware(request: web.Request, handler: Any) -> web.StreamResponse:
    raw_key = request.headers.get(HEADER)
    if raw_key is None or not applies_to(request):
        response: web.StreamResponse = await handler(request)
        return response
    key = _validated_key(raw_key)
    scope = scope_of(request)
    settings = request.app[SETTINGS]
    db = request.app[DB]
    body = await read_body(request, settings.max_body_bytes)
    _rewind(request, body)
    path = request.rel_url.raw_path_qs
    fp = fingerprint(request.method, path, body)

    # Two rounds at most: the second covers a key released by a failing first request between
    # our claim attempt and our read.
    for _ in range(2):
        if await idem_db.claim(
            db,
            scope=scope,
            key=key,
            method=request.method,
            path=request.path,
            fingerprint=fp,
            ttl_s=KEY_TTL_S,
            lease_s=IN_PROGRESS_LEASE_S,
        ):
            return await _run_and_store(request, handler, scope, key, fp)
        stored = await idem_db.get(db, scope=scope, key=key)
        if stored is None:
            continue
        if stored.fingerprint != fp:
            raise ValidationProblem(
                f"this {HEADER} was used for a different request; use a new key",
                code="idempotency_key_reused",
            )
        if stored.state != "done":
            raise _in_progress()
        return _replay(stored)
    raise _in_progress()


async def _run_and_store(
    request: web.Request, handler: Any, scope: str, key: str, fp: bytes
) -> web.StreamResponse:
    db = request.app[DB]
    try:
        response = await _run(request, handler)
    except BaseException:
        # Unhandled errors become a 500 outside; cancellation must not leave the key stuck.
        await asyncio.shield(idem_db.release(db, scope=scope, key=key, fingerprint=fp))
        raise
    body = response.body if isinstance(response, web.Response) else None
    if response.status >= 500 or not isinstance(body, bytes):
        # Nothing replayable: a server failure the client may retry, or a streamed answer.
        await idem_db.release(db, scope=scope, key=key, fingerprint=fp)
        return response
    headers = {name: response.headers[name] for name in _STORED_HEADERS if name in response.headers}
    try:
        await idem_db.complete(
            db,
            scope=scope,
            key=key,
            fingerprint=fp,
            status=response.status,
            headers=headers,
            body=body,
        )
    except Exception:
        # The work is done and the client gets its answer; failing the request now would
        # invite a retry that runs it twice. The key stays in progress until its lease ends.
        log.exception("could not store the answer of an idempotent request", extra={"key": key})
    return response


async def purge_expired(app: web.Application) -> AsyncIterator[None]:
    """``cleanup_ctx``: delete expired keys every few minutes while the app runs."""

    async def loop() -> None:
        while True:
            # Jitter keeps several API processes from purging in lockstep.
            await asyncio.sleep(PURGE_INTERVAL_S * random.uniform(0.5, 1.5))
            try:
                while await idem_db.delete_expired(app[DB], limit=PURGE_BATCH) == PURGE_BATCH:
                    pass
            except Exception:
                log.exception("purging expired idempotency keys failed")

    task = asyncio.create_task(loop(), name="idempotency-purge")
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
