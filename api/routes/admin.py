"""Admin endpoints: create and configure stores, top up credits, issue and revoke tokens.

The admin token is checked by ``auth_middleware`` for everything under /v1/admin/. Field
rules the database cannot explain well (sender id, timezone, region) are checked here with
their own problem codes; the table's CHECK constraints stay as the last line of defence.
"""

from __future__ import annotations

import functools
import re
import zoneinfo
from datetime import time
from typing import Annotated, Any, Literal

import phonenumbers
from aiohttp import web
from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from api.auth import hash_token, new_token
from api.jsonio import json_response, read_json
from api.keys import DB
from api.pagination import path_id
from api.routes.store import store_payload
from sender.db import stores as store_db
from sender.db import tokens as token_db
from sender.db.stores import FrequencyCap, NewStore, SendWindow, StoreChanges
from sender.db.tokens import TokenInfo
from sender.errors import NotFound, ValidationProblem

#: A single top-up or initial balance; far above any real purchase, far below bigint.
MAX_CREDITS = 10**12

_ALPHANUMERIC_SENDER = re.compile(r"[A-Za-z0-9]{3,11}")
_NUMERIC_SENDER = re.compile(r"[0-9]{3,14}")
_HHMM = r"^([01][0-9]|2[0-3]):[0-5][0-9]$"
_TOKEN_PREFIX_CHARS = 12


def _no_control_characters(value: str) -> str:
    # PostgreSQL text cannot hold NUL; other control characters have no place in a name.
    if any(ord(char) < 0x20 or ord(char) == 0x7F for char in value):
        raise ValueError("must not contain control characters")
    return value


def _not_blank(value: str) -> str:
    if not value.strip():
        raise ValueError("must not be blank")
    return value


Name = Annotated[
    str,
    Field(min_length=1, max_length=200),
    AfterValidator(_no_control_characters),
    AfterValidator(_not_blank),
]
Note = Annotated[str, Field(max_length=500), AfterValidator(_no_control_characters)]
TokenName = Annotated[str, Field(max_length=100), AfterValidator(_no_control_characters)]
ShortText = Annotated[str, Field(max_length=64)]
Credits = Annotated[int, Field(ge=0, le=MAX_CREDITS)]
RateCap = Annotated[float, Field(gt=0, le=100_000)]
SubscriptionStatus = Literal["active", "past_due", "canceled"]


class _Body(BaseModel):
    # Strict: "100" is not a number and unknown fields are typos, not silently ignored.
    model_config = ConfigDict(strict=True, extra="forbid")


class SendWindowIn(_Body):
    start: Annotated[str, Field(pattern=_HHMM)]
    end: Annotated[str, Field(pattern=_HHMM)]


class FrequencyCapIn(_Body):
    count: Annotated[int, Field(ge=1, le=1_000_000)]
    hours: Annotated[int, Field(ge=1, le=8760)]


class StoreCreate(_Body):
    name: Name
    sender_id: ShortText
    timezone: ShortText
    default_region: ShortText
    subscription_status: SubscriptionStatus
    credits: Credits
    send_window: SendWindowIn | None = None
    rate_cap_per_s: RateCap | None = None
    frequency_cap: FrequencyCapIn | None = None


class StorePatch(_Body):
    name: Name | None = None
    sender_id: ShortText | None = None
    timezone: ShortText | None = None
    default_region: ShortText | None = None
    subscription_status: SubscriptionStatus | None = None
    send_window: SendWindowIn | None = None
    rate_cap_per_s: RateCap | None = None
    frequency_cap: FrequencyCapIn | None = None


#: Fields of ``StorePatch`` that may be set to null (null clears them).
_CLEARABLE = frozenset({"send_window", "rate_cap_per_s", "frequency_cap"})


class CreditsIn(_Body):
    amount: Annotated[int, Field(ge=1, le=MAX_CREDITS)]
    note: Note | None = None


class TokenIn(_Body):
    name: TokenName = ""


def _field_problem(field: str, code: str, message: str) -> ValidationProblem:
    return ValidationProblem(
        f"{field}: {message}", code=code, errors=[{"field": field, "message": message}]
    )


def check_sender_id(value: str) -> str:
    if _ALPHANUMERIC_SENDER.fullmatch(value) or _NUMERIC_SENDER.fullmatch(value):
        return value
    raise _field_problem(
        "sender_id",
        "invalid_sender_id",
        "must be 3-11 letters and digits, or 3-14 digits",
    )


@functools.cache
def _timezones() -> frozenset[str]:
    return frozenset(zoneinfo.available_timezones())


def check_timezone(value: str) -> str:
    if value in _timezones():
        return value
    raise _field_problem("timezone", "invalid_timezone", "must be an IANA timezone name")


def check_region(value: str) -> str:
    region = value.upper()
    if value.isascii() and region in phonenumbers.SUPPORTED_REGIONS:
        return region
    raise _field_problem(
        "default_region", "invalid_region", "must be an ISO 3166 region code (e.g. GR)"
    )


