"""Audience costing: the per-group bound never undercounts what the daemon will charge."""

from __future__ import annotations

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from sender.costing import (
    AudienceCost,
    CostGroup,
    TextSig,
    decode_signature,
    encode_signature,
    estimate,
    message_cost,
    sample_short_url,
    text_signature,
)
from sender.links import UNSUBSCRIBE_INDEX, encode_link_code, short_url, short_url_length
from sender.segments import count_segments
from sender.templates import MAX_CUSTOM_VALUE_LENGTH, MAX_NAME_LENGTH, Template

SECRET = b"test-link-secret"
PUBLIC_URLS = ["http://127.0.0.1:8080", "https://s.example", "https://example.com/~shop/"]

# Plain letters, Greek (some in the GSM table, most not), GSM extension characters, accents
# in and out of GSM, emoji (astral: two UTF-16 units) and a newline.
ALPHABET = (
    "abcXYZ019 .,!?-'"
    "ΔΦΓΛΩΠΨΣΘΞ"
    "αβγδεζηθικλμνξοπρστυφχψωάέήίόύώ"
    "^{}\\[~]|€\f"
    "éèùìòÇÄÖÑÜäöñüàáâçõ"
    "😀🎉👍🏽"
    "\n"
)
values = st.one_of(st.none(), st.just(""), st.text(alphabet=ALPHABET, max_size=MAX_NAME_LENGTH))
custom_values = st.one_of(
    st.none(), st.text(alphabet=ALPHABET, max_size=MAX_CUSTOM_VALUE_LENGTH + 20)
)
literals = st.text(alphabet=ALPHABET, max_size=200).filter(lambda s: "{{" not in s and "}" not in s)
fallbacks = st.text(alphabet="abcΩé😀€ ", max_size=10).map(str.strip)
slots = st.one_of(
    st.just("{{first_name}}"),
    st.just("{{last_name}}"),
    fallbacks.map(lambda f: f"{{{{first_name|{f}}}}}" if f else "{{first_name}}"),
    st.just("{{custom.city}}"),
    st.just("{{link:https://shop.example/sale}}"),
    st.just("{{link:https://shop.example/other}}"),
    st.just("{{unsubscribe}}"),
)
templates = st.lists(st.one_of(literals, slots), min_size=1, max_size=12).map("".join)


def render(template: Template, fields: dict[str, str | None], public_url: str, rid: int) -> str:
    """The message as the daemon renders it, with real signed short URLs."""
    return template.render(
        fields,
        lambda index: short_url(public_url, encode_link_code(rid, index, SECRET), "r"),
        short_url(public_url, encode_link_code(rid, UNSUBSCRIBE_INDEX, SECRET), "u"),
    )


def db_signature(value: str | None, limit: int) -> int | None:
    """What PostgreSQL stores or computes for a value (cut as rendering cuts it)."""
    sig = text_signature(value[:limit]) if value else None
    return encode_signature(sig) if sig is not None else None


@settings(max_examples=400, deadline=None)
@given(
    text=templates,
    first=values,
    last=values,
    city=custom_values,
    public_url=st.sampled_from(PUBLIC_URLS),
    rid=st.integers(min_value=1, max_value=10**9),
)
@example(
    text="{{first_name}}" + "a" * 150,
    first="€" * 5,
    last=None,
    city=None,
    public_url=PUBLIC_URLS[0],
    rid=1,
)
@example(text="x" * 66 + "{{first_name}}", first="😀" * 3, last=None, city=None,
         public_url=PUBLIC_URLS[0], rid=1)  # fmt: skip
def test_group_bound_is_never_below_the_exact_count(
    text: str,
    first: str | None,
    last: str | None,
    city: str | None,
    public_url: str,
    rid: int,
) -> None:
    try:
        template = Template.parse(text)
    except ValueError:
        return
    fields = {"first_name": first, "last_name": last, "custom.city": city}
    exact = count_segments(render(template, fields, public_url, rid))
    group = CostGroup(
        count=3,
        signatures={
            "first_name": db_signature(first, MAX_NAME_LENGTH),
            "last_name": db_signature(last, MAX_NAME_LENGTH),
            "custom.city": db_signature(city, MAX_CUSTOM_VALUE_LENGTH),
        },
    )
    cost = estimate(template, [group], sample_short_url(public_url))
    assert cost.recipients == 3
    assert cost.encoding == exact.encoding
    assert cost.max >= exact.segments
    assert cost.total == 3 * cost.max
    # The same bound from the values themselves, and the size is exact, not bounded.
    single = message_cost(template, fields, sample_short_url(public_url))
    assert single.segments == cost.max
    assert single.units == exact.units
    rendered = render(template, fields, public_url, rid)
    if not any(c in rendered for c in "^{}\\[~]|€\f") and all(c <= "\uffff" for c in rendered):
        assert cost.max == exact.segments


