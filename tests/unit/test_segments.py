"""GSM 03.38 segment counting, splitting and smart encoding."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sender.segments import (
    GSM7_BASIC,
    GSM7_EXTENSION,
    GSM7_MULTI_PART,
    GSM7_SINGLE,
    UCS2_MULTI_PART,
    UCS2_SINGLE,
    Encoding,
    SegmentInfo,
    count_segments,
    is_gsm7,
    split_segments,
    to_gsm_lookalikes,
)

EMOJI = "\N{GRINNING FACE}"
GSM_ALPHABET = "".join(sorted(GSM7_BASIC | GSM7_EXTENSION))

# st.text() alone rarely reaches the part boundaries, where the interesting cases are; these
# give long texts rich in two-unit characters, GSM-7 only and mixed.
LONG_GSM = st.text(alphabet=st.sampled_from("ab €^{}"), min_size=140, max_size=700)
LONG_ANY = st.text(alphabet=st.sampled_from(["a", "€", "ж", EMOJI, "\ud800"]), min_size=60)
TEXTS = st.one_of(st.text(), LONG_GSM, LONG_ANY)


def units_of(part: str, encoding: str) -> int:
    """Size of one part in the message's encoding, computed independently of the module."""
    if encoding == "GSM-7":
        return sum(2 if c in GSM7_EXTENSION else 1 for c in part)
    return len(part.encode("utf-16-le", "surrogatepass")) // 2


def test_tables_match_the_standard() -> None:
    # Built another way than the module's table: printable ASCII minus what GSM lacks or keeps
    # in the extension table, plus line feed, carriage return and the non-ASCII positions.
    ascii_part = {chr(c) for c in range(0x20, 0x7F)} - set("`[\\]^{|}~")
    others = set("\n\r£¥èéùìòÇØøÅåΔΦΓΛΩΠΨΣΘΞÆæßÉ¤¡ÄÖÑÜ§¿äöñüà")
    assert ascii_part | others == GSM7_BASIC
    assert len(GSM7_BASIC) == 127  # 128 positions, one of them the escape
    assert frozenset("\f^{}\\[~]|€") == GSM7_EXTENSION
    for char in "`\t\x1bçáΑαω":
        assert char not in GSM7_BASIC
        assert char not in GSM7_EXTENSION


@pytest.mark.parametrize(
    ("length", "segments"), [(1, 1), (160, 1), (161, 2), (306, 2), (307, 3), (459, 3), (460, 4)]
)
def test_gsm7_limits(length: int, segments: int) -> None:
    info = count_segments("a" * length)
    assert info == SegmentInfo(encoding="GSM-7", characters=length, units=length, segments=segments)


@pytest.mark.parametrize(("length", "segments"), [(70, 1), (71, 2), (134, 2), (135, 3), (201, 3)])
def test_ucs2_limits(length: int, segments: int) -> None:
    info = count_segments("ж" * length)
    assert info == SegmentInfo(encoding="UCS-2", characters=length, units=length, segments=segments)


def test_empty_text_has_no_segment() -> None:
    assert count_segments("") == SegmentInfo(encoding="GSM-7", characters=0, units=0, segments=0)
    assert split_segments("") == []


def test_euro_takes_two_septets() -> None:
    info = count_segments("€")
    assert (info.encoding, info.characters, info.units) == ("GSM-7", 1, 2)
    assert count_segments("€" * 80).units == 160
    assert count_segments("€" * 80).segments == 1
    assert count_segments("€" * 81).segments == 2


@pytest.mark.parametrize("char", sorted(GSM7_EXTENSION))
def test_every_extension_char_takes_two_septets(char: str) -> None:
    assert count_segments("a" + char) == SegmentInfo("GSM-7", 2, 3, 1)


def test_emoji_forces_ucs2_and_takes_two_units() -> None:
    info = count_segments("Hi " + EMOJI)
    assert (info.encoding, info.characters, info.units) == ("UCS-2", 4, 5)
    assert count_segments(EMOJI * 35) == SegmentInfo("UCS-2", 35, 70, 1)
    assert count_segments(EMOJI * 36).segments == 2


def test_extension_char_is_not_split_across_parts() -> None:
    # 152 septets, then an escape pair that would straddle the 153-septet boundary.
    text = "a" * 152 + "€" + "b" * 10
    parts = split_segments(text)
    assert parts == ["a" * 152, "€" + "b" * 10]
    assert count_segments(text).segments == 2


def test_the_moved_extension_char_can_cost_a_segment() -> None:
    # 306 septets would fit two full parts, but the first part can only hold 152.
    text = "a" * 152 + "€" + "a" * 152
    assert count_segments(text).units == 306
    assert count_segments(text).segments == 3
    assert [units_of(p, "GSM-7") for p in split_segments(text)] == [152, 153, 1]


def test_surrogate_pair_is_not_split_across_parts() -> None:
    text = "ж" * 66 + EMOJI + "ж" * 10
    parts = split_segments(text)
    assert parts == ["ж" * 66, EMOJI + "ж" * 10]
    assert count_segments(text).segments == 2


def test_backtick_forces_ucs2() -> None:
    assert count_segments("it`s").encoding == "UCS-2"
    assert not is_gsm7("`")


def test_greek_lowercase_forces_ucs2_but_gsm_greek_capitals_do_not() -> None:
    assert count_segments("Καλημέρα").encoding == "UCS-2"
    assert count_segments("ΔΦΓΛΩΠΨΣΘΞ").encoding == "GSM-7"


