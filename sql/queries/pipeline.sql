-- The send pipeline: materialize, claim, allocate, and batch bookkeeping.

-- name: lock_campaign_for_dispatch
SELECT id, store_id, status, message, audience, priority, total_recipients,
       audience_max_contact_id, dispatch_round
FROM campaigns
WHERE id = $1
FOR UPDATE;

-- name: materialize
-- One set-based statement: every eligible contact becomes a pending recipient, numbered into
-- batches in contact order. A campaign that already has recipients gets none: a repeated
-- dispatch is harmless. The caller holds the campaign row (lock_campaign_for_dispatch) and
-- sets total_recipients in the same transaction, so recipients are all there or none are;
-- one probe replaces ON CONFLICT, whose speculative insertion cost ~1.5 s per million rows.
-- campaign_recipients_campaign_contact_key still rejects a duplicate.
INSERT INTO campaign_recipients (campaign_id, store_id, contact_id, batch_no, phone)
SELECT $1, c.store_id, c.id, ((row_number() OVER (ORDER BY c.id)) - 1) / $6, c.phone
FROM contacts c
WHERE c.store_id = $2
  AND c.consent = 'opted_in'
  AND (cardinality($3::text[]) = 0 OR c.tags && $3::text[])
  AND c.tags @> $4::text[]
  AND NOT (c.tags && $5::text[])
  AND ($7::bigint IS NULL OR c.id <= $7::bigint)
  AND NOT EXISTS (SELECT 1 FROM campaign_recipients r WHERE r.campaign_id = $1);

-- name: create_batches
INSERT INTO campaign_batches (campaign_id, batch_no, recipients)
SELECT $1, b, least($3::bigint - b::bigint * $2, $2)
FROM generate_series(0, (($3::bigint + $2 - 1) / $2) - 1) AS b
ON CONFLICT DO NOTHING;

-- name: set_total
UPDATE campaigns
SET total_recipients = $2, updated_at = now()
WHERE id = $1;

-- name: open_batches
SELECT batch_no, generation
FROM campaign_batches
WHERE campaign_id = $1 AND NOT done
ORDER BY batch_no;

-- name: campaign_state
SELECT c.id, c.store_id, c.status, c.message, c.priority, c.dispatch_round,
       s.sender_id, s.subscription_status
FROM campaigns c
JOIN stores s ON s.id = c.store_id
WHERE c.id = $1;

-- name: claim
-- Claims the next due pending recipients of one batch, just before sending them, with the
-- contact data needed to render. SKIP LOCKED lets two runs of one batch job (arq re-runs
-- jobs) split the work instead of sending twice. Nothing is claimed unless the campaign is
-- sending, so pause and cancel take effect at the next chunk.
WITH picked AS (
    SELECT r.id, r.attempts, r.phone, r.contact_id,
           ct.first_name, ct.last_name, ct.custom, ct.consent
    FROM campaign_recipients r
    LEFT JOIN contacts ct ON ct.id = r.contact_id
    WHERE r.campaign_id = $1
      AND r.batch_no = $2
      AND r.status = 'pending'
      AND (r.next_attempt_at IS NULL OR r.next_attempt_at <= now())
      AND EXISTS (SELECT 1 FROM campaigns c WHERE c.id = $1 AND c.status = 'sending')
    ORDER BY r.id
    LIMIT $3
    FOR UPDATE OF r SKIP LOCKED
)
UPDATE campaign_recipients r
SET status = 'sending', claimed_at = now(), requested_at = NULL, updated_at = now()
FROM picked
WHERE r.id = picked.id
RETURNING r.id, picked.attempts, picked.phone, picked.contact_id, picked.first_name,
          picked.last_name, picked.custom, picked.consent;

-- name: pick
-- The claim's first half: the next due pending recipients of one batch with the contact data
-- to render them. It reads and locks nothing: `mark_claimed` takes only those still pending,
-- so two runs of one batch (arq re-runs jobs) may pick the same rows but never both claim one.
-- $4 is the last id this run picked: the claim index still holds the rows claimed before it
-- until VACUUM, and starting past them keeps each pick from wading through the batch's
-- already-claimed prefix (which grew with every chunk: S1 slowed from 5,000/s to 3,000/s).
SELECT r.id, r.attempts, r.phone, r.contact_id,
       ct.first_name, ct.last_name, ct.custom, ct.consent
FROM campaign_recipients r
LEFT JOIN contacts ct ON ct.id = r.contact_id
WHERE r.campaign_id = $1
  AND r.batch_no = $2
  AND r.id > $4
  AND r.status = 'pending'
  AND (r.next_attempt_at IS NULL OR r.next_attempt_at <= now())
  AND EXISTS (SELECT 1 FROM campaigns c WHERE c.id = $1 AND c.status = 'sending')
ORDER BY r.id
LIMIT $3;

