"""What a provider answer means for a recipient (DESIGN.md section 8).

accepted -> ``sent`` (charged); permanent -> ``failed`` at once; transient (the request never
reached the provider) -> back to ``pending`` after exponential backoff with jitter, ``failed``
once attempts are exhausted; ambiguous (the provider may have it) -> ``unknown`` and charged,
or retried like a transient error when the operator opted into at-least-once. Throttling never
reaches this module: the sender retries throttled requests itself without using an attempt.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sender.db.outcomes import OutcomeRow
from sender.mitto import OutcomeKind, SendOutcome


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    max_attempts: int = 5
    base_s: float = 3.0
    retry_ambiguous: bool = False
    jitter: float = 0.2

    def backoff_s(self, attempt: int, rng: random.Random | None = None) -> float:
        """Delay after failed attempt number ``attempt`` (1-based): 3, 6, 12, 24, 48 s +- jitter."""
        delay = self.base_s * (2 ** (attempt - 1))
        spread = (rng or random).uniform(-self.jitter, self.jitter)
        return float(delay * (1 + spread))


@dataclass(frozen=True, slots=True)
class Claim:
    """What the sender knows about a recipient it claimed."""

    recipient_id: int
    campaign_id: int
    store_id: int
    attempts: int
    segments: int


def outcome_row(
    claim: Claim,
    outcome: SendOutcome,
    policy: RetryPolicy,
    now: datetime | None = None,
) -> OutcomeRow:
    """The recipient row change that ``outcome`` calls for."""
    now = now or datetime.now(UTC)
    attempt = claim.attempts + 1
    kind = outcome.kind
    if kind is OutcomeKind.ACCEPTED:
        return _row(claim, "sent", 1, None, outcome, now, charge=True)
    if kind is OutcomeKind.PERMANENT:
        return _row(claim, "failed", 1, None, outcome, now, charge=False)
    if kind is OutcomeKind.AMBIGUOUS and not policy.retry_ambiguous:
        return _row(claim, "unknown", 1, None, outcome, now, charge=True)
    if kind is OutcomeKind.THROTTLED:
        # Throttled requests that the sender gave up retrying in memory: back to pending
        # without using an attempt.
        retry_at = now + timedelta(seconds=outcome.retry_after_s or policy.base_s)
        return _row(claim, "pending", 0, retry_at, outcome, now, charge=False)
    # Transient (or ambiguous with retries enabled).
    if attempt >= policy.max_attempts:
        return _row(claim, "failed", 1, None, outcome, now, charge=False)
    retry_at = now + timedelta(seconds=policy.backoff_s(attempt))
    return _row(claim, "pending", 1, retry_at, outcome, now, charge=False)


def _row(
    claim: Claim,
    status: str,
    attempts_inc: int,
    next_attempt_at: datetime | None,
    outcome: SendOutcome,
    now: datetime,
    *,
    charge: bool,
) -> OutcomeRow:
    return OutcomeRow(
        recipient_id=claim.recipient_id,
        campaign_id=claim.campaign_id,
        store_id=claim.store_id,
        status=status,
        attempts_inc=attempts_inc,
        next_attempt_at=next_attempt_at,
        provider_message_id=outcome.provider_id,
        error_category=outcome.category,
        error_code=outcome.error_code,
        error_text=_clip(outcome.error_text),
        segments=claim.segments,
        charge=charge and claim.segments > 0,
        at=now,
    )


def skipped_row(claim: Claim, category: str, text: str, now: datetime | None = None) -> OutcomeRow:
    """A recipient that is not sent at all (opted out, invalid number at send time)."""
    return OutcomeRow(
        recipient_id=claim.recipient_id,
        campaign_id=claim.campaign_id,
        store_id=claim.store_id,
        status="skipped",
        attempts_inc=0,
        next_attempt_at=None,
        provider_message_id=None,
        error_category=category,
        error_code=category,
        error_text=text,
        segments=claim.segments,
        charge=False,
        at=now or datetime.now(UTC),
    )


def failed_row(claim: Claim, category: str, text: str, now: datetime | None = None) -> OutcomeRow:
    """A recipient failed before any request (credits ran out)."""
    return skipped_row(claim, category, text, now)._replace(status="failed")


def _clip(text: str | None, limit: int = 500) -> str | None:
    if text is None or len(text) <= limit:
        return text
    return text[: limit - 1] + "…"
