"""``sender demo``: the whole product on one machine, end to end, in about a minute.

Starts the embedded PostgreSQL and Redis (or uses SENDER_DATABASE_URL/SENDER_REDIS_URL),
migrates, runs the mock Mitto, the API and a daemon as child processes, creates a store,
imports generated contacts, shows the preview, sends a personalized campaign with a tracked
link while drawing a live progress bar, and prints the summary. Ctrl-C stops everything it
started.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import aiohttp

from sender.cli_campaign import format_preview, progress_line
from sender.config import Settings
from sender.db.migrations import apply_migrations
from sender.mock_mitto.harness import MockProcess, free_port
from sender.processes import ServiceProcess
from sender.services import state_dir

MESSAGE = (
    "Hi {{first_name|there}}, Black Friday at Athens Shoes: 20% off everything today "
    "{{link:https://shop.example/black-friday}} Reply STOP to opt out"
)
FIRST_NAMES = ("Maria", "Eleni", "Giorgos", "Nikos", "Katerina", "Dimitris", "Sofia", "Yannis")
TERMINAL = {"sent", "failed", "cancelled"}


@dataclass(frozen=True)
class DemoOptions:
    contacts: int = 50_000
    latency_ms: int = 0
    provider_rate: float = 20_000.0
    max_in_flight: int = 200


async def _csv_rows(count: int) -> AsyncIterator[bytes]:
    """The import body, generated while it is uploaded (never all in memory)."""
    yield b"phone,first_name,last_name,tags\n"
    chunk: list[str] = []
    for i in range(count):
        chunk.append(f"+3069{i:08d},{FIRST_NAMES[i % len(FIRST_NAMES)]},Demo{i},demo;bf\n")
        if len(chunk) == 5000:
            yield "".join(chunk).encode()
            chunk.clear()
    if chunk:
        yield "".join(chunk).encode()


class DemoApi:
    def __init__(self, http: aiohttp.ClientSession, base_url: str) -> None:
        self.http = http
        self.base_url = base_url

    async def call(
        self, method: str, path: str, token: str, *, json: Any = None, data: Any = None,
        content_type: str | None = None,
    ) -> dict[str, Any]:  # fmt: skip
        headers = {"Authorization": f"Bearer {token}"}
        if content_type:
            headers["Content-Type"] = content_type
        async with self.http.request(
            method, self.base_url + path, json=json, data=data, headers=headers
        ) as resp:
            body: dict[str, Any] = await resp.json(content_type=None)
            if resp.status >= 400:
                raise RuntimeError(
                    f"{method} {path}: {resp.status} {body.get('code')}: {body.get('detail')}"
                )
            return body


async def run_demo(settings: Settings, options: DemoOptions, out: TextIO = sys.stdout) -> int:
    assert settings.database_url is not None and settings.redis_url is not None
    started = time.perf_counter()
    await apply_migrations(settings.database_url)
    log_dir = state_dir() / "demo" / time.strftime("%Y%m%d-%H%M%S")
    log_dir.mkdir(parents=True, exist_ok=True)
    admin_token = secrets.token_urlsafe(24)
    api_port, metrics_port = free_port(), free_port()
    mock = MockProcess({"latency_ms": options.latency_ms}, log_path=log_dir / "mock.log")
    env = {k: v for k, v in os.environ.items() if not k.startswith("SENDER_")} | {
        "SENDER_DATABASE_URL": settings.database_url,
        "SENDER_REDIS_URL": settings.redis_url,
        "SENDER_REDIS_PREFIX": f"demo{secrets.token_hex(3)}",
        "SENDER_ADMIN_TOKEN": admin_token,
        "SENDER_MITTO_BASE_URL": mock.base_url,
        "SENDER_MITTO_API_KEY": "dev-key",
        "SENDER_PUBLIC_BASE_URL": f"http://127.0.0.1:{api_port}",
        "SENDER_PROVIDER_RATE": str(os.environ.get("SENDER_PROVIDER_RATE", options.provider_rate)),
        "SENDER_PROVIDER_BURST": str(os.environ.get("SENDER_PROVIDER_BURST", 500)),
        "SENDER_MAX_IN_FLIGHT": str(os.environ.get("SENDER_MAX_IN_FLIGHT", options.max_in_flight)),
        "SENDER_METRICS_PORT": str(metrics_port),
    }
    api = ServiceProcess(
        "api", ["api", "--host", "127.0.0.1", "--port", str(api_port)], env, log_dir
    )
    daemon = ServiceProcess("daemon", ["daemon"], env, log_dir)
    try:
        print(f"logs: {log_dir}", file=out)
        mock.start()
        api.start(ready_url=f"http://127.0.0.1:{api_port}/readyz")
        daemon.start(ready_url=f"http://127.0.0.1:{metrics_port}/healthz")
        print(
            f"mock Mitto {mock.base_url} (latency {options.latency_ms} ms) | "
            f"api http://127.0.0.1:{api_port} | daemon metrics http://127.0.0.1:{metrics_port}/metrics",
            file=out,
        )
        async with aiohttp.ClientSession() as http:
            demo = DemoApi(http, f"http://127.0.0.1:{api_port}")
            status = await _walkthrough(demo, admin_token, options, out, started)
        peak = _peak_rss_mb(daemon.pid)
        if peak is not None:
            print(f"  daemon peak RSS {peak:.0f} MB", file=out)
        return status
    finally:
        daemon.stop()
        api.stop()
        await mock.aclose()
        mock.stop()


async def _walkthrough(
    demo: DemoApi, admin_token: str, options: DemoOptions, out: TextIO, started: float
) -> int:
    created = await demo.call(
        "POST",
        "/v1/admin/stores",
        admin_token,
        json={
            "name": "Athens Shoes",
            "sender_id": "ATHSHOES",
            "timezone": "Europe/Athens",
            "default_region": "GR",
            "subscription_status": "active",
            "credits": options.contacts * 3,
        },
    )
    token = created["token"]
    print(
        f"\nstore {created['store']['id']} created with {options.contacts * 3:,} credits", file=out
    )
    t0 = time.perf_counter()
    imported = await demo.call(
        "POST",
        "/v1/contacts/import",
        token,
        data=_csv_rows(options.contacts),
        content_type="text/csv",
    )
    print(
        f"imported {imported['inserted']:,} contacts in {time.perf_counter() - t0:.1f} s "
        f"({imported['rejected']} rejected)",
        file=out,
    )
    campaign = await demo.call(
        "POST",
        "/v1/campaigns",
        token,
        json={"name": "Black Friday", "message": MESSAGE, "audience": {"tags_any": ["bf"]}},
    )
    campaign_id = campaign["id"]
    preview = await demo.call("GET", f"/v1/campaigns/{campaign_id}/preview", token)
    print(f"\npreview of campaign {campaign_id}:", file=out)
    out.write(format_preview(preview))
    accepted = await demo.call("POST", f"/v1/campaigns/{campaign_id}/send", token)
    print(
        f"\nsending to {accepted['recipients']:,} recipients, "
        f"{accepted['credits_reserved']:,} credits reserved",
        file=out,
    )
    state: dict[str, Any] = {}
    while True:
        state = await demo.call("GET", f"/v1/campaigns/{campaign_id}/progress", token)
        out.write(progress_line(state))
        out.flush()
        if state["status"] in TERMINAL:
            break
        await asyncio.sleep(0.25)
    out.write("\n")
    errors = await demo.call("GET", f"/v1/campaigns/{campaign_id}/errors", token)
    _summary(state, errors, out, time.perf_counter() - started)
    return 0 if state["status"] == "sent" else 1


def _summary(state: dict[str, Any], errors: dict[str, Any], out: TextIO, total_s: float) -> None:
    counts = state["counts"]
    credits = state["credits"]
    print(f"\ncampaign {state['id']}: {state['status']}", file=out)
    print(
        f"  sent {counts['sent']:,}  delivered {counts['delivered']:,}  failed {counts['failed']:,}"
        f"  unknown {counts['unknown']:,}  skipped {counts['skipped']:,}",
        file=out,
    )
    for row in errors.get("categories", []):
        print(f"  failed: {row['category']} ({row['code']}): {row['count']:,}", file=out)
    print(
        f"  credits reserved {credits['reserved']:,}, charged {credits['charged']:,}, "
        f"released {credits['released']:,}",
        file=out,
    )
    print(f"  send rate {state['rate_per_s']:,.0f} messages/s; demo took {total_s:.1f} s", file=out)


def _peak_rss_mb(pid: int | None) -> float | None:
    """The process's peak resident set (Linux VmHWM), while it still runs."""
    if pid is None:
        return None
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except (OSError, ValueError, IndexError):
        return None
    return None
