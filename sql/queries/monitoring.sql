-- Operations monitoring: cheap reads over the partial index of active campaigns
-- (campaigns_active_idx), run every few seconds by each daemon and by GET /v1/admin/queues.
-- "Progress" is campaigns.updated_at: the outcome writer bumps it on every flush that changes
-- one of the campaign's recipients, and every status transition bumps it too.

-- name: campaign_activity
-- Active campaigns by status, and how long the most idle sending campaign has gone without
-- progress. A campaign that says why it waits (waiting_reason: send window, ...) is not idle.
SELECT status,
       count(*) AS campaigns,
       coalesce(max(extract(epoch FROM now() - updated_at))
                FILTER (WHERE status = 'sending' AND waiting_reason IS NULL), 0)::float8
           AS max_idle_s
FROM campaigns
WHERE status IN ('scheduled', 'sending', 'paused')
GROUP BY status;

-- name: sending_campaigns
-- Campaigns in sending with their progress counters, the most idle first so a stuck one is
-- at the top of the list.
SELECT id, store_id, priority,
       coalesce(total_recipients, recipients_at_send, 0) AS total,
       sent_count + delivered_count + undelivered_count AS sent,
       failed_count AS failed,
       unknown_count AS unknown,
       skipped_count AS skipped,
       cancelled_count AS cancelled,
       started_at,
       updated_at AS last_progress_at,
       extract(epoch FROM now() - updated_at)::float8 AS idle_s,
       waiting_reason
FROM campaigns
WHERE status = 'sending'
ORDER BY updated_at, id
LIMIT $1;
