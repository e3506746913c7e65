//! Invariants cannot write (issue 15): each attack on the invariants'
//! connection, written as an invariant in a rule file, is refused with exit
//! code 2 naming the file and the invariant, and the data is still there
//! afterwards, on the machine's PostgreSQL and MariaDB and on a SQLite file.
//! What the static check cannot see (a function of the database that writes)
//! is stopped by the read-only transaction. A property test drives the static
//! check itself.

mod support;

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use flowaudit::invariants::check::{self, DIALECTS, Refusal};
use proptest::prelude::*;
use support::pg::{self, TestDb};

fn flowaudit() -> Command {
    Command::new(env!("CARGO_BIN_EXE_flowaudit"))
}

fn block_on<F: Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(f)
}

/// A rule file holding one invariant, in a directory of its own, and an
/// empty trace beside it.
struct RuleFile {
    dir: tempfile::TempDir,
}

impl RuleFile {
    fn new(name: &str, sql: &str) -> RuleFile {
        let dir = tempfile::tempdir().expect("temp dir");
        // A literal string: the attacks hold quotes and backslashes.
        let text = format!("[[invariant]]\nname = \"{name}\"\nsql = '''\n{sql}'''\n");
        std::fs::write(dir.path().join("attack.toml"), text).expect("rule file");
        std::fs::write(dir.path().join("empty.jsonl"), "").expect("trace");
        RuleFile { dir }
    }

    fn path(&self) -> PathBuf {
        self.dir.path().join("attack.toml")
    }

    /// `flowaudit analyze --database url` with this file: exit code and stderr.
    fn analyze(&self, url: &str) -> (Option<i32>, String) {
        let out = flowaudit()
            .arg("analyze")
            .arg(self.dir.path().join("empty.jsonl"))
            .args(["--allow-empty", "--format", "json", "--database", url])
            .arg("--rules")
            .arg(self.path())
            .output()
            .expect("flowaudit runs");
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }
}

/// Runs the invariant `sql` on `url` and checks that flowaudit refused it
/// (exit 2) naming the rule file and the invariant; returns the message.
fn refused(url: &str, name: &str, sql: &str) -> String {
    let file = RuleFile::new(name, sql);
    let (code, err) = file.analyze(url);
    assert_eq!(code, Some(2), "{name} on {url}: {err}");
    assert!(
        err.contains(&file.path().display().to_string()) && err.contains(&format!("\"{name}\"")),
        "{name}: the message names the file and the invariant: {err}"
    );
    err
}

/// The attacks of issue 15 and their kin: each would delete the stock.
const POSTGRES_ATTACKS: &[(&str, &str)] = &[
    // Reaches out of the subquery the SQL used to be pasted into.
    (
        "out-of-the-subquery",
        "SELECT 1) x; COMMIT; BEGIN READ WRITE; DELETE FROM stock; COMMIT; SELECT * FROM (SELECT 1",
    ),
    (
        "second-statement",
        "SELECT 1 AS one; COMMIT; BEGIN READ WRITE; DELETE FROM stock; COMMIT",
    ),
    (
        "data-modifying-with",
        "WITH d AS (DELETE FROM stock RETURNING *) SELECT * FROM d",
    ),
    ("select-into", "SELECT * INTO stock_copy FROM stock"),
    (
        "read-write-for-the-session",
        "SELECT set_config('default_transaction_read_only', 'off', false) AS s",
    ),
    ("delete", "DELETE FROM stock RETURNING *"),
];

#[test]
fn postgres_attacks_are_refused_and_the_rows_stay() {
    if !pg::available("invariant attacks on PostgreSQL") {
        return;
    }
    let db = TestDb::new("inv_attack");
    db.direct("CREATE TABLE stock (id int PRIMARY KEY, qty int)");
    db.direct("INSERT INTO stock SELECT i, 5 FROM generate_series(1, 5) i");
    let url = db.url(pg::PG_ADDR);
    for (name, sql) in POSTGRES_ATTACKS {
        refused(&url, name, sql);
        assert_eq!(db.direct("SELECT count(*) FROM stock"), "5", "after {name}");
    }
    assert_eq!(
        db.direct("SELECT count(*) FROM pg_tables WHERE tablename = 'stock_copy'"),
        "0"
    );
    assert_eq!(db.direct("SHOW default_transaction_read_only"), "off");
}

