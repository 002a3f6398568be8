"""Contacts: streamed bulk import, cursor listing, read, edit (tags, names, consent), delete."""

from __future__ import annotations

from typing import Annotated, Any, Final, Literal

from aiohttp import web
from pydantic import BaseModel, ConfigDict, StringConstraints

from api import importer
from api.auth import store_of
from api.fields import Text
from api.jsonio import json_response, read_json, require_content_type
from api.keys import DB
from api.pagination import encode_cursor, invalid_parameter, page_cursor, page_limit, path_id
from sender.contact_import import clean_tags, validate_custom_name
from sender.db import contacts as contacts_db
from sender.errors import NotFound, ProblemError, ValidationProblem
from sender.templates import MAX_CUSTOM_VALUE_LENGTH, MAX_NAME_LENGTH

CSV: Final = "text/csv"
NDJSON: Final = "application/x-ndjson"
MAX_OPT_OUT_REASON_LENGTH: Final = 500


def contact_json(contact: contacts_db.Contact) -> dict[str, Any]:
    return {
        "id": contact.id,
        "phone": contact.phone,
        "first_name": contact.first_name,
        "last_name": contact.last_name,
        "custom": contact.custom,
        "tags": contact.tags,
        "consent": contact.consent,
        "consent_changed_at": contact.consent_changed_at,
        "opt_out_reason": contact.opt_out_reason,
        "created_at": contact.created_at,
        "updated_at": contact.updated_at,
    }


def _check_charset(request: web.Request) -> None:
    charset = request.charset
    if charset is not None and charset.lower().replace("-", "") != "utf8":
        raise ProblemError(
            f"only UTF-8 bodies are accepted, got charset={charset}",
            status=415,
            code="unsupported_media_type",
            title="Unsupported Media Type",
        )


async def import_contacts(request: web.Request) -> web.Response:
    store_id = store_of(request).store_id
    content_type = require_content_type(request, CSV, NDJSON)
    _check_charset(request)
    return json_response(await importer.run_import(request, store_id, csv=content_type == CSV))


async def list_contacts(request: web.Request) -> web.Response:
    store_id = store_of(request).store_id
    limit = page_limit(request)
    after = page_cursor(request) or 0
    tag = request.query.get("tag")
    if tag is not None and "\x00" in tag:
        raise invalid_parameter("tag", "must not contain a NUL character")
    # One row more than asked tells whether another page exists.
    found = await contacts_db.list_page(
        request.app[DB], store_id, after_id=after, tag=tag, limit=limit + 1
    )
    page = found[:limit]
    next_cursor = encode_cursor(page[-1].id) if len(found) > limit else None
    return json_response({"items": [contact_json(c) for c in page], "next_cursor": next_cursor})


async def get_contact(request: web.Request) -> web.Response:
    contact = await contacts_db.get(request.app[DB], store_of(request).store_id, path_id(request))
    if contact is None:
        raise NotFound("no such contact")
    return json_response(contact_json(contact))


Name = Annotated[Text, StringConstraints(strip_whitespace=True, max_length=MAX_NAME_LENGTH)]


class ContactPatchBody(BaseModel):
    """PATCH body: every member optional; ``null`` clears a name or removes a custom field."""

    model_config = ConfigDict(extra="forbid")

    first_name: Name | None = None
    last_name: Name | None = None
    #: Replaces all tags.
    tags: list[Text] | None = None
    add_tags: list[Text] = []
    remove_tags: list[Text] = []
    #: Merged into the custom fields; a null value removes that field.
    custom: dict[Text, Text | None] | None = None
    consent: Literal["opted_in", "opted_out"] | None = None
    opt_out_reason: (
        Annotated[
            Text,
            StringConstraints(strip_whitespace=True, max_length=MAX_OPT_OUT_REASON_LENGTH),
        ]
        | None
    ) = None


def _field_problem(field: str, message: str) -> ValidationProblem:
    return ValidationProblem(f"{field}: {message}", errors=[{"field": field, "message": message}])


def _tags(field: str, value: list[str]) -> list[str]:
    try:
        return clean_tags(value)
    except ValueError as exc:
        raise _field_problem(field, str(exc)) from None


def _custom(value: dict[str, str | None]) -> tuple[dict[str, str], tuple[str, ...]]:
    to_set: dict[str, str] = {}
    to_remove: list[str] = []
    for key, raw in value.items():
        if not validate_custom_name(key):
            raise _field_problem(f"custom.{key}", "must match [a-z_][a-z0-9_]{0,31}")
        text = raw.strip() if raw is not None else ""
        if len(text) > MAX_CUSTOM_VALUE_LENGTH:
            raise _field_problem(
                f"custom.{key}", f"longer than {MAX_CUSTOM_VALUE_LENGTH} characters"
            )
        if text:
            to_set[key] = text
        else:
            to_remove.append(key)
    return to_set, tuple(to_remove)


def _patch(body: ContactPatchBody) -> contacts_db.ContactPatch:
    given = body.model_fields_set
    if body.opt_out_reason is not None and body.consent != "opted_out":
        raise _field_problem("opt_out_reason", "is only accepted with consent 'opted_out'")
    custom_set, custom_remove = _custom(body.custom) if body.custom else ({}, ())
    return contacts_db.ContactPatch(
        set_first_name="first_name" in given,
        first_name=body.first_name or None,
        set_last_name="last_name" in given,
        last_name=body.last_name or None,
        tags=_tags("tags", body.tags) if body.tags is not None else None,
        add_tags=tuple(_tags("add_tags", body.add_tags)),
        remove_tags=tuple(tag.strip() for tag in body.remove_tags),
        custom_set=custom_set,
        custom_remove=custom_remove,
        consent=body.consent,
        opt_out_reason=body.opt_out_reason or None,
    )


async def patch_contact(request: web.Request) -> web.Response:
    store_id = store_of(request).store_id
    contact_id = path_id(request)
    patch = _patch(await read_json(request, ContactPatchBody))
    contact = await contacts_db.update(request.app[DB], store_id, contact_id, patch)
    if contact is None:
        raise NotFound("no such contact")
    return json_response(contact_json(contact))


async def delete_contact(request: web.Request) -> web.Response:
    deleted = await contacts_db.delete(
        request.app[DB], store_of(request).store_id, path_id(request)
    )
    if not deleted:
        raise NotFound("no such contact")
    return web.Response(status=204)


def setup(app: web.Application) -> None:
    importer.setup(app)
    app.router.add_post("/v1/contacts/import", import_contacts)
    app.router.add_get("/v1/contacts", list_contacts)
    app.router.add_get(r"/v1/contacts/{id:\d+}", get_contact)
    app.router.add_patch(r"/v1/contacts/{id:\d+}", patch_contact)
    app.router.add_delete(r"/v1/contacts/{id:\d+}", delete_contact)
