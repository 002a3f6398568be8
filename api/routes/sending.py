"""Sending a campaign and watching it: ``POST .../send`` and ``GET .../progress``."""

from __future__ import annotations

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


def setup(app: web.Application) -> None:
    app.router.add_post(r"/v1/campaigns/{id:\d+}/send", send_campaign)
    app.router.add_get(r"/v1/campaigns/{id:\d+}/progress", campaign_progress)
    app.router.add_get(r"/v1/campaigns/{id:\d+}/errors", campaign_errors)
