//! sysbench's OLTP modes as real clients through the MySQL/MariaDB proxy
//! (issue 17): `flowaudit run --upstream mysql://… -- sysbench MODE run`
//! against the machine's MariaDB, with the server's general query log on.
//!
//! sysbench counts what it sent (reads, writes, other, transactions, ignored
//! errors); the proxy must have recorded exactly that, each statement once,
//! with the server-side prepared statements (sysbench's default,
//! `--db-ps-mode=auto`: COM_STMT_PREPARE then COM_STMT_EXECUTE) recorded as
//! their prepared text with the bound values as params, which put back into
//! the text must give, connection by connection and in order, the statements
//! the general log shows. The transactions of the read/write modes must
//! appear as BEGIN … COMMIT, `txn: open` from the server's status flags
//! inside them.
//!
//! Needs sysbench (Debian package `sysbench`; .ci/run installs it) and
//! MariaDB on 127.0.0.1:3306; without them the tests say why and pass,
//! except with CI=true, where they fail.

mod support;

use std::collections::BTreeMap;
use std::net::TcpStream;
use std::process::Command;
use std::sync::Mutex;
use std::time::Duration;

use regex::Regex;
use serde_json::Value;
use support::server_logs::{GeneralLog, mysql, only_connections};

/// Client threads (one connection each) of every run.
const THREADS: usize = 4;
const TABLES: usize = 2;
/// Rows per table: enough that four threads choosing rows uniformly rarely
/// wait on each other's locks; the checks allow for the deadlocks sysbench
/// ignores and retries all the same.
const TABLE_SIZE: usize = 10_000;

/// The general log is the server's, one file at a time: the runs take turns
/// (which also keeps a two-core machine from running three at once).
static SERVER_LOG: Mutex<()> = Mutex::new(());

fn skip(reason: &str) {
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("{reason} (CI=true: sysbench and MariaDB are required)");
    }
    eprintln!("skipped: {reason}");
}

/// MariaDB on 127.0.0.1:3306 with its command-line client, and sysbench.
fn ready() -> bool {
    let server = TcpStream::connect_timeout(
        &"127.0.0.1:3306".parse().expect("address"),
        Duration::from_secs(2),
    )
    .is_ok()
        && Command::new("mysql").arg("--version").output().is_ok();
    if !server {
        skip("no MariaDB (and mysql client) on 127.0.0.1:3306");
        return false;
    }
    if !Command::new("sysbench")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
    {
        skip("no sysbench (apt-get install sysbench)");
        return false;
    }
    true
}

