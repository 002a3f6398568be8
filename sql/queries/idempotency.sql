-- Idempotency keys: one row per (scope, key) holding the first request's fingerprint and,
-- once it finished, its response.

-- Claim a key: insert it, or take over a row that expired, or one whose first request died
-- while in progress (same fingerprint, older than the lease). Returns a row only when this
-- request now owns the key; concurrent claimers serialize on the primary key.
-- name: claim
INSERT INTO idempotency_keys (scope, key, method, path, fingerprint, expires_at)
VALUES ($1, $2, $3, $4, $5, now() + make_interval(secs => $6))
ON CONFLICT (scope, key) DO UPDATE
SET method           = EXCLUDED.method,
    path             = EXCLUDED.path,
    fingerprint      = EXCLUDED.fingerprint,
    state            = 'in_progress',
    response_status  = NULL,
    response_headers = NULL,
    response_body    = NULL,
    created_at       = now(),
    expires_at       = EXCLUDED.expires_at
WHERE idempotency_keys.expires_at <= now()
   OR (idempotency_keys.state = 'in_progress'
       AND idempotency_keys.fingerprint = EXCLUDED.fingerprint
       AND idempotency_keys.created_at <= now() - make_interval(secs => $7))
RETURNING scope;

-- name: get
SELECT fingerprint, state, response_status, response_headers, response_body, expires_at
FROM idempotency_keys
WHERE scope = $1 AND key = $2;

-- name: complete
UPDATE idempotency_keys
SET state = 'done', response_status = $4, response_headers = $5, response_body = $6
WHERE scope = $1 AND key = $2 AND fingerprint = $3 AND state = 'in_progress';

-- Give a key back (the request failed on the server's side) so the client can retry it.
-- name: release
DELETE FROM idempotency_keys
WHERE scope = $1 AND key = $2 AND fingerprint = $3 AND state = 'in_progress';

-- Expired keys are removed in bounded slices so one purge never holds a long lock.
-- name: delete_expired
DELETE FROM idempotency_keys
WHERE (scope, key) IN (
    SELECT scope, key FROM idempotency_keys WHERE expires_at <= now() LIMIT $1
);
