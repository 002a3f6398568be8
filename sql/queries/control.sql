-- Campaign control: cancel, pause, resume, retry of failed recipients.

-- name: lock
SELECT id, store_id, status, priority, dispatch_round, total_recipients,
       credits_reserved, credits_allocated, credits_charged, credits_released
FROM campaigns
WHERE id = $1 AND store_id = $2
FOR UPDATE;

-- name: set_status
UPDATE campaigns
SET status = $2,
    updated_at = now(),
    finished_at = CASE WHEN $2 = 'cancelled' THEN now() ELSE finished_at END
WHERE id = $1
RETURNING status;

-- name: cancel_pending
-- Pending recipients of a cancelled campaign will never be sent; those in flight finish.
WITH cancelled AS (
    UPDATE campaign_recipients
    SET status = 'cancelled', error_category = 'cancelled', error_code = 'cancelled',
        error_text = 'the campaign was cancelled', next_attempt_at = NULL, updated_at = now()
    WHERE campaign_id = $1 AND status = 'pending'
    RETURNING id
)
UPDATE campaigns
SET cancelled_count = cancelled_count + (SELECT count(*) FROM cancelled), updated_at = now()
WHERE id = $1
RETURNING (SELECT count(*) FROM cancelled) AS cancelled;

-- name: release_unallocated
-- Gives back what the campaign holds and no chunk in flight needs; idempotent.
WITH amount AS (
    SELECT id, store_id,
           credits_reserved - credits_charged - credits_released - credits_allocated AS free
    FROM campaigns
    WHERE id = $1
), campaign AS (
    UPDATE campaigns c
    SET credits_released = c.credits_released + a.free
    FROM amount a
    WHERE c.id = a.id AND a.free > 0
    RETURNING a.store_id, a.free
), store AS (
    UPDATE stores s
    SET credits_available = s.credits_available + c.free,
        credits_reserved = s.credits_reserved - c.free,
        updated_at = now()
    FROM campaign c
    WHERE s.id = c.store_id
)
INSERT INTO credit_ledger (store_id, campaign_id, kind, available_delta, reserved_delta, note)
SELECT store_id, $1, 'release', free, -free, $2
FROM campaign
RETURNING available_delta;

-- name: cancelled_to_settle
-- Cancelled campaigns that still hold credits or pending recipients (in-flight chunks were
-- answered after the cancel): the sweeper settles them.
SELECT c.id, c.store_id
FROM campaigns c
WHERE c.status = 'cancelled'
  AND (c.credits_reserved - c.credits_charged - c.credits_released > 0
       OR EXISTS (SELECT 1 FROM campaign_recipients r
                  WHERE r.campaign_id = c.id AND r.status = 'pending'))
LIMIT 100;

-- name: reopen_failed
-- Retryable failures go back to pending with fresh attempts; permanent ones stay failed.
WITH reopened AS (
    UPDATE campaign_recipients
    SET status = 'pending', attempts = 0, next_attempt_at = NULL, error_category = NULL,
        error_code = NULL, error_text = NULL, failed_at = NULL, claimed_at = NULL,
        requested_at = NULL, updated_at = now()
    WHERE campaign_id = $1 AND status = 'failed' AND error_category = ANY($2::text[])
    RETURNING batch_no, coalesce(segments, 1) AS segments
), batches AS (
    UPDATE campaign_batches b
    SET done = false, generation = b.generation + 1, lease_owner = NULL, lease_until = NULL,
        updated_at = now()
    WHERE b.campaign_id = $1 AND b.batch_no IN (SELECT DISTINCT batch_no FROM reopened)
)
SELECT count(*) AS recipients, coalesce(sum(segments), 0) AS segments FROM reopened;

-- name: restart_for_retry
UPDATE campaigns
SET status = 'sending', finished_at = NULL, dispatch_round = dispatch_round + 1,
    failed_count = failed_count - $2, credits_reserved = credits_reserved + $3,
    updated_at = now()
WHERE id = $1
RETURNING dispatch_round;

-- name: bump_open_batches
-- Fresh job ids for every unfinished batch (resume): arq may still remember the old ones.
UPDATE campaign_batches
SET generation = generation + 1, lease_owner = NULL, lease_until = NULL, updated_at = now()
WHERE campaign_id = $1 AND NOT done
RETURNING batch_no, generation;

-- name: bump_dispatch_round
-- A fresh dispatch job id for a campaign paused before its dispatch ran.
UPDATE campaigns SET dispatch_round = dispatch_round + 1 WHERE id = $1 RETURNING dispatch_round;
