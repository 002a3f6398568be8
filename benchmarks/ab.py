"""``python -m benchmarks ab``: one daemon setting, its values alternated, S1 each time.

    python -m benchmarks ab --setting claim_window --values 1,2,3 --rounds 2

Sequential runs on a shared machine drift (a run minutes later can be 30 % slower with the
same settings), so a sweep that runs each value once cannot separate a knob from the drift.
This runs the values in turn, ``rounds`` times (1, 2, 3, 1, 2, 3, ...), each an S1 send of
``recipients`` through the public API with a fresh daemon, and prints the median rate, daemon
CPU per 1,000 messages and crash exposure (most recipients seen ``sending``) per value, plus a
JSON line with every run.
"""

from __future__ import annotations

import asyncio
import statistics
from pathlib import Path
from typing import Any

import orjson

from benchmarks import scenarios as sc
from benchmarks.runner import default_services
from benchmarks.stack import BenchStack


def _parse(value: str) -> int | float:
    number = float(value)
    return int(number) if number.is_integer() and "." not in value else number


async def _ab(
    stack: BenchStack, setting: str, values: list[int | float], rounds: int, recipients: int
) -> dict[str, Any]:
    base = sc.unlimited(200)
    runs: dict[str, list[dict[str, Any]]] = {str(v): [] for v in values}
    for round_no in range(rounds):
        for value in values:
            run = await sc.project_send(
                stack, recipients=recipients, daemon={**base, setting: value}
            )
            point = {
                "round": round_no,
                "rate_per_s": run["rate_per_s"],
                "daemon_cpu_s_per_1000": run["cpu_s_per_1000"].get("daemon"),
                "max_sending": run["max_sending"],
            }
            runs[str(value)].append(point)
            print(f"  {setting}={value} round {round_no}: {run['rate_per_s']:,.0f}/s", flush=True)
    summary = {
        value: {
            key: statistics.median(p[key] for p in points)
            for key in ("rate_per_s", "daemon_cpu_s_per_1000", "max_sending")
        }
        for value, points in runs.items()
    }
    return {"setting": setting, "recipients": recipients, "runs": runs, "median": summary}


def main_ab(
    out_dir: Path,
    *,
    database_url: str | None,
    redis_url: str | None,
    redis_prefix: str | None,
    setting: str,
    values: str,
    rounds: int,
    recipients: int,
) -> int:
    parsed = [_parse(v.strip()) for v in values.split(",") if v.strip()]

    async def go() -> dict[str, Any]:
        stack = BenchStack(default_services(database_url, redis_url, redis_prefix), out_dir)
        await stack.start()
        try:
            return await _ab(stack, setting, parsed, rounds, recipients)
        finally:
            await stack.close()

    result = asyncio.run(go())
    for value, median in result["median"].items():
        print(
            f"{setting}={value}: median {median['rate_per_s']:,.0f}/s, daemon "
            f"{median['daemon_cpu_s_per_1000']} CPU s/1000, most sending {median['max_sending']}"
        )
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "ab.json").write_bytes(orjson.dumps(result, option=orjson.OPT_INDENT_2))
    print(orjson.dumps(result).decode())
    return 0
