-- Columns: schema, table, column, declared type, nullable (YES/NO), in table order.
-- A primary-key column counts as not null (SQLite allows NULL in a primary key
-- that is not an INTEGER PRIMARY KEY, but no schema means it).
SELECT 'main', m.name, p.name, p.type,
       CASE WHEN p."notnull" = 1 OR p.pk > 0 THEN 'NO' ELSE 'YES' END
FROM sqlite_schema m
JOIN pragma_table_info(m.name) p
WHERE m.type = 'table' AND m.name NOT LIKE 'sqlite\_%' ESCAPE '\'
ORDER BY 2, p.cid