def _send_window(value: SendWindowIn) -> SendWindow:
    start, end = time.fromisoformat(value.start), time.fromisoformat(value.end)
    if start == end:
        raise _field_problem("send_window", "validation_error", "start and end must differ")
    return SendWindow(start, end)


def _frequency_cap(value: FrequencyCapIn) -> FrequencyCap:
    return FrequencyCap(count=value.count, hours=value.hours)


def token_payload(info: TokenInfo) -> dict[str, Any]:
    return {
        "id": info.id,
        "store_id": info.store_id,
        "name": info.name,
        "token_prefix": info.token_prefix,
        "scopes": info.scopes,
        "created_at": info.created_at,
        "revoked_at": info.revoked_at,
    }


async def create_store(request: web.Request) -> web.Response:
    body = await read_json(request, StoreCreate)
    new = NewStore(
        name=body.name,
        sender_id=check_sender_id(body.sender_id),
        timezone=check_timezone(body.timezone),
        default_region=check_region(body.default_region),
        subscription_status=body.subscription_status,
        send_window=_send_window(body.send_window) if body.send_window else None,
        rate_cap_per_s=body.rate_cap_per_s,
        frequency_cap=_frequency_cap(body.frequency_cap) if body.frequency_cap else None,
    )
    token = new_token()
    async with request.app[DB].acquire() as conn, conn.transaction():
        store = await store_db.create(conn, new)
        if body.credits > 0:
            # Initial credits are a top-up like any other, so the ledger explains the balance.
            topped = await store_db.topup(conn, store.id, body.credits, "initial credits")
            assert topped is not None
            store = topped
        await token_db.create(
            conn,
            store_id=store.id,
            token_hash=hash_token(token),
            token_prefix=token[:_TOKEN_PREFIX_CHARS],
            name="initial",
        )
    return json_response(
        {"store": store_payload(store), "token": token},
        status=201,
        headers={"Location": f"/v1/admin/stores/{store.id}"},
    )


def _changes(body: StorePatch) -> StoreChanges:
    given = body.model_fields_set
    for field in sorted(given - _CLEARABLE):
        if getattr(body, field) is None:
            raise _field_problem(field, "validation_error", "must not be null")
    return StoreChanges(
        name=body.name,
        sender_id=check_sender_id(body.sender_id) if body.sender_id is not None else None,
        timezone=check_timezone(body.timezone) if body.timezone is not None else None,
        default_region=(
            check_region(body.default_region) if body.default_region is not None else None
        ),
        subscription_status=body.subscription_status,
        set_send_window="send_window" in given,
        send_window=_send_window(body.send_window) if body.send_window else None,
        set_rate_cap="rate_cap_per_s" in given,
        rate_cap_per_s=body.rate_cap_per_s,
        set_frequency_cap="frequency_cap" in given,
        frequency_cap=_frequency_cap(body.frequency_cap) if body.frequency_cap else None,
    )


async def get_store(request: web.Request) -> web.Response:
    store = await store_db.get(request.app[DB], path_id(request))
    if store is None:
        raise NotFound("no such store")
    return json_response(store_payload(store))


async def patch_store(request: web.Request) -> web.Response:
    store_id = path_id(request)
    body = await read_json(request, StorePatch)
    changes = _changes(body)
    db = request.app[DB]
    store = (
        await store_db.update(db, store_id, changes)
        if body.model_fields_set
        else await store_db.get(db, store_id)
    )
    if store is None:
        raise NotFound("no such store")
    return json_response(store_payload(store))


async def top_up(request: web.Request) -> web.Response:
    store_id = path_id(request)
    body = await read_json(request, CreditsIn)
    store = await store_db.topup(request.app[DB], store_id, body.amount, body.note)
    if store is None:
        raise NotFound("no such store")
    return json_response(store_payload(store))


async def issue_token(request: web.Request) -> web.Response:
    store_id = path_id(request)
    body = await read_json(request, TokenIn)
    db = request.app[DB]
    if not await store_db.exists(db, store_id):
        raise NotFound("no such store")
    token = new_token()
    info = await token_db.create(
        db,
        store_id=store_id,
        token_hash=hash_token(token),
        token_prefix=token[:_TOKEN_PREFIX_CHARS],
        name=body.name,
    )
    return json_response({**token_payload(info), "token": token}, status=201)


async def revoke_token(request: web.Request) -> web.Response:
    store_id = path_id(request)
    token_id = path_id(request, "tid")
    # Revocation is effective at once: authentication reads the token row on every request.
    info = await token_db.revoke(request.app[DB], token_id=token_id, store_id=store_id)
    if info is None:
        raise NotFound("no such token for this store")
    return json_response(token_payload(info))


def setup(app: web.Application) -> None:
    app.router.add_post("/v1/admin/stores", create_store)
    app.router.add_get("/v1/admin/stores/{id}", get_store)
    app.router.add_patch("/v1/admin/stores/{id}", patch_store)
    app.router.add_post("/v1/admin/stores/{id}/credits", top_up)
    app.router.add_post("/v1/admin/stores/{id}/tokens", issue_token)
    app.router.add_delete("/v1/admin/stores/{id}/tokens/{tid}", revoke_token)
