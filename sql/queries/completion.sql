-- Campaign completion: exactly once, however many daemons race to it.

-- name: lock_sending
SELECT id, store_id, status, dispatch_round, total_recipients,
       sent_count, delivered_count, undelivered_count, failed_count, unknown_count,
       cancelled_count, skipped_count,
       credits_reserved, credits_charged, credits_released, started_at
FROM campaigns
WHERE id = $1 AND status = 'sending' AND total_recipients IS NOT NULL
FOR UPDATE;

-- name: has_unfinished
SELECT EXISTS (
    SELECT 1 FROM campaign_recipients
    WHERE campaign_id = $1 AND status IN ('pending', 'sending')
);

-- name: finish
UPDATE campaigns
SET status = $2, finished_at = now(), updated_at = now(), waiting_reason = NULL,
    credits_allocated = 0, credits_released = credits_released + $3
WHERE id = $1 AND status = 'sending'
RETURNING finished_at;

-- name: release_store_credits
UPDATE stores
SET credits_available = credits_available + $2,
    credits_reserved = credits_reserved - $2,
    updated_at = now()
WHERE id = $1;

-- name: ledger_release
INSERT INTO credit_ledger (store_id, campaign_id, kind, available_delta, reserved_delta, note)
VALUES ($1, $2, 'release', $3::bigint, -$3::bigint, $4);

-- name: add_event
INSERT INTO campaign_events (campaign_id, store_id, from_status, to_status, reason, actor)
VALUES ($1, $2, $3, $4, $5, $6);

-- name: add_outbox
INSERT INTO webhook_outbox (store_id, campaign_id, event_type, payload)
VALUES ($1, $2, $3, $4)
ON CONFLICT (campaign_id, event_type, (payload ->> 'round')) WHERE campaign_id IS NOT NULL
DO NOTHING;

-- name: sending_campaigns
SELECT id FROM campaigns WHERE status = 'sending' AND total_recipients IS NOT NULL ORDER BY id;
