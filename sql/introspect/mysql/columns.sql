-- Columns: database, table, column, full type (int(11) unsigned), nullable (YES/NO).
SELECT CAST(c.table_schema AS CHAR),
       CAST(c.table_name AS CHAR),
       CAST(c.column_name AS CHAR),
       CAST(c.column_type AS CHAR),
       CAST(c.is_nullable AS CHAR)
FROM information_schema.columns c
JOIN information_schema.tables t
  ON t.table_schema = c.table_schema AND t.table_name = c.table_name
WHERE t.table_type = 'BASE TABLE'
  AND c.table_schema NOT IN ('mysql', 'information_schema', 'performance_schema', 'sys')
ORDER BY 1, 2, c.ordinal_position