#[test]
fn pg_terminate_backend_does_not_kill_another_session() {
    use sqlx::Connection;
    if !pg::available("pg_terminate_backend as an invariant") {
        return;
    }
    let db = TestDb::new("inv_victim");
    let url = db.url(pg::PG_ADDR);
    // One runtime for the victim's whole life: its connection belongs to it.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let mut victim = runtime
        .block_on(sqlx::PgConnection::connect(&url))
        .expect("victim connects");
    let pid: i32 = runtime
        .block_on(sqlx::query_scalar("SELECT pg_backend_pid()").fetch_one(&mut victim))
        .expect("pid");
    for (name, sql) in [
        (
            "kill",
            format!("SELECT pg_terminate_backend({pid}) AS killed"),
        ),
        (
            "kill-qualified",
            format!("SELECT * FROM PG_CATALOG.PG_TERMINATE_BACKEND({pid})"),
        ),
        ("cancel", format!("SELECT pg_cancel_backend({pid}) AS c")),
        (
            "kill-in-a-string",
            format!("SELECT query_to_xml('SELECT pg_terminate_backend({pid})', true, true, '')"),
        ),
        (
            "kill-spelled-in-unicode",
            format!("SELECT U&\"\\0070g_terminate_backend\"({pid}) AS killed"),
        ),
    ] {
        let err = refused(&url, name, &sql);
        assert!(err.contains("refused"), "{name}: {err}");
        let alive: Result<i32, _> =
            runtime.block_on(sqlx::query_scalar("SELECT 1").fetch_one(&mut victim));
        assert_eq!(
            alive.ok(),
            Some(1),
            "the victim session answers after {name}"
        );
    }
    let _ = runtime.block_on(victim.close());
}

/// What no static check sees: a function of the database that writes. The
/// read-only transaction stops it, and the escape hatches a function could
/// try from inside it.
#[test]
fn postgres_writes_hidden_in_functions_are_stopped_by_the_read_only_transaction() {
    if !pg::available("functions that write, on PostgreSQL") {
        return;
    }
    let db = TestDb::new("inv_hidden");
    db.direct("CREATE TABLE stock (id int PRIMARY KEY, qty int)");
    db.direct("INSERT INTO stock SELECT i, 5 FROM generate_series(1, 5) i");
    db.direct(
        "CREATE FUNCTION wipe() RETURNS bigint LANGUAGE plpgsql AS $$ \
         BEGIN DELETE FROM stock; RETURN 0; END $$",
    );
    db.direct(
        "CREATE FUNCTION escape() RETURNS bigint LANGUAGE plpgsql AS $$ \
         BEGIN SET LOCAL transaction_read_only = off; DELETE FROM stock; RETURN 0; END $$",
    );
    let url = db.url(pg::PG_ADDR);
    for (name, sql, says) in [
        (
            "wipe",
            "SELECT wipe() AS wiped",
            "cannot execute DELETE in a read-only transaction",
        ),
        (
            "escape",
            "SELECT escape() AS escaped",
            "transaction read-write mode must be set before any query",
        ),
    ] {
        // Past the static check: the server refuses when the query runs.
        assert_eq!(check::any_dialect(sql), Ok(()));
        let file = RuleFile::new(name, sql);
        let (code, err) = file.analyze(&url);
        assert_eq!(code, Some(2), "{name}: {err}");
        assert!(
            err.contains(&format!("invariant \"{name}\": its query failed")) && err.contains(says),
            "{name}: {err}"
        );
        assert_eq!(db.direct("SELECT count(*) FROM stock"), "5", "after {name}");
    }
}

/// A MariaDB database of its own, dropped at the end; `None` (with the reason
/// printed) when no server answers and CI is not set.
struct MariaDb {
    name: String,
}

