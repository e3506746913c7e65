//! Shared by the tests that put real MySQL clients in front of the machine's
//! MariaDB: a database of its own per test, the general query log read back
//! as each connection's statements, and the same from a proxy's trace, so
//! that a test can say "the proxy recorded what the server ran".
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::process::{Command, Output};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, Ordering};

use serde_json::Value;

use super::server_logs::mysql;

pub const MARIADB_ADDR: &str = "127.0.0.1:3306";

/// True when MariaDB answers on 127.0.0.1:3306 and its `mariadb` client is
/// installed. Without them the test says why and skips, except in CI
/// (`CI=true`), where it fails.
pub fn available(what: &str) -> bool {
    let reason = if Command::new("mariadb").arg("--version").output().is_err() {
        "the mariadb client is not installed (Debian's mariadb-client)"
    } else if !mysql(&["-e", "select 1"]).status.success() {
        "MariaDB does not answer on 127.0.0.1:3306"
    } else {
        return true;
    };
    skip(what, reason);
    false
}

/// Says why `what` does not run; in CI that is a failure.
pub fn skip(what: &str, reason: &str) {
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("{what}: {reason} (required in CI)");
    }
    eprintln!("skipping {what}: {reason}");
}

/// The general log is the server's, one file at a time: the tests of one
/// binary that switch it on take turns.
pub static GENERAL_LOG: Mutex<()> = Mutex::new(());

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// A MariaDB database of its own for one test, dropped at the end.
#[derive(Debug)]
pub struct TestDb {
    pub name: String,
}

impl TestDb {
    pub fn new(tag: &str) -> TestDb {
        let name = format!(
            "flowaudit_my_{tag}_{}_{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        let out = mysql(&[
            "-e",
            &format!("DROP DATABASE IF EXISTS {name}; CREATE DATABASE {name}"),
        ]);
        assert!(out.status.success(), "{}", text(&out));
        TestDb { name }
    }

    /// Runs SQL on the server directly (not through a proxy); its output.
    pub fn direct(&self, sql: &str) -> String {
        let out = mysql(&["-D", &self.name, "-e", sql]);
        assert!(out.status.success(), "{sql}: {}", text(&out));
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }

    /// `mysql://root@ADDR/DB`.
    pub fn url(&self, addr: &str) -> String {
        format!("mysql://root@{addr}/{}", self.name)
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let _ = mysql(&["-e", &format!("DROP DATABASE IF EXISTS {}", self.name)]);
    }
}

