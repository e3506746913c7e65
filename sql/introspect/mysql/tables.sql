-- Base tables outside the system databases: database, table, estimated rows,
-- storage engine (MyISAM and others do not enforce foreign keys).
SELECT CAST(t.table_schema AS CHAR),
       CAST(t.table_name AS CHAR),
       CAST(t.table_rows AS CHAR),
       CAST(t.engine AS CHAR)
FROM information_schema.tables t
WHERE t.table_type = 'BASE TABLE'
  AND t.table_schema NOT IN ('mysql', 'information_schema', 'performance_schema', 'sys')
ORDER BY 1, 2
