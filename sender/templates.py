"""Message templates: parsing, validation and per-recipient rendering.

Placeholders, each between double braces (whitespace inside the braces is ignored):

    {{first_name}}  {{last_name}}  {{custom.NAME}}     contact fields; NAME is [a-z_][a-z0-9_]*,
                                                       at most 32 characters
    {{first_name|there}}                               fallback when the field is empty
    {{link:https://shop.example/sale}}                 tracked link (http or https)
    {{unsubscribe}}                                    the recipient's unsubscribe link

Anything else between ``{{`` and ``}}`` is an unknown placeholder, and a ``{{`` without its
``}}`` is an error: both are rejected when a campaign is created, never discovered while
sending. A template is parsed once into literal text and typed slots, so rendering a message
on the send path is a single join.

Distinct link URLs are numbered in order of first appearance (the same URL twice is one tracked
link); the number is the link index of :mod:`sender.links`.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Final
from urllib.parse import urlsplit

from sender.links import LINK_CODE_LENGTH, UNSUBSCRIBE_INDEX, short_url

__all__ = [
    "CUSTOM_NAME_PATTERN",
    "MAX_CUSTOM_VALUE_LENGTH",
    "MAX_LINKS",
    "MAX_LINK_URL_LENGTH",
    "MAX_NAME_LENGTH",
    "Field",
    "Link",
    "Part",
    "Template",
    "TemplateError",
    "Unsubscribe",
]

#: Longest first or last name a contact can hold; longer values are cut when rendering.
MAX_NAME_LENGTH: Final = 50
#: Longest custom field value a contact can hold; longer values are cut when rendering.
MAX_CUSTOM_VALUE_LENGTH: Final = 100
#: Distinct tracked links per template: every link index except the unsubscribe one.
MAX_LINKS: Final = UNSUBSCRIBE_INDEX
MAX_LINK_URL_LENGTH: Final = 2048
CUSTOM_NAME_PATTERN: Final = r"[a-z_][a-z0-9_]{0,31}"

_NAME_FIELDS: Final = frozenset({"first_name", "last_name"})
_CUSTOM_KEY_RE: Final = re.compile(rf"custom\.{CUSTOM_NAME_PATTERN}")
# A placeholder body may not contain another "{{" or a "}}"; "(?s)" because a newline inside
# the braces must not hide an unclosed "{{".
_PLACEHOLDER_RE: Final = re.compile(r"(?s)\{\{((?:(?!\{\{|\}\}).)*)\}\}")
_HOST_RE: Final = re.compile(r"[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*\.?")


class TemplateError(ValueError):
    """The message template is not valid.

    ``unknown`` lists the unknown placeholder names in order of appearance, each once; other
    problems (unclosed braces, bad link URLs, too long fallbacks) are in the message only.
    """

    def __init__(self, message: str, unknown: list[str] | None = None) -> None:
        super().__init__(message)
        self.unknown: list[str] = list(unknown or [])


@dataclass(frozen=True, slots=True)
class Field:
    """A contact field: ``first_name``, ``last_name`` or ``custom.NAME``."""

    key: str
    fallback: str = ""

    @property
    def max_length(self) -> int:
        return MAX_NAME_LENGTH if self.key in _NAME_FIELDS else MAX_CUSTOM_VALUE_LENGTH


@dataclass(frozen=True, slots=True)
class Link:
    """A tracked link; ``index`` is the URL's position in :attr:`Template.links`."""

    index: int
    url: str


@dataclass(frozen=True, slots=True)
class Unsubscribe:
    """The recipient's unsubscribe link."""


Part = str | Field | Link | Unsubscribe


def _valid_url(url: str) -> bool:
    if not url or len(url) > MAX_LINK_URL_LENGTH:
        return False
    if any(c.isspace() or not c.isprintable() for c in url):
        return False
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a malformed port
    except ValueError:
        return False
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        return False
    host = parts.hostname
    if ":" in host:  # an IPv6 literal; urlsplit has already checked the brackets
        return True
    if not host.isascii():
        try:
            host = host.encode("idna").decode("ascii")
        except UnicodeError:
            return False
    return _HOST_RE.fullmatch(host) is not None


