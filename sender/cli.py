"""The ``sender`` command line: one entry point, one small function per subcommand.

Every command reads settings once; an invalid setting or an embedded-service failure ends the
command with one clear line on stderr and exit status 2, never a traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Callable, Sequence

from sender import services
from sender.cli_campaign import register as register_campaign_commands
from sender.config import Settings, load_settings
from sender.errors import SenderError

Handler = Callable[[argparse.Namespace, list[str]], int]


def _cmd_services(args: argparse.Namespace, _rest: list[str]) -> int:
    if args.action == "up":
        found = services.up()
        print(f"postgres: {found.database_url}")
        print(f"redis:    {found.redis_url}")
        return 0
    if args.action == "down":
        stopped = services.down()
        print("stopped: " + (", ".join(stopped) if stopped else "nothing was running"))
        return 0
    found_running = services.running()
    if found_running is None:
        print(
            "embedded services are not running; start them with `sender services up`",
            file=sys.stderr,
        )
        return 1
    print("\n".join(services.env_lines(found_running)))
    return 0


def _cmd_migrate(_args: argparse.Namespace, _rest: list[str]) -> int:
    from sender.db.migrations import apply_migrations

    settings = services.with_embedded_defaults(load_settings())
    assert settings.database_url is not None
    applied = asyncio.run(apply_migrations(settings.database_url))
    print("applied: " + ", ".join(applied) if applied else "database is up to date")
    return 0


def _cmd_api(args: argparse.Namespace, _rest: list[str]) -> int:
    import uvloop
    from aiohttp import web

    from api.app import create_app
    from sender.logs import setup_logging

    settings = settings_or_exit()
    setup_logging(settings.log_level)
    host = args.host or settings.api_host
    port = args.port or settings.api_port
    uvloop.install()
    web.run_app(create_app(settings), host=host, port=port, access_log=None, print=None)
    return 0


def _cmd_daemon(args: argparse.Namespace, _rest: list[str]) -> int:
    import uvloop

    from sender.daemon import run_daemon
    from sender.logs import setup_logging

    settings = settings_or_exit()
    setup_logging(settings.log_level)
    return uvloop.run(run_daemon(settings, metrics_port=args.metrics_port))


def _cmd_demo(args: argparse.Namespace, _rest: list[str]) -> int:
    import uvloop

    from sender.demo import DemoOptions, run_demo

    settings = settings_or_exit()
    options = DemoOptions(
        contacts=args.contacts, latency_ms=args.latency_ms, provider_rate=args.rate
    )
    try:
        return uvloop.run(run_demo(settings, options))
    except KeyboardInterrupt:
        print("\ninterrupted: everything the demo started was stopped", file=sys.stderr)
        return 130


def _cmd_mock_mitto(_args: argparse.Namespace, rest: list[str]) -> int:
    from sender.mock_mitto.cli import main as mock_main

    status: int = mock_main(rest)
    return status


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sender",
        description="High-throughput SMS campaign sender (Mitto). Settings come from SENDER_* "
        "environment variables; without SENDER_DATABASE_URL/SENDER_REDIS_URL the embedded "
        "PostgreSQL and Redis are started on demand.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("services", help="start, stop or locate the embedded PostgreSQL and Redis")
    p.add_argument("action", choices=["up", "down", "env"])
    p.set_defaults(handler=_cmd_services)

    p = sub.add_parser("migrate", help="apply pending database migrations (safe to run twice)")
    p.set_defaults(handler=_cmd_migrate)

    p = sub.add_parser("api", help="run the HTTP control API")
    p.add_argument("--host", default=None, help="listen address (default SENDER_API_HOST)")
    p.add_argument("--port", type=int, default=None, help="listen port (default SENDER_API_PORT)")
    p.set_defaults(handler=_cmd_api)

    p = sub.add_parser("daemon", help="run the send daemon (arq workers for high/normal/low)")
    p.add_argument(
        "--metrics-port",
        type=int,
        default=None,
        help="Prometheus port (default SENDER_METRICS_PORT; 0 disables)",
    )
    p.set_defaults(handler=_cmd_daemon)

    p = sub.add_parser(
        "demo",
        help="the whole product end to end on the embedded services: import, preview, send",
    )
    p.add_argument("--contacts", type=int, default=50_000, help="contacts to generate")
    p.add_argument("--latency-ms", type=int, default=0, help="mock provider latency")
    p.add_argument("--rate", type=float, default=20_000.0, help="provider rate (messages/s)")
    p.set_defaults(handler=_cmd_demo)

    register_campaign_commands(sub)

    p = sub.add_parser(
        "mock-mitto",
        help="run the mock Mitto SMS API (see `sender mock-mitto --help`)",
        add_help=False,
    )
    p.set_defaults(handler=_cmd_mock_mitto, passthrough=True)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    # Subcommands that own their flags (mock-mitto) get the rest of the line untouched.
    args, rest = parser.parse_known_args(argv)
    if rest and not getattr(args, "passthrough", False):
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    handler: Handler = args.handler
    try:
        return handler(args, rest)
    except SenderError as exc:
        print(f"sender: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


def settings_or_exit() -> Settings:
    """Settings for long-running commands, with embedded defaults filled in."""
    return services.with_embedded_defaults(load_settings())


if __name__ == "__main__":
    sys.exit(main())
