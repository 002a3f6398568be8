-- The sweeper: settles what crashes left behind and rebuilds what Redis lost.

-- name: stale_sending
-- Recipients claimed longer ago than the lease. requested_at tells whether a request may
-- have left for them.
SELECT id, campaign_id, store_id, attempts, requested_at IS NOT NULL AS requested,
       coalesce(segments, 0) AS segments
FROM campaign_recipients
WHERE status = 'sending' AND claimed_at < now() - make_interval(secs => $1)
ORDER BY id
LIMIT $2;

-- name: orphan_batches
-- Unfinished batches of sending campaigns that no live job holds a lease on.
SELECT b.campaign_id, b.batch_no, b.generation, b.lease_until IS NOT NULL AS lease_expired,
       c.priority
FROM campaign_batches b
JOIN campaigns c ON c.id = b.campaign_id
WHERE c.status = 'sending' AND NOT b.done
  AND (b.lease_until IS NULL OR b.lease_until < now())
ORDER BY b.campaign_id, b.batch_no
LIMIT $1;

-- name: undispatched
SELECT id, priority, dispatch_round
FROM campaigns
WHERE status = 'sending' AND total_recipients IS NULL;

-- name: start_due_scheduled
WITH started AS (
    UPDATE campaigns
    SET status = 'sending', started_at = now(), updated_at = now()
    WHERE status = 'scheduled' AND scheduled_at <= now()
    RETURNING id, store_id, priority, dispatch_round
), history AS (
    INSERT INTO campaign_events (campaign_id, store_id, from_status, to_status, reason, actor)
    SELECT id, store_id, 'scheduled', 'sending', 'scheduled time reached', 'sweeper'
    FROM started
)
SELECT id, priority, dispatch_round FROM started;
