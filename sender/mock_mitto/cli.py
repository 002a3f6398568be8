"""``sender mock-mitto``: run the mock Mitto API on uvloop until SIGINT or SIGTERM.

The config is built in layers: defaults, then ``--config FILE`` (JSON with the keys of
``mitto-api.md``), then ``--config-json TEXT``, then the knob flags. Everything can be changed
later through ``PUT /_mock/config``.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import random
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import uvloop
from aiohttp import web
from pydantic import ValidationError

from sender.mock_mitto.config import MockConfig, deep_merge
from sender.mock_mitto.harness import SHUTDOWN_TIMEOUT_S
from sender.mock_mitto.server import MockServer

log = logging.getLogger("sender.mock_mitto")

DEFAULT_PORT = 9999


def _float_or_none(text: str) -> float | None:
    return None if text.lower() in ("none", "null", "") else float(text)


def _mix(text: str) -> dict[str, float]:
    """``Delivered=0.9,Undelivered=0.1`` -> ``{"Delivered": 0.9, "Undelivered": 0.1}``."""
    out: dict[str, float] = {}
    for part in text.split(","):
        name, sep, weight = part.partition("=")
        if not sep:
            raise argparse.ArgumentTypeError(f"expected STATUS=WEIGHT, got {part!r}")
        out[name.strip()] = float(weight)
    return out


# flag -> (config key path, parser). Each flag overrides the same key of the config file.
_KNOBS: dict[str, tuple[tuple[str, ...], Callable[[str], Any]]] = {
    "--latency-ms": (("latency_ms",), float),
    "--jitter-ms": (("jitter_ms",), float),
    "--p-429": (("p_429",), float),
    "--retry-after-s": (("retry_after_s",), _float_or_none),
    "--p-503": (("p_503",), float),
    "--p-500-after-accept": (("p_500_after_accept",), float),
    "--p-hang-after-accept": (("p_hang_after_accept",), float),
    "--hang-s": (("hang_s",), float),
    "--p-reset": (("p_reset",), float),
    "--p-internal-error": (("p_internal_error",), float),
    "--invalid-receiver-pattern": (("invalid_receiver_pattern",), str),
    "--rate-limit-per-s": (("rate_limit_per_s",), _float_or_none),
    "--rate-limit-burst": (("rate_limit_burst",), int),
    "--bulk-max": (("bulk_max",), int),
    "--dlr-url": (("dlr", "url"), str),
    "--dlr-method": (("dlr", "method"), str.upper),
    "--dlr-delay-ms": (("dlr", "delay_ms"), float),
    "--dlr-mix": (("dlr", "mix"), _mix),
    "--dlr-p-duplicate": (("dlr", "p_duplicate"), float),
    "--dlr-reorder-window-ms": (("dlr", "reorder_window_ms"), float),
    "--dlr-concurrency": (("dlr", "concurrency"), int),
}
_SWITCHES: dict[str, tuple[str, ...]] = {
    "--text-length-as-string": ("text_length_as_string",),
    "--dlr-reorder": ("dlr", "reorder"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sender mock-mitto",
        description="A faithful stand-in for the Mitto SMS REST API, with fault knobs.",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help="0 picks a free port")
    parser.add_argument("--config", type=Path, metavar="FILE", help="JSON file of config keys")
    parser.add_argument("--config-json", metavar="TEXT", help="config keys as inline JSON")
    parser.add_argument(
        "--record", type=Path, metavar="FILE", help="append accepted messages as NDJSON"
    )
    parser.add_argument(
        "--api-key",
        default=os.environ.get("SENDER_MITTO_API_KEY", "dev-key"),
        help="expected X-Mitto-API-Key (default: $SENDER_MITTO_API_KEY or dev-key)",
    )
    parser.add_argument(
        "--seed", type=int, help="seed the fault draws, status mix and ids (reproducible runs)"
    )
    parser.add_argument(
        "--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"]
    )
    knobs = parser.add_argument_group("fault knobs (each sets the config key of its name)")
    # SUPPRESS leaves a flag that was not given out of the namespace, so "--retry-after-s none"
    # (a given None) can still be told apart from an absent flag.
    for flag, (path, kind) in _KNOBS.items():
        knobs.add_argument(
            flag, type=kind, dest=_dest(flag), metavar=path[-1].upper(), default=argparse.SUPPRESS
        )
    for flag in _SWITCHES:
        knobs.add_argument(flag, action="store_true", dest=_dest(flag), default=argparse.SUPPRESS)
    return parser


def _dest(flag: str) -> str:
    return "knob_" + flag.lstrip("-").replace("-", "_")


def config_from_args(args: argparse.Namespace) -> MockConfig:
    """Layer the config file, inline JSON and knob flags; raises ValueError when invalid."""
    merged: dict[str, Any] = {}
    if args.config is not None:
        merged = deep_merge(merged, _json_object(args.config.read_bytes(), str(args.config)))
    if args.config_json is not None:
        merged = deep_merge(merged, _json_object(args.config_json.encode(), "--config-json"))
    flags: dict[str, Any] = {}
    for flag, path in [(f, p) for f, (p, _) in _KNOBS.items()] + list(_SWITCHES.items()):
        if not hasattr(args, _dest(flag)):
            continue
        target = flags
        for key in path[:-1]:
            target = target.setdefault(key, {})
        target[path[-1]] = getattr(args, _dest(flag))
    merged = deep_merge(merged, flags)
    try:
        return MockConfig.model_validate(merged)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "config"
        raise ValueError(f"invalid {where}: {first['msg']}") from None


def _json_object(raw: bytes, source: str) -> dict[str, Any]:
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise ValueError(f"{source}: not JSON ({exc})") from None
    if not isinstance(value, dict):
        raise ValueError(f"{source}: must be a JSON object")
    return value


async def serve(
    config: MockConfig,
    *,
    host: str,
    port: int,
    api_key: str,
    record: Path | None,
    seed: int | None = None,
) -> int:
    """Serve until SIGINT/SIGTERM; returns the exit code."""
    server = MockServer(
        config,
        api_key=api_key,
        record_path=record,
        rng=random.Random(seed) if seed is not None else None,
    )
    runner = web.AppRunner(
        server.make_app(),
        access_log=None,
        handler_cancellation=True,
        shutdown_timeout=SHUTDOWN_TIMEOUT_S,
    )
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port, backlog=4096, reuse_address=True)
        try:
            await site.start()
        except OSError as exc:
            log.error("cannot listen on %s:%s: %s", host, port, exc)
            return 1
        bound = runner.addresses[0][1]
        log.info("mock-mitto listening on http://%s:%s", host, bound)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
        log.info("mock-mitto stopping")
        return 0
    finally:
        await runner.cleanup()


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``sender mock-mitto``."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=args.log_level, stream=sys.stderr, format="%(asctime)s %(levelname)s %(message)s"
    )
    try:
        config = config_from_args(args)
    except (ValueError, OSError) as exc:
        print(f"sender mock-mitto: {exc}", file=sys.stderr)
        return 2
    return uvloop.run(
        serve(
            config,
            host=args.host,
            port=args.port,
            api_key=args.api_key,
            record=args.record,
            seed=args.seed,
        )
    )
