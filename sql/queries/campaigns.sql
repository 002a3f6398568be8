-- Campaigns of a store: create, read, list, edit and delete before sending.
-- Every query filters by store; edits and deletes only touch draft or scheduled campaigns.

-- name: create
INSERT INTO campaigns (store_id, name, message, audience, priority, scheduled_at, encoding,
                       segments_estimate)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
RETURNING id, name, message, audience, status, priority, scheduled_at, encoding,
          segments_estimate, created_at, updated_at, started_at, finished_at, total_recipients;

-- name: get
SELECT id, name, message, audience, status, priority, scheduled_at, encoding,
       segments_estimate, created_at, updated_at, started_at, finished_at, total_recipients,
       audience_max_contact_id, credits_reserved
FROM campaigns
WHERE id = $1 AND store_id = $2;

-- name: list
-- Newest first; $2 is the id of the last campaign of the previous page (NULL: first page).
SELECT id, name, message, audience, status, priority, scheduled_at, encoding,
       segments_estimate, created_at, updated_at, started_at, finished_at, total_recipients
FROM campaigns
WHERE store_id = $1
  AND ($2::bigint IS NULL OR id < $2::bigint)
  AND ($3::text IS NULL OR status = $3::text)
ORDER BY id DESC
LIMIT $4;

-- name: lock
-- Held for the rest of an edit's transaction, so a concurrent send waits for the edit.
SELECT id, name, message, audience, status, priority, scheduled_at, encoding,
       segments_estimate, created_at, updated_at, started_at, finished_at, total_recipients,
       credits_reserved
FROM campaigns
WHERE id = $1 AND store_id = $2
FOR UPDATE;

-- name: update
UPDATE campaigns SET
    name = $3,
    message = $4,
    audience = $5,
    priority = $6,
    scheduled_at = $7,
    encoding = $8,
    segments_estimate = $9,
    updated_at = now()
WHERE id = $1 AND store_id = $2 AND status IN ('draft', 'scheduled')
RETURNING id, name, message, audience, status, priority, scheduled_at, encoding,
          segments_estimate, created_at, updated_at, started_at, finished_at, total_recipients;

-- name: release_reserved
-- Give back what a not yet started campaign holds (a scheduled one reserved at send), with
-- its ledger entry, before the campaign is deleted.
WITH amount AS (
    SELECT credits_reserved - credits_charged AS credits
    FROM campaigns
    WHERE id = $1 AND store_id = $2
), entry AS (
    INSERT INTO credit_ledger (store_id, campaign_id, kind, available_delta, reserved_delta, note)
    SELECT $2, $1, 'release', credits, -credits, 'campaign deleted before sending'
    FROM amount
    WHERE credits > 0
)
UPDATE stores SET
    credits_available = credits_available + amount.credits,
    credits_reserved = credits_reserved - amount.credits,
    updated_at = now()
FROM amount
WHERE stores.id = $2 AND amount.credits > 0;

-- name: delete
DELETE FROM campaigns
WHERE id = $1 AND store_id = $2 AND status IN ('draft', 'scheduled')
RETURNING id;
