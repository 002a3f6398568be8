-- Starting a send: lock, reserve, transition, history. One transaction.

-- name: lock_campaign
SELECT c.id, c.store_id, c.status, c.message, c.audience, c.priority, c.scheduled_at,
       c.dispatch_round, c.credits_reserved, c.credits_charged, c.credits_released,
       s.subscription_status, s.credits_available
FROM campaigns c
JOIN stores s ON s.id = c.store_id
WHERE c.id = $1 AND c.store_id = $2
FOR UPDATE OF c;

-- name: max_contact_id
SELECT coalesce(max(id), 0) FROM contacts WHERE store_id = $1;

-- name: reserve_credits
-- Atomic against concurrent sends of the same store: only as many succeed as the balance covers.
WITH st AS (
    UPDATE stores
    SET credits_available = credits_available - $2,
        credits_reserved = credits_reserved + $2,
        updated_at = now()
    WHERE id = $1 AND credits_available >= $2
    RETURNING id
)
INSERT INTO credit_ledger (store_id, campaign_id, kind, available_delta, reserved_delta, note)
SELECT $1, $3, 'reserve', -$2::bigint, $2::bigint, 'reserved for the send'
FROM st
RETURNING id;

-- name: start
UPDATE campaigns
SET status = $3,
    credits_reserved = credits_reserved + $4,
    recipients_at_send = $5,
    audience_max_contact_id = $6,
    started_at = CASE WHEN $3 = 'sending' THEN now() ELSE started_at END,
    updated_at = now()
WHERE id = $1 AND store_id = $2 AND status IN ('draft', 'scheduled')
RETURNING id, status, dispatch_round, priority;

-- name: add_event
INSERT INTO campaign_events (campaign_id, store_id, from_status, to_status, reason, actor)
VALUES ($1, $2, $3, $4, $5, $6);

-- name: progress
SELECT c.id, c.status, c.total_recipients, c.recipients_at_send,
       c.sent_count, c.delivered_count, c.undelivered_count, c.failed_count, c.unknown_count,
       c.cancelled_count, c.skipped_count, c.clicks,
       c.credits_reserved, c.credits_charged, c.credits_released,
       c.started_at, c.finished_at, c.waiting_reason, c.scheduled_at,
       (SELECT count(*) FROM campaign_recipients r
        WHERE r.campaign_id = c.id AND r.status = 'sending') AS sending_count,
       now() AS now
FROM campaigns c
WHERE c.id = $1 AND c.store_id = $2;

-- name: recipients_at_send
SELECT coalesce(recipients_at_send, 0) FROM campaigns WHERE id = $1;

-- name: campaign_exists
SELECT EXISTS (SELECT 1 FROM campaigns WHERE id = $1 AND store_id = $2);

-- name: errors
-- Error breakdown of the recipients that did not get through, by category and raw code.
SELECT r.status, r.error_category AS category, coalesce(r.error_code, '') AS code,
       count(*) AS count, max(r.error_text) AS example
FROM campaign_recipients r
WHERE r.campaign_id = $1
  AND r.status IN ('failed', 'unknown', 'skipped', 'undelivered')
GROUP BY r.status, r.error_category, r.error_code
ORDER BY count(*) DESC, r.status, r.error_category
LIMIT 200;
