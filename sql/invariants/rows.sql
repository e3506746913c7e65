-- The first violating rows of an invariant, at most 10,
-- run through the simple query protocol so that every value arrives as text.
SELECT * FROM ({query}) AS flowaudit_violations LIMIT 10