impl MariaDb {
    fn new(tag: &str) -> Option<MariaDb> {
        let up = TcpStream::connect_timeout(
            &"127.0.0.1:3306".parse().expect("address"),
            Duration::from_secs(2),
        )
        .is_ok()
            && Command::new("mysql").arg("--version").output().is_ok();
        if !up {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "MariaDB on 127.0.0.1:3306 and its client are required when CI=true"
            );
            eprintln!("skipped: no MariaDB (and mysql client) on 127.0.0.1:3306");
            return None;
        }
        let name = format!("flowaudit_{tag}_{}", std::process::id());
        let db = MariaDb { name };
        db.admin(&format!(
            "DROP DATABASE IF EXISTS {0}; CREATE DATABASE {0}",
            db.name
        ));
        Some(db)
    }

    fn admin(&self, sql: &str) -> String {
        let out = support::server_logs::mysql(&["-e", sql]);
        assert!(
            out.status.success(),
            "{sql}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }

    fn direct(&self, sql: &str) -> String {
        self.admin(&format!("USE {}; {sql}", self.name))
    }

    fn url(&self) -> String {
        format!("mysql://root@127.0.0.1:3306/{}", self.name)
    }
}

impl Drop for MariaDb {
    fn drop(&mut self) {
        let _ =
            support::server_logs::mysql(&["-e", &format!("DROP DATABASE IF EXISTS {}", self.name)]);
    }
}

const MARIADB_ATTACKS: &[(&str, &str)] = &[
    (
        "out-of-the-subquery",
        "SELECT 1) x; SET SESSION TRANSACTION READ WRITE; DELETE FROM stock; SELECT * FROM (SELECT 1",
    ),
    (
        "second-statement",
        "SELECT 1 AS one; SET SESSION TRANSACTION READ WRITE; DELETE FROM stock",
    ),
    // MariaDB runs what an executable comment holds.
    (
        "executable-comment",
        "SELECT 1 AS one /*!; SET SESSION TRANSACTION READ WRITE; DELETE FROM stock */",
    ),
    (
        "into-outfile",
        "SELECT * FROM stock INTO OUTFILE '/tmp/flowaudit-invariant-outfile'",
    ),
    // A lock that outlives the transaction, held by flowaudit's session.
    ("session-lock", "SELECT GET_LOCK('flowaudit', 0) AS locked"),
];

#[test]
fn mariadb_attacks_are_refused_and_the_rows_stay() {
    let Some(db) = MariaDb::new("inv_attack") else {
        return;
    };
    db.direct("CREATE TABLE stock (id INT PRIMARY KEY, qty INT)");
    db.direct("INSERT INTO stock VALUES (1, 5), (2, 5), (3, 5), (4, 5), (5, 5)");
    for (name, sql) in MARIADB_ATTACKS {
        refused(&db.url(), name, sql);
        assert_eq!(db.direct("SELECT count(*) FROM stock"), "5", "after {name}");
    }
    assert!(!Path::new("/tmp/flowaudit-invariant-outfile").exists());
}

#[test]
fn mariadb_writes_hidden_in_functions_are_stopped_by_the_read_only_transaction() {
    let Some(db) = MariaDb::new("inv_hidden") else {
        return;
    };
    db.direct("CREATE TABLE stock (id INT PRIMARY KEY, qty INT)");
    db.direct("INSERT INTO stock VALUES (1, 5), (2, 5), (3, 5), (4, 5), (5, 5)");
    // Through sqlx: the mysql client would split the body at its `;`.
    block_on(async {
        use sqlx::Connection;
        let mut c = sqlx::MySqlConnection::connect(&db.url())
            .await
            .expect("connect");
        sqlx::raw_sql(
            "CREATE FUNCTION wipe() RETURNS INT MODIFIES SQL DATA \
             BEGIN DELETE FROM stock; RETURN 0; END",
        )
        .execute(&mut c)
        .await
        .expect("function");
    });
    let sql = "SELECT wipe() AS wiped";
    assert_eq!(check::any_dialect(sql), Ok(()));
    let file = RuleFile::new("wipe", sql);
    let (code, err) = file.analyze(&db.url());
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains("invariant \"wipe\": its query failed") && err.contains("READ ONLY"),
        "{err}"
    );
    assert_eq!(db.direct("SELECT count(*) FROM stock"), "5");
}

