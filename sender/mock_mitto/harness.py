"""Run the mock from tests and tools: in-process (:func:`run_mock`) or as a subprocess
(:class:`MockProcess`), both with the same small admin client (:class:`MockAdmin`).

In-process is the fast default for integration tests; the subprocess is for acceptance tests
that kill and restart other processes and want the mock to outlive them (or to be killed
itself). Both listen on a free loopback port unless told otherwise.
"""

from __future__ import annotations

import contextlib
import os
import random
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

import aiohttp
import orjson
from aiohttp import web

from sender.mock_mitto.config import MockConfig
from sender.mock_mitto.server import MockServer

#: A handler held by p_hang_after_accept is cancelled when its client leaves; whatever is
#: still running after this long at shutdown is abandoned.
SHUTDOWN_TIMEOUT_S = 1.0


class MockAdmin:
    """Async client of the ``/_mock/`` admin API of a mock at ``base_url``."""

    def __init__(self, base_url: str) -> None:
        self.base_url = base_url.rstrip("/")
        self.admin_url = f"{self.base_url}/_mock"
        self._session: aiohttp.ClientSession | None = None

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30))
        return self._session

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def messages(self) -> list[dict[str, Any]]:
        """Every accepted message, in arrival order."""
        async with self._http().get(f"{self.admin_url}/messages") as resp:
            resp.raise_for_status()
            raw = await resp.read()
        return [orjson.loads(line) for line in raw.splitlines() if line]

    async def stats(self) -> dict[str, Any]:
        async with self._http().get(f"{self.admin_url}/stats") as resp:
            resp.raise_for_status()
            out: dict[str, Any] = orjson.loads(await resp.read())
        return out

    async def timeline(
        self, *, bucket_ms: float = 100, window_ms: float = 100, since: float | None = None
    ) -> dict[str, Any]:
        """Arrivals over time (``GET /_mock/timeline``): buckets and the busiest window."""
        params = {"bucket_ms": str(bucket_ms), "window_ms": str(window_ms)}
        if since is not None:
            params["since"] = repr(since)
        async with self._http().get(f"{self.admin_url}/timeline", params=params) as resp:
            resp.raise_for_status()
            out: dict[str, Any] = orjson.loads(await resp.read())
        return out

    async def reset(self) -> None:
        async with self._http().post(f"{self.admin_url}/reset") as resp:
            resp.raise_for_status()

    async def config(self) -> dict[str, Any]:
        async with self._http().get(f"{self.admin_url}/config") as resp:
            resp.raise_for_status()
            out: dict[str, Any] = orjson.loads(await resp.read())
        return out

    async def set_config(self, **keys: Any) -> dict[str, Any]:
        """Merge ``keys`` into the live config (``dlr={...}`` merges nested keys)."""
        async with self._http().put(f"{self.admin_url}/config", data=orjson.dumps(keys)) as resp:
            body = await resp.read()
            if resp.status != 200:
                raise ValueError(f"config refused: {body.decode(errors='replace')}")
        out: dict[str, Any] = orjson.loads(body)
        return out

    async def inbound(
        self, *, url: str, from_: str, to: str, text: str, method: str = "POST"
    ) -> dict[str, Any]:
        """Play an inbound SMS to ``url``; returns the target's ``status`` and ``body``."""
        payload = {"url": url, "from": from_, "to": to, "text": text, "method": method}
        async with self._http().post(f"{self.admin_url}/inbound", data=orjson.dumps(payload)) as r:
            out: dict[str, Any] = orjson.loads(await r.read())
        return out


class InProcessMock(MockAdmin):
    """A mock running on the caller's event loop; ``server`` gives direct access to it."""

    def __init__(self, base_url: str, server: MockServer) -> None:
        super().__init__(base_url)
        self.server = server


