-- Sent with the invariant's query after it, on the next line, as one prepared
-- statement (extended protocol): PostgreSQL refuses a second statement there,
-- and DECLARE takes nothing but SELECT and VALUES, without data-modifying WITH
-- or SELECT ... INTO.
DECLARE flowaudit_violations NO SCROLL CURSOR FOR
