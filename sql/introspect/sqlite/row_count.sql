-- SQLite keeps no row estimate; its tables are counted ({table} is quoted).
SELECT CAST(COUNT(*) AS TEXT) FROM {table}
