"""``sender campaign preview`` against the running API."""

from __future__ import annotations

import argparse
import io

import asyncpg
import pytest

from sender.cli_campaign import format_preview, preview, register
from tests.integration.seeding import Client, create_campaign, import_csv, tenant


def base_url(api: Client) -> str:
    return str(api.make_url("")).rstrip("/")


async def test_preview_prints_an_aligned_table(api: Client, db: asyncpg.Pool) -> None:
    shop = await tenant(api, credits=5)
    await import_csv(api, shop, "phone,first_name\n6912345678,Maria\n6912345679,Eleni\n")
    campaign = await create_campaign(api, shop, message="Hi {{first_name}}")
    out, err = io.StringIO(), io.StringIO()
    status = await preview(base_url(api), shop.token, campaign["id"], out=out, err=err)
    assert (status, err.getvalue()) == (0, "")
    lines = out.getvalue().splitlines()
    assert lines == [
        "recipients            2",
        "opted out (excluded)  0",
        "encoding              GSM-7",
        "segments              min 1, max 1, total 2",
        "credits required      2",
        "credits available     5",
        "sufficient            yes",
        "sample                Hi Maria",
    ]


async def test_problems_print_code_and_detail_and_exit_1(api: Client) -> None:
    shop = await tenant(api)
    out, err = io.StringIO(), io.StringIO()
    assert await preview(base_url(api), shop.token, 999, out=out, err=err) == 1
    assert err.getvalue() == "error: not_found: no such campaign\n"
    assert out.getvalue() == ""
    err = io.StringIO()
    assert await preview(base_url(api), "cs_live_wrong", 1, out=out, err=err) == 1
    assert err.getvalue().startswith("error: invalid_token: ")
    err = io.StringIO()
    assert await preview(base_url(api), None, 1, out=out, err=err) == 2
    assert "SENDER_API_TOKEN" in err.getvalue()


async def test_unreachable_api_is_one_line() -> None:
    err = io.StringIO()
    assert await preview("http://127.0.0.1:9", "t", 1, out=io.StringIO(), err=err) == 1
    assert err.getvalue().startswith("error: unreachable: cannot reach the API at")
    assert err.getvalue().count("\n") == 1


def test_register_reads_defaults_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SENDER_API_URL", "http://api.example:9000")
    monkeypatch.setenv("SENDER_API_TOKEN", "cs_live_env")
    parser = argparse.ArgumentParser(prog="sender")
    register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["campaign", "preview", "42"])
    assert (args.id, args.api_url, args.token) == (42, "http://api.example:9000", "cs_live_env")
    args = parser.parse_args(["campaign", "preview", "7", "--api-url", "http://x", "--token", "t"])
    assert (args.api_url, args.token) == ("http://x", "t")
    assert callable(args.handler)


def test_multi_line_samples_stay_in_their_column() -> None:
    text = format_preview({"recipients": 1, "segments": {}, "sample": "line one\nline two"})
    assert "sample                line one\n                      line two\n" in text
