"""A store's own settings: ``GET /v1/store`` and ``PUT /v1/store/webhook``.

The store is the one of the bearer token; there is no store id in these paths. Also the home
of :func:`store_payload`, the store's JSON shape shared with the admin routes.
"""

from __future__ import annotations

import re
import secrets
from datetime import time
from typing import Annotated, Any

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field
from yarl import URL

from api.auth import store_of
from api.jsonio import json_response, read_json
from api.keys import DB
from sender.db import stores as store_db
from sender.db.stores import Store
from sender.errors import NotFound, ValidationProblem

WEBHOOK_SECRET_PREFIX = "whsec_"
_CONTROL = re.compile(r"[\x00-\x20\x7f]")


def _hhmm(value: time) -> str:
    return f"{value.hour:02d}:{value.minute:02d}"


def store_payload(store: Store) -> dict[str, Any]:
    """The store as clients see it (never the webhook secret)."""
    window, cap = store.send_window, store.frequency_cap
    return {
        "id": store.id,
        "name": store.name,
        "sender_id": store.sender_id,
        "timezone": store.timezone,
        "default_region": store.default_region,
        "subscription_status": store.subscription_status,
        "credits_available": store.credits_available,
        "credits_reserved": store.credits_reserved,
        "send_window": (
            {"start": _hhmm(window.start), "end": _hhmm(window.end)} if window else None
        ),
        "rate_cap_per_s": store.rate_cap_per_s,
        "frequency_cap": {"count": cap.count, "hours": cap.hours} if cap else None,
        "webhook_url": store.webhook_url,
        "created_at": store.created_at,
        "updated_at": store.updated_at,
    }


class WebhookIn(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid")

    url: Annotated[str, Field(min_length=1, max_length=2048)]


def check_webhook_url(raw: str) -> str:
    """An absolute http(s) URL with a host and no credentials or whitespace."""
    problem = ValidationProblem(
        "url must be an absolute http:// or https:// URL",
        code="invalid_webhook_url",
        errors=[{"field": "url", "message": "not an absolute http(s) URL"}],
    )
    if _CONTROL.search(raw):
        raise problem
    try:
        url = URL(raw)
        valid = url.scheme in ("http", "https") and bool(url.host) and url.user is None
    except (ValueError, UnicodeError):
        valid = False
    if not valid:
        raise problem
    return raw


async def get_store(request: web.Request) -> web.Response:
    store = await store_db.get(request.app[DB], store_of(request).store_id)
    if store is None:
        # The token outlived its store (deleted between authentication and now).
        raise NotFound("no such store")
    return json_response(store_payload(store))


async def put_webhook(request: web.Request) -> web.Response:
    body = await read_json(request, WebhookIn)
    url = check_webhook_url(body.url)
    # A new secret on every PUT: setting the URL is also how a leaked secret is rotated.
    secret = WEBHOOK_SECRET_PREFIX + secrets.token_urlsafe(32)
    if not await store_db.set_webhook(request.app[DB], store_of(request).store_id, url, secret):
        raise NotFound("no such store")
    return json_response({"url": url, "secret": secret})


def setup(app: web.Application) -> None:
    app.router.add_get("/v1/store", get_store)
    app.router.add_put("/v1/store/webhook", put_webhook)
