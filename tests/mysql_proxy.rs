//! Real MySQL clients through `flowaudit proxy --upstream mysql://…` in front
//! of the machine's MariaDB (issue 17): the `mariadb` command-line client,
//! PyMySQL, mysql2 from Node and sqlx. Each test switches MariaDB's general
//! query log on for its run and checks that the proxy recorded, connection by
//! connection and in order, the statements the server logged, and then what
//! only the proxy can know: bind values, row counts, errors with their
//! SQLSTATE and the transaction status from the server's status flags.
//!
//! Needs MariaDB on 127.0.0.1:3306 with the `mariadb` client, and for the
//! driver tests the client corpus (`bash tests/corpus/setup.sh`: PyMySQL in
//! tests/corpus/.venv, mysql2 in tests/corpus/node/node_modules). Without
//! them a test says why and skips, except with CI=true, where it fails.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::mysql::{
    self, GENERAL_LOG, MARIADB_ADDR, TestDb, logged_statements, only, text, traced_statements,
    with_sql,
};
use support::pg::{ProxyProcess, Stopped};
use support::server_logs::{GeneralLog, only_connections};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

fn upstream() -> String {
    format!("mysql://{MARIADB_ADDR}")
}

/// The `mariadb` client on `port` (TCP), database `db`.
fn mariadb(port: &str, db: &str) -> Command {
    let mut c = Command::new("mariadb");
    c.args([
        "--protocol=tcp",
        "-h",
        "127.0.0.1",
        "-P",
        port,
        "-u",
        "root",
    ])
    .arg(db);
    c
}

/// The general log's text for the connections that opened `db`.
fn logged(general: GeneralLog, db: &str) -> String {
    only_connections(&general.into_text(), db)
}

/// The proxy recorded what the server ran: the same statements, connection
/// by connection, in order.
fn assert_same_statements(stopped: &Stopped, log: &str) {
    assert_statements(stopped, log, logged_statements(log));
}

/// The proxy recorded `logged`, the statements the server ran as read from
/// its general log `log`.
fn assert_statements(stopped: &Stopped, log: &str, logged: Vec<Vec<String>>) {
    let traced = traced_statements(&stopped.trace);
    assert_eq!(
        traced, logged,
        "the proxy's statements (left) are not the general log's (right)\n\
         general log:\n{log}\ntrace:\n{}\nproxy stderr:\n{}",
        stopped.trace_text, stopped.stderr
    );
    for e in &stopped.trace {
        assert_eq!(e["source"], "mysql-proxy", "{e}");
        assert!(
            matches!(e["txn"].as_str(), Some("idle" | "open")),
            "every statement carries the server's transaction status: {e}"
        );
    }
}

/// The corpus's Python with PyMySQL, or why it cannot run.
fn corpus_python(what: &str) -> Option<PathBuf> {
    let python = Path::new(ROOT).join("tests/corpus/.venv/bin/python");
    if python.exists() {
        return Some(python);
    }
    mysql::skip(
        what,
        "the corpus venv is missing (run tests/corpus/setup.sh)",
    );
    None
}

/// The corpus's mysql2 module, or why it cannot run.
fn corpus_mysql2(what: &str) -> Option<PathBuf> {
    let module = Path::new(ROOT).join("tests/corpus/node/node_modules/mysql2");
    if module.exists() && Command::new("node").arg("--version").output().is_ok() {
        return Some(module);
    }
    mysql::skip(
        what,
        "node or the corpus's mysql2 is missing (run tests/corpus/setup.sh)",
    );
    None
}

/// The `mariadb` client interactive (on a terminal that `script` gives it),
/// reading `input`: what it sends when a person types, its own set-up
/// queries (`select @@version_comment limit 1`, the completion tables'
/// `show databases`, `show tables`) included.
fn interactive(port: &str, db: &str, input: &Path) -> Output {
    let line = format!("mariadb --protocol=tcp -h 127.0.0.1 -P {port} -u root --force {db}");
    Command::new("script")
        .args(["-q", "-e", "-c", &line, "/dev/null"])
        .stdin(std::fs::File::open(input).expect("input"))
        .output()
        .expect("script runs the mariadb client")
}

/// The general log reads as the statements a trace records.
#[test]
fn the_general_log_reads_as_each_connections_statements() {
    assert!(mysql::fills(
        "insert into t values (?, ?)",
        "insert into t values (1, 'a')"
    ));
    assert!(mysql::fills("select ? + ?", "select 1 + 2"));
    assert!(!mysql::fills("select ? from t", "select 1 from u"));
    assert!(!mysql::fills("select 1", "select 12"));
    let log = "Time\t\t    Id Command\tArgument\n\
               261130 22:07:59\t    32 Connect\troot@127.0.0.1 on d using TCP/IP\n\
               \t\t    32 Query\tselect 1\n\
               \t\t    33 Connect\troot@127.0.0.1 on d using TCP/IP\n\
               \t\t    32 Prepare\tselect id\nfrom t where id = ?\n\
               \t\t    32 Execute\tselect id\nfrom t where id = 7\n\
               \t\t    32 Init DB\td\n\
               \t\t    33 Field List\tt \n\
               \t\t    33 Query\tselect 2\n\
               \t\t    32 Quit\t\n";
    assert_eq!(
        logged_statements(log),
        [
            vec!["select 1", "select id\nfrom t where id = ?", "USE `d`"],
            vec!["select 2"]
        ]
    );
}

