-- Opens the transaction an invariant runs in: read-only, so the server refuses
-- any write the query would make, and one snapshot for its rows and count.
BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY
