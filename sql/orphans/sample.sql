-- The first of those rows, by the child's key: {shown} lists the columns shown
-- (the child's primary key, then the key columns), each as text.
SELECT {shown}
FROM {child} c
WHERE {present}
  AND NOT EXISTS (SELECT 1 FROM {parent} p WHERE {matches})
ORDER BY {order}
LIMIT {limit}
