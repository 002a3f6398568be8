-- Stores (tenants). Balances change only together with a credit_ledger entry, in one
-- statement, so the balance is always the sum of the ledger.

-- name: create
INSERT INTO stores (
    name, sender_id, timezone, default_region, subscription_status,
    send_window_start, send_window_end, rate_cap_per_s, frequency_cap_count, frequency_cap_hours
)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
RETURNING id, name, sender_id, timezone, default_region, subscription_status,
          credits_available, credits_reserved, send_window_start, send_window_end,
          rate_cap_per_s, frequency_cap_count, frequency_cap_hours, webhook_url,
          created_at, updated_at;

-- name: get
SELECT id, name, sender_id, timezone, default_region, subscription_status,
       credits_available, credits_reserved, send_window_start, send_window_end,
       rate_cap_per_s, frequency_cap_count, frequency_cap_hours, webhook_url,
       created_at, updated_at
FROM stores
WHERE id = $1;

-- name: exists
SELECT EXISTS (SELECT 1 FROM stores WHERE id = $1);

-- Partial update: NULL leaves a required column as it is; the boolean flags say whether a
-- nullable setting (send window, rate cap, frequency cap) is replaced, so NULL can clear it.
-- name: update
UPDATE stores
SET name                = coalesce($2, name),
    sender_id           = coalesce($3, sender_id),
    timezone            = coalesce($4, timezone),
    default_region      = coalesce($5, default_region),
    subscription_status = coalesce($6, subscription_status),
    send_window_start   = CASE WHEN $7::boolean THEN $8::time ELSE send_window_start END,
    send_window_end     = CASE WHEN $7::boolean THEN $9::time ELSE send_window_end END,
    rate_cap_per_s      = CASE WHEN $10::boolean THEN $11::double precision ELSE rate_cap_per_s END,
    frequency_cap_count = CASE WHEN $12::boolean THEN $13::integer ELSE frequency_cap_count END,
    frequency_cap_hours = CASE WHEN $12::boolean THEN $14::integer ELSE frequency_cap_hours END,
    updated_at          = now()
WHERE id = $1
RETURNING id, name, sender_id, timezone, default_region, subscription_status,
          credits_available, credits_reserved, send_window_start, send_window_end,
          rate_cap_per_s, frequency_cap_count, frequency_cap_hours, webhook_url,
          created_at, updated_at;

-- A top-up: the ledger entry and the balance change are one statement (atomic, and no
-- window in which a reader sees one without the other). No row when the store is unknown.
-- name: topup
WITH entry AS (
    INSERT INTO credit_ledger (store_id, kind, available_delta, reserved_delta, note)
    SELECT id, 'topup', $2, 0, $3
    FROM stores
    WHERE id = $1
    RETURNING store_id, available_delta
)
UPDATE stores AS s
SET credits_available = s.credits_available + entry.available_delta,
    updated_at        = now()
FROM entry
WHERE s.id = entry.store_id
RETURNING s.id, s.name, s.sender_id, s.timezone, s.default_region, s.subscription_status,
          s.credits_available, s.credits_reserved, s.send_window_start, s.send_window_end,
          s.rate_cap_per_s, s.frequency_cap_count, s.frequency_cap_hours, s.webhook_url,
          s.created_at, s.updated_at;

-- name: set_webhook
UPDATE stores
SET webhook_url = $2, webhook_secret = $3, updated_at = now()
WHERE id = $1
RETURNING webhook_url;