fn admin(sql: &str) {
    let out = mysql(&["-e", sql]);
    assert!(
        out.status.success(),
        "{sql}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A database of its own with sysbench's tables (`sysbench MODE prepare`,
/// straight on the server), dropped at the end.
struct Bench {
    db: String,
    mode: &'static str,
}

impl Bench {
    fn new(mode: &'static str, tag: &str) -> Bench {
        let db = format!("flowaudit_sysbench_{tag}_{}", std::process::id());
        admin(&format!(
            "DROP DATABASE IF EXISTS {db}; CREATE DATABASE {db}"
        ));
        let bench = Bench { db, mode };
        let out = Command::new("sysbench")
            .arg(mode)
            .args(bench.options())
            .args(["--mysql-host=127.0.0.1", "--mysql-port=3306", "prepare"])
            .output()
            .expect("sysbench runs");
        assert!(
            out.status.success(),
            "sysbench {mode} prepare: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        bench
    }

    fn options(&self) -> Vec<String> {
        vec![
            "--db-driver=mysql".into(),
            "--mysql-user=root".into(),
            format!("--mysql-db={}", self.db),
            format!("--tables={TABLES}"),
            format!("--table-size={TABLE_SIZE}"),
            "--rand-type=uniform".into(),
        ]
    }

    /// `flowaudit run -- sysbench MODE … run`, sysbench pointed at the proxy
    /// by the variables `run` sets, with the general log on for the run.
    fn run_through_proxy(&self, extra: &[&str]) -> Outcome {
        let _turn = SERVER_LOG.lock().unwrap_or_else(|e| e.into_inner());
        let dir = tempfile::tempdir().expect("temp dir");
        let trace = dir.path().join("trace.jsonl");
        let report = dir.path().join("report.json");
        let stdout = dir.path().join("sysbench.out");
        let general = GeneralLog::start();
        let out = Command::new(env!("CARGO_BIN_EXE_flowaudit"))
            .args(["run", "--upstream"])
            .arg(format!("mysql://root@127.0.0.1:3306/{}", self.db))
            .arg("--trace")
            .arg(&trace)
            .args(["--format", "json", "--output"])
            .arg(&report)
            .args(["--fail-on", "never", "--skip-invariants", "--"])
            .args([
                "sh",
                "-c",
                r#"out="$1"; shift; exec sysbench "$@" --mysql-host="$MYSQL_HOST" --mysql-port="$MYSQL_TCP_PORT" run >"$out" 2>&1"#,
                "sh",
            ])
            .arg(&stdout)
            .arg(self.mode)
            .args(self.options())
            .args(extra)
            .output()
            .expect("flowaudit runs");
        let log = only_connections(&general.into_text(), &self.db);
        let sysbench = std::fs::read_to_string(&stdout).unwrap_or_default();
        assert!(
            out.status.success(),
            "flowaudit run -- sysbench {} exited {:?}\nsysbench:\n{sysbench}\nflowaudit:\n{}",
            self.mode,
            out.status.code(),
            String::from_utf8_lossy(&out.stderr)
        );
        let trace: Vec<Value> = std::fs::read_to_string(&trace)
            .expect("trace written")
            .lines()
            .map(|l| serde_json::from_str(l).expect("trace line is JSON"))
            .collect();
        let report: Value =
            serde_json::from_str(&std::fs::read_to_string(&report).expect("report written"))
                .expect("report is JSON");
        Outcome {
            counts: Counts::of(&sysbench),
            sysbench,
            trace,
            report,
            general: general_log_statements(&log),
        }
    }
}

impl Drop for Bench {
    fn drop(&mut self) {
        let _ = mysql(&["-e", &format!("DROP DATABASE IF EXISTS {}", self.db)]);
    }
}

/// What sysbench says it sent: its "SQL statistics".
#[derive(Debug, Default, PartialEq, Eq)]
struct Counts {
    read: u64,
    write: u64,
    other: u64,
    total: u64,
    transactions: u64,
    ignored_errors: u64,
    reconnects: u64,
}

impl Counts {
    fn of(out: &str) -> Counts {
        let field = |name: &str| -> u64 {
            let re = Regex::new(&format!(r"(?m)^\s*{name}:\s+(\d+)")).expect("regex");
            re.captures(out)
                .and_then(|c| c[1].parse().ok())
                .unwrap_or_else(|| panic!("no `{name}:` in sysbench's output:\n{out}"))
        };
        Counts {
            read: field("read"),
            write: field("write"),
            other: field("other"),
            total: field("total"),
            transactions: field("transactions"),
            ignored_errors: field("ignored errors"),
            reconnects: field("reconnects"),
        }
    }
}

struct Outcome {
    sysbench: String,
    counts: Counts,
    trace: Vec<Value>,
    report: Value,
    /// Per connection of the general log, the statements it executed
    /// (Query and Execute lines), in order.
    general: Vec<Vec<String>>,
}

/// The Query and Execute arguments of each connection in a general log,
/// connections in the order of their ids. An entry is `[time]\t\t id
/// Command\tArgument`; sysbench's statements are one line each.
fn general_log_statements(log: &str) -> Vec<Vec<String>> {
    let entry = Regex::new(r"^(?:\d{6} [ \d]\d:\d\d:\d\d)?\t+\s*(\d+) (Query|Execute)\t(.*)$")
        .expect("regex");
    let mut by_conn: BTreeMap<u64, Vec<String>> = BTreeMap::new();
    for line in log.lines() {
        if let Some(c) = entry.captures(line) {
            let id: u64 = c[1].parse().expect("connection id");
            by_conn.entry(id).or_default().push(c[3].to_owned());
        }
    }
    by_conn.into_values().collect()
}

fn sql(s: &Value) -> &str {
    s["sql"].as_str().expect("every trace line has its sql")
}

fn params(s: &Value) -> Vec<Option<&str>> {
    s["params"]
        .as_array()
        .map(|p| p.iter().map(Value::as_str).collect())
        .unwrap_or_default()
}

fn failed(s: &Value) -> bool {
    s.get("error").is_some_and(|e| !e.is_null())
}

fn verb(s: &Value) -> String {
    sql(s)
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_ascii_uppercase()
}

/// sysbench's kinds (sb_counter_type: read for SELECT, write for
/// INSERT/UPDATE/DELETE, other for the rest, BEGIN and COMMIT here).
fn kind(s: &Value) -> &'static str {
    match verb(s).as_str() {
        "SELECT" => "read",
        "INSERT" | "UPDATE" | "DELETE" | "REPLACE" => "write",
        _ => "other",
    }
}

/// The statement as the general log writes an executed prepared statement:
/// each `?` replaced by its value, strings quoted (sysbench's strings are
/// digits and dashes, so nothing to escape, and never a bare number).
fn with_values(s: &Value) -> String {
    let values = params(s);
    let mut values = values.iter();
    let mut out = String::new();
    for c in sql(s).chars() {
        if c != '?' {
            out.push(c);
            continue;
        }
        match values.next() {
            Some(Some(v)) if v.parse::<i64>().is_ok() => out.push_str(v),
            Some(Some(v)) => {
                out.push('\'');
                out.push_str(v);
                out.push('\'');
            }
            Some(None) => out.push_str("NULL"),
            None => out.push('?'),
        }
    }
    out
}

/// The trace's statements by connection, each connection's in trace order.
fn by_connection(trace: &[Value]) -> BTreeMap<String, Vec<&Value>> {
    let mut conns: BTreeMap<String, Vec<&Value>> = BTreeMap::new();
    for s in trace {
        let conn = match &s["conn"] {
            Value::Number(n) => n.to_string(),
            Value::String(s) => s.clone(),
            other => panic!("a trace line without its connection: {other} in {s}"),
        };
        conns.entry(conn).or_default().push(s);
    }
    conns
}

/// The checks every mode shares: sysbench succeeded, the proxy recorded
/// each statement sysbench sent once (by kind, errors apart), in the
/// proxy's fields, with the values the server executed.
fn check_common(o: &Outcome, prepared: bool) {
    let c = &o.counts;
    assert!(
        !o.sysbench.contains("FATAL") && c.total > 0 && c.reconnects == 0,
        "sysbench through the proxy:\n{}",
        o.sysbench
    );
    assert_eq!(c.total, c.read + c.write + c.other, "{}", o.sysbench);

    // Every statement recorded, none dropped: the report's counts and the
    // trace against what sysbench sent (an ignored error is a statement
    // sent that sysbench counts apart: sb_counter SB_CNT_ERROR).
    let capture = &o.report["capture"];
    assert_eq!(capture["dropped"], 0, "{capture}");
    assert_eq!(capture["undecoded_frames"], 0, "{capture}");
    assert_eq!(capture["connections"], THREADS as u64, "{capture}");
    assert_eq!(
        capture["recorded"],
        c.total + c.ignored_errors,
        "{capture} against sysbench's {c:?}"
    );
    assert_eq!(o.trace.len() as u64, c.total + c.ignored_errors);
    assert_eq!(
        o.report["summary"]["statements"],
        c.total + c.ignored_errors
    );

    let mut recorded: BTreeMap<&str, u64> = BTreeMap::new();
    for s in o.trace.iter().filter(|s| !failed(s)) {
        *recorded.entry(kind(s)).or_default() += 1;
    }
    let got = |k: &str| recorded.get(k).copied().unwrap_or(0);
    assert_eq!(
        (got("read"), got("write"), got("other")),
        (c.read, c.write, c.other),
        "statements recorded (read, write, other) against sysbench's {c:?}"
    );
    let errors: Vec<&Value> = o.trace.iter().filter(|s| failed(s)).collect();
    assert_eq!(errors.len() as u64, c.ignored_errors, "{errors:?}");
    for e in &errors {
        // sysbench ignores deadlocks and lock wait timeouts (its default
        // --mysql-ignore-errors=1213,1020,1205): SQLSTATE 40001 and HY000.
        let code = e["error"]["code"].as_str().unwrap_or_default();
        assert!(code == "40001" || code == "HY000", "{e}");
    }

    for s in &o.trace {
        assert_eq!(s["source"], "mysql-proxy", "{s}");
        for field in ["ts", "txn", "duration_us"] {
            assert!(!s[field].is_null(), "no {field} in {s}");
        }
        let marks = sql(s).matches('?').count();
        if prepared {
            // Prepared text, one value per `?`, no NULLs among sysbench's.
            assert_eq!(params(s).len(), marks, "{s}");
            assert!(params(s).iter().all(Option::is_some), "{s}");
            if kind(s) != "other" {
                assert!(marks > 0, "a statement not prepared: {s}");
            }
        } else {
            assert_eq!(marks, 0, "{s}");
            assert!(params(s).is_empty(), "{s}");
        }
        if !failed(s) {
            // One row by primary key; each write changes exactly one row.
            let one_row = (sql(s).starts_with("SELECT c FROM sbtest") && sql(s).ends_with("id=?"))
                || kind(s) == "write";
            if one_row && c.ignored_errors == 0 {
                assert_eq!(s["rows"], 1, "{s}");
            }
        }
    }

    // With their values put back, each connection's statements are what
    // the server executed on one of its connections, in the same order.
    let mut ours: Vec<Vec<String>> = by_connection(&o.trace)
        .values()
        .map(|stmts| stmts.iter().map(|s| with_values(s)).collect())
        .collect();
    let mut server = o.general.clone();
    ours.sort();
    server.sort();
    assert_eq!(ours.len(), server.len(), "connections with statements");
    for (a, b) in ours.iter().zip(&server) {
        if a != b {
            let at = a
                .iter()
                .zip(b)
                .position(|(x, y)| x != y)
                .unwrap_or(a.len().min(b.len()));
            panic!(
                "a connection's statements differ from the general log's at {at} ({} and {} statements):\n  proxy: {:?}\n  log:   {:?}",
                a.len(),
                b.len(),
                a.get(at),
                b.get(at)
            );
        }
    }
}

/// The transactions: on each connection, BEGIN (with no transaction open,
/// unless the statement before it failed and left one, as a lock wait
/// timeout does) … COMMIT, every statement from the first after BEGIN to
/// COMMIT itself with `txn: open`, nothing outside. Returns the COMMITs.
fn check_transactions(trace: &[Value]) -> u64 {
    let mut commits = 0;
    for (conn, stmts) in by_connection(trace) {
        let mut open = false;
        let mut after_error = false;
        for s in stmts {
            let v = verb(s);
            if v == "BEGIN" {
                assert!(
                    s["txn"] == "idle" || after_error,
                    "connection {conn}: BEGIN inside a transaction: {s}"
                );
                open = true;
            } else {
                assert!(open, "connection {conn}: outside a transaction: {s}");
                assert_eq!(s["txn"], "open", "connection {conn}: {s}");
                if v == "COMMIT" {
                    open = false;
                    commits += 1;
                }
            }
            after_error = failed(s);
            if after_error {
                // sysbench begins the event again (sysbench.hooks, restart).
                open = false;
            }
        }
        assert!(!open, "connection {conn} ended inside a transaction");
    }
    commits
}

#[test]
fn oltp_read_write_through_the_proxy() {
    if !ready() {
        return;
    }
    let bench = Bench::new("oltp_read_write", "rw");
    let o = bench.run_through_proxy(&[&format!("--threads={THREADS}"), "--events=200", "--time=0"]);
    check_common(&o, true);
    let c = &o.counts;
    assert_eq!(c.transactions, 200, "{}", o.sysbench);
    // Per transaction: 10 point selects and 4 ranges, 2 updates, a delete
    // and an insert, BEGIN and COMMIT (oltp_common.lua's defaults).
    assert_eq!(c.read, 14 * 200);
    assert_eq!(c.write, 4 * 200);
    assert_eq!(check_transactions(&o.trace), c.transactions);
    let begins = o.trace.iter().filter(|s| verb(s) == "BEGIN").count() as u64;
    assert_eq!(begins, c.transactions + c.ignored_errors);
    // The report counts the explicit transactions too.
    let transactions: u64 = o.report["flows"]
        .as_array()
        .expect("flows")
        .iter()
        .flat_map(|f| f["steps"].as_array().cloned().unwrap_or_default())
        .map(|s| s["transactions"].as_u64().unwrap_or(0))
        .sum();
    assert_eq!(transactions, begins, "{}", o.report["flows"]);
}

#[test]
fn oltp_write_only_through_the_proxy() {
    if !ready() {
        return;
    }
    let bench = Bench::new("oltp_write_only", "wo");
    let o = bench.run_through_proxy(&[&format!("--threads={THREADS}"), "--events=300", "--time=0"]);
    check_common(&o, true);
    let c = &o.counts;
    assert_eq!(c.transactions, 300, "{}", o.sysbench);
    assert_eq!(c.read, 0);
    assert_eq!(c.write, 4 * 300);
    assert_eq!(check_transactions(&o.trace), c.transactions);
}

#[test]
fn oltp_point_select_through_the_proxy() {
    if !ready() {
        return;
    }
    let bench = Bench::new("oltp_point_select", "ps");
    let o =
        bench.run_through_proxy(&[&format!("--threads={THREADS}"), "--events=2000", "--time=0"]);
    check_common(&o, true);
    let c = &o.counts;
    // One SELECT per event, in autocommit: no transaction is ever open.
    assert_eq!((c.transactions, c.read, c.other), (2000, 2000, 0));
    for s in &o.trace {
        assert_eq!(s["txn"], "idle", "{s}");
        let id: usize = params(s)[0]
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("an integer id: {s}"));
        assert!((1..=TABLE_SIZE).contains(&id), "{s}");
    }
}

/// The same read/write transactions sent as text (COM_QUERY), sysbench's
/// `--db-ps-mode=disable`: the statements as sent, no params.
#[test]
fn oltp_read_write_as_text_through_the_proxy() {
    if !ready() {
        return;
    }
    let bench = Bench::new("oltp_read_write", "text");
    let o = bench.run_through_proxy(&[
        &format!("--threads={THREADS}"),
        "--events=100",
        "--time=0",
        "--db-ps-mode=disable",
    ]);
    check_common(&o, false);
    assert_eq!(o.counts.transactions, 100, "{}", o.sysbench);
    assert_eq!(check_transactions(&o.trace), o.counts.transactions);
}

/// The general log's entries are what the comparisons above rest on: a
/// check of the parser on lines as MariaDB 10.11 writes them.
#[test]
fn general_log_entries_are_read_per_connection() {
    let log = "Time\t\t    Id Command\tArgument\n\
               261130 22:06:40\t    13 Connect\troot@127.0.0.1 on sb using TCP/IP\n\
               \t\t    13 Prepare\tSELECT c FROM sbtest1 WHERE id=?\n\
               \t\t    14 Query\tBEGIN\n\
               \t\t    13 Execute\tSELECT c FROM sbtest1 WHERE id=501\n\
               261130 22:06:41\t    14 Execute\tUPDATE sbtest2 SET c='1-2' WHERE id=7\n\
               \t\t    13 Close stmt\t\n";
    assert_eq!(
        general_log_statements(log),
        vec![
            vec!["SELECT c FROM sbtest1 WHERE id=501".to_owned()],
            vec![
                "BEGIN".to_owned(),
                "UPDATE sbtest2 SET c='1-2' WHERE id=7".to_owned()
            ],
        ]
    );
    let s = serde_json::json!({"sql": "UPDATE sbtest2 SET c=? WHERE id=?", "params": ["1-2", "7"]});
    assert_eq!(with_values(&s), "UPDATE sbtest2 SET c='1-2' WHERE id=7");
}