/// The `mariadb` client: several statements on one line, a duplicate key
/// inside a transaction that goes on and commits (`--force`), its own
/// set-up queries when interactive, and `LOAD DATA LOCAL INFILE`.
#[test]
fn mariadb_client_statements_errors_and_load_data() {
    if !mysql::available("the mariadb client through the proxy") {
        return;
    }
    if Command::new("script").arg("--version").output().is_err() {
        return mysql::skip(
            "the mariadb client through the proxy",
            "script (util-linux) is not installed: the interactive client needs a terminal",
        );
    }
    let _turn = GENERAL_LOG.lock().unwrap_or_else(|e| e.into_inner());
    let db = TestDb::new("cli");
    db.direct("create table t (id int primary key, name varchar(20))");
    let dir = tempfile::tempdir().expect("temp dir");
    let csv = dir.path().join("t.csv");
    std::fs::write(&csv, "1,one\n2,two\n3,three\n").expect("csv");
    let input = dir.path().join("typed.sql");
    // `use` is the client's own command: it sends COM_INIT_DB.
    std::fs::write(
        &input,
        format!(
            "select 1 as a; select 2 as b;\n\
         use {}\n\
         delimiter //\n\
         select 3 as c; select 4 as d //\n\
         select 5 as e; select * from missing; select 6 as f //\n\
         delimiter ;\n\
         begin;\n\
         insert into t values (11, 'x');\n\
         insert into t values (11, 'dup');\n\
         insert into t values (12, 'y');\n\
         commit;\n",
            db.name
        ),
    )
    .expect("input");

    let proxy = ProxyProcess::start(&upstream(), &[]);
    let port = proxy.port();
    let general = GeneralLog::start();
    let batch = mariadb(&port, &db.name)
        .args(["-e", "select 1; select 2"])
        .output()
        .expect("mariadb runs");
    let typed = interactive(&port, &db.name, &input);
    let load = mariadb(&port, &db.name)
        .args(["--local-infile=1", "-e"])
        .arg(format!(
            "LOAD DATA LOCAL INFILE '{}' INTO TABLE t FIELDS TERMINATED BY ','; \
             select 'after load'",
            csv.display()
        ))
        .output()
        .expect("mariadb runs");
    let log = logged(general, &db.name);
    let stopped = proxy.stop();

    assert!(batch.status.success(), "{}", text(&batch));
    assert_eq!(String::from_utf8_lossy(&batch.stdout), "1\n1\n2\n2\n");
    let typed_out = String::from_utf8_lossy(&typed.stdout);
    assert!(
        typed_out.contains("Duplicate entry '11'"),
        "the client saw the duplicate key: {}",
        text(&typed)
    );
    assert!(load.status.success(), "{}", text(&load));
    assert_eq!(
        db.direct("select group_concat(id order by id) from t"),
        "1,2,3,11,12",
        "the loaded rows and the transaction's two inserts are in the table"
    );
    // With another delimiter, the client sends "select 3 as c; select 4 as
    // d" as one COM_QUERY (it asks for CLIENT_MULTI_STATEMENTS): one entry in
    // the general log, two statements and two result sets on the server. In
    // the next, the error of the second statement ends the text: the third
    // never runs.
    let mut expected = logged_statements(&log);
    for (multi, ran) in [
        (
            "select 3 as c; select 4 as d",
            &["select 3 as c", "select 4 as d"][..],
        ),
        (
            "select 5 as e; select * from missing; select 6 as f",
            &["select 5 as e", "select * from missing"][..],
        ),
    ] {
        let (at, conn) = expected
            .iter_mut()
            .find_map(|c| Some((c.iter().position(|s| s == multi)?, c)))
            .unwrap_or_else(|| panic!("one Query of {multi:?} in the general log:\n{log}"));
        conn.splice(at..=at, ran.iter().map(|s| s.to_string()));
    }
    assert_statements(&stopped, &log, expected);

    let trace = &stopped.trace;
    let init_db = only(trace, &format!("USE `{}`", db.name));
    assert!(init_db.get("error").is_none_or(Value::is_null), "{init_db}");
    assert_eq!(only(trace, "select 3 as c")["rows"], 1);
    assert_eq!(only(trace, "select 4 as d")["rows"], 1);
    assert_eq!(only(trace, "select 5 as e")["rows"], 1);
    let missing = only(trace, "select * from missing");
    assert_eq!(missing["error"]["code"], "42S02", "{missing}");
    // -e "select 1; select 2": the client sends the two statements one by one.
    assert_eq!(only(trace, "select 1")["rows"], 1);
    assert_eq!(only(trace, "select 2")["rows"], 1);
    // Interactive: the client's own set-up queries come first.
    let version = only(trace, "select @@version_comment limit 1");
    assert_eq!(version["txn"], "idle");
    assert_eq!(only(trace, "select 1 as a")["rows"], 1);
    assert_eq!(only(trace, "begin")["txn"], "idle");
    assert_eq!(only(trace, "insert into t values (11, 'x')")["txn"], "open");
    assert_eq!(only(trace, "insert into t values (11, 'x')")["rows"], 1);
    let dup = only(trace, "insert into t values (11, 'dup')");
    assert_eq!(dup["txn"], "open", "{dup}");
    assert_eq!(dup["error"]["code"], "23000", "{dup}");
    assert!(
        dup["error"].to_string().contains("1062"),
        "the server's error number (ER_DUP_ENTRY) is recorded: {dup}"
    );
    assert!(
        dup["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("Duplicate entry '11'")),
        "{dup}"
    );
    let after = only(trace, "insert into t values (12, 'y')");
    assert_eq!(
        after["txn"], "open",
        "InnoDB keeps the transaction: {after}"
    );
    assert!(after.get("error").is_none_or(Value::is_null), "{after}");
    let commit = only(trace, "commit");
    assert_eq!(commit["txn"], "open", "{commit}");
    assert!(commit.get("error").is_none_or(Value::is_null), "{commit}");
    // LOAD DATA LOCAL INFILE: the server asked for the file, the client sent
    // it, the OK after it counts the rows.
    let loaded = with_sql(trace, "LOAD DATA LOCAL INFILE");
    assert_eq!(loaded.len(), 1, "{}", stopped.trace_text);
    assert_eq!(loaded[0]["rows"], 3, "{}", loaded[0]);
    assert!(loaded[0].get("error").is_none_or(Value::is_null));
    assert_eq!(only(trace, "select 'after load'")["rows"], 1);
}

/// PyMySQL as it comes: autocommit off, so InnoDB opens a transaction with
/// the first statement and COMMIT ends it; executemany() sends one multi-row
/// INSERT; %s parameters are interpolated by the client.
#[test]
fn pymysql_autocommit_off_executemany_and_inline_values() {
    if !mysql::available("PyMySQL through the proxy") {
        return;
    }
    let Some(python) = corpus_python("PyMySQL through the proxy") else {
        return;
    };
    let _turn = GENERAL_LOG.lock().unwrap_or_else(|e| e.into_inner());
    let db = TestDb::new("pymysql");
    db.direct("create table items (id int primary key, name varchar(20), price double)");
    let proxy = ProxyProcess::start(&upstream(), &[]);
    let general = GeneralLog::start();
    // After each statement the script asks the server whether a transaction
    // is open (@@in_transaction): the truth the trace is held to. (PyMySQL's
    // own server_status is updated by OK packets only, not by the EOF that
    // ends a result set.)
    let script = r#"
import json, os, pymysql
c = pymysql.connect(host="127.0.0.1", port=int(os.environ["PORT"]), user="root",
                    database=os.environ["DB"])
seen = []
def after():
    probe = c.cursor()
    probe.execute("select @@in_transaction")
    seen.append(probe.fetchone()[0])
cur = c.cursor()
cur.execute("insert into items (id, name, price) values (%s, %s, %s)", (1, "it's", 2.5))
after()
cur.executemany("insert into items (id, name, price) values (%s, %s, %s)",
                [(2, "b", 1), (3, "c", None)])
after()
cur.execute("select name from items where id = %s and name <> %s", (1, "x"))
assert cur.fetchall() == (("it's",),)
after()
c.commit()
after()
cur.execute("select count(*) from items")
assert cur.fetchone() == (3,)
after()
c.commit()
after()
c.close()
print(json.dumps(seen))
"#;
    let out = Command::new(&python)
        .args(["-c", script])
        .env("PORT", proxy.port())
        .env("DB", &db.name)
        .output()
        .expect("python runs");
    let log = logged(general, &db.name);
    let stopped = proxy.stop();
    assert!(out.status.success(), "{}", text(&out));
    assert_same_statements(&stopped, &log);
    let in_trans: Vec<u8> =
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", text(&out)));

    let trace = &stopped.trace;
    // Connecting: PyMySQL's own settings, before any transaction.
    assert_eq!(only(trace, "SET AUTOCOMMIT = 0")["txn"], "idle");
    let first = only(
        trace,
        "insert into items (id, name, price) values (1, 'it\\'s', 2.5e0)",
    );
    assert_eq!(first["rows"], 1);
    assert!(first["params"].is_null(), "values inline: {first}");
    let many = only(
        trace,
        "insert into items (id, name, price) values (2, 'b', 1),(3, 'c', NULL)",
    );
    assert_eq!(many["rows"], 2, "one multi-row INSERT: {many}");
    let select = only(trace, "select name from items where id = 1 and name <> 'x'");
    assert_eq!(select["rows"], 1);
    let count = only(trace, "select count(*) from items");
    assert_eq!(count["rows"], 1);
    let commits: Vec<&Value> = trace.iter().filter(|e| e["sql"] == "COMMIT").collect();
    assert_eq!(commits.len(), 2, "{}", stopped.trace_text);
    // Each statement is labelled with the transaction it ran in: the one
    // the server had after it (the insert opened one implicitly), and for
    // COMMIT the one it ended.
    let status = |open: u8| if open == 1 { "open" } else { "idle" };
    let expected = [
        (first, status(in_trans[0])),
        (many, status(in_trans[1])),
        (select, status(in_trans[2])),
        (commits[0], status(in_trans[2])),
        (count, status(in_trans[4])),
        (commits[1], status(in_trans[4])),
    ];
    for (event, txn) in expected {
        assert_eq!(
            event["txn"], txn,
            "{event}; the server's IN_TRANS after each: {in_trans:?}"
        );
    }
    // What that is on MariaDB 10.11 with InnoDB: the first insert opens the
    // transaction, COMMIT ends it, the SELECT after it opens the next.
    assert_eq!(in_trans, [1, 1, 1, 0, 1, 0]);
    for probe in with_sql(trace, "select @@in_transaction") {
        assert_eq!(probe["rows"], 1, "{probe}");
    }
}

/// PyMySQL interpolates values itself and escapes a quote as `\'`, as MySQL
/// reads it by default: a loop over names such as `O'Brien` is one
/// statement with one fingerprint, so the N+1 counts every run. Read with
/// standard SQL's quoting, `'O\'Brien'` would end early and each such name
/// would become a fingerprint of its own, leaving the loop short.
#[test]
fn pymysql_escaped_quotes_keep_one_fingerprint_per_statement() {
    if !mysql::available("PyMySQL through the proxy") {
        return;
    }
    let Some(python) = corpus_python("PyMySQL through the proxy") else {
        return;
    };
    let db = TestDb::new("escapes");
    db.direct("create table customers (id int primary key, name varchar(40))");
    db.direct("create table orders (id int primary key, customer varchar(40))");
    let proxy = ProxyProcess::start(&upstream(), &[]);
    let script = r#"
import os, pymysql
names = ["O'Brien", "Smith", "D'Arcy", "back\\slash", "quote'and\\both", "Lee"]
c = pymysql.connect(host="127.0.0.1", port=int(os.environ["PORT"]), user="root",
                    database=os.environ["DB"], autocommit=True)
cur = c.cursor()
cur.executemany("insert into customers (id, name) values (%s, %s)", list(enumerate(names)))
cur.execute("SET @flowaudit_step = 'statement'")
cur.execute("select id, name from customers order by id")
for _, name in cur.fetchall():
    cur.execute("select id from orders where customer = %s", (name,))
c.close()
"#;
    let out = Command::new(&python)
        .args(["-c", script])
        .env("PORT", proxy.port())
        .env("DB", &db.name)
        .output()
        .expect("python runs");
    let stopped = proxy.stop();
    assert!(out.status.success(), "{}", text(&out));
    // The escapes went to the server as PyMySQL wrote them.
    assert_eq!(
        with_sql(&stopped.trace, "where customer = 'O\\'Brien'").len(),
        1,
        "{}",
        stopped.trace_text
    );
    let loops: Vec<&Value> = stopped.report["findings"]
        .as_array()
        .expect("findings")
        .iter()
        .filter(|f| f["rule"] == "n-plus-one")
        .collect();
    assert_eq!(loops.len(), 1, "{:#}", stopped.report);
    assert_eq!(loops[0]["step"], "statement");
    assert_eq!(
        loops[0]["fingerprint"], "select id from orders where customer = ?",
        "{:#}",
        loops[0]
    );
    assert_eq!(loops[0]["count"], 6, "every name's lookup: {:#}", loops[0]);
}

/// Payloads of 16 MB and more, which the protocol sends as several packets,
/// from PyMySQL (it splits them itself): a statement of exactly 2^24 bytes
/// with its command byte (a full packet and a one-byte one) recorded whole;
/// a 20 MB one relayed whole and recorded cut, marked; a 20 MB row back; and
/// the statements after each recorded as themselves.
#[test]
fn pymysql_payloads_of_16_mb_and_more_are_split_and_joined() {
    if !mysql::available("16 MB payloads through the proxy") {
        return;
    }
    let Some(python) = corpus_python("16 MB payloads through the proxy") else {
        return;
    };
    let _turn = GENERAL_LOG.lock().unwrap_or_else(|e| e.into_inner());
    let db = TestDb::new("big");
    db.direct("create table big (id int primary key, body longtext)");
    // The server's default max_allowed_packet is 16 MB; raised for the new
    // sessions of this test, put back after it, even when it fails.
    let before = db.direct("select @@global.max_allowed_packet");
    struct Restore(String);
    impl Drop for Restore {
        fn drop(&mut self) {
            let _ = support::server_logs::mysql(&[
                "-e",
                &format!("SET GLOBAL max_allowed_packet = {}", self.0),
            ]);
        }
    }
    let _restore = Restore(before);
    db.direct("SET GLOBAL max_allowed_packet = 67108864");
    let proxy = ProxyProcess::start(&upstream(), &[]);
    let general = GeneralLog::start();
    let script = r#"
import os, pymysql
c = pymysql.connect(host="127.0.0.1", port=int(os.environ["PORT"]), user="root",
                    database=os.environ["DB"], autocommit=True,
                    max_allowed_packet=64 * 1024 * 1024)
cur = c.cursor()
head, tail = "select length('", "') as n"
exact = head + "x" * ((1 << 24) - 1 - len(head) - len(tail)) + tail
assert len(exact) + 1 == 1 << 24
cur.execute(exact)
print(cur.fetchone()[0])
cur.execute("select 'after the exact one'")
cur.execute("insert into big (id, body) values (1, '" + "y" * (20 << 20) + "')")
cur.execute("select 'after the insert'")
cur.execute("select body from big where id = 1")
print(len(cur.fetchone()[0]))
cur.execute("select 'after the row'")
c.close()
"#;
    let out = Command::new(&python)
        .args(["-c", script])
        .env("PORT", proxy.port())
        .env("DB", &db.name)
        .output()
        .expect("python runs");
    let log = logged(general, &db.name);
    let stopped = proxy.stop();
    assert!(out.status.success(), "{}", text(&out));
    let exact_len = (1 << 24) - 1 - "select length('".len() - "') as n".len();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        format!("{exact_len}\n{}", 20 << 20)
    );

    // The general log holds the 20 MB insert whole; the trace, the start the
    // observer kept and how much it left out.
    let mut logged = logged_statements(&log);
    assert_eq!(logged.len(), 1, "one connection");
    let insert_at = logged[0]
        .iter()
        .position(|s| s.starts_with("insert into big"))
        .expect("the insert in the general log");
    let whole = logged[0][insert_at].clone();
    let trace = &stopped.trace;
    let cut = with_sql(trace, "insert into big");
    assert_eq!(cut.len(), 1);
    let cut_sql = cut[0]["sql"].as_str().expect("sql");
    let (kept, marker) = cut_sql.split_once("…[truncated ").unwrap_or_else(|| {
        panic!(
            "the insert marked as cut: …{}",
            &cut_sql[cut_sql.len() - 60..]
        )
    });
    // The observer keeps 16 MiB of a payload, the command byte one of them.
    assert!(
        whole.starts_with(kept),
        "the kept text is the statement's start"
    );
    assert_eq!(kept.len(), (16 << 20) - 1);
    assert_eq!(
        marker,
        format!("{} bytes]", whole.len() - kept.len()),
        "the marker counts what was left out"
    );
    assert_eq!(cut[0]["rows"], 1);
    logged[0][insert_at] = cut_sql.to_owned();
    assert_statements(&stopped, &log, logged);

    let exact = with_sql(trace, "select length('xxx");
    assert_eq!(exact.len(), 1);
    assert_eq!(
        exact[0]["sql"].as_str().map(str::len),
        Some((1 << 24) - 1),
        "a payload of 2^24 bytes is kept whole"
    );
    assert_eq!(exact[0]["rows"], 1);
    assert_eq!(only(trace, "select body from big where id = 1")["rows"], 1);
    for after in ["after the exact one", "after the insert", "after the row"] {
        let e = only(trace, &format!("select '{after}'"));
        assert_eq!(e["rows"], 1, "{e}");
    }
}

