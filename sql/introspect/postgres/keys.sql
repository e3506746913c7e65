-- Primary keys (p) and unique constraints (u), one row per key column:
-- schema, table, constraint, kind, position, column.
SELECT n.nspname::text,
       c.relname::text,
       con.conname::text,
       con.contype::text,
       k.ord::text,
       a.attname::text
FROM pg_constraint con
JOIN pg_class c ON c.oid = con.conrelid
JOIN pg_namespace n ON n.oid = c.relnamespace
CROSS JOIN LATERAL unnest(con.conkey) WITH ORDINALITY AS k(attnum, ord)
JOIN pg_attribute a ON a.attrelid = con.conrelid AND a.attnum = k.attnum
WHERE con.contype IN ('p', 'u')
  AND n.nspname <> 'information_schema'
  AND n.nspname NOT LIKE 'pg\_%'
ORDER BY 1, 2, 3, k.ord
