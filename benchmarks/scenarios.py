"""The scenarios (S1-S6) and baselines (B1, B2) of ``python -m benchmarks run``.

Each function takes the running :class:`~benchmarks.stack.BenchStack` and its sizes, runs one
measurement, and returns a JSON-ready dict. Project runs go through the public API (send call
to terminal status); arrivals over time come from the mock's own record.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import asyncpg
import orjson

from benchmarks.stack import BenchStack, ResourceSampler, materialization_s
from sender.db.outcomes import OutcomeRow, write_outcomes
from sender.db.pool import create_pool

MESSAGE = (
    "Hi {{first_name|there}}, 20% off everything today at our {{custom.city|Athens}} store: "
    "{{link:https://shop.example/sale}} Reply STOP to opt out"
)
BULK_MESSAGE = "Flash sale today: 20% off everything at Athens Shoes. Reply STOP to opt out"
UNLIMITED_RATE = 1_000_000.0


def unlimited(max_in_flight: int) -> dict[str, Any]:
    """Daemon settings of the throughput scenarios: no provider limit, the given concurrency."""
    return {
        "provider_rate": UNLIMITED_RATE,
        "provider_burst": 10_000,
        "max_in_flight": max_in_flight,
    }


@dataclass(frozen=True)
class Sizes:
    s1: int
    b1: int
    b2: int
    s2: int
    s3: int
    s4_seconds: float
    s5: int
    s6: int
    sweep: int
    batch_sizes: tuple[int, ...]
    chunk_sizes: tuple[int, ...]
    claim_windows: tuple[float, ...]
    max_in_flight: int = 200


QUICK = Sizes(
    s1=8_000,
    b1=8_000,
    b2=2_000,
    s2=4_000,
    s3=20_000,
    s4_seconds=3.0,
    s5=20_000,
    s6=3_000,
    sweep=4_000,
    batch_sizes=(1_000, 5_000),
    chunk_sizes=(200,),
    claim_windows=(2.0,),
)
FULL = Sizes(
    s1=200_000,
    b1=200_000,
    b2=50_000,
    s2=100_000,
    s3=200_000,
    s4_seconds=30.0,
    s5=1_000_000,
    s6=100_000,
    sweep=60_000,
    batch_sizes=(500, 1_000, 2_000, 5_000, 10_000, 20_000),
    chunk_sizes=(50, 100, 200),
    claim_windows=(1.0, 2.0, 3.0),
)


def _per_1000(cpu: dict[str, float], messages: int) -> dict[str, float]:
    if messages <= 0:
        return {}
    return {name: round(seconds * 1000 / messages, 3) for name, seconds in cpu.items()}


def _buckets_per_s(timeline: dict[str, Any]) -> list[float]:
    """Messages/s per bucket of the mock's timeline."""
    bucket_s = float(timeline["bucket_s"])
    return [round(n / bucket_s, 1) for n in timeline["buckets"]]


async def _mock_defaults(stack: BenchStack, **config: Any) -> None:
    assert stack.mock is not None
    defaults: dict[str, Any] = {"latency_ms": 0, "rate_limit_per_s": None, "rate_limit_burst": None}
    await stack.mock.set_config(**{**defaults, **config})
    await stack.mock.reset()


def _pids(stack: BenchStack, **extra: int) -> dict[str, int]:
    assert stack.mock is not None and stack.mock.proc is not None
    assert stack.api is not None and stack.api.pid is not None
    pids = {"mock": stack.mock.proc.pid, "api": stack.api.pid, **extra}
    if stack.daemon is not None and stack.daemon.pid is not None:
        pids["daemon"] = stack.daemon.pid
    return pids


async def _pg_rows_written(stack: BenchStack) -> int:
    conn = await asyncpg.connect(stack.database_url)
    try:
        value = await conn.fetchval(
            "SELECT coalesce(sum(n_tup_ins + n_tup_upd + n_tup_del), 0) FROM pg_stat_user_tables"
        )
        return int(value)
    finally:
        await conn.close()


# -- the project ---------------------------------------------------------------------------