class _Parser:
    """One pass over a template text, collecting every problem before failing."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.parts: list[Part] = []
        self.links: list[str] = []
        self.unknown: list[str] = []
        self.problems: list[str] = []

    def run(self) -> tuple[Part, ...]:
        text = self.text
        pos = 0
        literal: list[str] = []
        while (start := text.find("{{", pos)) != -1:
            literal.append(text[pos:start])
            match = _PLACEHOLDER_RE.match(text, start)
            if match is None:
                self.problems.append(f"'{{{{' at character {start + 1} is not closed by '}}}}'")
                pos = len(text)
                break
            slot = self._slot(match.group(1))
            if slot is not None:
                self._flush(literal)
                self.parts.append(slot)
            pos = match.end()
        literal.append(text[pos:])
        self._flush(literal)
        if self.unknown:
            names = ", ".join(f"{{{{{name}}}}}" for name in self.unknown)
            self.problems.insert(0, f"unknown placeholder(s): {names}")
        if self.problems:
            raise TemplateError("; ".join(self.problems), self.unknown)
        return tuple(self.parts)

    def _flush(self, literal: list[str]) -> None:
        joined = "".join(literal)
        literal.clear()
        if joined:
            self.parts.append(joined)

    def _slot(self, body: str) -> Part | None:
        body = body.strip()
        if body == "unsubscribe":
            return Unsubscribe()
        if body.startswith("link:"):
            return self._link(body[len("link:") :].strip())
        key, _, fallback = body.partition("|")
        key, fallback = key.strip(), fallback.strip()
        if key == "unsubscribe":
            self.problems.append("{{unsubscribe}} takes no fallback")
            return None
        if key in _NAME_FIELDS or _CUSTOM_KEY_RE.fullmatch(key):
            field = Field(key, fallback)
            if len(fallback) > field.max_length:
                self.problems.append(
                    f"fallback of {{{{{key}}}}} is longer than {field.max_length} characters"
                )
            return field
        if key not in self.unknown:
            self.unknown.append(key)
        return None

    def _link(self, url: str) -> Part | None:
        if not _valid_url(url):
            shown = url if len(url) <= 80 else url[:77] + "..."
            self.problems.append(f"{{{{link:{shown}}}}} needs a valid http(s) URL")
            return None
        if url not in self.links:
            if len(self.links) == MAX_LINKS:
                too_many = f"more than {MAX_LINKS} distinct links"
                if too_many not in self.problems:
                    self.problems.append(too_many)
                return None
            self.links.append(url)
        return Link(self.links.index(url), url)


@dataclass(frozen=True, slots=True)
class Template:
    """A parsed message template; build it with :meth:`parse`."""

    text: str
    parts: tuple[Part, ...]

    @classmethod
    def parse(cls, text: str) -> Template:
        """Parse ``text``; raises :class:`TemplateError` naming every problem found."""
        return cls(text=text, parts=_Parser(text).run())

    @property
    def fields(self) -> frozenset[str]:
        """Contact fields the template uses (``first_name``, ``custom.size``, ...)."""
        return frozenset(p.key for p in self.parts if isinstance(p, Field))

    @property
    def links(self) -> list[str]:
        """Distinct tracked-link URLs, in order of first appearance; position = link index."""
        urls: dict[str, None] = {}
        for p in self.parts:
            if isinstance(p, Link):
                urls[p.url] = None
        return list(urls)

    @property
    def has_unsubscribe(self) -> bool:
        return any(isinstance(p, Unsubscribe) for p in self.parts)

    @property
    def is_personalized(self) -> bool:
        """True when the rendered text can differ between recipients."""
        return any(not isinstance(p, str) for p in self.parts)

    def render(
        self,
        fields: Mapping[str, str | None],
        link_url: Callable[[int], str],
        unsubscribe_url: str | None,
    ) -> str:
        """The message for one recipient.

        ``fields`` maps ``first_name``, ``last_name`` and ``custom.NAME`` to the contact's
        values; a missing, ``None`` or empty value gives the fallback (or nothing). Values
        longer than the field's limit are cut, so that no message is longer than
        :meth:`worst_case_text`, on which the credit reservation is based. ``link_url(i)`` is
        the short URL of link ``i``. Raises ``ValueError`` if the template has an unsubscribe
        link and ``unsubscribe_url`` is None.
        """
        link_urls: dict[int, str] = {}
        out: list[str] = []
        append = out.append
        for part in self.parts:
            if type(part) is str:
                append(part)
            elif type(part) is Field:
                value = fields.get(part.key)
                if not value:
                    append(part.fallback)
                elif len(value) > part.max_length:
                    append(value[: part.max_length])
                else:
                    append(value)
            elif type(part) is Link:
                url = link_urls.get(part.index)
                if url is None:
                    url = link_urls[part.index] = link_url(part.index)
                append(url)
            else:
                if unsubscribe_url is None:
                    raise ValueError(
                        "the template has {{unsubscribe}} but no unsubscribe URL was given"
                    )
                append(unsubscribe_url)
        return "".join(out)

    def worst_case_text(self, short_url_length: int) -> str:
        """The longest message the template can render, for segment limits and reservations.

        Every field holds its maximum length of a plain GSM letter (fallbacks are never
        longer: :meth:`parse` rejects them), and every link, the unsubscribe one included,
        takes ``short_url_length`` characters.
        """
        url = "W" * short_url_length
        out: list[str] = []
        for part in self.parts:
            if isinstance(part, str):
                out.append(part)
            elif isinstance(part, Field):
                out.append("W" * part.max_length)
            else:
                out.append(url)
        return "".join(out)

    def render_sample(self, fields: Mapping[str, str | None], short_url_prefix: str) -> str:
        """A preview: ``fields`` filled in, links shown as real-length short URLs."""
        code = "X" * LINK_CODE_LENGTH
        return self.render(
            fields,
            lambda _index: short_url(short_url_prefix, code, "r"),
            short_url(short_url_prefix, code, "u"),
        )
