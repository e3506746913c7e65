-- Primary keys (p) and unique constraints (u), one row per key column:
-- schema, table, constraint, kind, position, column.
SELECT 'main', m.name, 'primary key', 'p', CAST(p.pk AS TEXT), p.name
FROM sqlite_schema m
JOIN pragma_table_info(m.name) p
WHERE m.type = 'table' AND m.name NOT LIKE 'sqlite\_%' ESCAPE '\' AND p.pk > 0
UNION ALL
SELECT 'main', m.name, il.name, 'u', CAST(ii.seqno + 1 AS TEXT), ii.name
FROM sqlite_schema m
JOIN pragma_index_list(m.name) il
JOIN pragma_index_info(il.name) ii
WHERE m.type = 'table' AND m.name NOT LIKE 'sqlite\_%' ESCAPE '\' AND il.origin = 'u'
ORDER BY 2, 3, 5
