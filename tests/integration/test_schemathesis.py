"""Property-based API testing with schemathesis against the running app over real HTTP.

Every operation of the served OpenAPI document is called with generated valid inputs
(positive mode) and generated invalid ones (negative mode: wrong types, missing fields, bad
parameters). Each answer must not be a server error and must match the documented schema for
its status. Schemathesis is synchronous (``requests``), so it runs in a worker thread while
the test's event loop serves the app.
"""

from __future__ import annotations

import asyncio
import traceback
from typing import Any

import pytest
import schemathesis
from aiohttp.test_utils import TestClient, TestServer
from hypothesis import HealthCheck, Phase, given
from hypothesis import settings as hypothesis_settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import response_schema_conformance

from api.app import create_app
from api.openapi import document
from sender.config import Settings
from tests.integration.factories import ADMIN, Client, bearer, create_store

#: Examples per operation and generation mode: enough to find crashes on bad input, small
#: enough for the whole run to stay well under a minute.
EXAMPLES = 20
CHECKS = [not_a_server_error, response_schema_conformance]


def _run_operation(
    operation: Any, mode: GenerationMode, base_url: str, store_headers: dict[str, str]
) -> str | None:
    """Fuzz one operation in one mode; the failure text, or None."""
    path: str = operation.path
    headers = ADMIN if path.startswith("/v1/admin/") else store_headers

    @hypothesis_settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        derandomize=True,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
        report_multiple_bugs=False,
    )
    @given(case=operation.as_strategy(generation_mode=mode))
    def fuzz(case: Any) -> None:
        response = case.call(base_url=base_url, headers=headers, timeout=15)
        case.validate_response(response, checks=CHECKS, headers=headers)

    try:
        fuzz()
    except Unsatisfiable:
        # Negative mode has nothing to break in an operation without inputs (GET /healthz).
        return None
    except Exception:
        return f"{operation.method.upper()} {path} ({mode.value}):\n{traceback.format_exc()}"
    return None


def _run_all(base_url: str, store_token: str) -> list[str]:
    schema = schemathesis.openapi.from_dict(document())
    failures: list[str] = []
    operations = [result.ok() for result in schema.get_all_operations()]
    # Admin operations last, revocations at the very end: generated ids are small, so
    # DELETE /v1/admin/stores/1/tokens/1 revokes the store token the other operations use.
    operations.sort(key=lambda op: (op.path.startswith("/v1/admin/"), op.method == "delete"))
    for operation in operations:
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            failure = _run_operation(operation, mode, base_url, bearer(store_token))
            if failure is not None:
                failures.append(failure)
    return failures


@pytest.mark.slow
@pytest.mark.timeout(300)
async def test_schemathesis_finds_no_server_errors_or_schema_violations(
    settings: Settings,
) -> None:
    # The per-store budget is raised: thousands of generated requests are not a client abuse.
    app = create_app(settings.model_copy(update={"api_rate_limit_per_min": 1_000_000}))
    client: Client = TestClient(TestServer(app, host="127.0.0.1"))
    await client.start_server()
    try:
        _, token = await create_store(client)
        base_url = str(client.make_url("")).rstrip("/")
        failures = await asyncio.to_thread(_run_all, base_url, token)
    finally:
        await client.close()
    assert not failures, "\n\n".join(failures)
