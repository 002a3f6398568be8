"""``python -m benchmarks run [--quick] [--out DIR] ...`` and ``python -m benchmarks profile``.

``run`` starts the mock Mitto, the API and a daemon per scenario as separate processes on the
given services (``--database-url``/``--redis-url``, else ``SENDER_DATABASE_URL``/
``SENDER_REDIS_URL``, else the embedded default), drives them through the public API and
writes ``results.json``, ``results.md`` and PNG plots (when matplotlib is installed:
``pip install -e '.[bench]'``). ``--quick`` is a small run (under two minutes) for the smoke
test. ``ab`` alternates values of one daemon setting over S1 runs (medians per value).
``profile`` runs S1 while ``py-spy`` samples the daemon (``pip install py-spy``; needs
root or ptrace permission) and prints the top frames.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from benchmarks.runner import ALL


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    for name in ("run", "profile", "ab"):
        p = sub.add_parser(name)
        p.add_argument("--out", type=Path, default=Path("bench-out"), help="output folder")
        p.add_argument("--database-url", help="PostgreSQL DSN of any database on the server")
        p.add_argument("--redis-url")
        p.add_argument("--redis-prefix", help="Redis key prefix (default: bench + random)")
    run = sub.choices["run"]
    run.add_argument("--quick", action="store_true", help="small sizes: a smoke run")
    run.add_argument(
        "--only", default=",".join(ALL), help=f"comma-separated subset of {','.join(ALL)}"
    )
    run.add_argument(
        "--readme",
        action="store_true",
        help="write the table and plots into benchmarks/README.md and benchmarks/results/",
    )
    ab = sub.choices["ab"]
    ab.add_argument("--setting", required=True, help="daemon setting, e.g. claim_window")
    ab.add_argument("--values", required=True, help="comma-separated values, e.g. 1,2,3")
    ab.add_argument("--rounds", type=int, default=2)
    ab.add_argument("--recipients", type=int, default=60_000)
    prof = sub.choices["profile"]
    prof.add_argument("--recipients", type=int, default=100_000)
    prof.add_argument("--duration", type=int, default=20, help="seconds py-spy samples")
    prof.add_argument("--max-in-flight", type=int, default=200)
    prof.add_argument("--daemon-env", action="append", default=[], metavar="KEY=VALUE")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "run":
        from benchmarks.runner import main_run

        only = tuple(s.strip() for s in args.only.split(",") if s.strip())
        unknown = sorted(set(only) - set(ALL))
        if unknown:
            print(f"unknown scenarios: {unknown}", file=sys.stderr)
            return 2
        return main_run(
            args.out,
            quick=args.quick,
            database_url=args.database_url,
            redis_url=args.redis_url,
            redis_prefix=args.redis_prefix,
            only=only,
            readme=args.readme,
        )
    if args.command == "ab":
        from benchmarks.ab import main_ab

        return main_ab(
            args.out,
            database_url=args.database_url,
            redis_url=args.redis_url,
            redis_prefix=args.redis_prefix,
            setting=args.setting,
            values=args.values,
            rounds=args.rounds,
            recipients=args.recipients,
        )
    from benchmarks.profile import main_profile

    extra = dict(item.split("=", 1) for item in args.daemon_env)
    return main_profile(
        args.out,
        database_url=args.database_url,
        redis_url=args.redis_url,
        redis_prefix=args.redis_prefix,
        recipients=args.recipients,
        duration_s=args.duration,
        max_in_flight=args.max_in_flight,
        daemon_env=extra,
    )


if __name__ == "__main__":
    sys.exit(main())
