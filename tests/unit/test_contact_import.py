"""Incremental CSV/NDJSON readers and row validation, without a server."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sender.contact_import import (
    MAX_REJECTS_REPORTED,
    CsvReader,
    NdjsonReader,
    RawRow,
    Reject,
    RejectLog,
    clean_tags,
    validate_rows,
)
from sender.errors import ValidationProblem

CSV = (
    "Phone, First_Name ,last_name,tags,City,Bad Column\n"
    "6912345678,Maria,Papadopoulou,vip; new ;,Athens,x\n"
    '"+30 691 234 5679","Νί\nκος",,,,\n'
    "\n"
    '6912345670,"a ""quoted"" name",,,,\n'
    "1,2,3,4,5,6,7\n"
    "6912345671\n"
).encode()


def read_all(reader: CsvReader | NdjsonReader, data: bytes, cuts: list[int]) -> list[RawRow]:
    rows: list[RawRow] = []
    start = 0
    for cut in sorted(cuts):
        rows += reader.feed(data[start:cut])
        start = cut
    rows += reader.feed(data[start:])
    rows += reader.finish()
    return rows


def test_csv_rows_lines_and_columns() -> None:
    reader = CsvReader()
    rows = read_all(reader, CSV, [])
    assert [r.line for r in rows] == [2, 3, 6, 8]
    assert rows[0] == RawRow(
        2, "6912345678", "Maria", "Papadopoulou", "vip; new ;", {"city": "Athens"}
    )
    assert rows[1].first_name == "Νί\nκος"
    assert rows[2].first_name == 'a "quoted" name'
    # A short row is padded: trailing empty cells are often dropped by tools.
    assert rows[3] == RawRow(8, "6912345671", "", "", "", {})
    assert reader.rejects == [Reject(7, "1,2,3,4,5,6,7", "more than 6 fields")]
    assert reader.ignored_columns == ["Bad Column"]


@given(cuts=st.lists(st.integers(min_value=0, max_value=len(CSV)), max_size=8))
def test_csv_chunking_does_not_matter(cuts: list[int]) -> None:
    assert read_all(CsvReader(), CSV, cuts) == read_all(CsvReader(), CSV, [])


def test_csv_semicolon_and_tab_delimiters_are_detected() -> None:
    rows = read_all(CsvReader(), b'phone;first_name;tags\n6912345678;Eleni;"a;b"\n', [])
    assert rows == [RawRow(2, "6912345678", "Eleni", None, "a;b", {})]
    rows = read_all(CsvReader(), b"phone\tfirst_name\n6912345678\tEleni\n", [])
    assert rows == [RawRow(2, "6912345678", "Eleni", None, None, {})]


def test_csv_bom_and_crlf() -> None:
    rows = read_all(CsvReader(), "\ufeffphone,first_name\r\n6912345678,Zoë\r\n".encode(), [5])
    assert rows == [RawRow(2, "6912345678", "Zoë", None, None, {})]


@pytest.mark.parametrize(
    ("body", "code"),
    [
        (b"", "empty_body"),
        (b"\n\n", "empty_body"),
        (b"first_name,last_name\nMaria,P\n", "missing_phone_column"),
        (b"phone,Phone\n1,2\n", "duplicate_column"),
        (b'phone\n"6912345678\n', "malformed_csv"),
        (b"phone\n69\xff\xfe\n", "invalid_encoding"),
    ],
)
def test_csv_problems(body: bytes, code: str) -> None:
    with pytest.raises(ValidationProblem) as info:
        read_all(CsvReader(), body, [])
    assert info.value.code == code


def test_a_never_closed_quote_is_stopped_early() -> None:
    reader = CsvReader()
    reader.feed(b'phone,first_name\n6912345678,"')
    with pytest.raises(ValidationProblem) as info:
        for _ in range(20):
            reader.feed(b"x" * 10_000)
    assert info.value.code == "record_too_long"


def test_ndjson_rows_and_rejects() -> None:
    body = (
        b'\xef\xbb\xbf{"phone": "6912345678", "tags": ["a", " b"], "custom": {"size": 42}}\n'
        b"\n"
        b"[1, 2]\n"
        b"{not json\n"
        b'{"phone": 306912345679, "surname": "x"}\n'
        b'{"phone": "6912345671", "first_name": "Eleni"}'
    )
    reader = NdjsonReader()
    rows = read_all(reader, body, [10, 11, 70])
    assert rows == [
        RawRow(1, "6912345678", None, None, ["a", " b"], {"size": 42}),
        RawRow(6, "6912345671", "Eleni", None, None, None),
    ]
    assert reader.rejects == [
        Reject(3, "[1,2]", "not a JSON object"),
        Reject(4, "{not json", "not valid JSON"),
        Reject(5, "surname", "unknown field"),
    ]
    with pytest.raises(ValidationProblem) as info:
        read_all(NdjsonReader(), b"\n  \n", [])
    assert info.value.code == "empty_body"


def test_validation_normalizes_and_rejects_with_reasons() -> None:
    rows = [
        RawRow(2, "6912345678", " Maria ", "", "vip;new;vip", {"city": "Athens"}),
        RawRow(3, "12", "x", None, None, {}),
        RawRow(4, "69123456AB", None, None, None, {}),
        RawRow(5, "+306912345679", "x" * 51, None, None, {}),
        RawRow(6, "+306912345679", None, None, ["ok", 3], {}),
        RawRow(7, "+306912345679", None, None, None, {"Bad-Key": "v"}),
        RawRow(8, "+306912345679", None, None, None, {"note": "y" * 101}),
        RawRow(9, None, None, None, None, None),
        RawRow(10, 306912345670, 7, None, None, {"n": 1.5, "gone": None}),
        RawRow(11, "+306912345679", "nul\x00", None, None, {}),
    ]
    staged, rejects = validate_rows(rows, "GR")
    assert [(s.line, s.phone, s.first_name, s.tags, s.custom) for s in staged] == [
        (2, "+306912345678", "Maria", ["new", "vip"], '{"city":"Athens"}'),
        (10, "+306912345670", "7", [], '{"n":"1.5"}'),
    ]
    assert [(r.line, r.reason) for r in rejects] == [
        (3, "not a valid phone number"),
        (4, "contains letters"),
        (5, "first_name longer than 50 characters"),
        (6, "tags must be strings"),
        (7, "invalid custom field name Bad-Key"),
        (8, "custom field note longer than 100 characters"),
        (9, "empty"),
        (11, "first_name contains a NUL character"),
    ]
    assert rejects[0].value == "12"


def test_clean_tags() -> None:
    assert clean_tags(" b ; a;;b ") == ["a", "b"]
    assert clean_tags(["z", "é", "a"]) == ["a", "z", "é"]
    with pytest.raises(ValueError, match="longer than 64"):
        clean_tags(["x" * 65])
    with pytest.raises(ValueError, match="more than 100 tags"):
        clean_tags([f"t{i}" for i in range(101)])


def test_reject_log_keeps_the_first_lines_from_any_order() -> None:
    log = RejectLog()
    log.add(Reject(line, "v", "r") for line in range(500, 300, -1))
    log.add([Reject(1, "v", "r")])
    assert log.count == 201
    assert len(log.first) == MAX_REJECTS_REPORTED
    assert [r.line for r in log.first] == [1, *range(301, 400)]
