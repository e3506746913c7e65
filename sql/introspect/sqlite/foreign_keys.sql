-- Foreign keys, one row per column pair: schema, table, constraint (SQLite
-- names none: fk<id>), position, column, parent schema, parent table, parent
-- column (NULL: the parent's primary key), ON DELETE, ON UPDATE, enforcement
-- (SQLite checks them only on connections with PRAGMA foreign_keys = ON).
SELECT 'main', m.name, 'fk' || f.id, CAST(f.seq + 1 AS TEXT), f."from",
       'main', f."table", f."to", f.on_delete, f.on_update, 'per-connection'
FROM sqlite_schema m
JOIN pragma_foreign_key_list(m.name) f
WHERE m.type = 'table' AND m.name NOT LIKE 'sqlite\_%' ESCAPE '\'
ORDER BY 2, f.id, f.seq
