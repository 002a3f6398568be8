-- API tokens: stored as SHA-256 hashes only.

-- name: find_active
SELECT id, store_id, token_hash
FROM api_tokens
WHERE token_hash = $1 AND revoked_at IS NULL;

-- name: create
INSERT INTO api_tokens (store_id, token_hash, token_prefix, name, scopes)
VALUES ($1, $2, $3, $4, $5)
RETURNING id, store_id, token_prefix, name, scopes, created_at, revoked_at;

-- name: revoke
UPDATE api_tokens
SET revoked_at = coalesce(revoked_at, now())
WHERE id = $1 AND store_id = $2
RETURNING id, store_id, token_prefix, name, scopes, created_at, revoked_at;