-- name: mark_claimed
-- The claim's second half, one statement after rendering: allocates the rendered messages'
-- exact segments ($2 in all) from the campaign's reservation and marks the picked recipients
-- that are still pending (and the campaign still sending) `sending`: one write per recipient.
-- Those with segments are stamped requested only when the allocation succeeded; recipients
-- with 0 segments (to be skipped) and, when credits are short, all of them stay unrequested,
-- so a crash sends them back to `pending`. Returns the recipients marked and whether the
-- allocation happened; the caller gives back the segments of picked rows another run took.
WITH alloc AS (
    UPDATE campaigns
    SET credits_allocated = credits_allocated + $2
    WHERE id = $1
      AND status = 'sending'
      AND $2 > 0
      AND credits_allocated + credits_charged + credits_released + $2 <= credits_reserved
    RETURNING id
), marked AS (
    -- The plan must be "look up these ids in the primary key" whatever the statistics say
    -- (they are stale right after a big materialization, or absent on a new table):
    -- - no join with unnest(): estimating one row on each side, the planner chose a nested
    --   loop scanning the array once per row, 200 ms for a 1,000-recipient bulk chunk; each
    --   row finds its own values with array_position instead (in C, microseconds);
    -- - status tested through coalesce(), which no partial index predicate matches, and no
    --   campaign or batch condition: otherwise a scan of the claim index (every pending row
    --   of the table, or of the batch) looked cheaper than the primary key, about a second
    --   per chunk in the 1,000,000-recipient run while holding the campaign row.
    UPDATE campaign_recipients r
    SET status = 'sending',
        claimed_at = now(),
        requested_at = CASE WHEN ($4::smallint[])[array_position($3::bigint[], r.id)] > 0
                                 AND EXISTS (SELECT 1 FROM alloc)
                            THEN now() END,
        segments = CASE WHEN ($4::smallint[])[array_position($3::bigint[], r.id)] > 0
                             AND EXISTS (SELECT 1 FROM alloc)
                        THEN ($4::smallint[])[array_position($3::bigint[], r.id)]
                        ELSE r.segments END,
        updated_at = now()
    WHERE r.id = ANY ($3::bigint[])
      AND coalesce(r.status, '') = 'pending'
      -- Unchanged since the pick: a row another run claimed and sent back to pending for a
      -- retry is due later, and is not this pick's to send.
      AND r.attempts = ($5::smallint[])[array_position($3::bigint[], r.id)]
      AND EXISTS (SELECT 1 FROM campaigns c WHERE c.id = $1 AND c.status = 'sending')
    RETURNING r.id
)
SELECT EXISTS (SELECT 1 FROM alloc) AS allocated,
       coalesce((SELECT array_agg(id) FROM marked), '{}'::bigint[]) AS marked;

-- name: give_back_allocation
UPDATE campaigns
SET credits_allocated = greatest(credits_allocated - $2, 0)
WHERE id = $1;

-- name: allocate_and_mark
-- Allocates the chunk's exact segments from the campaign's reservation and stamps the
-- recipients as requested, in one statement. After this, a crash leaves them `unknown`
-- (the provider may have them); before it, they go back to `pending`.
WITH alloc AS (
    UPDATE campaigns
    SET credits_allocated = credits_allocated + $2
    WHERE id = $1
      AND credits_allocated + credits_charged + credits_released + $2 <= credits_reserved
    RETURNING id
)
UPDATE campaign_recipients r
SET requested_at = now(), segments = x.segments
FROM unnest($3::bigint[], $4::smallint[]) AS x (id, segments)
WHERE r.id = x.id AND r.status = 'sending' AND EXISTS (SELECT 1 FROM alloc)
RETURNING r.id;

-- name: credit_room
SELECT c.credits_reserved - c.credits_allocated - c.credits_charged - c.credits_released AS room,
       s.credits_available
FROM campaigns c
JOIN stores s ON s.id = c.store_id
WHERE c.id = $1;

-- name: extend_reservation
-- The audience can outgrow the reservation (contacts renamed between send and dispatch):
-- take more from the store when it has them, with a ledger entry; otherwise nothing.
WITH st AS (
    UPDATE stores
    SET credits_available = credits_available - $3::bigint,
        credits_reserved = credits_reserved + $3::bigint,
        updated_at = now()
    WHERE id = $2 AND credits_available >= $3
    RETURNING id
), ledger AS (
    INSERT INTO credit_ledger (store_id, campaign_id, kind, available_delta, reserved_delta, note)
    SELECT $2, $1, 'reserve', -$3::bigint, $3::bigint, 'reservation extended during send'
    FROM st
)
UPDATE campaigns
SET credits_reserved = credits_reserved + $3
WHERE id = $1 AND EXISTS (SELECT 1 FROM st)
RETURNING id;

-- name: next_due
SELECT min(coalesce(next_attempt_at, now())) AS due
FROM campaign_recipients
WHERE campaign_id = $1 AND batch_no = $2 AND status = 'pending';

-- name: batch_has_work
SELECT EXISTS (
    SELECT 1 FROM campaign_recipients
    WHERE campaign_id = $1 AND batch_no = $2 AND status IN ('pending', 'sending')
);

-- name: take_batch_lease
-- Only the job of the batch's current generation may work on it; a stale job (superseded
-- after its daemon died) finds nothing here and stops.
UPDATE campaign_batches
SET lease_owner = $4, lease_until = now() + make_interval(secs => $5), updated_at = now()
WHERE campaign_id = $1 AND batch_no = $2 AND generation = $3 AND NOT done
RETURNING generation;

-- name: release_batch_lease
UPDATE campaign_batches
SET lease_owner = NULL, lease_until = NULL, updated_at = now()
WHERE campaign_id = $1 AND batch_no = $2 AND generation = $3 AND lease_owner = $4;

-- name: finish_batch
UPDATE campaign_batches
SET done = true, lease_owner = NULL, lease_until = NULL, updated_at = now()
WHERE campaign_id = $1 AND batch_no = $2 AND generation = $3;

-- name: bump_generation
-- Moves a batch to its next generation (a new arq job id); only from the expected one, so two
-- racers cannot both re-enqueue.
UPDATE campaign_batches
SET generation = generation + 1, done = false, lease_owner = NULL, lease_until = NULL,
    updated_at = now()
WHERE campaign_id = $1 AND batch_no = $2 AND generation = $3
RETURNING generation;
