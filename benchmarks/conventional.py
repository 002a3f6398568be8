"""B2, the conventional design: one arq job per recipient, one UPDATE per outcome.

    python -m benchmarks.conventional worker --database-url ... --redis-url ... --queue Q ...
    python -m benchmarks.conventional enqueue --database-url ... --redis-url ... --queue Q \
        --campaign-id N

This is how the reviewed Node.js design (BullMQ + Prisma) sends, written idiomatically with
the same tools the project uses and tuned, not sabotaged: the send call reads the campaign's
recipients and enqueues one job per recipient (concurrently, 64 enqueues in flight); an arq
worker in its own process runs ``max_jobs`` jobs at once (the daemon's in-flight cap), each of
which renders the message with the project's template engine and tracked links, POSTs it to
``/sms`` on a shared keep-alive session, and writes its outcome with one UPDATE on the same
``campaign_recipients`` table (same indexes). Results are not kept (``keep_result=0``) and
the worker polls every 10 ms, both faster than arq's defaults.
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import sys
import time
from typing import Any

import aiohttp
import asyncpg
import orjson
import uvloop
from arq import create_pool
from arq.connections import RedisSettings
from arq.worker import Worker, func

from sender.links import encode_link_code, short_url
from sender.phones import to_provider_msisdn
from sender.templates import Template

UPDATE_SENT = """
UPDATE campaign_recipients
SET status = 'sent', attempts = attempts + 1, provider_message_id = $2, segments = 1,
    requested_at = now(), sent_at = now(), updated_at = now()
WHERE id = $1
"""
UPDATE_FAILED = """
UPDATE campaign_recipients
SET status = 'failed', attempts = attempts + 1, error_code = $2, failed_at = now(),
    updated_at = now()
WHERE id = $1
"""
RECIPIENTS = """
SELECT r.id, r.phone, c.first_name, c.last_name, c.custom
FROM campaign_recipients r JOIN contacts c ON c.id = r.contact_id
WHERE r.campaign_id = $1 AND r.status = 'pending'
ORDER BY r.id
"""


async def _startup(ctx: dict[str, Any]) -> None:
    args = ctx["args"]
    ctx["pg"] = await asyncpg.create_pool(args.database_url, min_size=4, max_size=20)
    ctx["http"] = aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=args.concurrency, keepalive_timeout=30),
        headers={"X-Mitto-API-Key": args.api_key, "Content-Type": "application/json"},
        timeout=aiohttp.ClientTimeout(sock_connect=3, sock_read=10),
    )
    ctx["template"] = Template.parse(args.message)
    ctx["url"] = f"{args.mitto_url.rstrip('/')}/sms"
    ctx["secret"] = args.link_secret.encode()


async def _shutdown(ctx: dict[str, Any]) -> None:
    await ctx["http"].close()
    await ctx["pg"].close()


async def send_one(
    ctx: dict[str, Any],
    recipient_id: int,
    campaign_id: int,
    phone: str,
    first_name: str | None,
    last_name: str | None,
    city: str | None,
) -> None:
    args = ctx["args"]
    secret: bytes = ctx["secret"]
    template: Template = ctx["template"]

    def link(index: int) -> str:
        return short_url(args.public_url, encode_link_code(recipient_id, index, secret), "r")

    text = template.render(
        {"first_name": first_name, "last_name": last_name, "custom.city": city},
        link_url=link,
        unsubscribe_url=None,
    )
    body = {
        "from": "BENCH",
        "to": to_provider_msisdn(phone),
        "text": text,
        "reference": f"c{campaign_id}-r{recipient_id}",
    }
    pg: asyncpg.Pool = ctx["pg"]
    try:
        async with ctx["http"].post(ctx["url"], data=orjson.dumps(body)) as resp:
            answer = orjson.loads(await resp.read()) if resp.status == 200 else {}
    except (aiohttp.ClientError, OSError, TimeoutError) as exc:
        await pg.execute(UPDATE_FAILED, recipient_id, type(exc).__name__)
        return
    if answer.get("responseCode") == 0 and answer.get("id"):
        await pg.execute(UPDATE_SENT, recipient_id, answer["id"])
    else:
        await pg.execute(UPDATE_FAILED, recipient_id, str(answer.get("responseCode", "http")))


def _redis(url: str) -> RedisSettings:
    return RedisSettings.from_dsn(url)


def run_worker(args: argparse.Namespace) -> int:
    worker = Worker(
        functions=[func(send_one, name="send_one")],  # type: ignore[arg-type]
        queue_name=args.queue,
        redis_settings=_redis(args.redis_url),
        max_jobs=args.concurrency,
        poll_delay=0.01,
        keep_result=0,
        ctx={"args": args},
        on_startup=_startup,
        on_shutdown=_shutdown,
        handle_signals=True,
        log_results=False,
    )
    worker.run()
    return 0


async def enqueue(args: argparse.Namespace) -> dict[str, Any]:
    started = time.perf_counter()
    conn = await asyncpg.connect(args.database_url)
    try:
        rows = await conn.fetch(RECIPIENTS, args.campaign_id)
    finally:
        await conn.close()
    redis = await create_pool(_redis(args.redis_url), default_queue_name=args.queue)
    queue: asyncio.Queue[asyncpg.Record | None] = asyncio.Queue()
    for row in rows:
        queue.put_nowait(row)

    async def enqueuer() -> None:
        while not queue.empty():
            row = queue.get_nowait()
            assert row is not None
            custom = orjson.loads(row["custom"]) if isinstance(row["custom"], str) else {}
            await redis.enqueue_job(
                "send_one",
                row["id"],
                args.campaign_id,
                row["phone"],
                row["first_name"],
                row["last_name"],
                custom.get("city"),
                _job_id=f"{args.queue}:r{row['id']}",
            )

    await asyncio.gather(*(enqueuer() for _ in range(64)))
    await redis.aclose()
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return {
        "enqueued": len(rows),
        "enqueue_s": time.perf_counter() - started,
        "cpu_s": usage.ru_utime + usage.ru_stime,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("role", choices=["worker", "enqueue"])
    parser.add_argument("--database-url", required=True)
    parser.add_argument("--redis-url", required=True)
    parser.add_argument("--queue", required=True)
    parser.add_argument("--campaign-id", type=int, default=0)
    parser.add_argument("--mitto-url", default="http://127.0.0.1:9999")
    parser.add_argument("--api-key", default="dev-key")
    parser.add_argument("--concurrency", type=int, default=200)
    parser.add_argument("--message", default="Hi {{first_name|there}}")
    parser.add_argument("--public-url", default="http://127.0.0.1:8080")
    parser.add_argument("--link-secret", default="dev-link-secret")
    args = parser.parse_args(argv)
    if args.role == "worker":
        uvloop.install()
        return run_worker(args)
    result = uvloop.run(enqueue(args))
    sys.stdout.write(orjson.dumps(result).decode() + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
