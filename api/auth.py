"""Authentication and tenancy.

Store tokens are random (256 bits), shown once, stored only as SHA-256 hashes, and revocable.
The store a request acts for comes only from its token, never from the path or the body.
Admin endpoints take the admin token from settings. Provider callbacks are authenticated by the
secret in their path.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from typing import Any

from aiohttp import web

from api.keys import DB, SETTINGS, STORE, StoreIdentity
from sender.db import tokens as token_db
from sender.errors import Forbidden, NotFound, Unauthorized
from sender.logs import bind

TOKEN_PREFIX = "cs_live_"


def new_token() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def hash_token(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


def _bearer(request: web.Request) -> str:
    header = request.headers.get("Authorization", "")
    scheme, _, value = header.partition(" ")
    if not header:
        raise Unauthorized(
            "missing Authorization header; send 'Authorization: Bearer <token>'",
            code="missing_token",
            headers={"WWW-Authenticate": "Bearer"},
        )
    if scheme.lower() != "bearer" or not value.strip():
        raise Unauthorized(
            "the Authorization header must be 'Bearer <token>'",
            code="invalid_token",
            headers={"WWW-Authenticate": "Bearer"},
        )
    return value.strip()


async def authenticate_store(request: web.Request) -> StoreIdentity:
    token = _bearer(request)
    digest = hash_token(token)
    found = await token_db.find_active(request.app[DB], digest)
    # The lookup is by hash (an index probe, no early-exit string comparison on the secret);
    # the comparison below keeps that property explicit.
    if found is None or not hmac.compare_digest(found.token_hash, digest):
        raise Unauthorized(
            "the token is unknown or revoked",
            code="invalid_token",
            headers={"WWW-Authenticate": "Bearer"},
        )
    identity = StoreIdentity(store_id=found.store_id, token_id=found.id)
    bind(store_id=found.store_id)
    return identity


def require_admin(request: web.Request) -> None:
    token = _bearer(request)
    expected = request.app[SETTINGS].admin_token
    if not hmac.compare_digest(token.encode(), expected.encode()):
        raise Forbidden("this endpoint needs the admin token", code="admin_only")


def require_dlr_secret(request: web.Request) -> None:
    given = request.match_info.get("secret", "")
    expected = request.app[SETTINGS].dlr_secret
    if not hmac.compare_digest(given.encode(), expected.encode()):
        # Same answer as an unknown route: a wrong secret reveals nothing.
        raise NotFound("no such resource")


def store_of(request: web.Request) -> StoreIdentity:
    """The authenticated store of a store route (set by ``auth_middleware``)."""
    identity: StoreIdentity = request[STORE]
    return identity


_PUBLIC_PREFIXES = ("/healthz", "/readyz", "/metrics", "/openapi.json", "/r/", "/u/")


@web.middleware
async def auth_middleware(request: web.Request, handler: Any) -> web.StreamResponse:
    """Every /v1 route is authenticated here, so no handler can forget it."""
    path = request.path
    unmatched = request.match_info.http_exception is not None
    if not unmatched and path.startswith("/v1/"):
        if path.startswith("/v1/admin/"):
            require_admin(request)
        elif path.startswith("/v1/providers/"):
            require_dlr_secret(request)
        else:
            request[STORE] = await authenticate_store(request)
    elif not unmatched and not path.startswith(_PUBLIC_PREFIXES) and path != "/":
        raise NotFound("no such resource")
    response: web.StreamResponse = await handler(request)
    return response
