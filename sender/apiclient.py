"""A small typed client of the control API, for the CLI.

Answers are JSON objects; a problem+json answer (or any non-2xx) raises :class:`ApiProblem`
with the problem's ``code`` and ``detail``, and an unreachable API raises :class:`ApiUnreachable`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from types import TracebackType
from typing import Any

import aiohttp
import orjson

from sender.errors import SenderError

__all__ = ["ApiClient", "ApiProblem", "ApiUnreachable"]


class ApiProblem(SenderError):
    """The API answered with an error."""

    def __init__(self, status: int, code: str, detail: str, body: dict[str, Any]) -> None:
        super().__init__(f"{code}: {detail}")
        self.status = status
        self.code = code
        self.detail = detail
        self.body = body


class ApiUnreachable(SenderError):
    """The API could not be reached."""


class ApiClient:
    """``async with ApiClient(url, token) as api: await api.get_json("/v1/...")``."""

    def __init__(self, base_url: str, token: str, *, timeout_s: float = 30.0) -> None:
        self.base_url = base_url.rstrip("/")
        self._token = token
        self._timeout = aiohttp.ClientTimeout(total=timeout_s)
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> ApiClient:
        self._session = aiohttp.ClientSession(
            timeout=self._timeout,
            headers={"Authorization": f"Bearer {self._token}", "Accept": "application/json"},
        )
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def request_json(
        self, method: str, path: str, *, json: Any = None, params: dict[str, str] | None = None
    ) -> dict[str, Any]:
        if self._session is None:
            raise RuntimeError("use ApiClient in 'async with'")
        url = f"{self.base_url}{path}"
        try:
            async with self._session.request(method, url, json=json, params=params) as response:
                text = await response.text()
                status = response.status
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise ApiUnreachable(f"cannot reach the API at {self.base_url}: {exc}") from exc
        body = _parse(text)
        if status >= 400:
            code = str(body.get("code") or f"http_{status}")
            detail = str(body.get("detail") or text.strip() or f"HTTP {status}")
            raise ApiProblem(status, code, detail, body)
        return body

    async def get_json(self, path: str, *, params: dict[str, str] | None = None) -> dict[str, Any]:
        return await self.request_json("GET", path, params=params)

    async def post_json(self, path: str, *, json: Any = None) -> dict[str, Any]:
        return await self.request_json("POST", path, json=json)

    async def events(self, path: str) -> AsyncIterator[tuple[str, dict[str, Any]]]:
        """Server-Sent Events from ``path`` as (event, data) pairs, until the stream ends."""
        if self._session is None:
            raise RuntimeError("use ApiClient in 'async with'")
        url = f"{self.base_url}{path}"
        try:
            async with self._session.get(
                url,
                headers={"Accept": "text/event-stream"},
                timeout=aiohttp.ClientTimeout(total=None, sock_read=60),
            ) as response:
                if response.status >= 400:
                    body = _parse(await response.text())
                    raise ApiProblem(
                        response.status,
                        str(body.get("code") or f"http_{response.status}"),
                        str(body.get("detail") or f"HTTP {response.status}"),
                        body,
                    )
                event, data = "message", list[str]()
                async for raw in response.content:
                    line = raw.decode().rstrip("\r\n")
                    if not line:
                        if data:
                            yield event, _parse("\n".join(data))
                        event, data = "message", []
                    elif line.startswith("event:"):
                        event = line[6:].strip()
                    elif line.startswith("data:"):
                        data.append(line[5:].strip())
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise ApiUnreachable(f"cannot reach the API at {self.base_url}: {exc}") from exc


def _parse(text: str) -> dict[str, Any]:
    try:
        value = orjson.loads(text) if text else {}
    except orjson.JSONDecodeError:
        return {}
    return value if isinstance(value, dict) else {"value": value}