async def project_send(
    stack: BenchStack,
    *,
    recipients: int,
    message: str = MESSAGE,
    daemon: dict[str, Any],
    mock: dict[str, Any] | None = None,
    timeout_s: float = 1800.0,
    rows_written: bool = False,
) -> dict[str, Any]:
    """Seed a store, start a daemon with ``daemon`` settings, send, wait for terminal."""
    store_id, token = await stack.create_store(credits=recipients * 3)
    seed_s = await stack.seed_contacts(store_id, recipients)
    campaign_id = await stack.create_campaign(token, message)
    await _mock_defaults(stack, **(mock or {}))
    proc = await stack.start_daemon(**daemon)
    assert proc.pid is not None
    await asyncio.sleep(0.5)  # let the workers reach their first poll
    rows0 = await _pg_rows_written(stack) if rows_written else 0
    sampler = ResourceSampler(_pids(stack))
    sampler.start()
    try:
        sent = await stack.send_and_wait(token, campaign_id, timeout_s=timeout_s)
    finally:
        resources = sampler.stop()
    assert stack.mock is not None
    timeline = await stack.mock.timeline(bucket_ms=100, window_ms=100, since=sent["wall_start"])
    stats = await stack.mock.stats()
    await stack.stop_daemon()
    final = sent["final"]
    total_s = float(sent["total_s"])
    result: dict[str, Any] = {
        "recipients": recipients,
        "status": final["status"],
        "counts": final["counts"],
        "seed_s": round(seed_s, 2),
        "send_call_s": round(sent["send_call_s"], 4),
        # Crash exposure: the most recipients seen `sending` (claimed, unanswered) at once.
        "max_sending": sent["max_sending"],
        "materialization_s": materialization_s(proc.log_path),
        "total_s": round(total_s, 3),
        "rate_per_s": round(recipients / total_s, 1),
        "provider_window_rate_per_s": _window_rate(timeline),
        "cpu_s": resources["cpu_s"],
        "cpu_s_per_1000": _per_1000(resources["cpu_s"], recipients),
        "peak_rss_mb": resources["peak_rss_mb"],
        "daemon_rss_series": _thin(sampler.rss.get("daemon", [])),
        "mock": {
            "accepted": stats["accepted"],
            "requests": stats["requests"],
            "throttled": stats["throttled"],
            "duplicates": stats["duplicates"],
            "in_flight_max": stats["in_flight_max"],
        },
        "timeline": {
            "bucket_s": timeline["bucket_s"],
            "offset_s": round(float(timeline["start"] or 0) - sent["wall_start"], 3)
            if timeline["count"]
            else 0.0,
            "per_s": _buckets_per_s(timeline),
            "max_in_100ms": timeline["max_in_window"],
        },
        "progress_series": sent["progress_series"][:: max(1, len(sent["progress_series"]) // 400)],
    }
    rss = sampler.rss.get("daemon", [])
    if len(rss) >= 8:
        quarter = rss[len(rss) // 4][1]
        result["daemon_rss_mb_at_25_pct"] = round(quarter, 1)
        result["daemon_rss_mb_at_end"] = round(rss[-1][1], 1)
        result["daemon_rss_growth_mb"] = round(max(r for _, r in rss) - quarter, 1)
    if rows_written:
        await asyncio.sleep(1.5)  # statistics reach pg_stat after the backends report them
        rows = await _pg_rows_written(stack) - rows0
        result["pg_rows_written"] = rows
        result["pg_rows_per_s"] = round(rows / total_s, 1)
    return result


def _window_rate(timeline: dict[str, Any]) -> float | None:
    if timeline["count"] < 2 or timeline["last"] <= timeline["first"]:
        return None
    return round((timeline["count"] - 1) / (timeline["last"] - timeline["first"]), 1)


def _thin(series: list[tuple[float, float]], points: int = 200) -> list[tuple[float, float]]:
    step = max(1, len(series) // points)
    return [(round(t, 2), round(r, 1)) for t, r in series[::step]]


# -- B1: the raw ceiling -------------------------------------------------------------------


async def raw_ceiling(
    stack: BenchStack, *, count: int, concurrency: int, mock: dict[str, Any] | None = None
) -> dict[str, Any]:
    """A tight aiohttp loop (benchmarks.loadgen) in its own process against the same mock."""
    assert stack.mock is not None
    await _mock_defaults(stack, **(mock or {}))
    wall0 = time.time()
    argv = [
        sys.executable,
        "-m",
        "benchmarks.loadgen",
        "--url",
        stack.mock.base_url,
        "--count",
        str(count),
        "--concurrency",
        str(concurrency),
    ]
    sampler = ResourceSampler(_pids(stack))
    sampler.start()
    try:
        out = await asyncio.to_thread(subprocess.run, argv, capture_output=True, check=True)
    finally:
        resources = sampler.stop()
    run = orjson.loads(out.stdout)
    timeline = await stack.mock.timeline(bucket_ms=100, window_ms=100, since=wall0)
    cpu = {"loadgen": round(float(run["cpu_s"]), 3), "mock": resources["cpu_s"]["mock"]}
    return {
        "recipients": count,
        "concurrency": concurrency,
        "total_s": round(run["seconds"], 3),
        "rate_per_s": round(run["rate_per_s"], 1),
        "statuses": run["statuses"],
        "errors": run["errors"],
        "cpu_s": cpu,
        "cpu_s_per_1000": _per_1000(cpu, count),
        "peak_rss_mb": {"mock": resources["peak_rss_mb"]["mock"]},
        "timeline": {
            "bucket_s": timeline["bucket_s"],
            "offset_s": round(float(timeline["start"] or 0) - wall0, 3)
            if timeline["count"]
            else 0.0,
            "per_s": _buckets_per_s(timeline),
            "max_in_100ms": timeline["max_in_window"],
        },
    }


async def wrk_ceiling(stack: BenchStack, *, concurrency: int, seconds: float) -> dict[str, Any]:
    """The same mock under wrk (C, one thread): how fast the mock alone can answer."""
    import shutil
    import tempfile

    wrk = shutil.which("wrk")
    if wrk is None:
        return {"skipped": "wrk not installed"}
    assert stack.mock is not None
    await _mock_defaults(stack)
    script = (
        'wrk.method = "POST"\n'
        'wrk.headers["Content-Type"] = "application/json"\n'
        'wrk.headers["X-Mitto-API-Key"] = "dev-key"\n'
        'wrk.body = \'{"from":"BENCH","to":"306900000001","text":"Hi Maria, 20% off everything '
        'today at our Athens store: http://127.0.0.1:8080/r/0000abcd Reply STOP to opt out",'
        '"reference":"c1-r1"}\'\n'
    )
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as f:
        f.write(script)
    sampler = ResourceSampler(_pids(stack))
    sampler.start()
    try:
        out = await asyncio.to_thread(
            subprocess.run,
            [wrk, "-t1", f"-c{concurrency}", f"-d{max(1, int(seconds))}s", "-s", f.name,
             stack.mock.base_url + "/sms"],
            capture_output=True,
            text=True,
            check=True,
        )  # fmt: skip
    finally:
        resources = sampler.stop()
    rate = None
    for line in out.stdout.splitlines():
        if line.startswith("Requests/sec:"):
            rate = float(line.split()[1])
    return {
        "concurrency": concurrency,
        "seconds": seconds,
        "rate_per_s": rate,
        "cpu_s": {"mock": resources["cpu_s"]["mock"]},
    }


# -- B2: the conventional design -----------------------------------------------------------

_CONV_RECIPIENTS = """
INSERT INTO campaign_recipients (campaign_id, store_id, contact_id, batch_no, phone)
SELECT $1, c.store_id, c.id, 0, c.phone FROM contacts c WHERE c.store_id = $2 ORDER BY c.id
"""


async def conventional(
    stack: BenchStack, *, count: int, concurrency: int, timeout_s: float = 1800.0
) -> dict[str, Any]:
    """One arq job per recipient, one UPDATE per outcome (benchmarks.conventional)."""
    assert stack.mock is not None
    store_id, token = await stack.create_store(credits=count * 3, name="Conventional")
    await stack.seed_contacts(store_id, count)
    campaign_id = await stack.create_campaign(token, MESSAGE)
    conn = await asyncpg.connect(stack.database_url)
    try:
        await conn.execute(_CONV_RECIPIENTS, campaign_id, store_id)
        await conn.execute("ANALYZE campaign_recipients")
    finally:
        await conn.close()
    await _mock_defaults(stack)
    queue = f"{stack.services.redis_prefix}:conv"
    common = [
        "--database-url",
        stack.database_url,
        "--redis-url",
        stack.services.redis_url,
        "--queue",
        queue,
        "--concurrency",
        str(concurrency),
    ]
    worker_log = (stack.log_dir / "conventional-worker.log").open("ab")
    worker = subprocess.Popen(  # noqa: ASYNC220 - starting it does not block
        [sys.executable, "-m", "benchmarks.conventional", "worker", *common,
         "--mitto-url", stack.mock.base_url, "--message", MESSAGE,
         "--public-url", stack.api_url],
        stdout=worker_log,
        stderr=subprocess.STDOUT,
    )  # fmt: skip
    worker_log.close()
    try:
        await asyncio.sleep(1.5)  # the worker connects and starts polling
        if worker.poll() is not None:
            raise RuntimeError("conventional worker exited early; see conventional-worker.log")
        pg = await asyncpg.connect(stack.database_url)
        enqueuer = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "benchmarks.conventional", "enqueue", *common,
            "--campaign-id", str(campaign_id),
            stdout=asyncio.subprocess.PIPE,
        )  # fmt: skip
        wall0 = time.time()
        t0 = time.perf_counter()
        sampler = ResourceSampler(_pids(stack, worker=worker.pid, enqueuer=enqueuer.pid))
        sampler.start()
        try:
            done = 0
            moved_at = time.perf_counter()
            while done < count:
                await asyncio.sleep(0.2)
                now_done = int(
                    await pg.fetchval(
                        "SELECT count(*) FROM campaign_recipients "
                        "WHERE campaign_id = $1 AND status <> 'pending'",
                        campaign_id,
                    )
                )
                now = time.perf_counter()
                if now_done != done:
                    done, moved_at = now_done, now
                elif now - moved_at > 60 and enqueuer.returncode is not None:
                    # Jobs gone from Redis (a FLUSHDB by someone sharing the server?).
                    raise RuntimeError(f"conventional design stalled at {done}/{count}")
                if now - t0 > timeout_s:
                    raise TimeoutError(f"conventional design: {done}/{count} after {timeout_s} s")
            total_s = time.perf_counter() - t0
        finally:
            resources = sampler.stop()
        stdout, _ = await enqueuer.communicate()
        enqueue_info = orjson.loads(stdout) if stdout else {}
        statuses = dict(
            await pg.fetch(
                "SELECT status, count(*) FROM campaign_recipients WHERE campaign_id = $1 "
                "GROUP BY status",
                campaign_id,
            )
        )
        await pg.close()
    finally:
        worker.terminate()
        await asyncio.to_thread(worker.wait, 30)
    timeline = await stack.mock.timeline(bucket_ms=100, window_ms=100, since=wall0)
    cpu = {k: v for k, v in resources["cpu_s"].items() if k != "api"}
    # The enqueuer exits before the measurement ends: it reports its own CPU time.
    cpu["enqueuer"] = round(float(enqueue_info.get("cpu_s", 0.0)), 3)
    return {
        "recipients": count,
        "concurrency": concurrency,
        "total_s": round(total_s, 3),
        "rate_per_s": round(count / total_s, 1),
        "enqueue_s": round(float(enqueue_info.get("enqueue_s", 0.0)), 3),
        "statuses": {str(k): int(v) for k, v in statuses.items()},
        "cpu_s": cpu,
        "cpu_s_per_1000": _per_1000(cpu, count),
        "peak_rss_mb": {
            k: v for k, v in resources["peak_rss_mb"].items() if k in ("worker", "mock")
        },
        "timeline": {
            "bucket_s": timeline["bucket_s"],
            "offset_s": round(float(timeline["start"] or 0) - wall0, 3)
            if timeline["count"]
            else 0.0,
            "per_s": _buckets_per_s(timeline),
            "max_in_100ms": timeline["max_in_window"],
        },
    }


# -- S4: limiter accuracy ------------------------------------------------------------------


async def limiter_accuracy(
    stack: BenchStack, *, rate: float, burst: int, seconds: float, max_in_flight: int
) -> dict[str, Any]:
    recipients = int(rate * seconds)
    run = await project_send(
        stack,
        recipients=recipients,
        daemon={
            "provider_rate": rate,
            "provider_burst": burst,
            "max_in_flight": max_in_flight,
        },
        mock={"rate_limit_per_s": rate, "rate_limit_burst": burst},
    )
    per_s = run["timeline"]["per_s"]
    bucket_s = run["timeline"]["bucket_s"]
    accepted = run["mock"]["accepted"]
    mean = run["provider_window_rate_per_s"]
    limit = rate * 0.1 + burst
    run.update(
        {
            "configured_rate_per_s": rate,
            "burst": burst,
            "achieved_mean_per_s": mean,
            "mean_error_pct": round(100 * (mean - rate) / rate, 3) if mean else None,
            "max_in_100ms": run["timeline"]["max_in_100ms"],
            "window_limit": limit,
            "mock_429": run["mock"]["throttled"],
            "accepted": accepted,
            "max_bucket_per_s": max(per_s, default=0) if bucket_s else None,
        }
    )
    return run


# -- S6: the write path --------------------------------------------------------------------

_S6_RECIPIENTS = """
INSERT INTO campaign_recipients (campaign_id, store_id, contact_id, batch_no, phone, status,
                                 claimed_at, requested_at, segments)
SELECT $1, $2, NULL, 0, '+3069' || lpad(g::text, 8, '0'), 'sending', now(), now(), 1
FROM generate_series(1, $3::integer) AS g
RETURNING id
"""
_ROW_UPDATE = """
UPDATE campaign_recipients
SET status = $2, attempts = attempts + $3, next_attempt_at = $4,
    provider_message_id = coalesce($5, provider_message_id), error_category = $6,
    error_code = $7, error_text = $8, sent_at = $9, updated_at = now()
WHERE id = $1 AND status = 'sending'
"""


def _row_args(row: OutcomeRow) -> tuple[Any, ...]:
    return (
        row.recipient_id,
        row.status,
        row.attempts_inc,
        row.next_attempt_at,
        row.provider_message_id,
        row.error_category,
        row.error_code,
        row.error_text,
        row.at,
    )


async def write_path(stack: BenchStack, *, count: int, chunk: int = 2000) -> dict[str, Any]:
    """``count`` outcomes written three ways into ``sending`` recipients of three campaigns."""
    store_id, token = await stack.create_store(credits=count * 10, name="Write path")
    pool = await create_pool(stack.database_url, min_size=2, max_size=4)
    results: dict[str, Any] = {"outcomes": count, "chunk": chunk}
    try:
        await pool.execute(
            "UPDATE stores SET credits_reserved = credits_reserved + $2 WHERE id = $1",
            store_id,
            count * 3,
        )
        methods = ("copy_set_based", "executemany", "row_by_row")
        rows_by_method: dict[str, list[OutcomeRow]] = {}
        for method in methods:
            campaign_id = await stack.create_campaign(token, MESSAGE)
            # As after a send call: the campaign holds a reservation covering every outcome.
            await pool.execute(
                "UPDATE campaigns SET status = 'sending', credits_reserved = $2 WHERE id = $1",
                campaign_id,
                count,
            )
            ids = [r["id"] for r in await pool.fetch(_S6_RECIPIENTS, campaign_id, store_id, count)]
            now = datetime.now(UTC)
            rows_by_method[method] = [
                OutcomeRow(rid, campaign_id, store_id, "sent", 1, None, f"{method[:4]}{rid:x}",
                           None, None, None, 1, True, now)
                for rid in ids
            ]  # fmt: skip
        await pool.execute("ANALYZE campaign_recipients")
        for method in methods:
            rows = rows_by_method[method]
            started = time.perf_counter()
            if method == "copy_set_based":
                for start in range(0, len(rows), chunk):
                    await write_outcomes(pool, rows[start : start + chunk])
            elif method == "executemany":
                async with pool.acquire() as conn:
                    for start in range(0, len(rows), chunk):
                        async with conn.transaction():
                            await conn.executemany(
                                _ROW_UPDATE, [_row_args(r) for r in rows[start : start + chunk]]
                            )
            else:
                async with pool.acquire() as conn:
                    for row in rows:
                        await conn.execute(_ROW_UPDATE, *_row_args(row))
            elapsed = time.perf_counter() - started
            moved = await pool.fetchval(
                "SELECT count(*) FROM campaign_recipients WHERE campaign_id = $1 "
                "AND status = 'sent'",
                rows[0].campaign_id,
            )
            results[method] = {
                "seconds": round(elapsed, 3),
                "rows_per_s": round(count / elapsed, 1),
                "rows_moved": int(moved),
            }
    finally:
        await pool.close()
    base = results["copy_set_based"]["rows_per_s"]
    results["ratio_vs_executemany"] = round(base / results["executemany"]["rows_per_s"], 2)
    results["ratio_vs_row_by_row"] = round(base / results["row_by_row"]["rows_per_s"], 2)
    results["note"] = (
        "copy_set_based also writes one ledger charge per recipient and the campaign and store "
        "counters in the same transaction; the other two update the recipients only"
    )
    return results
