-- Child rows whose parent row is missing: {child} and {parent} are quoted table
-- names, {present} says the child's key columns are all set, {matches} joins
-- them to the parent's (as text where the types differ).
SELECT CAST(COUNT(*) AS {text})
FROM {child} c
WHERE {present}
  AND NOT EXISTS (SELECT 1 FROM {parent} p WHERE {matches})
