-- The invariant's query as a bound value, never as SQL text of this statement.
SET @flowaudit_invariant = ?
