use flowaudit::fingerprint::{StatementKind, fingerprint, tables};
use std::path::Path;

use xxhash_rust::xxh3::{xxh3_64, xxh3_64_with_seed};

/// `(input, expected fingerprint text)`.
const CASES: &[(&str, &str)] = &[
    // --- basics, literals and case folding ---
    (
        "SELECT * FROM users WHERE id = 1",
        "select * from users where id = ?",
    ),
    (
        "select * from users where id = 2;",
        "select * from users where id = ?",
    ),
    (
        "  SELECT\n\t*\n FROM users\r\n WHERE id=42 ;  ",
        "select * from users where id = ?",
    ),
    (
        "SELECT 1.5, .5, 1e10, 1.5E-3, 0x1F, 1_000",
        "select ?, ?, ?, ?, ?, ?",
    ),
    ("select 'it''s', 'a'", "select ?, ?"),
    ("select E'it\\'s', e'\\n'", "select ?, ?"),
    ("select $$it's$$, $fn$ body $x$ $fn$", "select ?, ?"),
    (
        "select B'101', X'1F', N'text', U&'d\\0061t'",
        "select ?, ?, ?, ?",
    ),
    ("SELECT 1; SELECT 2", "select ?; select ?"),
    ("select 1;; select 2;;", "select ?; select ?"),
    ("Select Name From Users", "select name from users"),
    // --- negative numbers ---
    ("select x - 1 from t", "select x - ? from t"),
    (
        "select * from t where x = -1",
        "select * from t where x = ?",
    ),
    (
        "select * from t where x=-1.5",
        "select * from t where x = ?",
    ),
    ("select * from t limit -1", "select * from t limit ?"),
    ("select -1, (-2), f(-3)", "select ?, (?), f(?)"),
    ("select a-1, a*-1 from t", "select a - ?, a * ? from t"),
    // --- placeholders ---
    (
        "select * from t where a = $1 and b = $2",
        "select * from t where a = ? and b = ?",
    ),
    (
        "select * from t where a = ? and b = ?",
        "select * from t where a = ? and b = ?",
    ),
    (
        "select * from t where a = ?1 and b = ?2",
        "select * from t where a = ? and b = ?",
    ),
    (
        "select * from t where a = :a and b = :b_2",
        "select * from t where a = ? and b = ?",
    ),
    (
        "select :val::int, a::text from t",
        "select ?::int, a::text from t",
    ),
    (
        "select * from t where a = %s",
        "select * from t where a = ?",
    ),
    (
        "select * from t where a = %(param_1)s",
        "select * from t where a = ?",
    ),
    (
        "select @total, @@session.sql_mode",
        "select @total, @@session.sql_mode",
    ),
    // --- NULL / TRUE / FALSE ---
    (
        "select null, coalesce(a, NULL) from t",
        "select ?, coalesce(a, ?) from t",
    ),
    (
        "select * from t where a is null and b is not null",
        "select * from t where a is null and b is not null",
    ),
    (
        "update t set a = NULL, b = TRUE where c = false",
        "update t set a = ?, b = ? where c = ?",
    ),
    (
        "select case when a then true else false end from t",
        "select case when a then ? else ? end from t",
    ),
    (
        "create table t (a int not null default null)",
        "create table t (a int not null default null)",
    ),
    (
        "select * from t where flag is true",
        "select * from t where flag is true",
    ),
    // --- typed literals and casts ---
    ("select '1'::int", "select ?::int"),
    (
        "select now() - interval '1 day'",
        "select now() - interval ?",
    ),
    (
        "select date '2020-01-01', timestamp '2020-01-01 00:00'",
        "select date ?, timestamp ?",
    ),
    ("SELECT CAST('1' AS int)", "select cast(? as int)"),
    (
        "select x::numeric(10, 2), y::text[] from t",
        "select x::numeric(?, ?), y::text[] from t",
    ),
    // --- quoted identifiers ---
    (
        "select \"users\".\"id\" from \"users\"",
        "select users.id from users",
    ),
    (
        "select \"Users\".\"Id\" from \"Users\"",
        "select \"Users\".\"Id\" from \"Users\"",
    ),
    (
        "select `users`.`id` from `users`",
        "select users.id from users",
    ),
    (
        "select `My Table`.x from `My Table`",
        "select `My Table`.x from `My Table`",
    ),
    (
        "select \"order\", \"a\"\"b\" from t",
        "select \"order\", \"a\"\"b\" from t",
    ),
    (
        "select \"position\", \"key\", \"user\" from \"t\"",
        "select position, key, \"user\" from t",
    ),
    // --- comments ---
    ("/*controller='users',action='show'*/ SELECT 1", "select ?"),
    ("SELECT 1 /*controller='users',action='show'*/", "select ?"),
    ("select a, -- first column\n b from t", "select a, b from t"),
    ("select /* a /* nested */ comment */ 1", "select ?"),
    ("select a/**/from t", "select a from t"),
    (
        "select '-- not a comment', '/* nor this */', 'it''s' from t",
        "select ?, ?, ? from t",
    ),
    (
        "select * from t where a = 1 -- trailing comment",
        "select * from t where a = ?",
    ),
    // --- unterminated input ---
    (
        "select * from t where name = 'unterminated",
        "select * from t where name = ?",
    ),
    ("select 1 /* unterminated comment", "select ?"),
    ("select \"unterminated", "select \"unterminated"),
    ("select $tag$ never closed", "select ?"),
    // --- list collapse ---
    (
        "select * from t where id in (1, 2, 3)",
        "select * from t where id in (?)",
    ),
    (
        "select * from t where id IN ($1,$2)",
        "select * from t where id in (?)",
    ),
    (
        "select * from t where id in (7)",
        "select * from t where id in (?)",
    ),
    (
        "select * from t where id not in ('a','b')",
        "select * from t where id not in (?)",
    ),
    (
        "select * from t where id in (1, x)",
        "select * from t where id in (?, x)",
    ),
    (
        "select * from t where (a,b) IN ((1,2),(3,4))",
        "select * from t where (a, b) in ((?, ?))",
    ),
    (
        "select ARRAY[1,2,3], array[[1,2],[3,4]]",
        "select array[?], array[[?]]",
    ),
    (
        "select * from t where a = any($1)",
        "select * from t where a = any(?)",
    ),
    (
        "select * from t where a = ANY(ARRAY[1, 2])",
        "select * from t where a = any(array[?])",
    ),
    (
        "select * from t where id in (select x from u where y in (1,2,3) and z in (4,5))",
        "select * from t where id in (select x from u where y in (?) and z in (?))",
    ),
    (
        "insert into t (a, b) VALUES (1,'a'),(2,'b')",
        "insert into t (a, b) values (?, ?)",
    ),
    (
        "insert into t values (1, null), (2, 3)",
        "insert into t values (?, ?)",
    ),
    (
        "insert into t values (1, default), (2, 3)",
        "insert into t values (?, default), (?, ?)",
    ),
    ("VALUES (1), (2), (3)", "values (?)"),
    // --- SQLAlchemy ---
    (
        "SELECT users.id AS users_id, users.name AS users_name \nFROM users \nWHERE users.id = %(param_1)s",
        "select users.id as users_id, users.name as users_name from users where users.id = ?",
    ),
    (
        "SELECT users.id AS users_id FROM users WHERE users.id IN (%(id_1_1)s, %(id_1_2)s) LIMIT %(param_1)s OFFSET %(param_2)s",
        "select users.id as users_id from users where users.id in (?) limit ? offset ?",
    ),
    (
        "INSERT INTO users (name, email) VALUES (%(name)s, %(email)s) RETURNING users.id",
        "insert into users (name, email) values (?, ?) returning users.id",
    ),
    // --- Django ---
    (
        "SELECT \"app_model\".\"id\", \"app_model\".\"name\" FROM \"app_model\" WHERE \"app_model\".\"id\" = %s LIMIT 21",
        "select app_model.id, app_model.name from app_model where app_model.id = ? limit ?",
    ),
    (
        "SELECT \"app_model\".\"id\" FROM \"app_model\" WHERE \"app_model\".\"owner_id\" IN (%s, %s, %s)",
        "select app_model.id from app_model where app_model.owner_id in (?)",
    ),
    // --- ActiveRecord ---
    (
        "SELECT \"users\".* FROM \"users\" WHERE \"users\".\"id\" = $1 LIMIT $2",
        "select users.* from users where users.id = ? limit ?",
    ),
    (
        "SELECT \"posts\".* FROM \"posts\" WHERE \"posts\".\"user_id\" IN ($1, $2, $3) /*application:Blog,controller:posts,action:index*/",
        "select posts.* from posts where posts.user_id in (?)",
    ),
    // --- Hibernate ---
    (
        "select u1_0.id,u1_0.name from users u1_0 where u1_0.id=?",
        "select u1_0.id, u1_0.name from users u1_0 where u1_0.id = ?",
    ),
    (
        "insert into users (name,id) values (?,?)",
        "insert into users (name, id) values (?, ?)",
    ),
    // --- MySQL ---
    (
        "INSERT INTO `users` (`name`, `age`) VALUES ('a', 1), ('b', 2) ON DUPLICATE KEY UPDATE `age` = VALUES(`age`)",
        "insert into users (name, age) values (?, ?) on duplicate key update age = values(age)",
    ),
    (
        "SELECT * FROM `t` LIMIT 10, 20",
        "select * from t limit ?, ?",
    ),
    // --- PostgreSQL ---
    (
        "INSERT INTO users (id, name) VALUES (1, 'a') ON CONFLICT (id) DO UPDATE SET name = EXCLUDED.name RETURNING id",
        "insert into users (id, name) values (?, ?) on conflict (id) do update set name = excluded.name returning id",
    ),
    (
        "SELECT * FROM jobs WHERE status = 'new' ORDER BY id LIMIT 10 FOR UPDATE SKIP LOCKED",
        "select * from jobs where status = ? order by id limit ? for update skip locked",
    ),
    (
        "select data->>'name', data->'a' from t",
        "select data ->> ?, data -> ? from t",
    ),
    (
        "select * from t where tags ?| array['a','b']",
        "select * from t where tags ?| array[?]",
    ),
    (
        "select data #> '{a,b}', data #>> '{c}' from t",
        "select data #> ?, data #>> ? from t",
    ),
    ("select a % 2, a%3 from t", "select a % ?, a % ? from t"),
    (
        "select * from t where doc @> '{\"a\": 1}'::jsonb",
        "select * from t where doc @> ?::jsonb",
    ),
    (
        "WITH recent AS (SELECT * FROM orders WHERE created_at > now() - interval '7 days') SELECT count(*) FROM recent",
        "with recent as (select * from orders where created_at > now() - interval ?) select count(*) from recent",
    ),
    (
        "WITH x AS (SELECT id FROM a WHERE b = 1) UPDATE c SET d = 2 WHERE id IN (SELECT id FROM x)",
        "with x as (select id from a where b = ?) update c set d = ? where id in (select id from x)",
    ),
    ("(SELECT 1) UNION (SELECT 2)", "(select ?) union (select ?)"),
    (
        "select a from t union all (select b from u)",
        "select a from t union all (select b from u)",
    ),
    (
        "select arr[1], arr[2:3] from t",
        "select arr[?], arr[?:?] from t",
    ),
    // --- SQLite ---
    (
        "INSERT OR REPLACE INTO kv (k, v) VALUES (?1, ?2)",
        "insert or replace into kv (k, v) values (?, ?)",
    ),
    ("PRAGMA table_info('users')", "pragma table_info(?)"),
    // --- DDL and misc ---
    (
        "CREATE TABLE IF NOT EXISTS public.users (id int PRIMARY KEY, name varchar(255))",
        "create table if not exists public.users (id int primary key, name varchar(?))",
    ),
    (
        "SET LOCAL statement_timeout = 5000",
        "set local statement_timeout = ?",
    ),
    (
        "select count(*), max(a) from t group by b having count(*) > 1",
        "select count(*), max(a) from t group by b having count(*) > ?",
    ),
    (
        "select ünïcode, \"Ünï\" from tàble where é = 'é'",
        "select ünïcode, \"Ünï\" from tàble where é = ?",
    ),
];

