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
from typing import Any, Final, TextIO

from sender.apiclient import ApiClient, ApiProblem, ApiUnreachable

__all__ = ["DEFAULT_API_URL", "format_preview", "preview", "register"]

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


async def preview(
    api_url: str, token: str | None, campaign_id: int, *, out: TextIO, err: TextIO
) -> int:
    """Print campaign ``campaign_id``'s preview as a table; the exit status."""
    if not token:
        print("error: no API token: pass --token or set SENDER_API_TOKEN", file=err)
        return 2
    try:
        async with ApiClient(api_url, token) as api:
            body = await api.get_json(f"/v1/campaigns/{campaign_id}/preview")
    except ApiProblem as exc:
        print(f"error: {exc.code}: {exc.detail}", file=err)
        return 1
    except ApiUnreachable as exc:
        print(f"error: unreachable: {exc}", file=err)
        return 1
    out.write(format_preview(body))
    return 0


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
