"""Fixtures for API tests: the real app on a real socket, with a real database and Redis."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from aiohttp.test_utils import TestClient, TestServer

from api.app import create_app
from sender.config import Settings

ADMIN = {"Authorization": "Bearer test-admin-token"}


@pytest.fixture
async def api(settings: Settings) -> AsyncIterator[TestClient[object, object]]:
    """An HTTP client bound to a running control API (TCP on loopback)."""
    server = TestServer(create_app(settings), host="127.0.0.1")
    client: TestClient[object, object] = TestClient(server)
    await client.start_server()
    try:
        yield client
    finally:
        await client.close()
