"""Campaigns: create (validated), list, read, edit or delete before sending, cost preview."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from aiohttp import web
from pydantic import BaseModel, ConfigDict, StringConstraints

from api.auth import store_of
from api.fields import Text
from api.jsonio import json_response, read_json
from api.keys import DB, SETTINGS
from api.pagination import choice_param, encode_cursor, page_cursor, page_limit, path_id
from sender.campaigns import (
    EDITABLE_STATUSES,
    STATUSES,
    Audience,
    check_message,
    check_scheduled_at,
)
from sender.config import Settings
from sender.db import audience as audience_db
from sender.db import campaigns as campaigns_db
from sender.errors import Conflict, NotFound, ValidationProblem
from sender.links import short_url_length
from sender.pricing import price_audience
from sender.templates import Template


def campaign_json(campaign: campaigns_db.Campaign) -> dict[str, Any]:
    return {
        "id": campaign.id,
        "name": campaign.name,
        "message": campaign.message,
        "audience": Audience.from_json(campaign.audience).as_json(),
        "status": campaign.status,
        "priority": campaign.priority,
        "scheduled_at": campaign.scheduled_at,
        "encoding": campaign.encoding,
        "segments_estimate": campaign.segments_estimate,
        "created_at": campaign.created_at,
        "updated_at": campaign.updated_at,
        "started_at": campaign.started_at,
        "finished_at": campaign.finished_at,
        "total_recipients": campaign.total_recipients,
    }


CampaignName = Annotated[
    Text, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)
]


class CampaignBody(BaseModel):
    """POST body. ``audience`` is checked by ``Audience.from_json`` for its own error code."""

    model_config = ConfigDict(extra="forbid")

    name: CampaignName
    message: Text
    audience: Any = None
    priority: Literal["high", "normal", "low"] = "normal"
    scheduled_at: datetime | None = None


class CampaignPatchBody(BaseModel):
    """PATCH body: members left out keep their value; ``scheduled_at: null`` unschedules."""

    model_config = ConfigDict(extra="forbid")

    name: CampaignName | None = None
    message: Text | None = None
    audience: Any = None
    priority: Literal["high", "normal", "low"] | None = None
    scheduled_at: datetime | None = None


def _fields(
    settings: Settings,
    *,
    name: str,
    message: str,
    audience: Any,
    priority: str,
    scheduled_at: datetime | None,
    schedule_changed: bool = True,
) -> campaigns_db.CampaignFields:
    checked = check_message(
        message,
        max_segments=settings.max_segments,
        short_url_length=short_url_length(settings.public_url),
    )
    parsed_audience = Audience.from_json(audience)
    if schedule_changed:
        # An unchanged schedule that has meanwhile passed is the scheduler's business.
        check_scheduled_at(scheduled_at, datetime.now(UTC))
    return campaigns_db.CampaignFields(
        name=name,
        message=message,
        audience=parsed_audience.as_json(),
        priority=priority,
        scheduled_at=scheduled_at,
        encoding=checked.encoding,
        segments_estimate=checked.segments,
    )


async def create_campaign(request: web.Request) -> web.Response:
    store_id = store_of(request).store_id
    body = await read_json(request, CampaignBody)
    fields = _fields(
        request.app[SETTINGS],
        name=body.name,
        message=body.message,
        audience=body.audience,
        priority=body.priority,
        scheduled_at=body.scheduled_at,
    )
    campaign = await campaigns_db.create(request.app[DB], store_id, fields)
    return json_response(campaign_json(campaign), status=201)


async def list_campaigns(request: web.Request) -> web.Response:
    store_id = store_of(request).store_id
    limit = page_limit(request)
    before = page_cursor(request)
    status = choice_param(request, "status", STATUSES)
    found = await campaigns_db.list_page(
        request.app[DB], store_id, before_id=before, status=status, limit=limit + 1
    )
    page = found[:limit]
    next_cursor = encode_cursor(page[-1].id) if len(found) > limit else None
    return json_response({"items": [campaign_json(c) for c in page], "next_cursor": next_cursor})


async def _get(request: web.Request) -> campaigns_db.Campaign:
    campaign = await campaigns_db.get(request.app[DB], store_of(request).store_id, path_id(request))
    if campaign is None:
        raise NotFound("no such campaign")
    return campaign


async def get_campaign(request: web.Request) -> web.Response:
    return json_response(campaign_json(await _get(request)))


def _not_editable(campaign: campaigns_db.Campaign) -> Conflict:
    return Conflict(
        f"campaign is {campaign.status}; only draft or scheduled campaigns can be changed",
        code="invalid_status_transition",
        current_status=campaign.status,
    )


async def patch_campaign(request: web.Request) -> web.Response:
    store_id = store_of(request).store_id
    campaign_id = path_id(request)
    body = await read_json(request, CampaignPatchBody)
    given = body.model_fields_set
    for field in ("name", "message", "priority"):
        if field in given and getattr(body, field) is None:
            raise ValidationProblem(
                f"{field}: may not be null", errors=[{"field": field, "message": "may not be null"}]
            )
    settings = request.app[SETTINGS]
    async with request.app[DB].acquire() as conn, conn.transaction():
        current = await campaigns_db.lock(conn, store_id, campaign_id)
        if current is None:
            raise NotFound("no such campaign")
        if current.status not in EDITABLE_STATUSES:
            raise _not_editable(current)
        reprices = body.message is not None or "audience" in given
        if current.status == "scheduled" and current.credits_reserved > 0 and reprices:
            # Its credits were reserved for this message and audience; a change would make
            # the reservation wrong in either direction.
            raise Conflict(
                "the campaign is scheduled and its credits are reserved; cancel it to change "
                "its message or audience",
                code="campaign_scheduled",
                current_status=current.status,
            )
        scheduled_at = body.scheduled_at if "scheduled_at" in given else current.scheduled_at
        if current.status == "scheduled" and scheduled_at is None:
            raise ValidationProblem(
                "a scheduled campaign needs scheduled_at; cancel it to stop it",
                code="scheduled_at_required",
            )
        fields = _fields(
            settings,
            name=body.name or current.name,
            message=body.message if body.message is not None else current.message,
            audience=body.audience if "audience" in given else current.audience,
            priority=body.priority or current.priority,
            scheduled_at=scheduled_at,
            schedule_changed="scheduled_at" in given,
        )
        updated = await campaigns_db.update(conn, store_id, campaign_id, fields)
        assert updated is not None  # the row is locked and editable
    return json_response(campaign_json(updated))


async def delete_campaign(request: web.Request) -> web.Response:
    store_id = store_of(request).store_id
    campaign_id = path_id(request)
    async with request.app[DB].acquire() as conn, conn.transaction():
        current = await campaigns_db.lock(conn, store_id, campaign_id)
        if current is None:
            raise NotFound("no such campaign")
        if current.status not in EDITABLE_STATUSES:
            raise _not_editable(current)
        await campaigns_db.delete_unstarted(conn, store_id, campaign_id)
    return web.Response(status=204)


async def preview_campaign(request: web.Request) -> web.Response:
    """Recipients and cost from grouped signatures: fast for a million contacts."""
    store_id = store_of(request).store_id
    campaign = await _get(request)
    settings = request.app[SETTINGS]
    pool = request.app[DB]
    template = Template.parse(campaign.message)
    wanted = Audience.from_json(campaign.audience)
    audience = audience_db.AudienceFilter(
        store_id=store_id,
        tags_any=wanted.tags_any,
        tags_all=wanted.tags_all,
        exclude_tags=wanted.exclude_tags,
        max_contact_id=campaign.audience_max_contact_id,
    )
    # One scan for the cost; the sample and the balance are index lookups on other
    # connections meanwhile.
    priced, sample, credits = await asyncio.gather(
        price_audience(pool, audience, template, settings.public_url),
        audience_db.sample_contact(pool, audience),
        audience_db.credits_available(pool, store_id),
    )
    cost, opted_out = priced.cost, priced.opted_out
    return json_response(
        {
            "campaign_id": campaign.id,
            "recipients": cost.recipients,
            "opted_out_excluded": opted_out,
            "encoding": cost.encoding,
            "segments": {"min": cost.min, "max": cost.max, "total": cost.total},
            "credits_required": cost.total,
            "credits_available": credits,
            "sufficient": cost.total <= credits,
            "sample": (
                template.render_sample(sample.fields(), settings.public_url)
                if sample is not None
                else None
            ),
        }
    )


def setup(app: web.Application) -> None:
    app.router.add_post("/v1/campaigns", create_campaign)
    app.router.add_get("/v1/campaigns", list_campaigns)
    app.router.add_get(r"/v1/campaigns/{id:\d+}", get_campaign)
    app.router.add_patch(r"/v1/campaigns/{id:\d+}", patch_campaign)
    app.router.add_delete(r"/v1/campaigns/{id:\d+}", delete_campaign)
    app.router.add_get(r"/v1/campaigns/{id:\d+}/preview", preview_campaign)
