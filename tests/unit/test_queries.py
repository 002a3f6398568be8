"""Named queries: the loader's format and the shipped files."""

from __future__ import annotations

import pytest

from sender.db.queries import all_queries, parse_queries, sql


def test_parse_named_queries() -> None:
    text = "-- comment\n-- name: first\nSELECT 1;\n\n-- name: second\nSELECT 2\n"
    assert parse_queries(text) == {"first": "SELECT 1;", "second": "SELECT 2"}


def test_duplicate_and_empty_queries_are_rejected() -> None:
    with pytest.raises(ValueError, match="twice"):
        parse_queries("-- name: a\nSELECT 1\n-- name: a\nSELECT 2")
    with pytest.raises(ValueError, match="empty"):
        parse_queries("-- name: a\n\n-- name: b\nSELECT 2")


def test_missing_query_names_itself() -> None:
    with pytest.raises(KeyError, match=r"nope\.nothing"):
        sql("nope.nothing")


def test_shipped_queries_load() -> None:
    queries = all_queries()
    assert all("." in name for name in queries)
