"""The OpenAPI 3.1 document, assembled from fragments and served at ``GET /openapi.json``.

Fragment format
---------------
Every ``api/openapi/*.json`` file is a fragment: a JSON object shaped like a partial OpenAPI
3.1 document. ``base.json`` is the root and holds ``openapi``, ``info``, ``servers``, the
security schemes (``storeToken``, ``adminToken``), the ``Problem`` schema, shared parameters
(``IdempotencyKey``), headers and error responses (``NotFound``, ``UnprocessableContent``,
...). Every other fragment (one per resource: ``admin.json``, ``store.json``,
``contacts.json``, ...) may hold only:

- ``paths``: path templates as aiohttp spells them (``/v1/campaigns/{id}``) mapped to path
  items. Two fragments may describe the same path, but not the same method of it.
- ``components``: any component section (``schemas``, ``parameters``, ``responses``,
  ``headers``, ...). A name must be unique across fragments unless both definitions are
  identical.
- ``tags``: a list of ``{"name", "description"}``; the first definition of a name wins.
- ``openapi`` and ``info``: tolerated (fragments may be written as standalone documents) and
  ignored; the base document's win. ``openapi`` must still be a 3.1 version.

A fragment refers to anything in the merged document with ``{"$ref":
"#/components/<section>/<Name>"}``, including components defined in another fragment.
Fragments merge in file-name order after the base. Any violation (an unknown top-level key,
a duplicate operation, a conflicting component, a ``$ref`` that resolves to nothing) raises
:class:`OpenApiError` when the app starts, so a broken fragment fails every test instead of
shipping.
"""

from __future__ import annotations

import copy
import functools
from collections.abc import Iterator
from importlib import resources
from typing import Any

import orjson
from aiohttp import web

from api.keys import OPENAPI

BASE = "base.json"
_FRAGMENT_KEYS = frozenset({"paths", "components", "tags", "openapi", "info"})
_METHODS = frozenset({"get", "put", "post", "delete", "options", "head", "patch", "trace"})


class OpenApiError(ValueError):
    """An OpenAPI fragment is malformed or conflicts with another."""


def load_fragments() -> dict[str, dict[str, Any]]:
    """Every fragment shipped in this package, by file name."""
    found: dict[str, dict[str, Any]] = {}
    for entry in resources.files(__name__).iterdir():
        if not entry.name.endswith(".json"):
            continue
        try:
            data = orjson.loads(entry.read_bytes())
        except orjson.JSONDecodeError as exc:
            raise OpenApiError(f"{entry.name}: not valid JSON: {exc}") from None
        if not isinstance(data, dict):
            raise OpenApiError(f"{entry.name}: a fragment must be a JSON object")
        found[entry.name] = data
    if BASE not in found:
        raise OpenApiError(f"{BASE} is missing")
    return found


def _merge_paths(doc: dict[str, Any], name: str, paths: Any) -> None:
    if not isinstance(paths, dict):
        raise OpenApiError(f"{name}: 'paths' must be an object")
    target: dict[str, Any] = doc.setdefault("paths", {})
    for path, item in paths.items():
        if not path.startswith("/") or not isinstance(item, dict):
            raise OpenApiError(f"{name}: path {path!r} must start with / and map to an object")
        merged = target.setdefault(path, {})
        for key, value in item.items():
            if key in merged and (key in _METHODS or merged[key] != value):
                raise OpenApiError(f"{name}: {key.upper()} {path} is already described")
            merged[key] = value


def _merge_components(doc: dict[str, Any], name: str, components: Any) -> None:
    if not isinstance(components, dict):
        raise OpenApiError(f"{name}: 'components' must be an object")
    target: dict[str, Any] = doc.setdefault("components", {})
    for section, entries in components.items():
        if not isinstance(entries, dict):
            raise OpenApiError(f"{name}: components.{section} must be an object")
        merged = target.setdefault(section, {})
        for entry, value in entries.items():
            if entry in merged and merged[entry] != value:
                raise OpenApiError(
                    f"{name}: components.{section}.{entry} conflicts with another fragment"
                )
            merged[entry] = value


def _merge_tags(doc: dict[str, Any], name: str, tags: Any) -> None:
    if not isinstance(tags, list) or not all(isinstance(t, dict) and "name" in t for t in tags):
        raise OpenApiError(f"{name}: 'tags' must be a list of objects with a name")
    target: list[dict[str, Any]] = doc.setdefault("tags", [])
    known = {tag["name"] for tag in target}
    for tag in tags:
        if tag["name"] not in known:
            target.append(tag)
            known.add(tag["name"])


def _refs(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str):
            yield ref
        for value in node.values():
            yield from _refs(value)
    elif isinstance(node, list):
        for value in node:
            yield from _refs(value)


def _resolves(doc: dict[str, Any], ref: str) -> bool:
    if not ref.startswith("#/"):
        return False  # the document is self-contained: no external references
    node: Any = doc
    for raw in ref[2:].split("/"):
        part = raw.replace("~1", "/").replace("~0", "~")
        if not isinstance(node, dict) or part not in node:
            return False
        node = node[part]
    return True


def merge(fragments: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Merge ``fragments`` (file name -> content) into one document; see the module docs."""
    doc = copy.deepcopy(fragments[BASE])
    if not str(doc.get("openapi", "")).startswith("3.1"):
        raise OpenApiError(f"{BASE}: 'openapi' must be a 3.1 version")
    for name in sorted(fragments):
        if name == BASE:
            continue
        fragment = fragments[name]
        unknown = set(fragment) - _FRAGMENT_KEYS
        if unknown:
            raise OpenApiError(f"{name}: unexpected top-level keys {sorted(unknown)}")
        if "openapi" in fragment and not str(fragment["openapi"]).startswith("3.1"):
            raise OpenApiError(f"{name}: 'openapi' must be a 3.1 version")
        _merge_paths(doc, name, copy.deepcopy(fragment.get("paths", {})))
        _merge_components(doc, name, copy.deepcopy(fragment.get("components", {})))
        _merge_tags(doc, name, copy.deepcopy(fragment.get("tags", [])))
    broken = sorted({ref for ref in _refs(doc) if not _resolves(doc, ref)})
    if broken:
        raise OpenApiError(f"unresolved $ref: {', '.join(broken)}")
    return doc


@functools.cache
def document_bytes() -> bytes:
    """The merged document, serialized (fragments are package data: read once)."""
    return orjson.dumps(merge(load_fragments()))


def document() -> dict[str, Any]:
    """A fresh copy of the merged document."""
    doc: dict[str, Any] = orjson.loads(document_bytes())
    return doc


async def openapi_endpoint(request: web.Request) -> web.Response:
    return web.Response(body=request.app[OPENAPI], content_type="application/json")


def setup(app: web.Application) -> None:
    app[OPENAPI] = document_bytes()
    app.router.add_get("/openapi.json", openapi_endpoint)
