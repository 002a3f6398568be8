"""problem+json (RFC 9457) rendering: every error leaves the API in this one shape.

Handlers raise ``ProblemError`` subclasses (``sender.errors``); aiohttp's own HTTP errors
(404 for unknown routes, 405, 413 from the body limit) are translated here too, so a client
never sees an HTML page or a traceback.
"""

from __future__ import annotations

import logging
from typing import Any

import orjson
from aiohttp import web

from sender.errors import ProblemError

log = logging.getLogger("api.errors")

PROBLEM_CONTENT_TYPE = "application/problem+json"

_HTTP_CODES: dict[int, tuple[str, str]] = {
    400: ("bad_request", "Bad Request"),
    401: ("unauthorized", "Unauthorized"),
    403: ("forbidden", "Forbidden"),
    404: ("not_found", "Not Found"),
    405: ("method_not_allowed", "Method Not Allowed"),
    409: ("conflict", "Conflict"),
    413: ("payload_too_large", "Content Too Large"),
    415: ("unsupported_media_type", "Unsupported Media Type"),
    422: ("validation_error", "Unprocessable Content"),
    429: ("rate_limited", "Too Many Requests"),
}


def problem_response(
    status: int,
    code: str,
    title: str,
    detail: str,
    *,
    headers: dict[str, str] | None = None,
    **extra: Any,
) -> web.Response:
    body: dict[str, Any] = {
        "type": f"https://campaign-sender.dev/problems/{code}",
        "title": title,
        "status": status,
        "code": code,
        "detail": detail,
    }
    body.update(extra)
    return web.Response(
        status=status,
        body=orjson.dumps(body),
        content_type=PROBLEM_CONTENT_TYPE,
        headers=headers,
    )


def from_problem(exc: ProblemError) -> web.Response:
    return problem_response(
        exc.status, exc.code, exc.title, exc.detail, headers=exc.headers, **exc.extra
    )


def from_http_exception(exc: web.HTTPException) -> web.Response:
    code, title = _HTTP_CODES.get(exc.status, ("http_error", exc.reason))
    detail = exc.text if exc.text and not exc.text.startswith(f"{exc.status}:") else exc.reason
    headers = {k: v for k, v in exc.headers.items() if k.lower() in {"allow", "retry-after"}}
    if exc.status == 404:
        detail = "no such resource"
    elif exc.status == 413:
        detail = "request body is too large"
    return problem_response(exc.status, code, title, detail, headers=headers)


@web.middleware
async def problem_middleware(request: web.Request, handler: Any) -> web.StreamResponse:
    try:
        response: web.StreamResponse = await handler(request)
        return response
    except ProblemError as exc:
        return from_problem(exc)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        return from_http_exception(exc)
    except Exception:
        log.exception("unhandled error")
        return problem_response(
            500,
            "internal_error",
            "Internal Server Error",
            "the server failed; the request id says which",
        )
