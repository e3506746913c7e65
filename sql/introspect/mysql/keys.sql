-- Primary keys (p) and unique constraints (u), one row per key column:
-- database, table, constraint, kind, position, column.
SELECT CAST(k.table_schema AS CHAR),
       CAST(k.table_name AS CHAR),
       CAST(k.constraint_name AS CHAR),
       CASE tc.constraint_type WHEN 'PRIMARY KEY' THEN 'p' ELSE 'u' END,
       CAST(k.ordinal_position AS CHAR),
       CAST(k.column_name AS CHAR)
FROM information_schema.table_constraints tc
JOIN information_schema.key_column_usage k
  ON k.constraint_schema = tc.constraint_schema
 AND k.constraint_name = tc.constraint_name
 AND k.table_name = tc.table_name
WHERE tc.constraint_type IN ('PRIMARY KEY', 'UNIQUE')
  AND tc.table_schema NOT IN ('mysql', 'information_schema', 'performance_schema', 'sys')
ORDER BY 1, 2, 3, k.ordinal_position
