"""Request id, access logging and HTTP metrics: the outermost layer of every request."""

from __future__ import annotations

import logging
import re
import time
import uuid
from typing import Any

from aiohttp import web

from api.keys import REQUEST_ID, STORE, StoreIdentity
from api.metrics import METRICS
from sender.logs import log_context

log = logging.getLogger("api.access")

_VALID_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


def route_template(request: web.Request) -> str:
    """The matched route's template (``/v1/campaigns/{id}``), never the raw path (cardinality)."""
    info = request.match_info
    if info.http_exception is not None:
        return "unmatched"
    resource = info.route.resource
    return resource.canonical if resource is not None else "unmatched"


@web.middleware
async def request_context_middleware(request: web.Request, handler: Any) -> web.StreamResponse:
    incoming = request.headers.get("X-Request-Id", "")
    request_id = incoming if _VALID_REQUEST_ID.match(incoming) else uuid.uuid4().hex
    request[REQUEST_ID] = request_id
    started = time.perf_counter()
    status = 500
    with log_context(request_id=request_id):
        try:
            response: web.StreamResponse = await handler(request)
        except web.HTTPException as exc:
            # Redirects and other non-error answers raised by handlers pass through here.
            status = exc.status
            exc.headers["X-Request-Id"] = request_id
            raise
        else:
            status = response.status
            # A streamed response (SSE) has sent its headers already.
            if not response.prepared:
                response.headers["X-Request-Id"] = request_id
            return response
        finally:
            duration_s = time.perf_counter() - started
            route = route_template(request)
            metrics = request.app.get(METRICS)
            if metrics is not None:
                metrics.observe(request.method, route, status, duration_s)
            identity: StoreIdentity | None = request.get(STORE)
            log.info(
                "request",
                extra={
                    "method": request.method,
                    "route": route,
                    "path": request.path,
                    "status": status,
                    "duration_ms": round(duration_s * 1000, 2),
                    "store_id": identity.store_id if identity else None,
                },
            )