#[test]
fn sqlite_attacks_are_refused_and_the_rows_stay() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("app.db");
    let url = format!("sqlite:{}", path.display());
    let count = || {
        block_on(async {
            use sqlx::Connection;
            let mut c = sqlx::SqliteConnection::connect(&url).await.expect("sqlite");
            let n: i64 = sqlx::query_scalar("SELECT count(*) FROM stock")
                .fetch_one(&mut c)
                .await
                .expect("count");
            n
        })
    };
    block_on(async {
        use sqlx::Connection;
        let mut c = sqlx::SqliteConnection::connect(&format!("{url}?mode=rwc"))
            .await
            .expect("sqlite");
        sqlx::raw_sql(
            "CREATE TABLE stock (id INTEGER PRIMARY KEY, qty INTEGER); \
             INSERT INTO stock VALUES (1, 5), (2, 5), (3, 5), (4, 5), (5, 5)",
        )
        .execute(&mut c)
        .await
        .expect("setup");
    });
    let copy = dir.path().join("copy.db");
    for (name, sql) in [
        (
            "out-of-the-subquery",
            "SELECT 1) x; PRAGMA query_only = OFF; DELETE FROM stock; SELECT * FROM (SELECT 1"
                .to_owned(),
        ),
        (
            "second-statement",
            "SELECT 1 AS one; PRAGMA query_only = OFF; DELETE FROM stock".to_owned(),
        ),
        (
            "vacuum-into",
            format!("SELECT 1 AS one; VACUUM INTO '{}'", copy.display()),
        ),
    ] {
        refused(&url, name, &sql);
        assert_eq!(count(), 5, "after {name}");
    }
    assert!(!copy.exists());
}

/// The static check, driven by generated SQL: safe queries pass in every
/// dialect, and a second statement, a write inside the query or a refused
/// call is refused however it is spelled.
mod properties {
    use super::*;

    /// A keyword in a random case.
    fn kw(word: &'static str) -> impl Strategy<Value = String> {
        proptest::collection::vec(any::<bool>(), word.len()).prop_map(move |upper| {
            word.chars()
                .zip(upper)
                .map(|(c, u)| if u { c.to_ascii_uppercase() } else { c })
                .collect()
        })
    }

    /// Blanks between tokens, comments included (a line comment ends its line).
    fn blank() -> impl Strategy<Value = String> {
        prop_oneof![
            Just(" ".to_owned()),
            Just("\n".to_owned()),
            Just("\t ".to_owned()),
            Just(" /* note; DELETE */ ".to_owned()),
            Just(" -- note; DELETE\n".to_owned()),
        ]
    }

    fn expr() -> impl Strategy<Value = String> {
        prop_oneof![
            Just("id".to_owned()),
            Just("qty".to_owned()),
            Just("s.qty".to_owned()),
            Just("1".to_owned()),
            Just("'a;b'".to_owned()),
            Just("NULL".to_owned()),
            Just("abs(qty)".to_owned()),
            Just("coalesce(qty, 0)".to_owned()),
            Just("qty + 1".to_owned()),
            Just("(SELECT max(id) FROM orders)".to_owned()),
        ]
    }

    fn condition() -> impl Strategy<Value = String> {
        prop_oneof![
            Just("qty < 0".to_owned()),
            Just("id IN (SELECT id FROM orders)".to_owned()),
            Just("NOT EXISTS (SELECT 1 FROM orders WHERE orders.id = s.id)".to_owned()),
            Just("qty IS NULL".to_owned()),
            Just("id BETWEEN 1 AND 10".to_owned()),
        ]
    }

    /// One SELECT over `stock s`.
    fn select() -> impl Strategy<Value = String> {
        (
            kw("select"),
            proptest::collection::vec(expr(), 1..4),
            blank(),
            kw("from"),
            proptest::option::of((kw("where"), condition())),
            blank(),
        )
            .prop_map(|(select, exprs, b, from, filter, b2)| {
                let list: Vec<String> = exprs
                    .iter()
                    .enumerate()
                    .map(|(i, e)| format!("{e} AS c{i}"))
                    .collect();
                let mut sql = format!("{select} {}{b}{from} stock s", list.join(", "));
                if let Some((kw, cond)) = filter {
                    sql.push_str(&format!("{b2}{kw} {cond}"));
                }
                sql
            })
    }

    /// A query as an invariant may be written.
    fn query() -> impl Strategy<Value = String> {
        prop_oneof![
            select(),
            (select(), select()).prop_map(|(a, b)| format!("{a} UNION ALL {b}")),
            (kw("with"), select())
                .prop_map(|(with, s)| format!("{with} c AS ({s}) SELECT * FROM c")),
            select().prop_map(|s| format!("{s} ORDER BY 1 LIMIT 10")),
            select().prop_map(|s| format!("SELECT * FROM ({s}) AS x")),
            Just("VALUES (1, 'a'), (2, 'b')".to_owned()),
        ]
    }