@given(value=st.text(alphabet=ALPHABET, min_size=1, max_size=300))
def test_signature_round_trip_and_agreement_with_count_segments(value: str) -> None:
    sig = text_signature(value)
    assert sig is not None
    info = count_segments(value)
    assert sig.gsm == (info.encoding == "GSM-7")
    assert (sig.septets if sig.gsm else sig.units) == info.units
    assert sig.chars == len(value)
    decoded = decode_signature(encode_signature(sig))
    assert decoded is not None
    if len(value) <= 300 and sig.units <= 1023 and sig.septets <= 1023:
        assert decoded == sig


def test_empty_values_have_no_signature() -> None:
    assert text_signature("") is None
    assert decode_signature(None) is None


def test_known_bounds_at_the_edges() -> None:
    template = Template.parse("{{first_name}}")
    url = sample_short_url("http://x.example")
    assert message_cost(template, {"first_name": "a" * 160}, url).segments == 1
    # 161 septets: exactly 2 parts of <= 153.
    plain = Template.parse("a" * 161)
    assert estimate(plain, [CostGroup(1, {})], url).max == count_segments("a" * 161).segments == 2
    # With an extension character, parts may hold 152: 306 septets is bounded by 3.
    ext = Template.parse("€" + "a" * 304)
    assert count_segments("€" + "a" * 304).units == 306
    assert estimate(ext, [CostGroup(1, {})], url).max == 3
    # UCS-2 with an astral character: 67 units per part become 66.
    astral = Template.parse("😀" + "α" * 132)
    assert count_segments("😀" + "α" * 132).units == 134
    assert estimate(astral, [CostGroup(1, {})], url).max == 3


def test_estimate_sums_groups_and_takes_ucs2_when_any_group_needs_it() -> None:
    template = Template.parse("Hi {{first_name|there}}, " + "x" * 140)
    latin = encode_signature(TextSig(gsm=True, chars=5, septets=5, units=5))
    greek = encode_signature(TextSig(gsm=False, chars=5, septets=5, units=5))
    url = short_url_length("http://x.example")
    cost = estimate(
        template,
        [
            CostGroup(10, {"first_name": latin}),
            CostGroup(2, {"first_name": greek}),
            CostGroup(1, {"first_name": None}),
            CostGroup(0, {"first_name": greek}),  # an empty group costs nothing
        ],
        url,
    )
    hi_latin = count_segments("Hi Maria, " + "x" * 140).segments
    hi_greek = count_segments("Hi Μαρία, " + "x" * 140).segments
    hi_there = count_segments("Hi there, " + "x" * 140).segments
    assert cost == AudienceCost(
        recipients=13,
        encoding="UCS-2",
        min=min(hi_latin, hi_there),
        max=hi_greek,
        total=10 * hi_latin + 2 * hi_greek + hi_there,
    )


def test_no_recipients_costs_nothing() -> None:
    template = Template.parse("Hello {{first_name}}")
    assert estimate(template, [], 30) == AudienceCost(0, "GSM-7", 0, 0, 0)


def test_a_url_length_alone_means_plain_letters() -> None:
    template = Template.parse("{{link:https://shop.example/x}}")
    by_length = estimate(template, [CostGroup(1, {})], short_url_length("https://e.com/~a"))
    exact = estimate(template, [CostGroup(1, {})], sample_short_url("https://e.com/~a"))
    # "~" is an extension character: it costs one septet more than its length says.
    assert by_length.max == exact.max == 1
    assert message_cost(template, {}, sample_short_url("https://e.com/~a")).units == (
        message_cost(template, {}, short_url_length("https://e.com/~a")).units + 1
    )


@pytest.mark.parametrize("value", ["😀" * 150, "a" * 300, "Ωμέγα"])
def test_long_custom_values_are_cut_like_rendering(value: str) -> None:
    template = Template.parse("{{custom.note}}")
    rendered = template.render({"custom.note": value}, lambda _i: "", None)
    cost = message_cost(template, {"custom.note": value}, 10)
    assert cost.units == count_segments(rendered).units
