"""The batch job: claim a chunk, render, take tokens, send with many requests in flight.

A batch is a slice of one campaign's recipients (``campaign_batches``). Its job claims due
pending recipients in small chunks just before sending them (so a crash exposes at most the
chunks in flight): it reads a chunk (no lock), renders each message, then marks the rows
still pending `sending` in one statement while allocating their exact segments from the
campaign's credit reservation and stamping them requested (one write per recipient), then
sends every message as its own task behind the process-wide in-flight cap and the provider
limiter. Each answer becomes an outcome row for the writer; nothing on this path queries
PostgreSQL per recipient.

Only the job of the batch's current generation may work on it (a lease in PostgreSQL), so a
job superseded after its daemon died stops at once; and the marking statement claims only
rows still pending with the attempts the pick saw, so even two live runs of one batch split
the work instead of sending twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Protocol

from sender.db import pipeline as db
from sender.db.outcomes import OutcomeRow
from sender.db.pool import Pool
from sender.links import UNSUBSCRIBE_INDEX, encode_link_code, short_url
from sender.mitto import MittoClient, OutcomeKind, SendOutcome
from sender.outcomes import OutcomeWriter
from sender.phones import to_provider_msisdn
from sender.retry import Claim, RetryPolicy, failed_row, outcome_row, skipped_row
from sender.segments import count_segments, to_gsm_lookalikes
from sender.slots import SlotPool
from sender.templates import Template

log = logging.getLogger("sender.batch")

PRIORITY_RANK = {"high": 0, "normal": 1, "low": 2}
# A throttled request is retried in memory (the limiter slows down meanwhile) this many times
# before its recipient goes back to pending; attempts are never consumed by throttling.
MAX_THROTTLE_RETRIES = 3
# Bulk chunks (one /smsbulk request each) claimed but unanswered at once, per daemon.
BULK_CHUNKS_CLAIMED = 16
# A claim waits until at least this fraction of a chunk is free (fewer, larger claims).
CHUNK_MIN_FRACTION = 0.5
# Longest Retry-After honoured in memory; a longer one sends the recipient back to pending.
MAX_RETRY_AFTER_WAIT_S = 5.0


class Limiter(Protocol):
    async def acquire(self, n: int = 1, *, priority: int = 1, key: object = 0) -> float: ...

    def on_throttled(self, retry_after_s: float | None) -> None: ...

    @property
    def rate_per_s(self) -> float: ...


class SendObserver(Protocol):
    """Metrics hooks (the daemon's metrics module implements them)."""

    def request_done(self, outcome: SendOutcome, latency_s: float, recipients: int) -> None: ...

    def limiter_waited(self, seconds: float) -> None: ...

    def recipient_answered(self, attempts: int, outcome: SendOutcome) -> None: ...


class _NoObserver:
    def request_done(self, outcome: SendOutcome, latency_s: float, recipients: int) -> None:
        pass

    def limiter_waited(self, seconds: float) -> None:
        pass

    def recipient_answered(self, attempts: int, outcome: SendOutcome) -> None:
        pass


@dataclass
class SenderConfig:
    public_url: str
    link_secret: bytes
    claim_chunk_size: int
    # Recipients claimed but not yet answered: at most max_in_flight x claim_window. Claims
    # run ahead of the requests on the wire so the next chunks are ready when places free
    # up: a claim is two PostgreSQL round trips through a busy event loop (S1 profile: about
    # 40 ms, twice a request's latency), and with no headroom the wire sat mostly idle.
    claim_window: float = 2.0
    # A killed daemon's batches wait for their lease to run out before the sweeper hands them
    # to a new job, so this is the recovery delay after a SIGKILL. Renewed every third of it;
    # a live job that misses its renewals only ends up sharing its batch with the new job,
    # which the claim's pending check makes safe.
    batch_lease_s: float = 12.0
    policy: RetryPolicy = field(default_factory=RetryPolicy)


@dataclass(frozen=True, slots=True)
class Message:
    claim: Claim
    to: str
    text: str
    type_: str | None


@dataclass(slots=True)
class _Cursor:
    """Where a batch run's picks resume: the last recipient id it picked."""

    after: int = 0


@dataclass(frozen=True, slots=True)
class ClaimedChunk:
    """A claimed chunk: messages to send, outcomes known before sending (opted out,
    invalid number), and whether the messages' credits were allocated with the claim."""

    messages: list[Message]
    early: list[OutcomeRow]
    allocated: bool


@dataclass(frozen=True, slots=True)
class BatchResult:
    sent_requests: int
    superseded: bool = False
    next_due: datetime | None = None
    finished: bool = False


class BatchSender:
    """Process-wide sending machinery shared by every batch job of one daemon."""

    def __init__(
        self,
        *,
        pool: Pool,
        client: MittoClient,
        limiter: Limiter,
        writer: OutcomeWriter,
        config: SenderConfig,
        max_in_flight: int,
        daemon_id: str,
        observer: SendObserver | None = None,
    ) -> None:
        self.pool = pool
        self.client = client
        self.limiter = limiter
        self.writer = writer
        self.config = config
        self.daemon_id = daemon_id
        self.observer: SendObserver = observer or _NoObserver()
        self.max_in_flight = max_in_flight
        # Requests on the wire never exceed MAX_IN_FLIGHT (``_wire``). Claims (``_slots``) may
        # run ahead of them (``claim_window``), so the next chunks are claimed and rendered while
        # the current ones are on the wire.
        self._wire = SlotPool(max_in_flight)
        self._slots = SlotPool(max(max_in_flight, int(max_in_flight * config.claim_window)))
        # A bulk chunk is one request but up to a thousand recipients: it takes a share of the
        # slots so that at most BULK_CHUNKS_CLAIMED of them are claimed at once (S3 saw 69,000
        # recipients `sending` when each took a single slot).
        self._bulk_slots = max(1, self._slots.capacity // BULK_CHUNKS_CLAIMED)
        self.in_flight = 0
        self.stopping = asyncio.Event()
        self._templates: dict[tuple[int, str], Template] = {}

    # -- the job -------------------------------------------------------------------------

    async def run_batch(self, campaign_id: int, batch_no: int, generation: int) -> BatchResult:
        lease_s = self.config.batch_lease_s
        if not await db.take_batch_lease(
            self.pool, campaign_id, batch_no, generation, self.daemon_id, lease_s
        ):
            return BatchResult(sent_requests=0, superseded=True)
        renew = asyncio.create_task(self._renew_lease(campaign_id, batch_no, generation))
        tasks: set[asyncio.Task[None]] = set()
        requests = 0
        try:
            state = await db.campaign_state(self.pool, campaign_id)
            if state is None or state.status != "sending":
                return BatchResult(sent_requests=0)
            template = self._template(state.id, state.message)
            started = time.perf_counter()
            bulk = not template.is_personalized
            cursor = _Cursor()
            while not self.stopping.is_set():
                chunk = await self._claim_next(state, template, batch_no, bulk, cursor)
                if chunk is None:
                    break
                requests += await self._send_chunk(state, bulk, chunk, tasks)
            if tasks:
                await asyncio.gather(*tasks)
            await self.writer.flush()
            result = await self._after_batch(campaign_id, batch_no, generation, requests)
            log.info(
                "batch done",
                extra={
                    "campaign_id": campaign_id,
                    "store_id": state.store_id,
                    "batch_no": batch_no,
                    "generation": generation,
                    "requests": requests,
                    "elapsed_s": round(time.perf_counter() - started, 3),
                    "finished": result.finished,
                    "stopping": self.stopping.is_set(),
                },
            )
            return result
        finally:
            renew.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await renew
            if tasks:
                # Cancelled from outside (shutdown timeout): let in-flight requests finish so
                # their outcomes reach the writer.
                await asyncio.gather(*tasks, return_exceptions=True)
            await db.release_batch_lease(
                self.pool, campaign_id, batch_no, generation, self.daemon_id
            )

    async def _after_batch(
        self, campaign_id: int, batch_no: int, generation: int, requests: int
    ) -> BatchResult:
        if self.stopping.is_set():
            return BatchResult(sent_requests=requests)
        if not await db.batch_has_work(self.pool, campaign_id, batch_no):
            await db.finish_batch(self.pool, campaign_id, batch_no, generation)
            return BatchResult(sent_requests=requests, finished=True)
        due = await db.next_due(self.pool, campaign_id, batch_no)
        return BatchResult(sent_requests=requests, next_due=due)

    async def _renew_lease(self, campaign_id: int, batch_no: int, generation: int) -> None:
        period = self.config.batch_lease_s / 3
        while True:
            await asyncio.sleep(period)
            try:
                await db.take_batch_lease(
                    self.pool,
                    campaign_id,
                    batch_no,
                    generation,
                    self.daemon_id,
                    self.config.batch_lease_s,
                )
            except Exception:
                log.warning("could not renew batch lease", exc_info=True)

    async def _claim_next(
        self,
        state: db.CampaignState,
        template: Template,
        batch_no: int,
        bulk: bool,
        cursor: _Cursor,
    ) -> ClaimedChunk | None:
        """Claim and render the next chunk; on return the caller holds its slots.

        Slots before the claim: what is claimed but unanswered never exceeds the slot pool.
        A personalized chunk is picked (a read) before its slots are taken, so the pick's round
        trip overlaps the wait for slots and slots are held only through the render and one
        marking statement. A bulk chunk travels as one request and holds a fixed share of the
        slots; it waits for its tokens before it is picked, so claimed recipients are always on
        their way. The caller holds one slot per message (a bulk chunk's share for bulk).
        """
        size = self._chunk_size(bulk)
        priority = PRIORITY_RANK.get(state.priority, 1)
        if bulk:
            held = await self._slots.take(self._bulk_slots)
            try:
                await self._acquire_tokens(size, priority, state.store_id)
                picked = await self._pick(state.id, batch_no, size, cursor)
                if picked:
                    cursor.after = picked[-1].id
                chunk = await self._mark(state, template, picked) if picked else None
            except BaseException:
                self._slots.give(held)
                raise
            if chunk is None:
                self._slots.give(held)
            return chunk
        picked = await self._pick(state.id, batch_no, size, cursor)
        if not picked:
            return None
        held = await self._slots.take(
            len(picked), max(1, int(min(size, len(picked)) * CHUNK_MIN_FRACTION))
        )
        cursor.after = picked[held - 1].id
        try:
            chunk = await self._mark(state, template, picked[:held])
        except BaseException:
            self._slots.give(held)
            raise
        self._slots.give(held - len(chunk.messages))
        return chunk

    async def _pick(
        self, campaign_id: int, batch_no: int, size: int, cursor: _Cursor
    ) -> list[db.ClaimedRecipient]:
        """The next due pending recipients after the cursor; once past the end, from the
        start again (rows before the cursor come back due when their retry is due)."""
        picked = await db.pick(self.pool, campaign_id, batch_no, size, cursor.after)
        if not picked and cursor.after:
            cursor.after = 0
            picked = await db.pick(self.pool, campaign_id, batch_no, size, 0)
        return picked

    async def _mark(
        self, state: db.CampaignState, template: Template, picked: list[db.ClaimedRecipient]
    ) -> ClaimedChunk:
        """Render the picked recipients, then claim them in one statement (one write each).

        Nothing is written until the messages are rendered; then the recipients still pending
        are marked `sending` while their exact segments are allocated and they are stamped
        requested. Rows another run claimed since the pick are left to it.
        """
        messages, early = self._prepare(state, template, picked)
        by_id = {m.claim.recipient_id: m.claim.segments for m in messages}
        marked = await db.mark_claimed(
            self.pool, state.id, picked, [by_id.get(r.id, 0) for r in picked]
        )
        if len(marked.ids) < len(picked):
            messages = [m for m in messages if m.claim.recipient_id in marked.ids]
            early = [row for row in early if row.recipient_id in marked.ids]
        return ClaimedChunk(messages, early, marked.allocated)

    def _chunk_size(self, bulk: bool) -> int:
        # Small enough that a chunk leaves within about half a second at the current provider
        # rate, which bounds what a crash can leave in flight. Personalized messages travel one
        # per request, so a chunk never exceeds the in-flight cap; identical ones travel in one
        # /smsbulk request per chunk, up to the provider's per-request limit.
        by_rate = max(int(self.limiter.rate_per_s * 0.5), 10)
        if bulk:
            return max(1, min(self.client.bulk_max, by_rate))
        return max(1, min(self.config.claim_chunk_size, self.max_in_flight, by_rate))

    def _template(self, campaign_id: int, message: str) -> Template:
        key = (campaign_id, message)
        found = self._templates.get(key)
        if found is None:
            found = Template.parse(message)
            if len(self._templates) > 1000:
                self._templates.clear()
            self._templates[key] = found
        return found

    # -- one chunk -----------------------------------------------------------------------

    async def _send_chunk(
        self,
        state: db.CampaignState,
        bulk: bool,
        chunk: ClaimedChunk,
        tasks: set[asyncio.Task[None]],
    ) -> int:
        """Send a claimed chunk; the caller holds one slot per message (a share for bulk)."""
        held = self._bulk_slots if bulk else len(chunk.messages)
        spawned = 0
        try:
            for row in chunk.early:
                self.writer.add(row)
            messages = chunk.messages
            if messages and not chunk.allocated:
                messages = await self._allocate(state, messages)
            if not messages:
                return 0
            priority = PRIORITY_RANK.get(state.priority, 1)
            if bulk:
                await self._wire.take(1)
                self._spawn(tasks, self._send_group(state, messages, priority))
                spawned = held  # the group's task gives them all back
                return len(messages)
            while spawned < len(messages):
                # Places on the wire first (as many as are free, in one grant: a handoff per
                # request cost an event-loop turn each), then a token per request: a token is
                # spent only when its request can leave at once, which keeps the limiter's pace.
                places = await self._wire.take(len(messages) - spawned)
                try:
                    for message in messages[spawned : spawned + places]:
                        await self._acquire_tokens(1, priority, state.store_id)
                        self._spawn(tasks, self._send_one(state, message, priority))
                        spawned += 1
                        places -= 1
                finally:
                    self._wire.give(places)
            return len(messages)
        finally:
            # Every spawned send gives its own slot back when it is answered.
            self._slots.give(held - spawned)

    async def _acquire_tokens(self, n: int, priority: int, store_id: int) -> None:
        waited = await self.limiter.acquire(n, priority=priority, key=store_id)
        if waited:
            self.observer.limiter_waited(waited)

    def _prepare(
        self, state: db.CampaignState, template: Template, chunk: list[db.ClaimedRecipient]
    ) -> tuple[list[Message], list[OutcomeRow]]:
        messages: list[Message] = []
        early: list[OutcomeRow] = []
        now = datetime.now(UTC)
        for recipient in chunk:
            claim = Claim(recipient.id, state.id, state.store_id, recipient.attempts, 0)
            if not recipient.opted_in:
                early.append(skipped_row(claim, "opted_out", "contact opted out", now))
                continue
            try:
                to = to_provider_msisdn(recipient.phone)
            except ValueError:
                early.append(skipped_row(claim, "invalid_number", "not an E.164 number", now))
                continue
            text = template.render(
                _fields(recipient),
                link_url=self._link_renderer(recipient.id),
                unsubscribe_url=self._unsubscribe_url(recipient.id)
                if template.has_unsubscribe
                else None,
            )
            text, info_segments, encoding = _smart_encode(text)
            messages.append(
                Message(
                    claim=Claim(
                        recipient.id, state.id, state.store_id, recipient.attempts, info_segments
                    ),
                    to=to,
                    text=text,
                    type_=None if encoding == "GSM-7" else "Unicode",
                )
            )
        return messages, early

    def _link_renderer(self, recipient_id: int) -> Callable[[int], str]:
        base, secret = self.config.public_url, self.config.link_secret

        def link(index: int) -> str:
            return short_url(base, encode_link_code(recipient_id, index, secret), "r")

        return link

    def _unsubscribe_url(self, recipient_id: int) -> str:
        code = encode_link_code(recipient_id, UNSUBSCRIBE_INDEX, self.config.link_secret)
        return short_url(self.config.public_url, code, "u")

    async def _allocate(self, state: db.CampaignState, messages: list[Message]) -> list[Message]:
        """Credits were short at the claim: extend the reservation when the store has credits,
        else send what the reservation covers and fail the rest cleanly."""
        ids = [m.claim.recipient_id for m in messages]
        segments = [m.claim.segments for m in messages]
        room, available = await db.credit_room(self.pool, state.id)
        shortfall = sum(segments) - room
        if (
            shortfall > 0
            and available >= shortfall
            and await db.extend_reservation(self.pool, state.id, state.store_id, shortfall)
            and await db.allocate_and_mark(self.pool, state.id, ids, segments)
        ):
            return messages
        # Credits ran out mid-campaign: send what the reservation still covers, fail the rest.
        room, _ = await db.credit_room(self.pool, state.id)
        covered: list[Message] = []
        total = 0
        for message in messages:
            if total + message.claim.segments > room:
                break
            covered.append(message)
            total += message.claim.segments
        if covered and not await db.allocate_and_mark(
            self.pool,
            state.id,
            [m.claim.recipient_id for m in covered],
            [m.claim.segments for m in covered],
        ):
            covered = []
        now = datetime.now(UTC)
        for message in messages[len(covered) :]:
            self.writer.add(
                failed_row(
                    message.claim,
                    "insufficient_credits",
                    "the store ran out of credits during the send",
                    now,
                )
            )
        log.warning(
            "credits ran out during send",
            extra={
                "campaign_id": state.id,
                "store_id": state.store_id,
                "failed": len(messages) - len(covered),
            },
        )
        return covered

    def _spawn(self, tasks: set[asyncio.Task[None]], work: Awaitable[None]) -> None:
        task = asyncio.ensure_future(work)
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    async def _send_one(self, state: db.CampaignState, message: Message, priority: int) -> None:
        self.in_flight += 1
        try:
            outcome = await self._post_with_throttle_retries(
                lambda: self.client.send_one(
                    sender=state.sender_id,
                    to=message.to,
                    text=message.text,
                    reference=_reference(message.claim),
                    type_=message.type_,
                ),
                priority,
                state.store_id,
                1,
            )
            self.observer.recipient_answered(message.claim.attempts, outcome)
            self.writer.add(outcome_row(message.claim, outcome, self.config.policy))
        finally:
            self.in_flight -= 1
            self._wire.give(1)
            self._slots.give(1)

    async def _send_group(
        self, state: db.CampaignState, group: list[Message], priority: int
    ) -> None:
        self.in_flight += 1
        try:
            outcomes = await self._post_bulk_with_throttle_retries(state, group, priority)
            now = datetime.now(UTC)
            for message, outcome in zip(group, outcomes, strict=True):
                self.observer.recipient_answered(message.claim.attempts, outcome)
                self.writer.add(outcome_row(message.claim, outcome, self.config.policy, now))
        finally:
            self.in_flight -= 1
            self._wire.give(1)
            self._slots.give(self._bulk_slots)

    async def _post_with_throttle_retries(
        self,
        post: Callable[[], Awaitable[SendOutcome]],
        priority: int,
        store_id: int,
        recipients: int,
    ) -> SendOutcome:
        """POST, retrying throttled answers in memory a few times without using an attempt.

        A 429/503 cuts the shared pace (once per cooldown, however many arrive together) and
        delays this request by its Retry-After. The delay is not imposed on every other
        request: a provider that throttles a share of requests at random would otherwise
        stall the whole daemon. After a few throttled tries the recipient goes back to
        pending (attempts untouched) and the slot is freed for others.
        """
        outcome: SendOutcome | None = None
        for attempt in range(MAX_THROTTLE_RETRIES):
            if attempt:
                await self._acquire_tokens(recipients, priority, store_id)
            started = time.perf_counter()
            outcome = await post()
            self.observer.request_done(outcome, time.perf_counter() - started, recipients)
            if outcome.kind is not OutcomeKind.THROTTLED:
                return outcome
            self.limiter.on_throttled(None)
            await asyncio.sleep(min(outcome.retry_after_s or 0.0, MAX_RETRY_AFTER_WAIT_S))
        assert outcome is not None
        return outcome

    async def _post_bulk_with_throttle_retries(
        self, state: db.CampaignState, group: list[Message], priority: int
    ) -> list[SendOutcome]:
        first = group[0]
        outcomes: list[SendOutcome] = []

        async def post() -> SendOutcome:
            nonlocal outcomes
            outcomes = await self.client.send_bulk(
                sender=state.sender_id,
                to=[m.to for m in group],
                text=first.text,
                reference=f"c{state.id}-b{first.claim.recipient_id}",
                type_=first.type_,
            )
            # The request's fate (throttled or not) is the same for every number in it.
            return outcomes[0]

        await self._post_with_throttle_retries(post, priority, state.store_id, len(group))
        return outcomes


def _fields(recipient: db.ClaimedRecipient) -> dict[str, str | None]:
    fields: dict[str, str | None] = {
        "first_name": recipient.first_name,
        "last_name": recipient.last_name,
    }
    for name, value in recipient.custom.items():
        fields[f"custom.{name}"] = None if value is None else str(value)
    return fields


def _reference(claim: Claim) -> str:
    # Deterministic per recipient (not per attempt): the provider's record shows any duplicate.
    return f"c{claim.campaign_id}-r{claim.recipient_id}"


def _smart_encode(text: str) -> tuple[str, int, str]:
    """Map look-alike characters to GSM-7 when that makes the message cheaper."""
    info = count_segments(text)
    if info.encoding == "GSM-7":
        return text, info.segments, info.encoding
    mapped = to_gsm_lookalikes(text)
    if mapped != text:
        mapped_info = count_segments(mapped)
        if mapped_info.encoding == "GSM-7" and mapped_info.segments <= info.segments:
            return mapped, mapped_info.segments, mapped_info.encoding
    return text, info.segments, info.encoding