/// mysql2's execute(): server-side prepared statements, the values bound in
/// the binary protocol, decoded by their types.
#[test]
fn mysql2_execute_records_prepared_text_and_bound_values() {
    if !mysql::available("mysql2 through the proxy") {
        return;
    }
    let Some(module) = corpus_mysql2("mysql2 through the proxy") else {
        return;
    };
    let _turn = GENERAL_LOG.lock().unwrap_or_else(|e| e.into_inner());
    let db = TestDb::new("mysql2");
    db.direct(
        "create table t2 (id int primary key, big bigint, amount decimal(10,2), \
         name varchar(40), note varchar(10), day date, at datetime(3), raw blob, ratio double)",
    );
    let proxy = ProxyProcess::start(&upstream(), &[]);
    let general = GeneralLog::start();
    let script = r#"
const mysql = require(process.env.MYSQL2 + '/promise');
(async () => {
  const c = await mysql.createConnection({host: '127.0.0.1', port: Number(process.env.PORT),
                                          user: 'root', database: process.env.DB});
  const insert = 'insert into t2 values (?, ?, ?, ?, ?, ?, ?, ?, ?)';
  const [a] = await c.execute(insert, [7, 9007199254740993n, '12.34', 'café', null, '2026-11-30',
    new Date(Date.UTC(2026, 10, 30, 12, 34, 56, 789)), Buffer.from([0xde, 0xad, 0xbe, 0xef]), 0.25]);
  const [b] = await c.execute(insert, [8, -1, '-0.50', '', 'n', null, null, Buffer.alloc(0), -1.5]);
  const [rows] = await c.execute('select id, amount, name from t2 where id > ? and ratio < ? order by id',
                                 [1, 100.5]);
  // COM_CHANGE_USER ends the session's state: the open transaction is rolled back.
  await c.beginTransaction();
  await c.execute('insert into t2 (id) values (?)', [9]);
  await c.changeUser({user: 'root', database: process.env.DB});
  const [[left]] = await c.query('select count(*) as n from t2');
  console.log(JSON.stringify([a.affectedRows, b.affectedRows, rows, left.n]));
  await c.end();
})().catch(e => { console.error(e); process.exit(1); });
"#;
    let out = Command::new("node")
        .args(["-e", script])
        .env("MYSQL2", &module)
        .env("PORT", proxy.port())
        .env("DB", &db.name)
        .env("TZ", "UTC")
        .output()
        .expect("node runs");
    let log = logged(general, &db.name);
    let stopped = proxy.stop();
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        r#"[1,1,[{"id":7,"amount":"12.34","name":"café"},{"id":8,"amount":"-0.50","name":""}],2]"#
    );
    assert_same_statements(&stopped, &log);

    let trace = &stopped.trace;
    let inserts = with_sql(trace, "insert into t2 values (?, ?, ?, ?, ?, ?, ?, ?, ?)");
    assert_eq!(inserts.len(), 2, "{}", stopped.trace_text);
    assert_eq!(
        inserts[0]["params"],
        json!([
            "7",
            "9007199254740993",
            "12.34",
            "café",
            null,
            "2026-11-30",
            "2026-11-30 12:34:56.789000",
            "0xdeadbeef",
            "0.25"
        ]),
        "{}",
        inserts[0]
    );
    assert_eq!(
        inserts[1]["params"],
        json!(["8", "-1", "-0.50", "", "n", null, null, "0x", "-1.5"]),
        "{}",
        inserts[1]
    );
    assert!(inserts.iter().all(|e| e["rows"] == 1));
    let select = only(
        trace,
        "select id, amount, name from t2 where id > ? and ratio < ? order by id",
    );
    assert_eq!(select["params"], json!(["1", "100.5"]), "{select}");
    assert_eq!(select["rows"], 2, "{select}");
    assert_eq!(only(trace, "START TRANSACTION")["txn"], "idle");
    let rolled_back = only(trace, "insert into t2 (id) values (?)");
    assert_eq!(
        (&rolled_back["txn"], &rolled_back["params"]),
        (&json!("open"), &json!(["9"]))
    );
    let after = only(trace, "select count(*) as n from t2");
    assert_eq!(after["txn"], "idle", "after COM_CHANGE_USER: {after}");
    // The server's own record of the values: each one the proxy decoded is
    // in the general log's Execute line.
    let executes: Vec<String> = mysql::entries(&log)
        .into_iter()
        .filter(|e| e.command == "Execute")
        .map(|e| e.argument)
        .collect();
    for (event, executed) in inserts.iter().chain([&select]).zip(&executes) {
        for p in event["params"].as_array().expect("params") {
            if let Some(p) = p.as_str().filter(|p| !p.starts_with("0x")) {
                assert!(
                    executed.contains(p),
                    "{p:?} is not in the server's {executed:?}"
                );
            }
        }
    }
}