pub fn text(out: &Output) -> String {
    format!(
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// One entry of the general log: `[time]\t<id> <Command>\t<argument>`, the
/// argument with the lines that continue it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub conn: u64,
    pub command: String,
    pub argument: String,
}

/// The entries of a MariaDB general log, in order. A line that is not an
/// entry (nor the header) continues the argument before it: the server
/// writes a statement's newlines as they are.
pub fn entries(log: &str) -> Vec<Entry> {
    let mut out: Vec<Entry> = Vec::new();
    for line in log.lines() {
        if let Some(e) = entry(line) {
            out.push(e);
        } else if line.starts_with('/') || line.starts_with("Tcp port") || line.starts_with("Time")
        {
        } else if let Some(last) = out.last_mut() {
            last.argument.push('\n');
            last.argument.push_str(line);
        }
    }
    out
}

fn entry(line: &str) -> Option<Entry> {
    let (_, rest) = line.split_once('\t')?;
    let rest = rest.trim_start_matches(['\t', ' ']);
    let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
    let after = rest.get(digits..)?.strip_prefix(' ')?;
    if digits == 0 || !after.starts_with(|c: char| c.is_ascii_uppercase()) {
        return None;
    }
    let (command, argument) = after.split_once('\t').unwrap_or((after, ""));
    Some(Entry {
        conn: rest[..digits].parse().ok()?,
        command: command.trim_end().to_owned(),
        argument: argument.to_owned(),
    })
}

/// Each connection's statements as the server logged them, connections in
/// the order they connected: `Query` entries as sent, an `Execute` as the
/// text its `Prepare` had (with `?`: what a trace records for
/// COM_STMT_EXECUTE), `Init DB` as ``USE `db` ``. Pings, quits, field lists,
/// prepares and closes are not statements.
pub fn logged_statements(log: &str) -> Vec<Vec<String>> {
    let mut order: Vec<u64> = Vec::new();
    let mut by_conn: BTreeMap<u64, Vec<String>> = BTreeMap::new();
    let mut prepared: BTreeMap<u64, Vec<String>> = BTreeMap::new();
    for e in entries(log) {
        if !order.contains(&e.conn) {
            order.push(e.conn);
        }
        let statements = by_conn.entry(e.conn).or_default();
        match e.command.as_str() {
            "Query" => statements.push(e.argument),
            "Init DB" => statements.push(format!("USE `{}`", e.argument)),
            "Prepare" => prepared.entry(e.conn).or_default().push(e.argument),
            "Execute" => {
                let template = prepared
                    .get(&e.conn)
                    .and_then(|p| p.iter().rev().find(|t| fills(t, &e.argument)))
                    .cloned()
                    .unwrap_or_else(|| format!("(no Prepare matches) {}", e.argument));
                statements.push(template);
            }
            _ => {}
        }
    }
    order
        .into_iter()
        .map(|c| by_conn.remove(&c).unwrap_or_default())
        .filter(|s| !s.is_empty())
        .collect()
}

/// Whether `executed` is `template` with each `?` replaced by something
/// (the general log writes an Execute with its values in place).
pub fn fills(template: &str, executed: &str) -> bool {
    let mut parts = template.split('?');
    let Some(first) = parts.next() else {
        return false;
    };
    let Some(mut rest) = executed.strip_prefix(first) else {
        return false;
    };
    let parts: Vec<&str> = parts.collect();
    for (i, part) in parts.iter().enumerate() {
        let last = i + 1 == parts.len();
        if last {
            return rest.ends_with(part) && rest.len() > part.len();
        }
        // A value is at least one character; find the next literal after it.
        match rest.get(1..).and_then(|r| r.find(part)) {
            Some(at) if !part.is_empty() => rest = &rest[1 + at + part.len()..],
            Some(_) => rest = &rest[1..],
            None => return false,
        }
    }
    rest.is_empty()
}

/// A trace's statements per connection (`conn`), connections in the order
/// of their first statement's start (`ts`): a trace is written as
/// statements complete.
pub fn traced_statements(trace: &[Value]) -> Vec<Vec<String>> {
    let mut by_conn: BTreeMap<String, (String, Vec<String>)> = BTreeMap::new();
    for e in trace {
        let ts = e["ts"].as_str().unwrap_or_default().to_owned();
        let (first, statements) = by_conn
            .entry(e["conn"].to_string())
            .or_insert_with(|| (ts.clone(), Vec::new()));
        if ts < *first {
            *first = ts;
        }
        statements.push(e["sql"].as_str().unwrap_or_default().to_owned());
    }
    let mut conns: Vec<(String, Vec<String>)> = by_conn.into_values().collect();
    conns.sort_by(|a, b| a.0.cmp(&b.0));
    conns.into_iter().map(|(_, s)| s).collect()
}

/// The events of a trace whose SQL contains `needle`.
pub fn with_sql<'a>(trace: &'a [Value], needle: &str) -> Vec<&'a Value> {
    trace
        .iter()
        .filter(|e| e["sql"].as_str().is_some_and(|s| s.contains(needle)))
        .collect()
}

/// The one event whose SQL is exactly `sql`.
pub fn only<'a>(trace: &'a [Value], sql: &str) -> &'a Value {
    let found: Vec<&Value> = trace.iter().filter(|e| e["sql"] == sql).collect();
    assert_eq!(found.len(), 1, "one event {sql:?} in {trace:#?}");
    found[0]
}

/// A JSON Lines trace read back.
pub fn read_trace(path: &std::path::Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).expect("trace line is JSON"))
        .collect()
}
