"""B1, the raw ceiling: a tight aiohttp loop POSTing ``/sms`` bodies, no queue, no database.

    python -m benchmarks.loadgen --url http://127.0.0.1:9999 --count 200000 --concurrency 200

Runs in its own process (as the daemon does) on uvloop, with ``concurrency`` workers sharing
one keep-alive session, each POSTing the next prepared body and reading the answer. The
bodies are the ones the sender would send (same sender id, personalized text with a tracked
link, reference), built before the clock starts. Prints one JSON object: count, seconds,
messages/s, answers by status, and the process's own CPU seconds.
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import sys
import time
from collections import Counter

import aiohttp
import orjson
import uvloop

FIRST_NAMES = ("Maria", "Eleni", "Giorgos", "Nikos", "Katerina", "Dimitris", "Sofia", "Yannis")


def sms_body(i: int, *, bulk_text: str | None = None) -> bytes:
    """The ``/sms`` body the sender builds for recipient ``i`` (personalized unless bulk)."""
    text = bulk_text or (
        f"Hi {FIRST_NAMES[i % len(FIRST_NAMES)]}, 20% off everything today at Athens Shoes: "
        f"http://127.0.0.1:8080/r/{i:08x} Reply STOP to opt out"
    )
    return orjson.dumps(
        {"from": "BENCH", "to": f"3069{i:08d}", "text": text, "reference": f"c1-r{i}"}
    )


def _cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def run(url: str, count: int, concurrency: int, api_key: str) -> dict[str, object]:
    bodies = [sms_body(i) for i in range(count)]
    statuses: Counter[int] = Counter()
    errors = 0
    next_index = 0
    connector = aiohttp.TCPConnector(limit=concurrency, keepalive_timeout=30)
    headers = {"X-Mitto-API-Key": api_key, "Content-Type": "application/json"}
    target = f"{url.rstrip('/')}/sms"
    async with aiohttp.ClientSession(
        connector=connector, headers=headers, skip_auto_headers=("User-Agent",)
    ) as session:

        async def worker() -> None:
            nonlocal next_index, errors
            while next_index < count:
                body = bodies[next_index]
                next_index += 1
                try:
                    async with session.post(target, data=body) as resp:
                        await resp.read()
                        statuses[resp.status] += 1
                except (aiohttp.ClientError, OSError):
                    errors += 1

        cpu0 = _cpu_s()
        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
        cpu = _cpu_s() - cpu0
    return {
        "count": count,
        "concurrency": concurrency,
        "seconds": elapsed,
        "rate_per_s": count / elapsed if elapsed > 0 else 0.0,
        "statuses": {str(k): v for k, v in sorted(statuses.items())},
        "errors": errors,
        "cpu_s": cpu,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", required=True, help="mock Mitto base URL")
    parser.add_argument("--count", type=int, default=100_000)
    parser.add_argument("--concurrency", type=int, default=200)
    parser.add_argument("--api-key", default="dev-key")
    args = parser.parse_args(argv)
    result = uvloop.run(run(args.url, args.count, args.concurrency, args.api_key))
    sys.stdout.write(orjson.dumps(result).decode() + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
