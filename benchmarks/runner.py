"""``python -m benchmarks run``: every scenario and baseline side by side in one run.

Order: S1 with its baselines B1 (raw ceiling) and B2 (conventional design) measured right
next to it, S2 (latency-bound) with its own B1, S3 (bulk), S4 (limiter accuracy), S6 (write
path), the batch/chunk sweep, and S5 (1,000,000 recipients) last. Writes ``results.json``,
``results.md`` (the table) and PNG plots into the output folder.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import platform
import secrets
import sys
import time
from collections.abc import Callable, Coroutine
from importlib import metadata
from pathlib import Path
from typing import Any

import asyncpg
import orjson
import psutil

from benchmarks import scenarios as sc
from benchmarks.plots import write_plots
from benchmarks.report import render_table, update_readme
from benchmarks.stack import BenchStack, Services

ALL = ("S1", "S2", "S3", "S4", "S5", "S6", "sweep")


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


async def describe_machine(services: Services) -> dict[str, Any]:
    conn = await asyncpg.connect(services.database_url)
    try:
        pg_version = await conn.fetchval("SHOW server_version")
    finally:
        await conn.close()
    import redis.asyncio as aioredis

    client = aioredis.from_url(services.redis_url)
    try:
        info = await client.info("server")
    finally:
        await client.aclose()
    versions = {}
    for package in ("aiohttp", "uvloop", "asyncpg", "arq", "orjson"):
        with contextlib.suppress(metadata.PackageNotFoundError):
            versions[package] = metadata.version(package)
    return {
        "cpu_model": _cpu_model(),
        "cores": os.cpu_count(),
        "ram_gb": round(psutil.virtual_memory().total / 2**30, 1),
        "python": platform.python_version(),
        "postgresql": str(pg_version),
        "redis": str(info.get("redis_version")),
        "os": f"{platform.system()} {platform.release()}",
        "load_avg_at_start": [round(x, 2) for x in os.getloadavg()],
        "packages": versions,
        "shared": "the machine is shared with other test runs: compare ratios, not absolutes",
    }


def default_services(
    database_url: str | None, redis_url: str | None, redis_prefix: str | None
) -> Services:
    if database_url is None or redis_url is None:
        from sender import services
        from sender.config import load_settings

        base = services.with_embedded_defaults(load_settings())
        database_url = database_url or base.database_url
        redis_url = redis_url or base.redis_url
    assert database_url is not None and redis_url is not None
    return Services(database_url, redis_url, redis_prefix or f"bench{secrets.token_hex(4)}")


def _ratio(a: float | None, b: float | None) -> float | None:
    if not a or not b:
        return None
    return round(a / b, 3)


Step = Callable[[], Coroutine[Any, Any, dict[str, Any]]]


def _bracket(before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
    """The first run's record with rate and CPU averaged over both runs (both kept)."""
    mean = dict(before)
    mean["rate_per_s"] = round((before["rate_per_s"] + after["rate_per_s"]) / 2, 1)
    mean["cpu_s_per_1000"] = {
        k: round((v + after["cpu_s_per_1000"].get(k, v)) / 2, 3)
        for k, v in before["cpu_s_per_1000"].items()
    }
    mean["runs"] = [
        {
            "rate_per_s": r["rate_per_s"],
            "total_s": r["total_s"],
            "cpu_s_per_1000": r["cpu_s_per_1000"],
        }
        for r in (before, after)
    ]
    return mean