/// sqlx's MySQL driver in this process: values bound in the binary protocol,
/// a transaction from `pool.begin()` committed, the transaction status exact.
#[test]
fn sqlx_binds_and_transaction_states() {
    if !mysql::available("sqlx through the proxy") {
        return;
    }
    let _turn = GENERAL_LOG.lock().unwrap_or_else(|e| e.into_inner());
    let db = TestDb::new("sqlx");
    db.direct(
        "create table things (id bigint primary key, small smallint, n int, ratio double, \
         ok bool, name text, at datetime(6), day date, raw blob, note text, \
         big bigint unsigned, real_ float, span time(6))",
    );
    let proxy = ProxyProcess::start(&upstream(), &[]);
    let url = db.url(&proxy.addr.to_string());
    let general = GeneralLog::start();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let counted: i64 = runtime.block_on(async {
        let pool = sqlx::mysql::MySqlPoolOptions::new()
            .max_connections(1)
            .connect(&url)
            .await
            .expect("connect through the proxy");
        let at = chrono::NaiveDate::from_ymd_opt(2026, 11, 25)
            .and_then(|d| d.and_hms_micro_opt(14, 50, 44, 500_000))
            .expect("time");
        let day = chrono::NaiveDate::from_ymd_opt(2026, 2, 28).expect("date");
        let mut tx = pool.begin().await.expect("begin");
        sqlx::query(
            "insert into things (id, small, n, ratio, ok, name, at, day, raw, note) \
             values (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(9_000_000_000_i64)
        .bind(7_i16)
        .bind(-42_i32)
        .bind(0.25_f64)
        .bind(true)
        .bind("café")
        .bind(at)
        .bind(day)
        .bind(vec![0xde_u8, 0xad])
        .bind(Option::<String>::None)
        .execute(&mut *tx)
        .await
        .expect("insert");
        sqlx::query("update things set n = n + ? where id = ?")
            .bind(2_i32)
            .bind(9_000_000_000_i64)
            .execute(&mut *tx)
            .await
            .expect("update");
        tx.commit().await.expect("commit");
        let span = chrono::NaiveTime::from_hms_micro_opt(13, 45, 7, 250_000).expect("time");
        let mut tx = pool.begin().await.expect("begin");
        sqlx::query("insert into things (id, big, real_, span) values (?, ?, ?, ?)")
            .bind(1_i64)
            .bind(u64::MAX)
            .bind(1.5_f32)
            .bind(span)
            .execute(&mut *tx)
            .await
            .expect("insert");
        tx.rollback().await.expect("rollback");
        let n: i64 = sqlx::query_scalar("select count(*) from things where n = ?")
            .bind(-40_i32)
            .fetch_one(&pool)
            .await
            .expect("count");
        pool.close().await;
        n
    });
    let log = logged(general, &db.name);
    let stopped = proxy.stop();
    assert_eq!(
        counted, 1,
        "the transaction committed its insert and update"
    );
    assert_same_statements(&stopped, &log);

    let trace = &stopped.trace;
    let insert = only(
        trace,
        "insert into things (id, small, n, ratio, ok, name, at, day, raw, note) \
         values (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
    );
    assert_eq!(
        insert["params"],
        json!([
            "9000000000",
            "7",
            "-42",
            "0.25",
            "1",
            "café",
            "2026-11-25 14:50:44.500000",
            "2026-02-28",
            "0xdead",
            null
        ]),
        "{insert}"
    );
    assert_eq!(
        (&insert["txn"], &insert["rows"]),
        (&json!("open"), &json!(1))
    );
    let update = only(trace, "update things set n = n + ? where id = ?");
    assert_eq!(update["params"], json!(["2", "9000000000"]), "{update}");
    assert_eq!(
        (&update["txn"], &update["rows"]),
        (&json!("open"), &json!(1))
    );
    let begin = trace
        .iter()
        .position(|e| e["sql"] == "BEGIN")
        .unwrap_or_else(|| panic!("a BEGIN in {}", stopped.trace_text));
    assert_eq!(trace[begin]["txn"], "idle");
    assert_eq!(only(trace, "COMMIT")["txn"], "open");
    let rolled_back = only(
        trace,
        "insert into things (id, big, real_, span) values (?, ?, ?, ?)",
    );
    assert_eq!(
        rolled_back["params"],
        json!(["1", "18446744073709551615", "1.5", "13:45:07.250000"]),
        "{rolled_back}"
    );
    assert_eq!(rolled_back["txn"], "open");
    assert_eq!(only(trace, "ROLLBACK")["txn"], "open");
    let begins: Vec<&Value> = trace.iter().filter(|e| e["sql"] == "BEGIN").collect();
    assert_eq!(begins.len(), 2, "{}", stopped.trace_text);
    assert!(begins.iter().all(|e| e["txn"] == "idle"), "{begins:?}");
    let count = only(trace, "select count(*) from things where n = ?");
    assert_eq!(count["txn"], "idle", "after COMMIT: {count}");
    assert_eq!(count["params"], json!(["-40"]));
    assert_eq!(count["rows"], 1);
    // Before BEGIN (sqlx's connection set-up) nothing is in a transaction.
    for e in &trace[..begin] {
        assert_eq!(e["txn"], "idle", "{e}");
    }
}

/// A client killed while the server runs its statement: the statement is
/// recorded with an error, and the proxy serves the next client.
#[test]
fn a_client_killed_mid_statement_is_recorded_and_the_proxy_serves_on() {
    if !mysql::available("a killed client") {
        return;
    }
    let _turn = GENERAL_LOG.lock().unwrap_or_else(|e| e.into_inner());
    let db = TestDb::new("kill");
    let proxy = ProxyProcess::start(&upstream(), &[]);
    let port = proxy.port();
    let general = GeneralLog::start();
    let started = Instant::now();
    let mut sleeper = mariadb(&port, &db.name)
        .args(["-e", "SELECT SLEEP(3)"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("mariadb starts");
    std::thread::sleep(Duration::from_millis(700));
    sleeper.kill().expect("kill the client");
    let _ = sleeper.wait();
    let next = mariadb(&port, &db.name)
        .args(["-N", "-e", "select 'still here'"])
        .output()
        .expect("mariadb runs");
    // The server finishes the sleep on its own: let it, so that the proxy's
    // stop cuts nothing.
    std::thread::sleep(
        Duration::from_secs(3).saturating_sub(started.elapsed()) + Duration::from_millis(500),
    );
    let log = logged(general, &db.name);
    let stopped = proxy.stop();
    assert_eq!(
        String::from_utf8_lossy(&next.stdout).trim(),
        "still here",
        "{}",
        text(&next)
    );
    assert_same_statements(&stopped, &log);
    let sleep = only(&stopped.trace, "SELECT SLEEP(3)");
    assert!(
        sleep["error"]["code"].is_string() && sleep["error"]["message"].is_string(),
        "the killed client's statement is recorded with an error: {sleep}"
    );
    assert_eq!(only(&stopped.trace, "select 'still here'")["rows"], 1);
}

/// An upstream nobody listens on: the client gets a MySQL error naming the
/// address, and the proxy goes on answering.
#[test]
fn an_unreachable_upstream_is_a_mysql_error_naming_the_address() {
    if !mysql::available("an unreachable upstream") {
        return;
    }
    let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = closed.local_addr().expect("addr").to_string();
    drop(closed);
    // --allow-empty: nothing reaches this upstream.
    let proxy = ProxyProcess::start(&format!("mysql://{addr}"), &["--allow-empty"]);
    for _ in 0..2 {
        let out = mariadb(&proxy.port(), "test")
            .args(["-e", "select 1"])
            .output()
            .expect("mariadb runs");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{}", text(&out));
        assert!(
            stderr.starts_with("ERROR ") && stderr.contains(&addr),
            "a MySQL error naming {addr}: {stderr}"
        );
    }
    let stopped = proxy.stop();
    assert!(stopped.trace.is_empty(), "{}", stopped.trace_text);
    assert!(stopped.stderr.contains(&addr), "{}", stopped.stderr);
}

/// Clients that require TLS: the proxy offers none (it clears the
/// capability in the server's greeting), so they stop with their own clear
/// error, and the proxy says on its stderr why the connection ended.
#[test]
fn clients_that_require_tls_fail_with_a_clear_message() {
    if !mysql::available("clients that require TLS") {
        return;
    }
    let Some(python) = corpus_python("clients that require TLS") else {
        return;
    };
    let db = TestDb::new("tls");
    let proxy = ProxyProcess::start(&upstream(), &[]);
    let port = proxy.port();
    // --ssl only prefers TLS: without it offered, the client goes on in
    // plain text, as it does with a server that has none.
    let preferred = mariadb(&port, &db.name)
        .args(["--ssl", "-N", "-e", "select 'preferred'"])
        .output()
        .expect("mariadb runs");
    assert_eq!(
        String::from_utf8_lossy(&preferred.stdout).trim(),
        "preferred",
        "{}",
        text(&preferred)
    );
    let required = mariadb(&port, &db.name)
        .args(["--ssl-verify-server-cert", "-e", "select 'required'"])
        .output()
        .expect("mariadb runs");
    assert!(!required.status.success(), "{}", text(&required));
    assert!(
        String::from_utf8_lossy(&required.stderr)
            .contains("SSL is required, but the server does not support it"),
        "{}",
        text(&required)
    );
    let script = r#"
import os, pymysql
try:
    pymysql.connect(host="127.0.0.1", port=int(os.environ["PORT"]), user="root",
                    ssl={"ca": "/etc/ssl/certs/ca-certificates.crt"})
except pymysql.err.OperationalError as e:
    print(e.args[0], e.args[1])
"#;
    let out = Command::new(&python)
        .args(["-c", script])
        .env("PORT", &port)
        .output()
        .expect("python runs");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "2026 SSL is required but the server doesn't support it",
        "{}",
        text(&out)
    );
    let plain = mariadb(&port, &db.name)
        .args(["-N", "-e", "select 'plain'"])
        .output()
        .expect("mariadb runs");
    assert_eq!(String::from_utf8_lossy(&plain.stdout).trim(), "plain");
    let stopped = proxy.stop();
    assert_eq!(
        traced_statements(&stopped.trace),
        [["select 'preferred'"], ["select 'plain'"]],
        "nothing of the clients that require TLS is recorded"
    );
    assert!(
        stopped.stderr.contains("TLS"),
        "the proxy says the client wanted TLS: {}",
        stopped.stderr
    );
}
