"""The mock's fault knobs, with the exact key names of ``mitto-api.md``.

One immutable :class:`MockConfig` is live at a time; ``PUT /_mock/config`` deep-merges the given
keys into the current one (``dlr`` included) and swaps the whole object, so a request handler
never sees half an update. Unknown keys and out-of-range values are refused loudly.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

Probability = Annotated[float, Field(ge=0.0, le=1.0)]
NonNegative = Annotated[float, Field(ge=0.0)]

#: Statuses a delivery report can carry (``mitto-api.md``, "Delivery reports").
DLR_STATUSES = ("Delivered", "Undelivered", "Expired", "Rejected", "Unknown")


class DlrConfig(BaseModel):
    """How and where the mock sends delivery reports."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    #: Registered report URL; a message's own ``callback`` overrides it. None: no reports.
    url: str | None = None
    #: POST sends a JSON body; GET sends the fields as a query string.
    method: Literal["POST", "GET"] = "POST"
    delay_ms: NonNegative = 500
    #: Relative weights of the statuses; normalised when drawn.
    mix: dict[str, NonNegative] = Field(
        default_factory=lambda: {"Delivered": 0.9, "Undelivered": 0.05, "Expired": 0.05}
    )
    #: Share of reports sent twice.
    p_duplicate: Probability = 0.0
    #: Shuffle reports within ``reorder_window_ms`` instead of sending them in due order.
    reorder: bool = False
    reorder_window_ms: NonNegative = 200
    #: Reports in flight at once; 1 keeps the arrival order exactly the due order.
    concurrency: Annotated[int, Field(ge=1, le=1024)] = 32
    #: Attempts per report when the receiver fails or answers 5xx (back-off 0.5 s, 1 s, ...).
    max_attempts: Annotated[int, Field(ge=1, le=20)] = 3

    @field_validator("method", mode="before")
    @classmethod
    def _upper_method(cls, value: object) -> object:
        return value.upper() if isinstance(value, str) else value

    @field_validator("mix")
    @classmethod
    def _check_mix(cls, value: dict[str, float]) -> dict[str, float]:
        unknown = sorted(set(value) - set(DLR_STATUSES))
        if unknown:
            raise ValueError(f"unknown status {unknown}; use {list(DLR_STATUSES)}")
        if not value or sum(value.values()) <= 0:
            raise ValueError("needs at least one status with a positive weight")
        return value


class MockConfig(BaseModel):
    """Every knob of the mock; the defaults make it a well-behaved provider."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    latency_ms: NonNegative = 0
    jitter_ms: NonNegative = 0
    p_429: Probability = 0.0
    #: Retry-After seconds on 429 and 503 answers; None sends them without the header.
    retry_after_s: NonNegative | None = 1
    p_503: Probability = 0.0
    p_500_after_accept: Probability = 0.0
    p_hang_after_accept: Probability = 0.0
    hang_s: NonNegative = 30
    p_reset: Probability = 0.0
    #: Share of requests answered with responseCode 1 (provider internal error).
    p_internal_error: Probability = 0.0
    #: Regex searched in ``to``; a match answers responseCode 8.
    invalid_receiver_pattern: str | None = None
    rate_limit_per_s: Annotated[float, Field(gt=0)] | None = None
    rate_limit_burst: Annotated[int, Field(ge=1)] | None = None
    bulk_max: Annotated[int, Field(ge=1)] = 1000
    #: Answer ``textLength`` as a padded string (``" 13"``), as some Mitto examples show.
    text_length_as_string: bool = False
    dlr: DlrConfig = Field(default_factory=DlrConfig)

    @field_validator("invalid_receiver_pattern")
    @classmethod
    def _check_pattern(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                re.compile(value)
            except re.error as exc:
                raise ValueError(f"not a regular expression: {exc}") from None
        return value

    @model_validator(mode="after")
    def _check_burst(self) -> MockConfig:
        if self.rate_limit_burst is not None and self.rate_limit_per_s is None:
            raise ValueError("rate_limit_burst needs rate_limit_per_s")
        return self

    def merged(self, changes: dict[str, Any]) -> MockConfig:
        """A new config with ``changes`` deep-merged in (nested ``dlr`` keys too)."""
        return MockConfig.model_validate(deep_merge(self.model_dump(), changes))


def deep_merge(base: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
    """``base`` updated by ``changes``; nested dicts merge instead of being replaced.

    ``dlr.mix`` is the exception: a mix is a whole distribution, so a given mix replaces the old
    one rather than adding statuses to it.
    """
    out = dict(base)
    for key, value in changes.items():
        current = out.get(key)
        if isinstance(value, dict) and isinstance(current, dict) and key != "mix":
            out[key] = deep_merge(current, value)
        else:
            out[key] = value
    return out
