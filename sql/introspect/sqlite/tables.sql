-- Tables (SQLite's own left out): schema, table, rows (counted separately),
-- engine (none).
SELECT 'main', m.name, NULL, NULL
FROM sqlite_schema m
WHERE m.type = 'table' AND m.name NOT LIKE 'sqlite\_%' ESCAPE '\'
ORDER BY 2
