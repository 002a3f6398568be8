"""Seed a store with many contacts and measure the campaign preview through HTTP.

    python -m benchmarks.seed_contacts [--contacts 1000000] [--runs 5]

Creates a scratch deployment (see ``benchmarks.harness``), a store, and ``--contacts``
contacts in one set-based INSERT (names in Latin and Greek, with emoji and GSM extension
characters, several lengths; tags; a custom field; 2% opted out). Then creates campaigns with
names only, with a custom field, and with a narrow tag filter, calls each preview once to warm
up and ``--runs`` times more, and prints the median latency.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from typing import Any

import aiohttp
import asyncpg

from benchmarks.harness import create_store, scratch_api

# Benchmark data only; the product's SQL lives in sql/queries.
SEED_SQL = """
INSERT INTO contacts (store_id, phone, first_name, last_name, tags, custom, consent)
SELECT $1,
       '+3069' || lpad(g::text, 8, '0'),
       (ARRAY['Maria', 'Nikos', 'Eleni', 'Giorgos', 'Μαρία', 'Νίκος', 'Ελένη', 'Jo€y',
              'Zoë 😀', NULL])[1 + g % 10]
           || CASE WHEN g % 7 = 0 THEN repeat('a', g % 13) ELSE '' END,
       (ARRAY['Papadopoulou', 'Pappas', 'Οικονόμου', NULL, 'Smith-Jones'])[1 + (g / 10) % 5],
       CASE g % 4 WHEN 0 THEN '{vip}' WHEN 1 THEN '{vip,athens}' WHEN 2 THEN '{athens}'
                  ELSE '{}' END::text[],
       jsonb_build_object('city', (ARRAY['Athens', 'Αθήνα', 'Patra', 'Thessaloniki'])[1 + g % 4]),
       CASE WHEN g % 50 = 0 THEN 'opted_out' ELSE 'opted_in' END
FROM generate_series(1, $2::integer) AS g
"""

CAMPAIGNS: list[tuple[str, dict[str, Any]]] = [
    (
        "Hi {{first_name|there}} {{last_name}}, 20% off today: "
        "{{link:https://shop.example/sale}} Reply STOP to opt out {{unsubscribe}}",
        {},
    ),
    (
        "{{first_name|Hello}}, our {{custom.city|local}} store opens Friday! "
        "{{link:https://shop.example/open}}",
        {"tags_any": ["vip", "athens"], "exclude_tags": ["staff"]},
    ),
    ("VIP night, {{first_name}}!", {"tags_all": ["vip", "athens"]}),
]


async def seed(database_url: str, store_id: int, contacts: int) -> float:
    conn = await asyncpg.connect(database_url)
    try:
        started = time.perf_counter()
        await conn.execute(SEED_SQL, store_id, contacts)
        await conn.execute("VACUUM ANALYZE contacts")
        return time.perf_counter() - started
    finally:
        await conn.close()


async def measure(
    session: aiohttp.ClientSession, url: str, token: str, runs: int
) -> tuple[list[float], dict[str, Any]]:
    headers = {"Authorization": f"Bearer {token}"}
    timings: list[float] = []
    body: dict[str, Any] = {}
    for attempt in range(runs + 1):
        started = time.perf_counter()
        async with session.get(url, headers=headers) as response:
            body = await response.json()
            assert response.status == 200, body
        if attempt:  # the first call warms caches and plans
            timings.append(time.perf_counter() - started)
    return timings, body


async def main(contacts: int, runs: int) -> None:
    async with scratch_api() as deployment, aiohttp.ClientSession() as session:
        store_id, token = await create_store(session, deployment.base_url, credits=10_000_000)
        seconds = await seed(deployment.database_url, store_id, contacts)
        print(f"seeded {contacts:,} contacts in {seconds:.1f} s")
        for message, audience in CAMPAIGNS:
            async with session.post(
                f"{deployment.base_url}/v1/campaigns",
                json={"name": "bench", "message": message, "audience": audience},
                headers={"Authorization": f"Bearer {token}"},
            ) as response:
                campaign = await response.json()
                assert response.status == 201, campaign
            url = f"{deployment.base_url}/v1/campaigns/{campaign['id']}/preview"
            timings, body = await measure(session, url, token, runs)
            shown = {k: body[k] for k in ("recipients", "encoding", "segments", "credits_required")}
            print(f"\n{message[:60]!r}... audience={audience}")
            print(f"  {shown}")
            print(
                f"  preview median {statistics.median(timings) * 1000:.0f} ms "
                f"(runs: {', '.join(f'{t * 1000:.0f}' for t in timings)} ms)"
            )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--contacts", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    asyncio.run(main(args.contacts, args.runs))
