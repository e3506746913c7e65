-- The server parses the query as one statement: PREPARE refuses several.
PREPARE flowaudit_invariant FROM @flowaudit_invariant
