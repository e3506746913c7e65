-- Tables of every user schema: schema, table, estimated rows (NULL when never
-- analysed), storage engine (none in PostgreSQL).
SELECT n.nspname::text,
       c.relname::text,
       CASE WHEN c.reltuples < 0 THEN NULL ELSE c.reltuples::bigint::text END,
       NULL::text
FROM pg_class c
JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind IN ('r', 'p')
  AND NOT c.relispartition
  AND n.nspname <> 'information_schema'
  AND n.nspname NOT LIKE 'pg\_%'
ORDER BY 1, 2
