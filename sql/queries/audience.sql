-- A campaign's audience: the opted-in contacts of its store that match its tag filter.
--
-- Every query here takes the same first five parameters and shares one filter, which the send
-- path reuses to materialize recipients:
--   $1 store id, $2 tags_any (empty: no condition), $3 tags_all, $4 exclude_tags,
--   $5 highest contact id included (NULL: no limit; set at send so later imports stay out),
-- and the audience is that filter AND consent = 'opted_in'. The cardinality() guards make an
-- empty list a constant-true condition in a custom plan, so a selective tag can still use the
-- GIN index; sender.db.audience runs these queries with custom plans forced for that reason.

-- name: force_custom_plans
SET LOCAL plan_cache_mode = force_custom_plan;

-- name: cost_groups
-- Contacts matching the tag filter, grouped by the text signatures of the names the message
-- uses ($6, $7: whether first_name and last_name are used; unused ones are not grouped on).
-- Costing prices each group once instead of rendering every message. Opted-out contacts come
-- back as one group with eligible = false (the preview shows how many the filter excluded
-- without a second scan); they are never recipients.
SELECT consent = 'opted_in' AS eligible,
       CASE WHEN $6 AND consent = 'opted_in' THEN first_name_sig END AS first_name_sig,
       CASE WHEN $7 AND consent = 'opted_in' THEN last_name_sig END AS last_name_sig,
       count(*) AS contacts
FROM contacts
WHERE store_id = $1
  AND (cardinality($2::text[]) = 0 OR tags && $2::text[])
  AND (cardinality($3::text[]) = 0 OR tags @> $3::text[])
  AND (cardinality($4::text[]) = 0 OR NOT tags && $4::text[])
  AND ($5::bigint IS NULL OR id <= $5::bigint)
GROUP BY 1, 2, 3;

-- name: cost_groups_custom
-- As cost_groups, plus the custom fields named in $8 (at most 8, in that order; unused
-- positions are NULL). Signatures of custom values are not stored: contacts are grouped by the
-- values themselves, and a signature is taken once per distinct value, cut to $9 characters as
-- rendering cuts it. Fixed positions (not a per-row subquery over $8) keep the scan as cheap
-- as cost_groups.
SELECT eligible, first_name_sig, last_name_sig,
       ARRAY(
           SELECT sms_text_sig(left(v.value, $9))
           FROM unnest(custom_values) WITH ORDINALITY AS v (value, position)
           WHERE v.position <= cardinality($8::text[])
           ORDER BY v.position
       ) AS custom_sigs,
       sum(contacts)::bigint AS contacts
FROM (
    SELECT consent = 'opted_in' AS eligible,
           CASE WHEN $6 AND consent = 'opted_in' THEN first_name_sig END AS first_name_sig,
           CASE WHEN $7 AND consent = 'opted_in' THEN last_name_sig END AS last_name_sig,
           CASE WHEN consent = 'opted_in' THEN ARRAY[
               custom ->> ($8::text[])[1], custom ->> ($8::text[])[2],
               custom ->> ($8::text[])[3], custom ->> ($8::text[])[4],
               custom ->> ($8::text[])[5], custom ->> ($8::text[])[6],
               custom ->> ($8::text[])[7], custom ->> ($8::text[])[8]
           ] END AS custom_values,
           count(*) AS contacts
    FROM contacts
    WHERE store_id = $1
      AND (cardinality($2::text[]) = 0 OR tags && $2::text[])
      AND (cardinality($3::text[]) = 0 OR tags @> $3::text[])
      AND (cardinality($4::text[]) = 0 OR NOT tags && $4::text[])
      AND ($5::bigint IS NULL OR id <= $5::bigint)
    GROUP BY 1, 2, 3, 4
) AS by_value
GROUP BY 1, 2, 3, 4;

-- name: count_eligible
SELECT count(*)
FROM contacts
WHERE store_id = $1
  AND (cardinality($2::text[]) = 0 OR tags && $2::text[])
  AND (cardinality($3::text[]) = 0 OR tags @> $3::text[])
  AND (cardinality($4::text[]) = 0 OR NOT tags && $4::text[])
  AND ($5::bigint IS NULL OR id <= $5::bigint)
  AND consent = 'opted_in';

-- name: sample_contact
-- The first eligible contact by id: the preview renders its message.
SELECT id, first_name, last_name, custom
FROM contacts
WHERE store_id = $1
  AND (cardinality($2::text[]) = 0 OR tags && $2::text[])
  AND (cardinality($3::text[]) = 0 OR tags @> $3::text[])
  AND (cardinality($4::text[]) = 0 OR NOT tags && $4::text[])
  AND ($5::bigint IS NULL OR id <= $5::bigint)
  AND consent = 'opted_in'
ORDER BY id
LIMIT 1;

-- name: credits_available
SELECT credits_available FROM stores WHERE id = $1;