def test_tab_and_escape_force_ucs2() -> None:
    assert count_segments("a\tb").encoding == "UCS-2"
    assert count_segments("a\x1bb").encoding == "UCS-2"


def test_lookalikes_make_curly_quotes_gsm() -> None:
    text = "“Sale” — it’s 20% off…\u00a0today"
    assert count_segments(text).encoding == "UCS-2"
    converted = to_gsm_lookalikes(text)
    assert converted == '"Sale" - it\'s 20% off... today'
    assert is_gsm7(converted)


def test_lookalikes_map_latin_looking_greek_capitals() -> None:
    converted = to_gsm_lookalikes("ΚΑΛΗΜΕΡΑ ΑΘΗΝΑ! ΕΚΠΤΩΣΕΙΣ ΈΩΣ 50%")
    assert converted == "KAΛHMEPA AΘHNA! EKΠTΩΣEIΣ EΩΣ 50%"
    assert is_gsm7(converted)


def test_lookalikes_keep_what_gsm_has_and_what_has_no_entry() -> None:
    kept = "éèùìòÇØøÅåÄÖÑÜäöñüàÉßÆæ ΔΦΓΛΩΠΨΣΘΞ αβγ " + EMOJI
    assert to_gsm_lookalikes(kept) == kept
    assert to_gsm_lookalikes("café crème à la française") == "café crème à la francaise"
    assert to_gsm_lookalikes("São Tomé, Málaga, Ôlo") == "Sao Tomé, Malaga, Olo"


def test_lookalikes_fast_path_returns_plain_ascii_unchanged() -> None:
    text = "Hi Maria, 20% off: https://s.example/r/abc"
    assert to_gsm_lookalikes(text) is text
    assert to_gsm_lookalikes("it`s") == "it's"


def test_lookalikes_remove_invisible_characters() -> None:
    assert to_gsm_lookalikes("Sale\u200b!\ufeff") == "Sale!"


@given(TEXTS)
def test_split_agrees_with_count(text: str) -> None:
    assert len(split_segments(text)) == count_segments(text).segments


@given(TEXTS)
def test_split_parts_join_to_the_text(text: str) -> None:
    assert "".join(split_segments(text)) == text


@given(TEXTS.filter(bool))
def test_every_part_fits_its_limit(text: str) -> None:
    info = count_segments(text)
    parts = split_segments(text)
    gsm = info.encoding == "GSM-7"
    single, multi = (GSM7_SINGLE, GSM7_MULTI_PART) if gsm else (UCS2_SINGLE, UCS2_MULTI_PART)
    limit = single if len(parts) == 1 else multi
    sizes = [units_of(p, info.encoding) for p in parts]
    assert all(0 < size <= limit for size in sizes)
    assert sum(sizes) == info.units


@given(st.text(alphabet=GSM_ALPHABET))
def test_gsm_alphabet_never_reports_ucs2(text: str) -> None:
    info = count_segments(text)
    assert info.encoding == "GSM-7"
    assert is_gsm7(text)


@given(TEXTS)
def test_units_at_least_characters(text: str) -> None:
    info = count_segments(text)
    assert info.characters == len(text)
    assert info.units >= info.characters


@given(st.one_of(LONG_GSM, LONG_ANY))
def test_packing_matches_a_reference_loop(text: str) -> None:
    # Independent, obviously correct greedy packing, character by character.
    gsm = set(text) <= GSM7_BASIC | GSM7_EXTENSION
    encoding: Encoding = "GSM-7" if gsm else "UCS-2"
    single, multi = (GSM7_SINGLE, GSM7_MULTI_PART) if gsm else (UCS2_SINGLE, UCS2_MULTI_PART)
    total = units_of(text, encoding)
    limit = multi if total > single else single
    parts: list[str] = []
    current, used = "", 0
    for char in text:
        cost = units_of(char, encoding)
        if used + cost > limit:
            parts.append(current)
            current, used = "", 0
        current += char
        used += cost
    if current:
        parts.append(current)
    assert split_segments(text) == parts
    assert count_segments(text) == SegmentInfo(encoding, len(text), total, len(parts))


LOOKALIKES = "‘’‚‛′ʼ´`“”„‟″«»‐‑‒–—―−…\t\u00a0\u2002\u2003\u2007\u2009\u202f\u00ad\u200b\u2060\ufeff"
LOOKALIKES += "áâãāçêëēíîïīóôõōúûūýÿÁÀÂÃĀÈÊËĒÍÌÎÏĪÓÒÔÕŌÚÙÛŪÝΑΒΕΖΗΙΚΜΝΟΡΤΥΧΆΈΉΊΌΎΏΪΫ"


@given(st.text(alphabet=GSM_ALPHABET))
def test_lookalikes_leave_gsm_text_alone(text: str) -> None:
    assert to_gsm_lookalikes(text) == text


@given(st.text(alphabet=GSM_ALPHABET + LOOKALIKES))
def test_lookalikes_turn_mapped_text_into_gsm(text: str) -> None:
    converted = to_gsm_lookalikes(text)
    assert is_gsm7(converted)
    assert count_segments(converted).encoding == "GSM-7"


@given(st.text())
def test_lookalikes_never_make_text_non_gsm(text: str) -> None:
    if is_gsm7(text):
        assert is_gsm7(to_gsm_lookalikes(text))
