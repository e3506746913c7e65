-- Opens the transaction an invariant runs in: the server refuses any write.
START TRANSACTION READ ONLY
