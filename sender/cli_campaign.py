"""``sender campaign ...``: the CLI's campaign commands, clients of the HTTP API.

``register(subparsers)`` adds the ``campaign`` command group to the ``sender`` parser. Every
command takes ``--api-url`` (default ``$SENDER_API_URL`` or http://127.0.0.1:8080) and
``--token`` (default ``$SENDER_API_TOKEN``). An error answer prints ``error: <code>: <detail>``
on stderr and exits 1.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Awaitable, Callable
from typing import Any, Final, TextIO

from sender.apiclient import ApiClient, ApiProblem, ApiUnreachable

__all__ = [
    "DEFAULT_API_URL",
    "cancel",
    "format_preview",
    "preview",
    "progress_line",
    "register",
    "send",
    "watch",
]

DEFAULT_API_URL: Final = "http://127.0.0.1:8080"


def register(subparsers: Any) -> None:
    """Add ``campaign`` and its subcommands to the ``sender`` parser's subparsers."""
    campaign = subparsers.add_parser("campaign", help="preview, send and follow campaigns")
    commands = campaign.add_subparsers(dest="campaign_command", required=True, metavar="ACTION")

    p = commands.add_parser(
        "preview", help="recipients, encoding, segments and credits a campaign needs"
    )
    p.add_argument("id", type=int, help="campaign id")
    _api_flags(p)
    p.set_defaults(handler=_cmd_preview)

    p = commands.add_parser(
        "send", help="show the preview, ask for confirmation, send; then follow it live"
    )
    p.add_argument("id", type=int, help="campaign id")
    p.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    p.add_argument("--no-watch", action="store_true", help="return once the send is accepted")
    _api_flags(p)
    p.set_defaults(handler=_cmd_send)

    p = commands.add_parser("watch", help="a live progress bar (Server-Sent Events)")
    p.add_argument("id", type=int, help="campaign id")
    _api_flags(p)
    p.set_defaults(handler=_cmd_watch)

    p = commands.add_parser("cancel", help="cancel a campaign (pending recipients are not sent)")
    p.add_argument("id", type=int, help="campaign id")
    p.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    _api_flags(p)
    p.set_defaults(handler=_cmd_cancel)


def _api_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--api-url",
        default=os.environ.get("SENDER_API_URL", DEFAULT_API_URL),
        help="control API base URL (default $SENDER_API_URL or %(default)s)",
    )
    parser.add_argument(
        "--token",
        default=os.environ.get("SENDER_API_TOKEN"),
        help="store API token (default $SENDER_API_TOKEN)",
    )


def _cmd_preview(args: argparse.Namespace, _rest: list[str]) -> int:
    return asyncio.run(preview(args.api_url, args.token, args.id, out=sys.stdout, err=sys.stderr))


async def _with_api(
    api_url: str, token: str | None, err: TextIO, work: Callable[[ApiClient], Awaitable[int]]
) -> int:
    """Run ``work`` with an API client; problems print ``error: code: detail`` and give 1."""
    if not token:
        print("error: no API token: pass --token or set SENDER_API_TOKEN", file=err)
        return 2
    try:
        async with ApiClient(api_url, token) as api:
            return await work(api)
    except ApiProblem as exc:
        print(f"error: {exc.code}: {exc.detail}", file=err)
        return 1
    except ApiUnreachable as exc:
        print(f"error: unreachable: {exc}", file=err)
        return 1


async def preview(
    api_url: str, token: str | None, campaign_id: int, *, out: TextIO, err: TextIO
) -> int:
    """Print campaign ``campaign_id``'s preview as a table; the exit status."""

    async def work(api: ApiClient) -> int:
        out.write(format_preview(await api.get_json(f"/v1/campaigns/{campaign_id}/preview")))
        return 0

    return await _with_api(api_url, token, err, work)


def format_preview(body: dict[str, Any]) -> str:
    """The preview answer as an aligned two-column table."""
    segments = body.get("segments") or {}
    rows = [
        ("recipients", f"{body.get('recipients', 0):,}"),
        ("opted out (excluded)", f"{body.get('opted_out_excluded', 0):,}"),
        ("encoding", str(body.get("encoding", ""))),
        (
            "segments",
            f"min {segments.get('min', 0)}, max {segments.get('max', 0)}, "
            f"total {segments.get('total', 0):,}",
        ),
        ("credits required", f"{body.get('credits_required', 0):,}"),
        ("credits available", f"{body.get('credits_available', 0):,}"),
        ("sufficient", "yes" if body.get("sufficient") else "NO"),
        ("sample", body.get("sample") or "(no recipient)"),
    ]
    width = max(len(label) for label, _ in rows)
    lines = []
    for label, value in rows:
        # A multi-line sample stays inside the value column.
        value = value.replace("\n", "\n" + " " * (width + 2))
        lines.append(f"{label.ljust(width)}  {value}")
    return "\n".join(lines) + "\n"


