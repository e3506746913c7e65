-- How many rows an invariant's query returns (it replaces the placeholder).
SELECT count(*) FROM ({query}) AS flowaudit_violations
