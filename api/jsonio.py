"""JSON in and out: orjson bodies, content-type and size checks, pydantic validation.

``read_json`` turns every kind of bad body into a problem with a stable code: 415 for a wrong
content type, 413 for an oversized body, 400 ``malformed_json``, 422 ``validation_error`` with
one entry per field.
"""

from __future__ import annotations

from typing import Any, TypeVar

import orjson
from aiohttp import web
from pydantic import BaseModel, ValidationError

from api.keys import SETTINGS
from sender.errors import ProblemError, ValidationProblem

ModelT = TypeVar("ModelT", bound=BaseModel)


def json_response(
    data: Any, *, status: int = 200, headers: dict[str, str] | None = None
) -> web.Response:
    return web.Response(
        body=orjson.dumps(data, option=orjson.OPT_NON_STR_KEYS),
        status=status,
        content_type="application/json",
        headers=headers,
    )


def require_content_type(request: web.Request, *allowed: str) -> str:
    content_type = request.content_type
    if content_type not in allowed:
        raise ProblemError(
            f"Content-Type must be {' or '.join(allowed)}, got {content_type or 'nothing'}",
            status=415,
            code="unsupported_media_type",
            title="Unsupported Media Type",
        )
    return content_type


async def read_body(request: web.Request, limit: int) -> bytes:
    if request.content_length is not None and request.content_length > limit:
        raise ProblemError(
            f"request body is larger than {limit} bytes",
            status=413,
            code="payload_too_large",
            title="Content Too Large",
        )
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.content.iter_chunked(64 * 1024):
        size += len(chunk)
        if size > limit:
            raise ProblemError(
                f"request body is larger than {limit} bytes",
                status=413,
                code="payload_too_large",
                title="Content Too Large",
            )
        chunks.append(chunk)
    return b"".join(chunks)


def validation_errors(exc: ValidationError) -> list[dict[str, str]]:
    out = []
    for error in exc.errors(include_url=False):
        field = ".".join(str(part) for part in error["loc"]) or "body"
        out.append({"field": field, "message": error["msg"]})
    return out


def parse_model(model: type[ModelT], data: Any) -> ModelT:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        errors = validation_errors(exc)
        first = errors[0]
        raise ValidationProblem(f"{first['field']}: {first['message']}", errors=errors) from None


async def read_json(request: web.Request, model: type[ModelT]) -> ModelT:
    """Read, parse and validate a JSON body into ``model``."""
    require_content_type(request, "application/json")
    raw = await read_body(request, request.app[SETTINGS].max_json_body_bytes)
    try:
        data = orjson.loads(raw) if raw else None
    except orjson.JSONDecodeError as exc:
        raise ProblemError(f"the body is not valid JSON: {exc}", code="malformed_json") from None
    if not isinstance(data, dict):
        raise ProblemError("the body must be a JSON object", code="malformed_json")
    return parse_model(model, data)
