"""Contact import throughput, end to end through HTTP.

    python -m benchmarks.import_contacts [--rows 100000]

Generates CSVs (Greek mobile numbers in mixed national and international spellings, Latin
and Greek names, tags, one custom column, a few invalid rows) and streams them to
``POST /v1/contacts/import`` of a scratch deployment, printing the seconds each takes: a first
file into an empty store (the validation workers start on this first big import), a second
file of other numbers (workers warm), and the first file again (nothing changes).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import time
from collections.abc import AsyncIterator

import aiohttp

from benchmarks.harness import create_store, scratch_api

_FIRST = ["Maria", "Nikos", "Eleni", "Giorgos", "Μαρία", "Νίκος", "Ελένη", "Γιώργος", "Zoë"]
_LAST = ["Papadopoulou", "Pappas", "Οικονόμου", "Γεωργίου", "Smith", ""]
_TAGS = ["vip", "new", "athens", "thessaloniki", "newsletter", "black-friday"]


def make_csv(rows: int, seed: int = 7, first_number: int = 0) -> bytes:
    rng = random.Random(seed)
    lines = ["phone,first_name,last_name,tags,city"]
    for i in range(rows):
        national = f"69{first_number + i:08d}"
        if i % 997 == 0:
            phone = "12"  # rejected: not a phone number
        elif i % 3 == 0:
            phone = f"+30 {national[:3]} {national[3:6]} {national[6:]}"
        elif i % 3 == 1:
            phone = national
        else:
            phone = f"0030{national}"
        tags = ";".join(rng.sample(_TAGS, rng.randint(0, 3)))
        lines.append(f"{phone},{rng.choice(_FIRST)},{rng.choice(_LAST)},{tags},Athens")
    return ("\n".join(lines) + "\n").encode()


async def _chunks(data: bytes, size: int = 256 * 1024) -> AsyncIterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]


async def _import(session: aiohttp.ClientSession, url: str, token: str, data: bytes) -> float:
    started = time.perf_counter()
    async with session.post(
        url,
        data=_chunks(data),
        headers={"Authorization": f"Bearer {token}", "Content-Type": "text/csv"},
    ) as response:
        body = await response.json()
        assert response.status == 200, body
    elapsed = time.perf_counter() - started
    summary = {k: v for k, v in body.items() if k != "rejects"}
    print(f"  {elapsed:6.2f} s  {summary}")
    return elapsed


async def main(rows: int) -> None:
    first, second = make_csv(rows), make_csv(rows, seed=8, first_number=50_000_000)
    print(f"CSV: {rows} rows, {len(first) / 1e6:.1f} MB; {os.cpu_count()} CPUs")
    async with scratch_api() as deployment, aiohttp.ClientSession() as session:
        _store_id, token = await create_store(session, deployment.base_url, credits=0)
        url = f"{deployment.base_url}/v1/contacts/import"
        print("new contacts, first big import (workers start):")
        await _import(session, url, token, first)
        print("new contacts, workers warm:")
        await _import(session, url, token, second)
        print("the first file again (no changes):")
        await _import(session, url, token, first)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=100_000)
    asyncio.run(main(parser.parse_args().rows))
