"""Campaign control: ``POST .../cancel``, ``.../pause``, ``.../resume``, ``.../retry-failed``."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from aiohttp import web
from arq.connections import ArqRedis

from api.auth import store_of
from api.jsonio import json_response
from api.keys import ARQ, DB, SETTINGS
from api.pagination import path_id
from sender import control
from sender.control import Transition
from sender.db.pool import Pool


class RestartAction(Protocol):
    async def __call__(
        self,
        pool: Pool,
        arq: ArqRedis,
        *,
        prefix: str,
        store_id: int,
        campaign_id: int,
        actor: str,
    ) -> Transition: ...


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


async def cancel_campaign(request: web.Request) -> web.Response:
    identity = store_of(request)
    return _answer(
        await control.cancel(
            request.app[DB],
            store_id=identity.store_id,
            campaign_id=path_id(request),
            actor=f"token:{identity.token_id}",
        )
    )


async def pause_campaign(request: web.Request) -> web.Response:
    identity = store_of(request)
    return _answer(
        await control.pause(
            request.app[DB],
            store_id=identity.store_id,
            campaign_id=path_id(request),
            actor=f"token:{identity.token_id}",
        )
    )


def _restarting(action: RestartAction) -> Callable[[web.Request], Awaitable[web.Response]]:
    """A handler for a transition back to sending, which also enqueues jobs."""

    async def handler(request: web.Request) -> web.Response:
        identity = store_of(request)
        return _answer(
            await action(
                request.app[DB],
                request.app[ARQ],
                prefix=request.app[SETTINGS].redis_prefix,
                store_id=identity.store_id,
                campaign_id=path_id(request),
                actor=f"token:{identity.token_id}",
            )
        )

    return handler


def setup(app: web.Application) -> None:
    app.router.add_post(r"/v1/campaigns/{id:\d+}/cancel", cancel_campaign)
    app.router.add_post(r"/v1/campaigns/{id:\d+}/pause", pause_campaign)
    app.router.add_post(r"/v1/campaigns/{id:\d+}/resume", _restarting(control.resume))
    app.router.add_post(r"/v1/campaigns/{id:\d+}/retry-failed", _restarting(control.retry_failed))
