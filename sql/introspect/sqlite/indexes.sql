-- Indexes, one row per key column: schema, table, index, unique, partial,
-- valid (always), position, key (the column, or (expression)), expression.
SELECT 'main', m.name, il.name,
       CASE WHEN il."unique" = 1 THEN 'true' ELSE 'false' END,
       CASE WHEN il.partial = 1 THEN 'true' ELSE 'false' END,
       'true',
       CAST(ix.seqno + 1 AS TEXT),
       CASE WHEN ix.cid = -2 THEN '(expression)' WHEN ix.cid = -1 THEN 'rowid' ELSE ix.name END,
       CASE WHEN ix.cid = -2 THEN 'true' ELSE 'false' END
FROM sqlite_schema m
JOIN pragma_index_list(m.name) il
JOIN pragma_index_xinfo(il.name) ix
WHERE m.type = 'table' AND m.name NOT LIKE 'sqlite\_%' ESCAPE '\' AND ix."key" = 1
ORDER BY 2, 3, 7
