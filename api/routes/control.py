"""Campaign control: ``POST .../cancel``, ``.../pause``, ``.../resume``, ``.../retry-failed``."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from api.auth import store_of
from api.jsonio import json_response
from api.keys import ARQ, DB, SETTINGS
from api.pagination import path_id
from sender import control
from sender.control import Transition


def _answer(transition: Transition) -> web.Response:
    body: dict[str, Any] = {
        "id": transition.id,
        "status": transition.status,
        "previous_status": transition.previous_status,
        "cancelled_recipients": transition.cancelled_recipients,
        "released_credits": transition.released_credits,
        "retried_recipients": transition.retried_recipients,
        "credits_reserved": transition.credits_reserved,
    }
    return json_response(body, status=202 if transition.status == "sending" else 200)


def _actor(request: web.Request) -> str:
    return f"token:{store_of(request).token_id}"


async def cancel_campaign(request: web.Request) -> web.Response:
    return _answer(
        await control.cancel(
            request.app[DB],
            store_id=store_of(request).store_id,
            campaign_id=path_id(request),
            actor=_actor(request),
        )
    )


async def pause_campaign(request: web.Request) -> web.Response:
    return _answer(
        await control.pause(
            request.app[DB],
            store_id=store_of(request).store_id,
            campaign_id=path_id(request),
            actor=_actor(request),
        )
    )


async def resume_campaign(request: web.Request) -> web.Response:
    return _answer(
        await control.resume(
            request.app[DB],
            request.app[ARQ],
            prefix=request.app[SETTINGS].redis_prefix,
            store_id=store_of(request).store_id,
            campaign_id=path_id(request),
            actor=_actor(request),
        )
    )


async def retry_failed(request: web.Request) -> web.Response:
    return _answer(
        await control.retry_failed(
            request.app[DB],
            request.app[ARQ],
            prefix=request.app[SETTINGS].redis_prefix,
            store_id=store_of(request).store_id,
            campaign_id=path_id(request),
            actor=_actor(request),
        )
    )


def setup(app: web.Application) -> None:
    app.router.add_post(r"/v1/campaigns/{id:\d+}/cancel", cancel_campaign)
    app.router.add_post(r"/v1/campaigns/{id:\d+}/pause", pause_campaign)
    app.router.add_post(r"/v1/campaigns/{id:\d+}/resume", resume_campaign)
    app.router.add_post(r"/v1/campaigns/{id:\d+}/retry-failed", retry_failed)
