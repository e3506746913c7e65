-- Indexes, one row per key column (INCLUDE columns left out): schema, table,
-- index, unique, partial (has a WHERE), valid, position, key (the column, or
-- the expression's text), expression (true when the key is an expression).
SELECT n.nspname::text,
       c.relname::text,
       ic.relname::text,
       i.indisunique::text,
       (i.indpred IS NOT NULL)::text,
       (i.indisvalid AND i.indisready)::text,
       k.ord::text,
       CASE WHEN k.attnum = 0 THEN pg_get_indexdef(i.indexrelid, k.ord::int, true)
            ELSE a.attname::text END,
       (k.attnum = 0)::text
FROM pg_index i
JOIN pg_class c ON c.oid = i.indrelid
JOIN pg_namespace n ON n.oid = c.relnamespace
JOIN pg_class ic ON ic.oid = i.indexrelid
CROSS JOIN LATERAL unnest(i.indkey::int2[]) WITH ORDINALITY AS k(attnum, ord)
LEFT JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
WHERE k.ord <= i.indnkeyatts
  AND c.relkind IN ('r', 'p')
  AND n.nspname <> 'information_schema'
  AND n.nspname NOT LIKE 'pg\_%'
ORDER BY 1, 2, 3, k.ord