async def run_all(
    services: Services,
    out_dir: Path,
    *,
    quick: bool,
    only: tuple[str, ...] = ALL,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    sizes = sc.QUICK if quick else sc.FULL
    await asyncio.to_thread(out_dir.mkdir, parents=True, exist_ok=True)
    started = time.time()
    results: dict[str, Any] = {
        "version": 1,
        "mode": "quick" if quick else "full",
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
        "machine": await describe_machine(services),
        "sizes": dict(sizes.__dict__),
        "scenarios": {},
    }
    out = results["scenarios"]
    stack = BenchStack(services, out_dir / "logs")
    mif = sizes.max_in_flight
    unlimited = sc.unlimited(mif)

    async def step(name: str, fn: Step) -> dict[str, Any]:
        log(f"[{time.time() - started:7.1f} s] {name} ...")
        t = time.perf_counter()
        value = await fn()
        log(f"[{time.time() - started:7.1f} s] {name} done in {time.perf_counter() - t:.1f} s")
        # What is measured so far survives an interrupted long run.
        partial = orjson.dumps({**results, "partial": {name: value}}, option=orjson.OPT_INDENT_2)
        await asyncio.to_thread((out_dir / "results.partial.json").write_bytes, partial)
        return value

    await stack.start()
    try:
        if "S1" in only:
            b1 = await step(
                "B1 raw ceiling", lambda: sc.raw_ceiling(stack, count=sizes.b1, concurrency=mif)
            )
            s1 = await step(
                "S1 throughput",
                lambda: sc.project_send(stack, recipients=sizes.s1, daemon=unlimited),
            )
            # B1 again right after S1: the machine's load drifts, so the ceiling is the mean
            # of the runs on either side of the project's.
            b1_after = await step(
                "B1 raw ceiling again",
                lambda: sc.raw_ceiling(stack, count=sizes.b1, concurrency=mif),
            )
            b1 = _bracket(b1, b1_after)
            b2 = await step(
                "B2 conventional",
                lambda: sc.conventional(stack, count=sizes.b2, concurrency=mif),
            )
            wrk = await step("B1' wrk", lambda: sc.wrk_ceiling(stack, concurrency=mif, seconds=5))
            out["S1"] = {
                "title": "throughput: personalized, mock 0 ms, no provider limit",
                "project": s1,
                "baselines": {"B1": b1, "B2": b2, "wrk": wrk},
                "ratios": {
                    "vs_B1": _ratio(s1["rate_per_s"], b1["rate_per_s"]),
                    "vs_B2": _ratio(s1["rate_per_s"], b2["rate_per_s"]),
                    "B1_vs_B2": _ratio(b1["rate_per_s"], b2["rate_per_s"]),
                    "vs_wrk": _ratio(s1["rate_per_s"], wrk.get("rate_per_s")),
                },
            }
        if "S2" in only:
            latency = {"latency_ms": 100}
            b1 = await step(
                "B1 at 100 ms",
                lambda: sc.raw_ceiling(stack, count=sizes.s2, concurrency=500, mock=latency),
            )
            s2 = await step(
                "S2 latency-bound",
                lambda: sc.project_send(
                    stack,
                    recipients=sizes.s2,
                    daemon={**unlimited, "max_in_flight": 500},
                    mock=latency,
                ),
            )
            out["S2"] = {
                "title": "latency-bound: mock 100 ms, MAX_IN_FLIGHT 500",
                "littles_law_ceiling_per_s": 500 / 0.1,
                "project": s2,
                "baselines": {"B1": b1},
                "ratios": {
                    "vs_B1": _ratio(s2["rate_per_s"], b1["rate_per_s"]),
                    "vs_littles_law": _ratio(s2["rate_per_s"], 5000.0),
                },
            }
        if "S3" in only:
            s3 = await step(
                "S3 bulk",
                lambda: sc.project_send(
                    stack, recipients=sizes.s3, message=sc.BULK_MESSAGE, daemon=unlimited
                ),
            )
            out["S3"] = {
                "title": "bulk: identical text, /smsbulk",
                "project": s3,
                "target_per_s": 20_000,
                "ratios": {
                    "vs_S1": _ratio(s3["rate_per_s"], out.get("S1", {}).get("project", {}).get(
                        "rate_per_s")),
                },
            }  # fmt: skip
        if "S4" in only:
            s4 = await step(
                "S4 limiter",
                lambda: sc.limiter_accuracy(
                    stack, rate=1000.0, burst=50, seconds=sizes.s4_seconds, max_in_flight=mif
                ),
            )
            out["S4"] = {"title": "limiter accuracy: 1,000/s, burst 50", "project": s4}
        if "S6" in only:
            s6 = await step("S6 write path", lambda: sc.write_path(stack, count=sizes.s6))
            out["S6"] = {"title": "write path: COPY + set-based vs executemany vs per row", **s6}
        if "sweep" in only:
            out["sweep"] = await step("sweep", lambda: _sweep(stack, sizes, unlimited, log))
        if "S5" in only:
            s5 = await step(
                "S5 1M",
                lambda: sc.project_send(
                    stack, recipients=sizes.s5, daemon=unlimited, rows_written=True,
                    timeout_s=3600,
                ),
            )  # fmt: skip
            out["S5"] = {"title": f"{sizes.s5:,} recipients", "project": s5}
    finally:
        await stack.close()
    results["duration_s"] = round(time.time() - started, 1)
    results["table"] = render_table(results)
    results["plots"] = write_plots(results, out_dir)
    (out_dir / "results.json").write_bytes(orjson.dumps(results, option=orjson.OPT_INDENT_2))
    (out_dir / "results.md").write_text(results["table"])
    return results


async def _sweep(
    stack: BenchStack, sizes: sc.Sizes, unlimited: dict[str, Any], log: Callable[[str], None]
) -> dict[str, Any]:
    knobs: tuple[tuple[str, str, tuple[float, ...]], ...] = (
        ("batch", "batch_size", sizes.batch_sizes),
        ("chunk", "claim_chunk_size", sizes.chunk_sizes),
        ("window", "claim_window", sizes.claim_windows),
    )
    out: dict[str, Any] = {"recipients": sizes.sweep}
    for group, setting, values in knobs:
        points: list[dict[str, Any]] = []
        for value in values:
            run = await sc.project_send(
                stack, recipients=sizes.sweep, daemon={**unlimited, setting: value}
            )
            log(f"    {setting} {value}: {run['rate_per_s']:,.0f}/s")
            points.append(_point(run, **{setting: value}))
        out[group] = points
    return out


def _point(run: dict[str, Any], **knob: float) -> dict[str, Any]:
    return {
        **knob,
        "rate_per_s": run["rate_per_s"],
        "total_s": run["total_s"],
        "daemon_cpu_s_per_1000": run["cpu_s_per_1000"].get("daemon"),
        "daemon_peak_rss_mb": run["peak_rss_mb"].get("daemon"),
        "mock_in_flight_max": run["mock"]["in_flight_max"],
        "max_sending": run["max_sending"],
        "status": run["status"],
    }


def main_run(
    out_dir: Path,
    *,
    quick: bool,
    database_url: str | None,
    redis_url: str | None,
    redis_prefix: str | None,
    only: tuple[str, ...],
    readme: bool,
) -> int:
    import uvloop

    services = default_services(database_url, redis_url, redis_prefix)
    results = uvloop.run(run_all(services, out_dir, quick=quick, only=only))
    print(results["table"])
    print(f"results: {out_dir / 'results.json'}; plots: {', '.join(results['plots']) or 'none'}")
    if readme:
        update_readme(Path(__file__).parent / "README.md", results, out_dir)
    return 0 if _all_finished(results) else 1


def _all_finished(results: dict[str, Any]) -> bool:
    for scenario in results["scenarios"].values():
        project = scenario.get("project") if isinstance(scenario, dict) else None
        if project and project.get("status") != "sent":
            print(f"a campaign ended {project.get('status')}", file=sys.stderr)
            return False
    return True


if __name__ == "__main__":  # pragma: no cover
    asyncio.run(run_all(default_services(None, None, None), Path("bench-out"), quick=True))
