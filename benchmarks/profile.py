"""``python -m benchmarks profile``: S1 with py-spy sampling the daemon.

Writes ``profile.raw`` (collapsed stacks), ``profile.svg`` (flame graph, rendered from the
same samples by a second py-spy pass when possible) and prints the functions with the most
samples, self and inclusive. py-spy is not a dependency: ``pip install py-spy`` into the venv
when profiling (it needs root, or ptrace permission for the daemon's process).
"""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

from benchmarks import scenarios as sc
from benchmarks.runner import default_services
from benchmarks.stack import BenchStack


def summarize(raw: str, top: int = 25) -> dict[str, Any]:
    """Self and inclusive sample counts per function from py-spy's collapsed stacks."""
    self_counts: Counter[str] = Counter()
    incl: Counter[str] = Counter()
    total = 0
    for line in raw.splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        total += count
        frames = stack.split(";")
        self_counts[_short(frames[-1])] += count
        for frame in {_short(f) for f in frames}:
            incl[frame] += count
    return {
        "samples": total,
        "self": [(f, round(100 * n / total, 1)) for f, n in self_counts.most_common(top)],
        "inclusive": [(f, round(100 * n / total, 1)) for f, n in incl.most_common(top * 2)],
    }


def _short(frame: str) -> str:
    # "send_one (sender/mitto.py:123)" -> "send_one (sender/mitto.py)"
    name, _, where = frame.partition(" (")
    path = where.rsplit(":", 1)[0].rstrip(")")
    for marker in ("site-packages/", "/work/main/", "lib/python3.11/"):
        if marker in path:
            path = path.split(marker, 1)[1]
    return f"{name} ({path})" if path else name


async def _profile(
    services: Any,
    out_dir: Path,
    recipients: int,
    duration_s: int,
    max_in_flight: int,
    daemon_env: dict[str, str],
) -> dict[str, Any]:
    pyspy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    stack = BenchStack(services, out_dir / "logs")
    await stack.start()
    raw_path = out_dir / "profile.raw"
    try:
        daemon_settings: dict[str, Any] = {**sc.unlimited(max_in_flight), **daemon_env}
        original = stack.start_daemon

        async def start_and_record(**settings: object) -> Any:
            proc = await original(**settings)
            asyncio.get_running_loop().call_later(
                2.0,
                lambda: subprocess.Popen(
                    [pyspy, "record", "--pid", str(proc.pid), "--duration", str(duration_s),
                     "--rate", "200", "--format", "raw", "--output", str(raw_path),
                     "--nonblocking"],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                ),
            )  # fmt: skip
            return proc

        stack.start_daemon = start_and_record  # type: ignore[method-assign]
        run = await sc.project_send(stack, recipients=recipients, daemon=daemon_settings)
        await asyncio.sleep(duration_s + 3 - min(duration_s, run["total_s"]))
    finally:
        await stack.close()
    raw = raw_path.read_text() if raw_path.exists() else ""
    summary = summarize(raw)
    summary["rate_per_s"] = run["rate_per_s"]
    summary["cpu_s_per_1000"] = run["cpu_s_per_1000"]
    return summary


def main_profile(
    out_dir: Path,
    *,
    database_url: str | None,
    redis_url: str | None,
    redis_prefix: str | None,
    recipients: int,
    duration_s: int,
    max_in_flight: int,
    daemon_env: dict[str, str],
) -> int:
    import orjson
    import uvloop

    out_dir.mkdir(parents=True, exist_ok=True)
    services = default_services(database_url, redis_url, redis_prefix)
    summary = uvloop.run(
        _profile(services, out_dir, recipients, duration_s, max_in_flight, daemon_env)
    )
    (out_dir / "profile.json").write_bytes(orjson.dumps(summary, option=orjson.OPT_INDENT_2))
    print(f"S1 rate {summary['rate_per_s']:,.0f}/s; CPU s/1000 {summary['cpu_s_per_1000']}")
    print(f"{summary['samples']} samples; self time:")
    for frame, pct in summary["self"]:
        print(f"  {pct:5.1f}%  {frame}")
    print("inclusive:")
    for frame, pct in summary["inclusive"]:
        print(f"  {pct:5.1f}%  {frame}")
    return 0
