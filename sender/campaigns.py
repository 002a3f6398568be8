"""Campaign rules shared by the API and the send path: audience filters, message checks.

A campaign is validated when it is created or edited, so that nothing the send path meets can
be a surprise: the message parses, every placeholder is known, and its worst-case rendering
fits in ``max_segments``; the audience is three lists of tags; the schedule is in the future.
Every violation is a :class:`~sender.errors.ValidationProblem` with a stable code.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final, Literal

from sender.contact_import import MAX_TAG_LENGTH
from sender.errors import ValidationProblem
from sender.segments import Encoding, count_segments
from sender.templates import Template, TemplateError

__all__ = [
    "AUDIENCE_KEYS",
    "EDITABLE_STATUSES",
    "MAX_AUDIENCE_TAGS",
    "MAX_CUSTOM_FIELDS",
    "PRIORITIES",
    "STATUSES",
    "Audience",
    "MessageCheck",
    "Priority",
    "Status",
    "check_message",
    "check_scheduled_at",
]

Status = Literal["draft", "scheduled", "sending", "paused", "sent", "failed", "cancelled"]
Priority = Literal["high", "normal", "low"]
STATUSES: Final[tuple[Status, ...]] = (
    "draft",
    "scheduled",
    "sending",
    "paused",
    "sent",
    "failed",
    "cancelled",
)
PRIORITIES: Final[tuple[Priority, ...]] = ("high", "normal", "low")
#: A campaign can be edited or deleted only before it starts sending.
EDITABLE_STATUSES: Final[tuple[Status, ...]] = ("draft", "scheduled")

AUDIENCE_KEYS: Final = ("tags_any", "tags_all", "exclude_tags")
MAX_AUDIENCE_TAGS: Final = 100
#: Distinct custom fields one message may use; costing groups contacts by all of them at once.
MAX_CUSTOM_FIELDS: Final = 8


def _audience_problem(detail: str) -> ValidationProblem:
    return ValidationProblem(detail, code="invalid_audience")


@dataclass(frozen=True, slots=True)
class Audience:
    """Which opted-in contacts a campaign reaches.

    A contact is in the audience when it has at least one of ``tags_any`` (when that list is
    not empty), all of ``tags_all`` and none of ``exclude_tags``. All lists empty: everyone.
    """

    tags_any: tuple[str, ...] = ()
    tags_all: tuple[str, ...] = ()
    exclude_tags: tuple[str, ...] = ()

    @classmethod
    def from_json(cls, raw: Any) -> Audience:
        """Validate a client's (or the database's) audience object; missing lists are empty."""
        if raw is None:
            return cls()
        if not isinstance(raw, dict):
            raise _audience_problem("audience must be an object")
        unknown = sorted(str(key) for key in raw if key not in AUDIENCE_KEYS)
        if unknown:
            raise _audience_problem(
                f"unknown audience key(s): {', '.join(unknown)}; "
                f"allowed: {', '.join(AUDIENCE_KEYS)}"
            )
        lists = {key: _tag_list(key, raw.get(key)) for key in AUDIENCE_KEYS}
        return cls(**lists)

    def as_json(self) -> dict[str, list[str]]:
        return {
            "tags_any": list(self.tags_any),
            "tags_all": list(self.tags_all),
            "exclude_tags": list(self.exclude_tags),
        }


def _tag_list(key: str, value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list):
        raise _audience_problem(f"audience.{key} must be a list of tags")
    if len(value) > MAX_AUDIENCE_TAGS:
        raise _audience_problem(f"audience.{key} has more than {MAX_AUDIENCE_TAGS} tags")
    tags: dict[str, None] = {}
    for item in value:
        if not isinstance(item, str) or not item.strip():
            raise _audience_problem(f"audience.{key} must hold non-empty strings")
        tag = item.strip()
        if len(tag) > MAX_TAG_LENGTH or "\x00" in tag:
            raise _audience_problem(
                f"audience.{key} holds a tag longer than {MAX_TAG_LENGTH} characters"
            )
        tags[tag] = None
    return tuple(tags)


@dataclass(frozen=True, slots=True)
class MessageCheck:
    """A valid message: its template and the encoding and segments of its worst case."""

    template: Template
    encoding: Encoding
    segments: int


def check_message(text: str, *, max_segments: int, short_url_length: int) -> MessageCheck:
    """Parse ``text`` and check that its longest rendering fits in ``max_segments``."""
    if not text.strip():
        raise ValidationProblem("the message is empty", code="empty_message")
    try:
        template = Template.parse(text)
    except TemplateError as exc:
        if exc.unknown:
            raise ValidationProblem(
                str(exc), code="unknown_placeholder", placeholders=exc.unknown
            ) from None
        raise ValidationProblem(str(exc), code="invalid_template") from None
    custom = sorted(key for key in template.fields if key.startswith("custom."))
    if len(custom) > MAX_CUSTOM_FIELDS:
        raise ValidationProblem(
            f"the message uses {len(custom)} custom fields; at most {MAX_CUSTOM_FIELDS} are "
            "allowed",
            code="too_many_custom_fields",
        )
    worst = count_segments(template.worst_case_text(short_url_length))
    if worst.segments > max_segments:
        raise ValidationProblem(
            f"the message takes up to {worst.segments} segments ({worst.encoding}) when every "
            f"field holds its longest value; the limit is {max_segments}",
            code="message_too_long",
            segments=worst.segments,
            max_segments=max_segments,
        )
    return MessageCheck(template=template, encoding=worst.encoding, segments=worst.segments)


def check_scheduled_at(value: datetime | None, now: datetime) -> None:
    """A schedule must name an instant (a timezone) in the future."""
    if value is None:
        return
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValidationProblem(
            "scheduled_at needs a timezone (for example 2030-01-01T09:00:00+02:00)",
            code="validation_error",
        )
    try:
        value.astimezone(UTC)
    except OverflowError:
        raise ValidationProblem("scheduled_at is out of range", code="validation_error") from None
    if value <= now:
        raise ValidationProblem(
            f"scheduled_at {value.isoformat()} is not in the future",
            code="scheduled_at_in_past",
        )
