-- Runs it through the text protocol, so that every value arrives as text.
EXECUTE flowaudit_invariant
