"""Named SQL queries, loaded once from ``sql/queries/*.sql``.

Each file holds queries headed by ``-- name: NAME``; a query is addressed as ``FILE.NAME``
(``campaigns.get``). Keeping SQL in files lets a reader see every statement the product runs,
and keeps handlers free of SQL strings.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from importlib import resources

_HEADER = re.compile(r"^--\s*name:\s*([a-z_][a-z0-9_]*)\s*$", re.MULTILINE)


def parse_queries(text: str) -> dict[str, str]:
    """Split one file's text into ``{name: sql}``; text before the first header is ignored."""
    found: dict[str, str] = {}
    matches = list(_HEADER.finditer(text))
    for index, match in enumerate(matches):
        end = matches[index + 1].start() if index + 1 < len(matches) else len(text)
        body = text[match.end() : end].strip()
        name = match.group(1)
        if name in found:
            raise ValueError(f"query {name!r} defined twice")
        if not body:
            raise ValueError(f"query {name!r} is empty")
        found[name] = body
    return found


@functools.cache
def all_queries() -> Mapping[str, str]:
    """Every named query of the package, keyed ``file.name``."""
    out: dict[str, str] = {}
    folder = resources.files("sql") / "queries"
    for entry in sorted(folder.iterdir(), key=lambda e: e.name):
        if not entry.name.endswith(".sql"):
            continue
        stem = entry.name[: -len(".sql")]
        for name, body in parse_queries(entry.read_text(encoding="utf-8")).items():
            out[f"{stem}.{name}"] = body
    return out


def sql(name: str) -> str:
    """The SQL text of one named query; KeyError names the missing query."""
    try:
        return all_queries()[name]
    except KeyError:
        raise KeyError(f"no SQL query named {name!r} in sql/queries") from None
