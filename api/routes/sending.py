"""Sending a campaign and watching it: ``POST .../send`` and ``GET .../progress``."""

from __future__ import annotations

import asyncio
import time

import orjson
from aiohttp import web

from api.auth import store_of
from api.jsonio import json_response
from api.keys import ARQ, DB, SETTINGS
from api.pagination import path_id
from sender.sending import error_breakdown, progress, start_send


async def send_campaign(request: web.Request) -> web.Response:
    identity = store_of(request)
    settings = request.app[SETTINGS]
    accepted = await start_send(
        request.app[DB],
        request.app[ARQ],
        prefix=settings.redis_prefix,
        public_url=settings.public_url,
        store_id=identity.store_id,
        campaign_id=path_id(request),
        actor=f"token:{identity.token_id}",
    )
    return json_response(
        {
            "id": accepted.id,
            "status": accepted.status,
            "recipients": accepted.recipients,
            "credits_reserved": accepted.credits_reserved,
            "scheduled_at": accepted.scheduled_at.isoformat() if accepted.scheduled_at else None,
        },
        status=202,
    )


async def campaign_progress(request: web.Request) -> web.Response:
    payload = await progress(request.app[DB], store_of(request).store_id, path_id(request))
    return json_response(payload)


async def campaign_errors(request: web.Request) -> web.Response:
    payload = await error_breakdown(request.app[DB], store_of(request).store_id, path_id(request))
    return json_response(payload)


#: Statuses worth watching: anything else gets one snapshot and the end of the stream.
_LIVE = frozenset({"scheduled", "sending", "paused"})
_POLL_S = 0.5
_KEEPALIVE_S = 15.0
_MAX_STREAM_S = 3600.0


def _event(name: str, data: object) -> bytes:
    return b"event: " + name.encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n"


async def campaign_events(request: web.Request) -> web.StreamResponse:
    """Server-Sent Events: ``progress`` on every change, ``status`` on transitions, ``end``.

    Progress is read from the campaign's counters (cheap) twice a second per watcher and sent
    only when it changed; a comment line every 15 s keeps proxies from closing an idle
    stream. The stream ends when the campaign reaches a final status (or after an hour:
    clients reconnect).
    """
    pool, store_id, campaign_id = request.app[DB], store_of(request).store_id, path_id(request)
    state = await progress(pool, store_id, campaign_id)  # 404 before the stream starts
    response = web.StreamResponse(
        headers={
            "Content-Type": "text/event-stream",
            "Cache-Control": "no-cache",
            "X-Accel-Buffering": "no",
        }
    )
    await response.prepare(request)
    deadline = time.monotonic() + _MAX_STREAM_S
    last_sent = time.monotonic()
    previous: dict[str, object] | None = None
    while True:
        if previous is None or state["status"] != previous["status"]:
            await response.write(_event("status", {"id": campaign_id, "status": state["status"]}))
        if state != previous:
            await response.write(_event("progress", state))
            last_sent = time.monotonic()
        if state["status"] not in _LIVE or time.monotonic() > deadline:
            await response.write(_event("end", {"id": campaign_id, "status": state["status"]}))
            break
        if time.monotonic() - last_sent > _KEEPALIVE_S:
            await response.write(b": keep-alive\n\n")
            last_sent = time.monotonic()
        previous = state
        await asyncio.sleep(_POLL_S)
        state = await progress(pool, store_id, campaign_id)
    await response.write_eof()
    return response


def setup(app: web.Application) -> None:
    app.router.add_post(r"/v1/campaigns/{id:\d+}/send", send_campaign)
    app.router.add_get(r"/v1/campaigns/{id:\d+}/progress", campaign_progress)
    app.router.add_get(r"/v1/campaigns/{id:\d+}/errors", campaign_errors)
    app.router.add_get(r"/v1/campaigns/{id:\d+}/events", campaign_events)
