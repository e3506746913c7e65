-- The first violating rows (MAX_ROWS in src/invariants.rs), through the
-- simple query protocol so that every value arrives as text.
FETCH 10 FROM flowaudit_violations