def progress_line(state: dict[str, Any], width: int = 32) -> str:
    """One redrawable line: bar, percent, rate, ETA and the main counts."""
    percent = float(state.get("percent", 0.0))
    filled = int(width * percent / 100)
    counts = state.get("counts", {})
    eta = state.get("eta_s")
    eta_text = f"{eta:>6.1f}s" if isinstance(eta, int | float) else "     -"
    return (
        f"\r[{'#' * filled}{'.' * (width - filled)}] {percent:5.1f}%  "
        f"{state.get('rate_per_s', 0.0):>8,.0f} msg/s  ETA {eta_text}  "
        f"sent {counts.get('sent', 0):,}  failed {counts.get('failed', 0):,}  "
        f"unknown {counts.get('unknown', 0):,}  [{state.get('status', '?')}]  "
    )


def _confirm(question: str, err: TextIO) -> bool:
    if not sys.stdin.isatty():
        print("error: not a terminal; pass --yes to confirm", file=err)
        return False
    return input(f"{question} [y/N] ").strip().lower() in {"y", "yes"}


def _cmd_send(args: argparse.Namespace, _rest: list[str]) -> int:
    return asyncio.run(
        send(
            args.api_url,
            args.token,
            args.id,
            yes=args.yes,
            watch_after=not args.no_watch,
            out=sys.stdout,
            err=sys.stderr,
        )
    )


def _cmd_watch(args: argparse.Namespace, _rest: list[str]) -> int:
    return asyncio.run(watch(args.api_url, args.token, args.id, out=sys.stdout, err=sys.stderr))


def _cmd_cancel(args: argparse.Namespace, _rest: list[str]) -> int:
    return asyncio.run(
        cancel(args.api_url, args.token, args.id, yes=args.yes, out=sys.stdout, err=sys.stderr)
    )


async def send(
    api_url: str,
    token: str | None,
    campaign_id: int,
    *,
    yes: bool,
    watch_after: bool,
    out: TextIO,
    err: TextIO,
) -> int:
    """Preview, confirm, send; then watch unless told not to. The exit status."""

    async def work(api: ApiClient) -> int:
        body = await api.get_json(f"/v1/campaigns/{campaign_id}/preview")
        out.write(format_preview(body))
        if not body.get("sufficient"):
            print("error: insufficient_credits: top up before sending", file=err)
            return 1
        question = (
            f"Send campaign {campaign_id} to {body.get('recipients', 0):,} recipients "
            f"for {body.get('credits_required', 0):,} credits?"
        )
        if not yes and not _confirm(question, err):
            print("not sent", file=err)
            return 1
        accepted = await api.post_json(f"/v1/campaigns/{campaign_id}/send")
        print(
            f"{accepted['status']}: {accepted['recipients']:,} recipients, "
            f"{accepted['credits_reserved']:,} credits reserved",
            file=out,
        )
        return 0

    status = await _with_api(api_url, token, err, work)
    if status != 0 or not watch_after:
        return status
    return await watch(api_url, token, campaign_id, out=out, err=err)


async def watch(
    api_url: str, token: str | None, campaign_id: int, *, out: TextIO, err: TextIO
) -> int:
    """Draw the campaign's progress from its event stream until it ends; 0 if it was sent."""

    async def work(api: ApiClient) -> int:
        final: dict[str, Any] = {}
        async for event, data in api.events(f"/v1/campaigns/{campaign_id}/events"):
            if event == "progress":
                final = data
                out.write(progress_line(data))
                out.flush()
            elif event == "end":
                break
        out.write("\n")
        status = final.get("status", "unknown")
        counts = final.get("counts", {})
        print(
            f"campaign {campaign_id}: {status}; sent {counts.get('sent', 0):,}, "
            f"failed {counts.get('failed', 0):,}, unknown {counts.get('unknown', 0):,}",
            file=out,
        )
        return 0 if status in {"sent", "sending", "scheduled", "paused"} else 1

    return await _with_api(api_url, token, err, work)


async def cancel(
    api_url: str, token: str | None, campaign_id: int, *, yes: bool, out: TextIO, err: TextIO
) -> int:
    async def work(api: ApiClient) -> int:
        if not yes and not _confirm(f"Cancel campaign {campaign_id}?", err):
            print("not cancelled", file=err)
            return 1
        body = await api.post_json(f"/v1/campaigns/{campaign_id}/cancel")
        print(
            f"cancelled (was {body['previous_status']}): {body['cancelled_recipients']:,} "
            f"pending recipients cancelled, {body['released_credits']:,} credits released",
            file=out,
        )
        return 0

    return await _with_api(api_url, token, err, work)
