"""PNG plots of a run's results; matplotlib is imported only here, and only when installed.

``pip install -e '.[bench]'`` brings it; without it :func:`write_plots` returns no files and
the run is otherwise complete.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


def _smooth(per_s: list[float], bucket_s: float, over_s: float) -> tuple[list[float], list[float]]:
    """Rates per ``over_s`` window from rates per ``bucket_s`` bucket (non-overlapping)."""
    k = max(1, round(over_s / bucket_s))
    xs: list[float] = []
    ys: list[float] = []
    for start in range(0, len(per_s), k):
        part = per_s[start : start + k]
        xs.append((start + len(part) / 2) * bucket_s)
        ys.append(sum(part) / len(part))
    return xs, ys


def _series(run: dict[str, Any], over_s: float) -> tuple[list[float], list[float]]:
    timeline = run["timeline"]
    xs, ys = _smooth(timeline["per_s"], float(timeline["bucket_s"]), over_s)
    offset = float(timeline.get("offset_s", 0.0))
    return [x + offset for x in xs], ys


def write_plots(results: dict[str, Any], out_dir: Path) -> list[str]:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return []
    written: list[str] = []
    scenarios = results["scenarios"]
    machine = results["machine"]
    subtitle = f"{machine['cpu_model']}, {machine['cores']} cores; {results['mode']} run"

    s1 = scenarios.get("S1")
    if s1 and "project" in s1:
        fig, ax = plt.subplots(figsize=(9, 4.5))
        for label, run in (
            ("S1 project (send call -> sent)", s1["project"]),
            ("B1 raw aiohttp loop", s1.get("baselines", {}).get("B1")),
            ("B2 conventional (job + UPDATE per message)", s1.get("baselines", {}).get("B2")),
        ):
            if run and "timeline" in run:
                xs, ys = _series(run, 0.5)
                ax.plot(xs, ys, label=f"{label}: {run['rate_per_s']:,.0f}/s")
        ax.set_xlabel("seconds since start")
        ax.set_ylabel("messages/s at the mock (0.5 s windows)")
        ax.set_title(f"S1 throughput, {s1['project']['recipients']:,} recipients\n{subtitle}")
        ax.grid(alpha=0.3)
        ax.legend(loc="lower right", fontsize=8)
        fig.tight_layout()
        path = out_dir / "s1_throughput.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        written.append(path.name)

    s4 = scenarios.get("S4")
    if s4 and "project" in s4:
        run = s4["project"]
        timeline = run["timeline"]
        bucket_s = float(timeline["bucket_s"])
        fig, ax = plt.subplots(figsize=(9, 4.5))
        xs = [i * bucket_s + timeline.get("offset_s", 0.0) for i in range(len(timeline["per_s"]))]
        counts = [v * bucket_s for v in timeline["per_s"]]
        ax.plot(xs, counts, lw=0.8, label="messages per 100 ms at the mock")
        ax.axhline(run["configured_rate_per_s"] * 0.1, color="green", ls="--", label="rate x 0.1")
        ax.axhline(run["window_limit"], color="red", ls=":", label="rate x 0.1 + burst")
        ax.set_xlabel("seconds since the send call")
        ax.set_ylabel("messages per 100 ms")
        ax.set_title(
            f"S4 limiter: {run['configured_rate_per_s']:,.0f}/s configured, "
            f"{run['achieved_mean_per_s']:,.1f}/s achieved, max {run['max_in_100ms']} "
            f"in 100 ms, {run['mock_429']} x 429\n{subtitle}"
        )
        ax.grid(alpha=0.3)
        ax.legend(loc="lower right", fontsize=8)
        fig.tight_layout()
        path = out_dir / "s4_limiter.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        written.append(path.name)

    sweep = scenarios.get("sweep")
    if sweep and sweep.get("batch"):
        fig, ax = plt.subplots(figsize=(7, 4))
        points = sweep["batch"]
        ax.plot([p["batch_size"] for p in points], [p["rate_per_s"] for p in points], "o-")
        ax.set_xscale("log")
        ax.set_xlabel("SENDER_BATCH_SIZE")
        ax.set_ylabel("recipients/s (send call -> sent)")
        ax.set_title(f"S1 throughput by batch size, {sweep['recipients']:,} recipients")
        ax.grid(alpha=0.3)
        fig.tight_layout()
        path = out_dir / "sweep_batch.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        written.append(path.name)

    s5 = scenarios.get("S5")
    if s5 and s5.get("project", {}).get("daemon_rss_series"):
        fig, ax = plt.subplots(figsize=(7, 4))
        series = s5["project"]["daemon_rss_series"]
        ax.plot([t for t, _ in series], [r for _, r in series])
        ax.set_xlabel("seconds since the send call")
        ax.set_ylabel("daemon RSS (MB)")
        ax.set_ylim(bottom=0)
        ax.set_title(f"S5 daemon memory, {s5['project']['recipients']:,} recipients")
        ax.grid(alpha=0.3)
        fig.tight_layout()
        path = out_dir / "s5_daemon_rss.png"
        fig.savefig(path, dpi=110)
        plt.close(fig)
        written.append(path.name)
    return written
