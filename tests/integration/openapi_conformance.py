"""Check a live response against the served OpenAPI document (status, media type, body)."""

from __future__ import annotations

from typing import Any

import orjson
from jsonschema import Draft202012Validator


def _resolve(doc: dict[str, Any], node: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in node:
        target: Any = doc
        for part in node["$ref"][2:].split("/"):
            target = target[part]
        node = target
    return node


def check_response(
    doc: dict[str, Any], method: str, template: str, status: int, content_type: str, body: bytes
) -> None:
    """Raise AssertionError unless the answer is one the document describes."""
    operation = doc["paths"].get(template, {}).get(method.lower())
    assert operation is not None, f"{method} {template} is not documented"
    responses = operation["responses"]
    described = responses.get(str(status)) or responses.get("default")
    assert described is not None, f"{method} {template}: status {status} is not documented"
    described = _resolve(doc, described)
    content = described.get("content")
    if not content:
        assert not body, f"{method} {template} {status}: documented without a body"
        return
    assert content_type in content, (
        f"{method} {template} {status}: {content_type} not in {sorted(content)}"
    )
    schema = content[content_type].get("schema")
    if schema is None or not content_type.endswith("json"):
        return
    # Validate with the document's components at the root so "#/components/..." resolves.
    root = {**schema, "components": doc.get("components", {})}
    errors = sorted(
        Draft202012Validator(root).iter_errors(orjson.loads(body)), key=lambda e: e.path
    )
    assert not errors, f"{method} {template} {status}: " + "; ".join(
        f"{list(error.path)}: {error.message}" for error in errors
    )
