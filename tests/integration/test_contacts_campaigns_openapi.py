"""Live conformance of the contacts and campaigns routes to the served OpenAPI document."""

from __future__ import annotations

from typing import Any

import asyncpg
import orjson

from api.openapi import document
from tests.integration.openapi_conformance import check_response
from tests.integration.seeding import Client, campaign_body, tenant

JSON = {"Content-Type": "application/json"}


async def test_contacts_and_campaigns_answer_as_documented(api: Client, db: asyncpg.Pool) -> None:
    doc = document()
    shop = await tenant(api, credits=10)

    async def call(
        method: str, template: str, path: str | None = None, *, expect: int, **kwargs: Any
    ) -> Any:
        headers = {**shop.auth, **kwargs.pop("headers", {})}
        response = await api.request(method, path or template, headers=headers, **kwargs)
        body = await response.read()
        assert response.status == expect, body
        check_response(doc, method, template, response.status, response.content_type, body)
        return orjson.loads(body) if body else None

    imp = "/v1/contacts/import"
    csv = {"Content-Type": "text/csv"}
    ndjson = {"Content-Type": "application/x-ndjson"}
    await call(
        "POST",
        imp,
        data=b"phone,first_name,tags\n6912345678,Maria,vip\n12,x,\n",
        headers=csv,
        expect=200,
    )
    await call("POST", imp, data=b'{"phone": "6912345679"}\n', headers=ndjson, expect=200)
    await call("POST", imp, data=b"name\nx\n", headers=csv, expect=422)
    await call("POST", imp, data=b"", headers=csv, expect=422)
    await call("POST", imp, data=b"phone\n1\n", headers=JSON, expect=415)
    await call("POST", imp, data=b"phone\n1\n", headers={**csv, "Idempotency-Key": ""}, expect=400)

    page = await call("GET", "/v1/contacts", "/v1/contacts?limit=1", expect=200)
    await call("GET", "/v1/contacts", "/v1/contacts?cursor=nope", expect=400)
    contact_id = page["items"][0]["id"]
    one = "/v1/contacts/{id}"
    path = f"/v1/contacts/{contact_id}"
    await call("GET", one, path, expect=200)
    await call("GET", one, "/v1/contacts/999999", expect=404)
    await call("PATCH", one, path, json={"consent": "opted_out", "opt_out_reason": "x"}, expect=200)
    await call("PATCH", one, path, json={"first_name": 1}, expect=422)
    await call("PATCH", one, path, data=b"{", headers=JSON, expect=400)
    await call("PATCH", one, path, data=b"{}", headers={"Content-Type": "text/plain"}, expect=415)
    await call("DELETE", one, path, expect=204)
    await call("DELETE", one, path, expect=404)

    campaigns = "/v1/campaigns"
    created = await call(
        "POST", campaigns, json=campaign_body(message="Hi {{first_name}}"), expect=201
    )
    await call("POST", campaigns, json=campaign_body(message="{{nope}}"), expect=422)
    await call("POST", campaigns, data=b"[", headers=JSON, expect=400)
    await call("GET", campaigns, f"{campaigns}?status=draft&limit=5", expect=200)
    await call("GET", campaigns, f"{campaigns}?status=nope", expect=400)
    one = "/v1/campaigns/{id}"
    path = f"{campaigns}/{created['id']}"
    await call("GET", one, path, expect=200)
    await call("PATCH", one, path, json={"name": "renamed"}, expect=200)
    await call("PATCH", one, path, json={"message": ""}, expect=422)
    await call("GET", f"{one}/preview", f"{path}/preview", expect=200)
    await call("GET", f"{one}/preview", f"{campaigns}/999999/preview", expect=404)
    await db.execute("UPDATE campaigns SET status = 'sending' WHERE id = $1", created["id"])
    await call("PATCH", one, path, json={"name": "late"}, expect=409)
    await call("DELETE", one, path, expect=409)
    await db.execute("UPDATE campaigns SET status = 'draft' WHERE id = $1", created["id"])
    await call("DELETE", one, path, expect=204)
    await call("GET", one, path, expect=404)
