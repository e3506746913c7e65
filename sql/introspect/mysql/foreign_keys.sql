-- Foreign keys, one row per column pair: database, table, constraint,
-- position, column, parent database, parent table, parent column, ON DELETE,
-- ON UPDATE, enforcement (InnoDB enforces them; other engines do not).
SELECT CAST(k.table_schema AS CHAR),
       CAST(k.table_name AS CHAR),
       CAST(k.constraint_name AS CHAR),
       CAST(k.ordinal_position AS CHAR),
       CAST(k.column_name AS CHAR),
       CAST(k.referenced_table_schema AS CHAR),
       CAST(k.referenced_table_name AS CHAR),
       CAST(k.referenced_column_name AS CHAR),
       CAST(r.delete_rule AS CHAR),
       CAST(r.update_rule AS CHAR),
       CASE WHEN t.engine = 'InnoDB' THEN 'enforced' ELSE 'not-enforced' END
FROM information_schema.key_column_usage k
JOIN information_schema.referential_constraints r
  ON r.constraint_schema = k.constraint_schema
 AND r.constraint_name = k.constraint_name
 AND r.table_name = k.table_name
JOIN information_schema.tables t
  ON t.table_schema = k.table_schema AND t.table_name = k.table_name
WHERE k.referenced_table_name IS NOT NULL
  AND k.table_schema NOT IN ('mysql', 'information_schema', 'performance_schema', 'sys')
ORDER BY 1, 2, 3, k.ordinal_position
