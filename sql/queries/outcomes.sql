-- The outcome writer: a flush is COPY into a staging table plus one set-based statement, in
-- one transaction. No statement here runs per recipient.

-- name: create_stage
-- Created once per connection (the writer remembers which backends have it); its rows live
-- until the end of the flush's transaction.
CREATE TEMP TABLE IF NOT EXISTS outcome_stage (
    recipient_id        bigint NOT NULL,
    campaign_id         bigint NOT NULL,
    store_id            bigint NOT NULL,
    status              text NOT NULL,
    attempts_inc        smallint NOT NULL,
    next_attempt_at     timestamptz,
    provider_message_id text,
    error_category      text,
    error_code          text,
    error_text          text,
    segments            smallint NOT NULL,
    charge              boolean NOT NULL,
    at                  timestamptz NOT NULL
) ON COMMIT DELETE ROWS;

-- name: apply
-- Everything a flush changes, in one statement (one round trip, one plan the connection keeps):
-- - recipients move, but only those still `sending`: a state never goes backwards, and an
--   outcome applied twice (a retried flush) changes nothing the second time;
-- - one ledger charge per accepted recipient (guarded by a unique index);
-- - campaign counters and credits, store reservations.
-- Returns how many recipients each campaign got.
WITH updated AS (
    UPDATE campaign_recipients r
    SET status = s.status,
        attempts = r.attempts + s.attempts_inc,
        next_attempt_at = s.next_attempt_at,
        provider_message_id = coalesce(s.provider_message_id, r.provider_message_id),
        error_category = s.error_category,
        error_code = s.error_code,
        error_text = s.error_text,
        sent_at = CASE WHEN s.status IN ('sent', 'unknown') THEN s.at ELSE r.sent_at END,
        failed_at = CASE WHEN s.status = 'failed' THEN s.at ELSE r.failed_at END,
        claimed_at = CASE WHEN s.status = 'pending' THEN NULL ELSE r.claimed_at END,
        requested_at = CASE WHEN s.status = 'pending' THEN NULL ELSE r.requested_at END,
        updated_at = now()
    FROM outcome_stage s
    WHERE r.id = s.recipient_id AND r.status = 'sending'
    RETURNING r.id, r.campaign_id, r.store_id, s.status, s.segments, s.charge
), charged AS (
    INSERT INTO credit_ledger (store_id, campaign_id, recipient_id, kind, available_delta, reserved_delta)
    SELECT store_id, campaign_id, id, 'charge', 0, -segments
    FROM updated
    WHERE charge AND segments > 0
    ON CONFLICT (recipient_id) WHERE kind = 'charge' DO NOTHING
    RETURNING campaign_id, store_id, -reserved_delta AS amount
), charge_by_campaign AS (
    SELECT campaign_id, sum(amount) AS amount FROM charged GROUP BY campaign_id
), charge_by_store AS (
    SELECT store_id, sum(amount) AS amount FROM charged GROUP BY store_id
), counts AS (
    SELECT campaign_id,
           count(*) AS moved,
           count(*) FILTER (WHERE status = 'sent') AS sent,
           count(*) FILTER (WHERE status = 'failed') AS failed,
           count(*) FILTER (WHERE status = 'unknown') AS unknown,
           count(*) FILTER (WHERE status = 'skipped') AS skipped,
           count(*) FILTER (WHERE status = 'cancelled') AS cancelled,
           sum(segments) AS allocated
    FROM updated
    GROUP BY campaign_id
), campaign_update AS (
    UPDATE campaigns c
    SET sent_count = c.sent_count + k.sent,
        failed_count = c.failed_count + k.failed,
        unknown_count = c.unknown_count + k.unknown,
        skipped_count = c.skipped_count + k.skipped,
        cancelled_count = c.cancelled_count + k.cancelled,
        credits_allocated = greatest(c.credits_allocated - k.allocated, 0),
        credits_charged = c.credits_charged + coalesce(ch.amount, 0),
        updated_at = now()
    FROM counts k
    LEFT JOIN charge_by_campaign ch ON ch.campaign_id = k.campaign_id
    WHERE c.id = k.campaign_id
    RETURNING c.id
), store_update AS (
    UPDATE stores st
    SET credits_reserved = st.credits_reserved - cs.amount
    FROM charge_by_store cs
    WHERE st.id = cs.store_id
    RETURNING st.id
)
SELECT campaign_id, moved AS n FROM counts;