@contextlib.asynccontextmanager
async def run_mock(
    config: dict[str, Any] | None = None,
    *,
    api_key: str = "dev-key",
    host: str = "127.0.0.1",
    port: int = 0,
    record_path: Path | None = None,
    seed: int | None = None,
) -> AsyncIterator[InProcessMock]:
    """Serve a mock on the running loop for the duration of the ``async with`` block.

    ``seed`` makes the fault draws, status mix and ids reproducible for a given sequence of
    requests.
    """
    server = MockServer(
        MockConfig.model_validate(config or {}),
        api_key=api_key,
        record_path=record_path,
        rng=random.Random(seed) if seed is not None else None,
    )
    runner = web.AppRunner(
        server.make_app(),
        access_log=None,
        handler_cancellation=True,
        shutdown_timeout=SHUTDOWN_TIMEOUT_S,
    )
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port)
        await site.start()
        bound_port = runner.addresses[0][1]
        mock = InProcessMock(f"http://{_url_host(host)}:{bound_port}", server)
        try:
            yield mock
        finally:
            await mock.aclose()
    finally:
        await runner.cleanup()


class MockProcess(MockAdmin):
    """``sender mock-mitto`` in a child process on a free (or given) port.

    ``start`` returns once the port answers; ``stop`` sends SIGTERM (``kill`` SIGKILL). A
    stopped mock can be started again on the same port. Use as a sync or async context
    manager; the admin helpers (``stats()``, ...) are async either way.
    """

    def __init__(
        self,
        config: dict[str, Any] | None = None,
        *,
        api_key: str = "dev-key",
        host: str = "127.0.0.1",
        port: int = 0,
        record_path: Path | None = None,
        extra_args: Sequence[str] = (),
        log_path: Path | None = None,
        env: dict[str, str] | None = None,
    ) -> None:
        self.host = host
        self.port = port or free_port(host)
        super().__init__(f"http://{_url_host(host)}:{self.port}")
        self.config_dict = config or {}
        self.api_key = api_key
        self.record_path = record_path
        self.extra_args = list(extra_args)
        self.log_path = log_path
        self.env = env
        self.proc: subprocess.Popen[bytes] | None = None

    def argv(self) -> list[str]:
        args = [
            sys.executable,
            "-c",
            "import sys; from sender.mock_mitto.cli import main; sys.exit(main(sys.argv[1:]))",
            "--host",
            self.host,
            "--port",
            str(self.port),
            "--api-key",
            self.api_key,
        ]
        if self.config_dict:
            args += ["--config-json", orjson.dumps(self.config_dict).decode()]
        if self.record_path is not None:
            args += ["--record", str(self.record_path)]
        return args + self.extra_args

    def start(self, timeout_s: float = 15.0) -> None:
        if self.proc is not None and self.proc.poll() is None:
            raise RuntimeError("mock already running")
        out: Any = subprocess.DEVNULL
        if self.log_path is not None:
            out = self.log_path.open("ab")
        try:
            self.proc = subprocess.Popen(
                self.argv(),
                stdout=out,
                stderr=subprocess.STDOUT if self.log_path is not None else None,
                env={**os.environ, **(self.env or {})},
            )
        finally:
            if self.log_path is not None:
                out.close()
        deadline = time.monotonic() + timeout_s
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"mock exited with {self.proc.returncode} before answering")
            try:
                with urllib.request.urlopen(f"{self.admin_url}/stats", timeout=1) as resp:
                    if resp.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                pass
            if time.monotonic() > deadline:
                self.kill()
                raise TimeoutError(f"mock did not answer on {self.base_url} in {timeout_s}s")
            time.sleep(0.05)

    def stop(self, timeout_s: float = 10.0) -> int | None:
        """SIGTERM and wait; SIGKILL if it does not exit in time. Returns the exit code."""
        return self._end(signal.SIGTERM, timeout_s)

    def kill(self) -> int | None:
        return self._end(signal.SIGKILL, 5.0)

    def _end(self, sig: signal.Signals, timeout_s: float) -> int | None:
        proc, self.proc = self.proc, None
        if proc is None:
            return None
        if proc.poll() is None:
            proc.send_signal(sig)
            try:
                proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        return proc.returncode

    def __enter__(self) -> MockProcess:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    async def __aenter__(self) -> MockProcess:
        self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()
        self.stop()


def free_port(host: str = "127.0.0.1") -> int:
    """A port that was free a moment ago (the OS picks it; a race is possible but rare)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
    return port


def _url_host(host: str) -> str:
    if host in ("0.0.0.0", ""):
        return "127.0.0.1"
    if host == "::":
        return "[::1]"
    return f"[{host}]" if ":" in host else host