#[test]
fn normalisation_table() {
    assert!(CASES.len() >= 70, "only {} cases", CASES.len());
    let mut failures = Vec::new();
    for (input, expected) in CASES {
        let got = fingerprint(input).text;
        if got != *expected {
            failures.push(format!(
                "input:    {input:?}\nexpected: {expected:?}\ngot:      {got:?}"
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n\n{}",
        failures.len(),
        CASES.len(),
        failures.join("\n\n")
    );
}

#[test]
fn table_inputs_are_idempotent() {
    for (input, _) in CASES {
        let once = fingerprint(input).text;
        let twice = fingerprint(&once).text;
        assert_eq!(twice, once, "not idempotent for input {input:?}");
    }
}

#[test]
fn equal_point_query_and_in_list_differ() {
    let point = fingerprint("select * from users where id = 1");
    let batch = fingerprint("select * from users where id in (1)");
    assert_ne!(point.text, batch.text);
    assert_ne!(point.hash, batch.hash);
}

#[test]
fn in_lists_of_any_length_share_a_fingerprint() {
    let texts: Vec<String> = (1..=50)
        .map(|n| {
            let list: Vec<String> = (0..n).map(|i| (i * 7).to_string()).collect();
            fingerprint(&format!(
                "select * from t where id in ({})",
                list.join(", ")
            ))
            .text
        })
        .collect();
    assert!(
        texts.iter().all(|t| t == "select * from t where id in (?)"),
        "{texts:?}"
    );

    let rows = |n: usize| {
        let rows: Vec<String> = (0..n).map(|i| format!("({i}, 'name {i}')")).collect();
        fingerprint(&format!("insert into t (a, b) values {}", rows.join(", "))).hash
    };
    assert_eq!(rows(1), rows(100));
}

#[test]
fn statement_kinds() {
    let cases: &[(&str, StatementKind)] = &[
        ("SELECT 1", StatementKind::Select),
        ("select * from t", StatementKind::Select),
        // The function form of SET alone is a session setting (issue 13).
        (
            "SELECT set_config('TimeZone', 'UTC', false)",
            StatementKind::Set,
        ),
        (
            "SELECT pg_catalog.set_config('search_path', '', false) AS x",
            StatementKind::Set,
        ),
        (
            "select set_config('a.b', $1, false), set_config('c.d', $2, true)",
            StatementKind::Set,
        ),
        (
            "SELECT set_config('a.b', '1', false) FROM t",
            StatementKind::Select,
        ),
        (
            "SELECT set_config('a.b', '1', false), 2",
            StatementKind::Select,
        ),
        (
            "  /* leading */ -- comment\n SELECT 1",
            StatementKind::Select,
        ),
        ("(SELECT 1) UNION (SELECT 2)", StatementKind::Select),
        ("((select 1))", StatementKind::Select),
        ("VALUES (1), (2)", StatementKind::Select),
        ("TABLE users", StatementKind::Select),
        ("EXPLAIN SELECT 1", StatementKind::Select),
        (
            "WITH x AS (SELECT 1) SELECT * FROM x",
            StatementKind::Select,
        ),
        (
            "with x as (select 1), y as (select 2) (select * from x)",
            StatementKind::Select,
        ),
        (
            "WITH x AS (SELECT id FROM a) UPDATE b SET c = 1",
            StatementKind::Update,
        ),
        (
            "with recursive t(n) as (select 1) insert into u select n from t",
            StatementKind::Insert,
        ),
        (
            "WITH d AS (DELETE FROM a RETURNING *) SELECT * FROM d",
            StatementKind::Select,
        ),
        ("with x as (select 1) delete from t", StatementKind::Delete),
        ("insert into t values (1)", StatementKind::Insert),
        ("REPLACE INTO t VALUES (1)", StatementKind::Insert),
        ("Update t set a = 1", StatementKind::Update),
        ("DELETE FROM t", StatementKind::Delete),
        (
            "MERGE INTO t USING s ON t.id = s.id WHEN MATCHED THEN DELETE",
            StatementKind::Merge,
        ),
        ("CREATE TABLE t (a int)", StatementKind::Ddl),
        ("alter table t add column b int", StatementKind::Ddl),
        ("DROP INDEX i", StatementKind::Ddl),
        ("TRUNCATE t", StatementKind::Ddl),
        ("GRANT SELECT ON t TO u", StatementKind::Ddl),
        ("COMMENT ON TABLE t IS 'x'", StatementKind::Ddl),
        ("BEGIN", StatementKind::TransactionControl),
        ("START TRANSACTION", StatementKind::TransactionControl),
        (
            "start transaction read only",
            StatementKind::TransactionControl,
        ),
        ("COMMIT", StatementKind::TransactionControl),
        ("END", StatementKind::TransactionControl),
        (
            "ROLLBACK TO SAVEPOINT s1",
            StatementKind::TransactionControl,
        ),
        ("SAVEPOINT s1", StatementKind::TransactionControl),
        ("RELEASE SAVEPOINT s1", StatementKind::TransactionControl),
        ("abort", StatementKind::TransactionControl),
        ("SET LOCAL statement_timeout = 0", StatementKind::Set),
        (
            "SET TRANSACTION ISOLATION LEVEL SERIALIZABLE",
            StatementKind::Set,
        ),
        ("SHOW search_path", StatementKind::Set),
        ("RESET ALL", StatementKind::Set),
        ("COPY t FROM STDIN", StatementKind::Other),
        ("CALL proc(1)", StatementKind::Other),
        ("PRAGMA foreign_keys = ON", StatementKind::Other),
        ("VACUUM", StatementKind::Other),
        ("LISTEN chan", StatementKind::Other),
        // issue 13, defect 8: a driver's or pool's housekeeping is not a query.
        ("DEALLOCATE ALL", StatementKind::Housekeeping),
        ("deallocate prepare _pg3_3", StatementKind::Housekeeping),
        ("DEALLOCATE \"_pg3_0\"", StatementKind::Housekeeping),
        ("DISCARD ALL", StatementKind::Housekeeping),
        ("discard plans", StatementKind::Housekeeping),
        ("DISCARD SEQUENCES", StatementKind::Housekeeping),
        ("DISCARD TEMP", StatementKind::Housekeeping),
        ("UNLISTEN *", StatementKind::Housekeeping),
        ("unlisten orders", StatementKind::Housekeeping),
        ("CLOSE ALL", StatementKind::Housekeeping),
        (
            "SELECT pg_advisory_unlock_all()",
            StatementKind::Housekeeping,
        ),
        (
            "select pg_advisory_unlock_all();",
            StatementKind::Housekeeping,
        ),
        (
            "SELECT pg_advisory_unlock_all(); CLOSE ALL; UNLISTEN *; RESET ALL;",
            StatementKind::Housekeeping,
        ),
        (
            "SELECT pg_advisory_unlock_all();\nCLOSE ALL;\n\n                DO $$\n                \
             BEGIN\n                    PERFORM * FROM pg_listening_channels() LIMIT 1;\n      \
             IF FOUND THEN\n                        UNLISTEN *;\n                    END IF;\n \
             END;\n                $$;\n            \nRESET ALL;",
            StatementKind::Housekeeping,
        ),
        ("RESET ALL", StatementKind::Set),
        // A cursor the application declared is its own work.
        ("CLOSE c1", StatementKind::Other),
        // Only the whole statement: these are the application's.
        ("SELECT pg_advisory_unlock_all(), 1", StatementKind::Select),
        ("SELECT pg_advisory_unlock(7)", StatementKind::Select),
        ("DISCARD ALL; SELECT * FROM users", StatementKind::Select),
        (
            "DO $$ BEGIN UNLISTEN *; DELETE FROM t; END $$",
            StatementKind::Other,
        ),
        ("", StatementKind::Other),
        ("/* only a comment */", StatementKind::Other),
    ];
    for (sql, expected) in cases {
        let got = fingerprint(sql).kind;
        assert_eq!(got, *expected, "kind of {sql:?}");
    }
}

#[test]
fn kind_names_and_writes() {
    let all = [
        (StatementKind::Select, "select", false),
        (StatementKind::Insert, "insert", true),
        (StatementKind::Update, "update", true),
        (StatementKind::Delete, "delete", true),
        (StatementKind::Merge, "merge", true),
        (StatementKind::Ddl, "ddl", false),
        (StatementKind::TransactionControl, "transaction", false),
        (StatementKind::Set, "set", false),
        (StatementKind::Housekeeping, "housekeeping", false),
        (StatementKind::Other, "other", false),
    ];
    for (kind, name, write) in all {
        assert_eq!(kind.as_str(), name);
        assert_eq!(kind.is_write(), write, "{kind:?}");
    }
}

#[test]
fn literal_values_hash() {
    let a = fingerprint("select * from t where a = 1 and b = 'x'");
    let a_again = fingerprint("SELECT * FROM t WHERE a = 1 AND b = 'x'");
    let b = fingerprint("select * from t where a = 2 and b = 'x'");
    let swapped = fingerprint("select * from t where a = 'x' and b = 1");
    assert_eq!(a.text, b.text);
    assert_eq!(a.values, a_again.values);
    assert_ne!(a.values, b.values);
    assert_ne!(a.values, swapped.values, "order of literals matters");
    assert_ne!(a.values, 0);

    let longer = fingerprint("select * from t where id in (1, 2, 3)");
    let shorter = fingerprint("select * from t where id in (1, 2)");
    assert_eq!(longer.text, shorter.text);
    assert_ne!(
        longer.values, shorter.values,
        "collapsed elements still count"
    );

    assert_eq!(fingerprint("select * from t where a = $1").values, 0);
    assert_eq!(fingerprint("select a from t").values, 0);
    assert_eq!(fingerprint("").values, 0);
}

#[test]
fn hash_is_xxh3_of_text_and_pinned() {
    for (input, _) in CASES {
        let fp = fingerprint(input);
        assert_eq!(fp.hash, xxh3_64(fp.text.as_bytes()), "{input:?}");
    }
    // Baselines store these values: a change here invalidates every stored baseline.
    let pinned: &[(&str, &str, u64)] = &[
        (
            "SELECT * FROM users WHERE id = 1",
            "select * from users where id = ?",
            0x3d62_aefa_1479_86cd,
        ),
        (
            "select * from users where id in (1, 2, 3)",
            "select * from users where id in (?)",
            0xdbde_d65b_5763_ad72,
        ),
        (
            "INSERT INTO t (a) VALUES (1), (2)",
            "insert into t (a) values (?)",
            0x87d6_bef9_1723_0fb3,
        ),
        // XXH3-64 of the empty input, as published by the xxHash reference implementation.
        ("", "", 0x2d06_8005_38d3_94c2),
    ];
    for (input, text, expected) in pinned {
        let fp = fingerprint(input);
        assert_eq!(fp.text, *text, "text of {input:?}");
        assert_eq!(fp.hash, *expected, "hash of {input:?} is {:#x}", fp.hash);
    }
}

#[test]
fn tables_touched() {
    let cases: &[(&str, Option<&[&str]>)] = &[
        (
            "SELECT u.id FROM users u JOIN orders o ON o.user_id = u.id LEFT JOIN \"Items\" i ON i.order_id = o.id",
            Some(&["items", "orders", "users"]),
        ),
        (
            "select * from public.users where id in (select user_id from sessions)",
            Some(&["public.users", "sessions"]),
        ),
        (
            "WITH recent AS (SELECT * FROM orders) SELECT * FROM recent JOIN users ON users.id = recent.user_id",
            Some(&["orders", "users"]),
        ),
        (
            "WITH x AS (SELECT id FROM a) UPDATE b SET c = 1 WHERE id IN (SELECT id FROM x)",
            Some(&["a", "b"]),
        ),
        (
            "SELECT \"users\".* FROM \"users\" WHERE \"users\".\"id\" = $1 LIMIT $2",
            Some(&["users"]),
        ),
        (
            "INSERT INTO `users` (`name`) VALUES ('x') ON DUPLICATE KEY UPDATE name = VALUES(name)",
            Some(&["users"]),
        ),
        (
            "update users set name = 'x' from accounts where accounts.id = users.account_id",
            Some(&["accounts", "users"]),
        ),
        (
            "select a from t1, t2, t1 where exists (select 1 from t3)",
            Some(&["t1", "t2", "t3"]),
        ),
        (
            "DELETE FROM sessions WHERE expires_at < now()",
            Some(&["sessions"]),
        ),
        (
            "INSERT OR REPLACE INTO kv (k, v) VALUES (?1, ?2)",
            Some(&["kv"]),
        ),
        ("this is not sql", None),
        ("select * from", None),
    ];
    for (sql, expected) in cases {
        let got = tables(sql);
        let expected: Option<Vec<String>> =
            expected.map(|names| names.iter().map(|n| n.to_string()).collect());
        assert_eq!(got, expected, "tables of {sql:?}");
    }
}

/// A tiny deterministic generator (64-bit LCG), so the property test needs no extra crate.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        self.0 >> 33
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

const PIECES: &[&str] = &[
    "select", " ", "from", "where", "in", "values", "array", "null", "(", ")", "[", "]", ",", ";",
    ".", ":", "::", "'", "''", "\"", "`", "$", "$$", "$a$", "?", "?|", "%", "%s", "%(", ")s", "-",
    "--", "/*", "*/", "*", "=", "<>", "!", "#", "@", "\\", "e'", "U&'", "0x", "1", "42", ".5",
    "1e", "x", "Ünï", "é", "日本", "\n", "\t", "-1", "+", "||",
];

fn random_input(rng: &mut Lcg) -> String {
    let mut s = String::new();
    for _ in 0..rng.below(40) {
        if rng.below(8) == 0 {
            // An arbitrary char, to hit code paths no piece was written for.
            let c = char::from_u32((rng.next() % 0x3000) as u32).unwrap_or('?');
            s.push(c);
        } else {
            s.push_str(PIECES[rng.below(PIECES.len())]);
        }
    }
    s
}

#[test]
fn random_input_never_panics_and_is_deterministic() {
    let mut rng = Lcg(0x5eed);
    for _ in 0..5_000 {
        let input = random_input(&mut rng);
        let first = fingerprint(&input);
        let second = fingerprint(&input);
        assert_eq!(first, second, "non-deterministic for {input:?}");
        assert!(!first.text.ends_with(' '), "trailing space for {input:?}");
        // The output is itself SQL-like text and must not panic either.
        let _ = fingerprint(&first.text);
    }
}

// ---------------------------------------------------------------------------------------
// Pinned outputs: any change to what `fingerprint` returns for any input, however it comes
// about (a rule changed on purpose, or a faster lexer that is not quite equivalent), fails
// one of the tests below. Fingerprints are stored in baselines, so an intended change must
// be visible in review: update the pin and the snapshots together, and say why.
// ---------------------------------------------------------------------------------------

/// Fragments of SQL-like text for [`random_statement`]: every lexical form the fingerprint
/// rules name (quotes and their escapes, comments, dollar quotes, numbers, placeholders,
/// casts, lists, keywords that change spacing or collapse), plus non-ASCII text.
#[rustfmt::skip]
const STATEMENT_PIECES: &[&str] = &[
    "select", "SELECT", "from", "FROM", "where", "WHERE", "in", "IN", "not in", "values",
    "VALUES", "array", "ARRAY", "null", "NULL", "true", "False", "then", "else", "end", "any",
    "ALL", "some", "into", "table", "set", "with", "as", "cast", "coalesce", "is", "interval",
    "date", "limit", "and", "or", "case", "when", "exists", "returning", "on conflict", "users",
    "u", "t1", "Users", "a.b", "u.id", "id", "_x", "x$y", "1st", "e", "E", "b", "n", "U", " ",
    " ", " ", "  ", "\n", "\t", "\r\n", "'", "''", "'abc'", "'it''s'", "\"", "\"users\"",
    "\"Users\"", "\"order\"", "\"position\"", "`", "`t`", "$", "$$", "$a$", "$tag$", "$1",
    "$23", "?", "?1", "?|", "?&", ":", "::", "::int", ":name", ":1", ":=", "%s", "%(x)s", "%(",
    "%", "-", "+", "--", "-- c\n", "/*", "*/", "/* c */", "/*x/*y*/z*/",
    "/*controller='c',action='a'*/", "#", "#>>", "@", "@@v", "@x", "*", "/", "=", "<>", "!=",
    "<=", "||", "->>", "~", "^", "&", "|", "(", ")", "(", ")", "[", "]", ",", ",", ";", ".",
    "..", "0", "1", "42", "3.14", ".5", "1e10", "1E-3", "1e", "0x1F", "0x", "0b101", "1_000",
    "1__0", "-1", "+2", "E'a\\'b'", "e'\\\\'", "B'1'", "X'ff'", "N'n'", "U&'d'", "u&", "\\",
    "{", "}", "é", "日本", "😀", "ß", "İ", "\u{0}", "\u{7f}", "(1, 2, 3)", "(?, ?)",
    "((1,2),(3,4))", "[1,2]", "[[1],[2]]", "(select 1)", "(a,b)", "values (1, 'a'), (2, 'b')",
    "in ($1, $2, $3)", "array[1, 2]",
];

/// Statement openings, so that the generated strings exercise every statement kind.
#[rustfmt::skip]
const STATEMENT_VERBS: &[&str] = &[
    "select ", "with x as (select 1) ", "insert into t ", "update t set ", "delete from t ",
    "begin", "set ", "deallocate ", "close all", "do $$", "SELECT pg_advisory_unlock_all()",
    "(select ", "start transaction", "explain ", "merge into t ", "create table t (",
    "select set_config(", "discard all; ", "commit",
];

/// A random SQL-like statement: half of them open with a verb, then up to 40 pieces or
/// arbitrary characters.
fn random_statement(rng: &mut Lcg) -> String {
    let mut s = String::new();
    if rng.below(2) == 0 {
        s.push_str(STATEMENT_VERBS[rng.below(STATEMENT_VERBS.len())]);
    }
    for _ in 0..=rng.below(40) {
        match rng.below(10) {
            0 => s.push(char::from_u32(0x20 + rng.below(95) as u32).unwrap_or('?')),
            1 => s.push(' '),
            _ => s.push_str(STATEMENT_PIECES[rng.below(STATEMENT_PIECES.len())]),
        }
    }
    s
}

/// The generated inputs whose outputs are pinned: statements and arbitrary piece soup.
fn pinned_inputs() -> Vec<String> {
    let mut rng = Lcg(0xf1a0_5eed);
    (0..PINNED_INPUTS)
        .map(|i| {
            if i % 4 == 3 {
                random_input(&mut rng)
            } else {
                random_statement(&mut rng)
            }
        })
        .collect()
}

const PINNED_INPUTS: usize = 20_000;

/// One line per output: the text, the kind and the hash of the literal values.
fn output_line(sql: &str, text: &str, kind: &str, values: u64) -> String {
    format!("{sql:?}\n  -> {text:?} {kind} {values:016x}\n")
}

/// xxh3 over the output lines of all [`pinned_inputs`], chained. Recorded from the
/// implementation of the first release that pinned it; a change means that some output
/// changed: the snapshots below show the first few hundred inputs and every fixture statement.
const PINNED_DIGEST: u64 = 0xc312_2e91_eb14_3e57;

#[test]
fn generated_inputs_keep_their_pinned_outputs() {
    let inputs = pinned_inputs();
    assert_eq!(inputs.len(), PINNED_INPUTS);
    let mut digest = 0u64;
    for sql in &inputs {
        let fp = fingerprint(sql);
        let line = output_line(sql, &fp.text, fp.kind.as_str(), fp.values);
        digest = xxh3_64_with_seed(line.as_bytes(), digest);
    }
    assert_eq!(
        digest, PINNED_DIGEST,
        "the outputs of the {PINNED_INPUTS} generated inputs changed (digest {digest:#018x})"
    );
}

#[test]
fn generated_inputs_snapshot() {
    let out: String = pinned_inputs()
        .iter()
        .take(300)
        .map(|sql| {
            let fp = fingerprint(sql);
            output_line(sql, &fp.text, fp.kind.as_str(), fp.values)
        })
        .collect();
    insta::assert_snapshot!(out);
}

/// Every statement of the trace fixtures (`sql` of each JSONL event) and of the SQL
/// workloads (split at `;`), sorted and deduplicated, with its fingerprint.
#[test]
fn fixture_statements_snapshot() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests");
    let mut statements = std::collections::BTreeSet::new();
    let mut files = Vec::new();
    collect_files(&root.join("fixtures"), &mut files);
    collect_files(&root.join("workloads"), &mut files);
    for path in files {
        let Ok(text) = std::fs::read_to_string(&path) else {
            continue;
        };
        match path.extension().and_then(|e| e.to_str()) {
            Some("jsonl") => {
                for line in text.lines() {
                    let event: Option<serde_json::Value> = serde_json::from_str(line).ok();
                    if let Some(sql) = event.as_ref().and_then(|e| e.get("sql")?.as_str()) {
                        statements.insert(sql.to_string());
                    }
                }
            }
            Some("sql") => {
                for part in text.split(';').map(str::trim).filter(|p| !p.is_empty()) {
                    statements.insert(part.to_string());
                }
            }
            _ => {}
        }
    }
    assert!(
        statements.len() > 100,
        "only {} statements found",
        statements.len()
    );
    let out: String = statements
        .iter()
        .map(|sql| {
            let fp = fingerprint(sql);
            output_line(sql, &fp.text, fp.kind.as_str(), fp.values)
        })
        .collect();
    insta::assert_snapshot!(out);
}

fn collect_files(dir: &Path, files: &mut Vec<std::path::PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let mut paths: Vec<_> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
    paths.sort();
    for path in paths {
        if path.is_dir() {
            collect_files(&path, files);
        } else {
            files.push(path);
        }
    }
}
