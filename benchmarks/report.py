"""The results table (Markdown) and its place in ``benchmarks/README.md``."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

BEGIN = "<!-- results:begin -->"
END = "<!-- results:end -->"


def _rate(value: float | None) -> str:
    return "-" if value is None else f"{value:,.0f}/s"


def _x(value: float | None) -> str:
    return "-" if value is None else f"**{value:.2f} x**"


def _cpu(run: dict[str, Any] | None, *names: str) -> str:
    if not run:
        return "-"
    per = run.get("cpu_s_per_1000", {})
    parts = [f"{n.replace('_approx', '~')} {per[n]:.3f}" for n in names if per.get(n) is not None]
    return ", ".join(parts) or "-"


def _rss(run: dict[str, Any] | None, name: str) -> str:
    if not run:
        return "-"
    value = run.get("peak_rss_mb", {}).get(name)
    return "-" if value is None else f"{name} {value:.0f} MB"


PROJECT_CPU = ("daemon", "api", "mock", "postgres_approx", "redis_approx")


def table_rows(results: dict[str, Any]) -> list[list[str]]:
    sc = results["scenarios"]
    rows: list[list[str]] = []
    if "S1" in sc:
        s1 = sc["S1"]
        p, b1, b2 = s1["project"], s1["baselines"]["B1"], s1["baselines"]["B2"]
        bracketed = ", mean of a run before and one after" if "runs" in b1 else ""
        rows.append(
            [
                f"S1 throughput ({p['recipients']:,} personalized, 0 ms) vs B1 raw aiohttp "
                f"loop ({b1['recipients']:,}{bracketed})",
                _rate(p["rate_per_s"]),
                _rate(b1["rate_per_s"]),
                _x(s1["ratios"]["vs_B1"]),
                f"project: {_cpu(p, *PROJECT_CPU)}; B1: {_cpu(b1, 'loadgen', 'mock')}",
                _rss(p, "daemon"),
            ]
        )
        rows.append(
            [
                f"S1 vs B2 conventional, job + UPDATE per message ({b2['recipients']:,})",
                _rate(p["rate_per_s"]),
                _rate(b2["rate_per_s"]),
                _x(s1["ratios"]["vs_B2"]),
                f"B2: {_cpu(b2, 'worker', 'enqueuer', 'mock', 'postgres_approx', 'redis_approx')}",
                _rss(b2, "worker"),
            ]
        )
        wrk = s1["baselines"].get("wrk", {})
        if wrk.get("rate_per_s"):
            rows.append(
                [
                    "S1 vs the mock alone under wrk (C client, same concurrency)",
                    _rate(p["rate_per_s"]),
                    _rate(wrk["rate_per_s"]),
                    _x(s1["ratios"].get("vs_wrk")),
                    "-",
                    "-",
                ]
            )
    if "S2" in sc:
        s2 = sc["S2"]
        p, b1 = s2["project"], s2["baselines"]["B1"]
        rows.append(
            [
                f"S2 latency-bound ({p['recipients']:,}, 100 ms, 500 in flight; "
                f"Little's law {s2['littles_law_ceiling_per_s']:,.0f}/s; most requests at the "
                f"mock at once: {p['mock'].get('in_flight_max', '-')}) vs B1 at 100 ms",
                _rate(p["rate_per_s"]),
                _rate(b1["rate_per_s"]),
                _x(s2["ratios"]["vs_B1"]),
                f"project: {_cpu(p, *PROJECT_CPU)}; B1: {_cpu(b1, 'loadgen', 'mock')}",
                _rss(p, "daemon"),
            ]
        )
    if "S3" in sc:
        s3 = sc["S3"]
        p = s3["project"]
        rows.append(
            [
                f"S3 bulk /smsbulk ({p['recipients']:,} identical) vs target",
                _rate(p["rate_per_s"]),
                _rate(s3["target_per_s"]),
                _x(p["rate_per_s"] / s3["target_per_s"]),
                f"project: {_cpu(p, *PROJECT_CPU)}",
                _rss(p, "daemon"),
            ]
        )
    if "S4" in sc:
        p = sc["S4"]["project"]
        rows.append(
            [
                f"S4 limiter {p['configured_rate_per_s']:,.0f}/s burst {p['burst']} "
                f"({p['recipients']:,}): mean; max in 100 ms (limit {p['window_limit']:.0f}); "
                "mock 429s",
                f"{p['achieved_mean_per_s']:,.1f}/s; {p['max_in_100ms']}; {p['mock_429']}",
                f"{p['configured_rate_per_s']:,.0f}/s; {p['window_limit']:.0f}; 0",
                f"{p['mean_error_pct']:+.2f} %",
                f"project: {_cpu(p, 'daemon', 'mock')}",
                _rss(p, "daemon"),
            ]
        )
    if "S5" in sc:
        p = sc["S5"]["project"]
        rows.append(
            [
                f"S5 {p['recipients']:,} recipients: send call; materialization; whole send; "
                "PostgreSQL rows written",
                f"{p['send_call_s']:.2f} s; {p['materialization_s'] or 0:.1f} s; "
                f"{p['total_s']:.0f} s ({p['rate_per_s']:,.0f}/s); "
                f"{p.get('pg_rows_per_s', 0):,.0f} rows/s",
                "< 1 s; < 15 s; -; -",
                "-",
                f"project: {_cpu(p, *PROJECT_CPU)}",
                _rss(p, "daemon"),
            ]
        )
    if "S6" in sc:
        s6 = sc["S6"]
        rows.append(
            [
                f"S6 write path, {s6['outcomes']:,} outcomes: COPY + set-based vs executemany",
                f"{s6['copy_set_based']['rows_per_s']:,.0f} rows/s",
                f"{s6['executemany']['rows_per_s']:,.0f} rows/s",
                _x(s6["ratio_vs_executemany"]),
                "-",
                "-",
            ]
        )
        rows.append(
            [
                "S6 COPY + set-based vs one UPDATE per row",
                f"{s6['copy_set_based']['rows_per_s']:,.0f} rows/s",
                f"{s6['row_by_row']['rows_per_s']:,.0f} rows/s",
                _x(s6["ratio_vs_row_by_row"]),
                "-",
                "-",
            ]
        )
    return rows


def render_table(results: dict[str, Any]) -> str:
    m = results["machine"]
    lines = [
        f"Run: {results['mode']}, {results['started_at']}, {results.get('duration_s', 0):.0f} s. "
        f"Machine: {m['cpu_model']}, {m['cores']} cores, {m['ram_gb']} GB RAM, "
        f"Python {m['python']}, PostgreSQL {m['postgresql']}, Redis {m['redis']}, {m['os']}; "
        f"load average at start {m['load_avg_at_start']} (shared machine).",
        "",
        "| Scenario | Project | Baseline | Ratio | CPU s per 1,000 messages | Peak RSS |",
        "|---|---|---|---|---|---|",
    ]
    for row in table_rows(results):
        lines.append("| " + " | ".join(cell.replace("|", "/") for cell in row) + " |")
    sweep = results["scenarios"].get("sweep")
    if sweep:
        title = (
            f"Batch size, claim chunk and claim window (S1 settings, MAX_IN_FLIGHT 200, "
            f"{sweep['recipients']:,} recipients; crash exposure is the most recipients seen "
            "`sending` at once in the progress polled every 100 ms: what a SIGKILL could leave "
            "`unknown`):"
        )
        lines += ["", title, ""]
        lines += ["| Knob | Value | Recipients/s | Daemon CPU s/1000 | Daemon peak RSS "
                  "| Crash exposure (most `sending`) |",
                  "|---|---|---|---|---|---|"]  # fmt: skip
        knobs = (
            ("batch", "batch_size", "SENDER_BATCH_SIZE"),
            ("chunk", "claim_chunk_size", "SENDER_CLAIM_CHUNK_SIZE"),
            ("window", "claim_window", "SENDER_CLAIM_WINDOW"),
        )
        for group, key, name in knobs:
            for point in sweep.get(group, []):
                lines.append(
                    f"| {name} | {point[key]:,} | {point['rate_per_s']:,.0f} | "
                    f"{point['daemon_cpu_s_per_1000']} | {point['daemon_peak_rss_mb']} MB | "
                    f"{point.get('max_sending', '-')} |"
                )
    return "\n".join(lines) + "\n"


def update_readme(readme: Path, results: dict[str, Any], out_dir: Path) -> None:
    """Replace the results section of the README and copy the plots next to it."""
    text = readme.read_text()
    plots = results.get("plots", [])
    target = readme.parent / "results"
    target.mkdir(exist_ok=True)
    for name in plots:
        shutil.copy(out_dir / name, target / name)
    shutil.copy(out_dir / "results.json", target / "results.json")
    images = "\n".join(f"![{name}](results/{name})" for name in plots)
    section = f"{BEGIN}\n{results['table']}\n{images}\n{END}"
    if BEGIN in text and END in text:
        head, rest = text.split(BEGIN, 1)
        _, tail = rest.split(END, 1)
        text = head + section + tail
    else:
        text = text.rstrip() + "\n\n" + section + "\n"
    readme.write_text(text)
