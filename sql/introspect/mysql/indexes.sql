-- Indexes, one row per key column: database, table, index, unique, partial
-- (never: MySQL has no partial indexes), valid, position, key, expression
-- (a key without a column name is an expression).
SELECT CAST(s.table_schema AS CHAR),
       CAST(s.table_name AS CHAR),
       CAST(s.index_name AS CHAR),
       CASE WHEN s.non_unique = 0 THEN 'true' ELSE 'false' END,
       'false',
       'true',
       CAST(s.seq_in_index AS CHAR),
       CAST(COALESCE(s.column_name, '(expression)') AS CHAR),
       CASE WHEN s.column_name IS NULL THEN 'true' ELSE 'false' END
FROM information_schema.statistics s
WHERE s.table_schema NOT IN ('mysql', 'information_schema', 'performance_schema', 'sys')
ORDER BY 1, 2, 3, s.seq_in_index
