"""Liveness and readiness."""

from __future__ import annotations

import asyncio

from aiohttp import web

from api.jsonio import json_response
from api.keys import DB, REDIS
from api.problems import problem_response


async def healthz(_request: web.Request) -> web.Response:
    return json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    checks: dict[str, str] = {}

    async def check_db() -> None:
        await request.app[DB].fetchval("SELECT 1")

    async def check_redis() -> None:
        await request.app[REDIS].ping()

    for name, probe in (("postgres", check_db), ("redis", check_redis)):
        try:
            await asyncio.wait_for(probe(), timeout=2.0)
            checks[name] = "ok"
        except Exception as exc:
            checks[name] = f"error: {type(exc).__name__}"
    if all(value == "ok" for value in checks.values()):
        return json_response({"status": "ready", "checks": checks})
    return problem_response(
        503, "not_ready", "Service Unavailable", "a dependency does not answer", checks=checks
    )


def setup(app: web.Application) -> None:
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