    /// A statement that writes or leaves the read-only transaction.
    fn write() -> impl Strategy<Value = String> {
        prop_oneof![
            Just("DELETE FROM stock".to_owned()),
            Just("UPDATE stock SET qty = 0".to_owned()),
            Just("INSERT INTO stock VALUES (9, 9)".to_owned()),
            Just("DROP TABLE stock".to_owned()),
            Just("COMMIT".to_owned()),
            Just("BEGIN READ WRITE".to_owned()),
            Just("SET SESSION TRANSACTION READ WRITE".to_owned()),
            Just("PRAGMA query_only = OFF".to_owned()),
            Just("SELECT 1".to_owned()),
            Just("TRUNCATE stock".to_owned()),
        ]
    }

    /// A refused function's name, as it may be spelled.
    fn refused_call() -> impl Strategy<Value = String> {
        (
            prop_oneof![
                Just("pg_terminate_backend"),
                Just("pg_cancel_backend"),
                Just("pg_reload_conf"),
                Just("dblink_exec"),
                Just("lo_export"),
                Just("set_config"),
                Just("pg_advisory_lock"),
                Just("get_lock"),
                Just("query_to_xml"),
            ],
            any::<bool>(),
            prop_oneof![Just(""), Just("pg_catalog."), Just("\"pg_catalog\".")],
            any::<bool>(),
        )
            .prop_map(|(name, upper, schema, quoted)| {
                let name = if upper {
                    name.to_ascii_uppercase()
                } else {
                    name.to_owned()
                };
                if quoted {
                    format!("{schema}\"{}\"(1)", name.to_ascii_lowercase())
                } else {
                    format!("{schema}{name}(1)")
                }
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(300))]

        /// Anything at all: an answer, never a panic.
        #[test]
        fn any_text_gets_an_answer(text in "\\PC{0,200}") {
            let _ = check::any_dialect(&text);
            for dialect in DIALECTS {
                let _ = check::for_dialect(&text, dialect);
            }
        }

        #[test]
        fn queries_pass(q in query(), semicolon in any::<bool>()) {
            let sql = if semicolon { format!("{q};") } else { q };
            prop_assert_eq!(check::any_dialect(&sql), Ok(()), "{}", sql);
        }

        #[test]
        fn a_second_statement_is_refused(q in query(), b in blank(), w in write()) {
            let sql = format!("{q}{b};{b}{w}");
            prop_assert!(check::any_dialect(&sql).is_err(), "{}", sql);
            for dialect in DIALECTS {
                prop_assert!(check::for_dialect(&sql, dialect).is_err(), "{:?}: {}", dialect, sql);
            }
        }

        #[test]
        fn a_write_inside_the_query_is_refused(q in query(), w in prop_oneof![
            Just("DELETE FROM stock RETURNING *"),
            Just("UPDATE stock SET qty = 0 RETURNING *"),
            Just("INSERT INTO stock VALUES (9, 9) RETURNING *"),
        ]) {
            let sql = format!("WITH w AS ({w}) SELECT * FROM ({q}) AS x");
            let refusal = check::any_dialect(&sql);
            prop_assert!(matches!(refusal, Err(Refusal::ModifyingWith { .. })), "{}: {:?}", sql, refusal);
            let sql = format!("{q} FOR UPDATE");
            prop_assert!(check::any_dialect(&sql).is_err(), "{}", sql);
        }

        #[test]
        fn refused_calls_are_found_wherever_they_are(
            q in select(),
            call in refused_call(),
            place in 0..4usize,
        ) {
            let sql = match place {
                0 => q.replacen(" AS c0", &format!(", {call} AS c0"), 1),
                1 => format!("{q} UNION ALL SELECT {call}"),
                2 => format!("SELECT * FROM ({q}) x WHERE EXISTS (SELECT {call})"),
                _ => format!("WITH c AS (SELECT {call} AS k) {q}"),
            };
            let refusal = check::any_dialect(&sql);
            prop_assert!(matches!(refusal, Err(Refusal::Function { .. })), "{}: {:?}", sql, refusal);
        }
    }
}
