"""``python -m benchmarks run --quick`` as a smoke test: it runs end to end on the test's
services and writes well-formed results (speed is not checked here; benchmarks/README.md has
the full run)."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from sender.config import Settings

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

ROOT = Path(__file__).resolve().parents[2]


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and value >= 0


def _check_run(run: dict[str, Any], *cpu: str) -> None:
    assert run["recipients"] > 0
    assert _number(run["rate_per_s"]) and run["rate_per_s"] > 0
    assert _number(run["total_s"])
    for name in cpu:
        assert _number(run["cpu_s_per_1000"][name]), (name, run["cpu_s_per_1000"])
    timeline = run["timeline"]
    assert timeline["per_s"] and all(_number(v) for v in timeline["per_s"])


def test_quick_benchmark_run_writes_well_formed_results(settings: Settings, tmp_path: Path) -> None:
    out = tmp_path / "bench"
    argv = [
        sys.executable, "-m", "benchmarks", "run", "--quick", "--out", str(out),
        "--database-url", str(settings.database_url), "--redis-url", str(settings.redis_url),
        "--redis-prefix", settings.redis_prefix,
    ]  # fmt: skip
    done = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=280)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]

    results = json.loads((out / "results.json").read_text())
    assert results["mode"] == "quick"
    machine = results["machine"]
    for key in ("cpu_model", "cores", "ram_gb", "python", "postgresql", "redis"):
        assert machine[key], key
    sc = results["scenarios"]
    assert set(sc) == {"S1", "S2", "S3", "S4", "S5", "S6", "sweep"}

    s1 = sc["S1"]
    _check_run(s1["project"], "daemon", "api", "mock", "postgres_approx")
    assert s1["project"]["status"] == "sent"
    assert s1["project"]["mock"]["accepted"] == s1["project"]["recipients"]
    assert s1["project"]["mock"]["duplicates"] == 0
    _check_run(s1["baselines"]["B1"], "loadgen", "mock")
    _check_run(s1["baselines"]["B2"], "worker", "enqueuer", "mock")
    assert s1["baselines"]["B2"]["statuses"] == {"sent": s1["baselines"]["B2"]["recipients"]}
    assert _number(s1["ratios"]["vs_B1"]) and _number(s1["ratios"]["vs_B2"])

    s2 = sc["S2"]
    _check_run(s2["project"], "daemon")
    _check_run(s2["baselines"]["B1"], "loadgen")
    assert s2["littles_law_ceiling_per_s"] == 5000
    # With 100 ms answers the wire fills up; claims run ahead of it, the requests never do.
    assert 0 < s2["project"]["mock"]["in_flight_max"] <= 500

    _check_run(sc["S3"]["project"], "daemon")
    assert sc["S3"]["project"]["mock"]["requests"] < sc["S3"]["project"]["recipients"]

    s4 = sc["S4"]["project"]
    assert _number(s4["achieved_mean_per_s"]) and s4["achieved_mean_per_s"] > 0
    assert isinstance(s4["max_in_100ms"], int) and isinstance(s4["mock_429"], int)
    assert s4["window_limit"] == 150

    s5 = sc["S5"]["project"]
    for key in ("send_call_s", "materialization_s", "total_s", "pg_rows_per_s"):
        assert _number(s5[key]), key
    assert _number(s5["peak_rss_mb"]["daemon"]) and s5["peak_rss_mb"]["daemon"] > 0

    s6 = sc["S6"]
    for method in ("copy_set_based", "executemany", "row_by_row"):
        assert s6[method]["rows_moved"] == s6["outcomes"]
        assert _number(s6[method]["rows_per_s"])

    sweep = sc["sweep"]
    assert sweep["batch"] and sweep["chunk"] and sweep["window"]
    points = sweep["batch"] + sweep["chunk"] + sweep["window"]
    assert all(_number(p["rate_per_s"]) for p in points)
    assert all(isinstance(p["max_sending"], int) and p["max_sending"] >= 0 for p in points)

    table = (out / "results.md").read_text()
    assert "| Scenario |" in table and "S6" in table
    if importlib.util.find_spec("matplotlib") is not None:
        for name in ("s1_throughput.png", "s4_limiter.png"):
            assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", name
