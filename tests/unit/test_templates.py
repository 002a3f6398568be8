"""Message templates: parsing, validation, rendering and worst-case length."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sender.links import LINK_CODE_LENGTH, short_url_length
from sender.templates import (
    MAX_CUSTOM_VALUE_LENGTH,
    MAX_LINKS,
    MAX_NAME_LENGTH,
    Field,
    Link,
    Template,
    TemplateError,
    Unsubscribe,
)

BLACK_FRIDAY = (
    "Hi {{first_name}}, 20% off: {{link:https://shop.example/bf}} {{unsubscribe}}"  # DESIGN.md
)


def link(i: int) -> str:
    return f"https://s.example/r/link{i}"


def parse_error(text: str) -> TemplateError:
    with pytest.raises(TemplateError) as info:
        Template.parse(text)
    return info.value


def test_parse_into_literals_and_slots() -> None:
    template = Template.parse(BLACK_FRIDAY)
    assert template.parts == (
        "Hi ",
        Field("first_name"),
        ", 20% off: ",
        Link(0, "https://shop.example/bf"),
        " ",
        Unsubscribe(),
    )
    assert template.text == BLACK_FRIDAY
    assert template.fields == {"first_name"}
    assert template.links == ["https://shop.example/bf"]
    assert template.has_unsubscribe


def test_render_fills_fields_links_and_unsubscribe() -> None:
    template = Template.parse(BLACK_FRIDAY)
    text = template.render({"first_name": "Maria"}, link, "https://s.example/u/abc")
    assert text == "Hi Maria, 20% off: https://s.example/r/link0 https://s.example/u/abc"


def test_whitespace_inside_braces_is_tolerated() -> None:
    template = Template.parse("Hi {{ first_name | there }} {{  link: https://a.example/x }}")
    assert template.parts == (
        "Hi ",
        Field("first_name", "there"),
        " ",
        Link(0, "https://a.example/x"),
    )


@pytest.mark.parametrize("value", [None, "", "missing"])
def test_fallback_used_for_empty_values(value: str | None) -> None:
    template = Template.parse("Hi {{first_name|there}}!")
    fields = {} if value == "missing" else {"first_name": value}
    assert template.render(fields, link, None) == "Hi there!"
    assert template.render({"first_name": "Eleni"}, link, None) == "Hi Eleni!"


def test_empty_value_without_fallback_renders_nothing() -> None:
    template = Template.parse("Hi {{first_name}} {{last_name}}!")
    assert template.render({"first_name": "Eleni"}, link, None) == "Hi Eleni !"


def test_custom_fields() -> None:
    template = Template.parse("Size {{custom.shoe_size}} in {{custom.store|Athens}}")
    assert template.fields == {"custom.shoe_size", "custom.store"}
    fields = {"custom.shoe_size": "42", "custom.store": None}
    assert template.render(fields, link, None) == "Size 42 in Athens"


def test_values_longer_than_the_limit_are_cut() -> None:
    template = Template.parse("{{first_name}}|{{custom.note}}")
    fields = {"first_name": "N" * 80, "custom.note": "C" * 300}
    rendered = template.render(fields, link, None)
    assert rendered == "N" * MAX_NAME_LENGTH + "|" + "C" * MAX_CUSTOM_VALUE_LENGTH


def test_links_are_numbered_by_distinct_url_and_rendered_by_callback() -> None:
    template = Template.parse(
        "{{link:https://a.example/1}} {{link:https://b.example/2?x=1&y=2}} "
        "{{link:https://a.example/1}}"
    )
    assert template.links == ["https://a.example/1", "https://b.example/2?x=1&y=2"]
    calls: list[int] = []

    def link_url(i: int) -> str:
        calls.append(i)
        return f"<{i}>"

    assert template.render({}, link_url, None) == "<0> <1> <0>"
    assert calls == [0, 1]


def test_unknown_placeholders_named_in_order_once() -> None:
    error = parse_error("Hi {{city}}, use {{promo}} in {{city}} {{first_name}} {{ promo }}")
    assert error.unknown == ["city", "promo"]
    assert str(error) == "unknown placeholder(s): {{city}}, {{promo}}"
    assert isinstance(error, ValueError)


@pytest.mark.parametrize(
    ("text", "unknown"),
    [
        ("{{First_name}}", ["First_name"]),
        ("{{custom.Size}}", ["custom.Size"]),
        ("{{custom.}}", ["custom."]),
        ("{{custom.a" + "b" * 32 + "}}", ["custom.a" + "b" * 32]),
        ("{{custom.9lives}}", ["custom.9lives"]),
        ("{{city|Athens}}", ["city"]),
        ("{{}}", [""]),
        ("{{{first_name}}}", ["{first_name"]),
    ],
)
def test_other_placeholders_are_unknown(text: str, unknown: list[str]) -> None:
    assert parse_error(text).unknown == unknown


def test_custom_name_of_32_characters_is_accepted() -> None:
    name = "custom.a" + "b" * 31
    assert Template.parse("{{" + name + "}}").fields == {name}


@pytest.mark.parametrize("text", ["Hi {{first_name", "Hi {{ {{first_name}}", "{{first_name}\n}"])
def test_unclosed_braces_are_an_error(text: str) -> None:
    error = parse_error(text)
    assert "is not closed" in str(error)
    assert error.unknown == []


def test_all_problems_reported_together() -> None:
    error = parse_error("{{city}} {{link:ftp://x.example}} {{first_name")
    assert error.unknown == ["city"]
    assert str(error) == (
        "unknown placeholder(s): {{city}}; {{link:ftp://x.example}} needs a valid http(s) URL; "
        "'{{' at character 35 is not closed by '}}'"
    )


@pytest.mark.parametrize(
    "url",
    [
        "ftp://shop.example/a",
        "javascript:alert(1)",
        "https://",
        "https:///path",
        "shop.example/a",
        "https://shop example/a",
        "https://shop.example:99999/",
        "https://shop..example/",
        "https://shop.exa!mple/",
        "",
        "https://a.example/" + "x" * 2100,
    ],
)
def test_links_need_a_valid_http_url(url: str) -> None:
    error = parse_error(f"Buy {{{{link:{url}}}}}")
    assert "needs a valid http(s) URL" in str(error)


@pytest.mark.parametrize(
    "url",
    [
        "http://shop.example",
        "https://shop.example:8443/a/b?c=d#e",
        "https://ΚΑΤΑΣΤΗΜΑ.gr/προσφορές",
        "https://[2001:db8::1]/x",
        "https://127.0.0.1/x",
        "HTTPS://SHOP.EXAMPLE/A",
    ],
)
def test_valid_link_urls(url: str) -> None:
    assert Template.parse(f"{{{{link:{url}}}}}").links == [url]


def test_too_many_distinct_links() -> None:
    ok = " ".join(f"{{{{link:https://a.example/{i}}}}}" for i in range(MAX_LINKS))
    assert len(Template.parse(ok).links) == MAX_LINKS
    error = parse_error(ok + " {{link:https://a.example/extra}} {{link:https://a.example/more}}")
    assert str(error) == f"more than {MAX_LINKS} distinct links"


def test_fallback_longer_than_the_field_is_rejected() -> None:
    Template.parse("{{first_name|" + "x" * MAX_NAME_LENGTH + "}}")
    error = parse_error("{{first_name|" + "x" * (MAX_NAME_LENGTH + 1) + "}}")
    assert "fallback of {{first_name}} is longer than 50 characters" in str(error)


def test_unsubscribe_takes_no_fallback() -> None:
    assert "takes no fallback" in str(parse_error("{{unsubscribe|x}}"))


def test_unsubscribe_needs_a_url_when_used() -> None:
    template = Template.parse("Bye {{unsubscribe}}")
    with pytest.raises(ValueError, match="no unsubscribe URL"):
        template.render({}, link, None)


def test_single_braces_and_closing_braces_are_text() -> None:
    template = Template.parse("{a} }} {x} € {")
    assert template.parts == ("{a} }} {x} € {",)
    assert template.render({}, link, None) == "{a} }} {x} € {"


def test_is_personalized() -> None:
    assert not Template.parse("Sale today only! Reply STOP to opt out").is_personalized
    assert not Template.parse("").is_personalized
    assert Template.parse("Hi {{first_name|there}}").is_personalized
    assert Template.parse("Sale {{link:https://a.example}}").is_personalized
    assert Template.parse("Sale. {{unsubscribe}}").is_personalized


def test_worst_case_text_lengths() -> None:
    template = Template.parse(
        "Hi {{first_name|friend}} {{last_name}}! {{custom.size}} "
        "{{link:https://a.example}} {{link:https://b.example}} {{unsubscribe}}"
    )
    worst = template.worst_case_text(short_url_length=33)
    static = len("Hi  ! ") + len("   ")
    assert len(worst) == static + 2 * MAX_NAME_LENGTH + MAX_CUSTOM_VALUE_LENGTH + 3 * 33
    assert worst.startswith("Hi " + "W" * MAX_NAME_LENGTH + " ")


def test_worst_case_text_of_a_static_template_is_the_text() -> None:
    assert Template.parse("Sale € today").worst_case_text(30) == "Sale € today"


def test_render_sample_shows_real_length_links() -> None:
    template = Template.parse(BLACK_FRIDAY)
    sample = template.render_sample({"first_name": "Maria"}, "https://s.example/")
    code = "X" * LINK_CODE_LENGTH
    assert sample == f"Hi Maria, 20% off: https://s.example/r/{code} https://s.example/u/{code}"
    assert len(f"https://s.example/r/{code}") == short_url_length("https://s.example/")


NAMES = st.text(max_size=MAX_NAME_LENGTH * 2)


@given(first=NAMES, last=st.none() | NAMES, custom=st.text(max_size=300))
def test_rendered_text_never_longer_than_worst_case(
    first: str, last: str | None, custom: str
) -> None:
    template = Template.parse(
        "{{first_name|there}} {{last_name}} {{custom.x}} {{link:https://a.example}} {{unsubscribe}}"
    )
    url = "https://s.example/r/" + "A" * LINK_CODE_LENGTH
    fields = {"first_name": first, "last_name": last, "custom.x": custom}
    rendered = template.render(fields, lambda _i: url, url)
    assert len(rendered) <= len(template.worst_case_text(len(url)))


@given(st.text())
def test_parse_either_succeeds_or_raises_template_error(text: str) -> None:
    try:
        template = Template.parse(text)
    except TemplateError:
        return
    if not template.is_personalized:
        assert template.render({}, link, None) == text
