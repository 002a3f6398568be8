-- Contacts of a store: bulk import, listing, reading, editing. Every query filters by store.
-- Tags are kept unique and sorted by code point (COLLATE "C"), as the import sorts them.

-- name: store_region
SELECT default_region FROM stores WHERE id = $1;

-- name: create_staging
-- Rows of one import, copied in with COPY; dropped when the import's transaction ends.
CREATE TEMPORARY TABLE contact_import (
    line       integer NOT NULL,
    phone      text NOT NULL,
    first_name text,
    last_name  text,
    tags       text[] NOT NULL,
    custom     text NOT NULL
) ON COMMIT DROP;

-- name: import_lock
-- One import per store at a time: two overlapping imports would otherwise lock the same
-- contacts in different orders and deadlock. Taken only for the short final phase.
SELECT pg_advisory_xact_lock(1668181108, ($1 % 2147483647)::integer);

-- name: import_latest
-- The last row for each phone wins. Statistics on the result let the planner choose between
-- index probes (a small import into a big store) and a hash join (a big import).
SET LOCAL work_mem = '64MB';
CREATE TEMPORARY TABLE contact_import_latest ON COMMIT DROP AS
    SELECT DISTINCT ON (phone) phone, first_name, last_name, tags, custom::jsonb AS custom
    FROM contact_import
    ORDER BY phone, line DESC;
ANALYZE contact_import_latest;

-- name: import_update
-- Existing contacts of the store that the import changes. Names and custom values are
-- overwritten only when given, tags are added, consent is never touched (an import must not
-- re-opt-in someone who opted out). Unchanged contacts are neither written nor locked, so a
-- re-import of the same file is cheap.
UPDATE contacts AS c SET
    first_name = coalesce(l.first_name, c.first_name),
    last_name = coalesce(l.last_name, c.last_name),
    tags = ARRAY(
        SELECT t FROM unnest(c.tags || l.tags) AS t GROUP BY t ORDER BY t COLLATE "C"
    ),
    custom = c.custom || l.custom,
    updated_at = now()
FROM contact_import_latest AS l
WHERE c.store_id = $1
  AND c.phone = l.phone
  AND ((l.first_name IS NOT NULL AND l.first_name IS DISTINCT FROM c.first_name)
       OR (l.last_name IS NOT NULL AND l.last_name IS DISTINCT FROM c.last_name)
       OR NOT c.tags @> l.tags
       OR NOT c.custom @> l.custom);

-- name: import_insert
-- New phones. A contact another writer created since the update above is updated instead
-- (ON CONFLICT); xmax = 0 tells the two apart.
WITH upserted AS (
    INSERT INTO contacts AS c (store_id, phone, first_name, last_name, tags, custom)
    SELECT $1, l.phone, l.first_name, l.last_name, l.tags, l.custom
    FROM contact_import_latest AS l
    WHERE NOT EXISTS (SELECT 1 FROM contacts AS e WHERE e.store_id = $1 AND e.phone = l.phone)
    ORDER BY l.phone
    ON CONFLICT (store_id, phone) DO UPDATE SET
        first_name = coalesce(EXCLUDED.first_name, c.first_name),
        last_name = coalesce(EXCLUDED.last_name, c.last_name),
        tags = ARRAY(
            SELECT t FROM unnest(c.tags || EXCLUDED.tags) AS t GROUP BY t ORDER BY t COLLATE "C"
        ),
        custom = c.custom || EXCLUDED.custom,
        updated_at = now()
    RETURNING (xmax = 0) AS inserted
)
SELECT count(*) FILTER (WHERE inserted) AS inserted,
       count(*) FILTER (WHERE NOT inserted) AS updated
FROM upserted;

-- name: import_sizes
SELECT (SELECT count(*) FROM contact_import) AS rows,
       (SELECT count(*) FROM contact_import_latest) AS phones;

-- name: list
SELECT id, phone, first_name, last_name, custom, tags, consent, consent_changed_at,
       opt_out_reason, created_at, updated_at
FROM contacts
WHERE store_id = $1
  AND id > $2
  AND ($3::text IS NULL OR tags @> ARRAY[$3::text])
ORDER BY id
LIMIT $4;

-- name: get
SELECT id, phone, first_name, last_name, custom, tags, consent, consent_changed_at,
       opt_out_reason, created_at, updated_at
FROM contacts
WHERE id = $1 AND store_id = $2;

-- name: update
-- $3/$5: whether first_name/last_name are given ($4/$6, NULL clears). $7: tags replacing the
-- current ones (NULL keeps them), then $8 added and $9 removed. $10 merged into custom, then
-- the keys $11 removed. $12: new consent (NULL keeps it); $13 its opt-out reason.
-- consent_changed_at moves only when consent really changes.
UPDATE contacts SET
    first_name = CASE WHEN $3 THEN $4 ELSE first_name END,
    last_name = CASE WHEN $5 THEN $6 ELSE last_name END,
    tags = ARRAY(
        SELECT t FROM unnest(coalesce($7::text[], tags) || $8::text[]) AS t
        WHERE t <> ALL ($9::text[])
        GROUP BY t ORDER BY t COLLATE "C"
    ),
    custom = (custom || $10::jsonb) - $11::text[],
    consent = coalesce($12, consent),
    consent_changed_at = CASE WHEN $12 IS DISTINCT FROM consent AND $12 IS NOT NULL
                              THEN now() ELSE consent_changed_at END,
    opt_out_reason = CASE WHEN $12 = 'opted_in' THEN NULL
                          WHEN $12 = 'opted_out' AND $13::text IS NOT NULL THEN $13
                          WHEN $12 = 'opted_out' AND consent = 'opted_in' THEN NULL
                          ELSE opt_out_reason END,
    updated_at = now()
WHERE id = $1 AND store_id = $2
RETURNING id, phone, first_name, last_name, custom, tags, consent, consent_changed_at,
          opt_out_reason, created_at, updated_at;

-- name: delete_hold_dispatch
-- First step of a deletion, before `delete` in the same transaction: waits for a dispatch of
-- the store that is materializing recipients (it holds its campaign FOR UPDATE) and holds off
-- the dispatch of the store's undispatched campaigns until the deletion commits, so no
-- recipient row of the contact is left out of `delete`'s snapshot. KEY SHARE conflicts only
-- with FOR UPDATE (the dispatch lock, campaign deletion), not with ordinary updates.
SELECT id FROM campaigns
WHERE store_id = $1 AND status = 'sending' AND total_recipients IS NULL
ORDER BY id
FOR KEY SHARE;

-- name: delete
-- The contact's recipients keep their rows and lose the link (contact_id NULL; this used to
-- be the foreign key's ON DELETE SET NULL). They are found through
-- campaign_recipients_campaign_contact_key, one probe per campaign of the store.
WITH gone AS (
    DELETE FROM contacts WHERE id = $1 AND store_id = $2 RETURNING id
), unlinked AS (
    UPDATE campaign_recipients r
    SET contact_id = NULL
    FROM campaigns cp
    WHERE cp.store_id = $2
      AND r.campaign_id = cp.id
      AND r.contact_id = $1
      AND EXISTS (SELECT 1 FROM gone)
)
SELECT id FROM gone;
