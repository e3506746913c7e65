//! `flowaudit run` on MySQL. `--inject-fault` through the MySQL proxy, on
//! the machine's MariaDB: the server itself raises SQLSTATE FA001 (`SIGNAL`,
//! error 1644) in place of
//! the chosen statement, the client (the `mysql` command-line client, run by
//! `flowaudit run` with MYSQL_HOST and MYSQL_TCP_PORT) gets that error, and
//! InnoDB's semantics follow: only the failed statement is undone, so a
//! COMMIT after it keeps the others (`partial-write-on-failure`), and a
//! failed COMMIT leaves the transaction open until the disconnect rolls it
//! back. And an upstream where no MySQL server answers is exit 2 before
//! the command runs.
//!
//! Needs MariaDB on 127.0.0.1:3306 (root, no password) and the `mysql`
//! client; without them the tests say why and skip, except with CI=true,
//! where they fail.

use std::path::Path;
use std::process::{Command, Output};

use serde_json::Value;

fn flowaudit() -> Command {
    Command::new(env!("CARGO_BIN_EXE_flowaudit"))
}

fn mysql(args: &[&str]) -> Output {
    Command::new("mysql")
        .args(["-h", "127.0.0.1", "-P", "3306", "-u", "root", "--batch"])
        .arg("--skip-column-names")
        .args(args)
        .output()
        .expect("mysql runs")
}

fn available() -> bool {
    let up = Command::new("mysql")
        .args([
            "-h",
            "127.0.0.1",
            "-P",
            "3306",
            "-u",
            "root",
            "-e",
            "select 1",
        ])
        .output()
        .is_ok_and(|o| o.status.success());
    if !up {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "CI=true: MariaDB must answer on 127.0.0.1:3306 with the mysql client installed"
        );
        eprintln!("skipped: MariaDB does not answer on 127.0.0.1:3306 (or no mysql client)");
    }
    up
}

/// A database of its own with one table, dropped when done.
struct Db(String);

impl Db {
    fn new(tag: &str) -> Db {
        let name = format!("fa_fault_{tag}_{}", std::process::id());
        let made = mysql(&[
            "-e",
            &format!(
                "DROP DATABASE IF EXISTS {name}; CREATE DATABASE {name}; \
                 CREATE TABLE {name}.t (id INT PRIMARY KEY) ENGINE=InnoDB"
            ),
        ]);
        assert!(made.status.success(), "{made:?}");
        Db(name)
    }

    fn ids(&self) -> String {
        let out = mysql(&[
            "-e",
            &format!(
                "SELECT COALESCE(GROUP_CONCAT(id ORDER BY id), '') FROM {}.t",
                self.0
            ),
        ]);
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }
}

impl Drop for Db {
    fn drop(&mut self) {
        let _ = mysql(&["-e", &format!("DROP DATABASE IF EXISTS {}", self.0)]);
    }
}

const SCRIPT: &str = "SET @flowaudit_step = 'checkout';\nBEGIN;\nINSERT INTO t VALUES (1);\n\
                      INSERT INTO t VALUES (2);\nINSERT INTO t VALUES (3);\nCOMMIT;\n";

/// `flowaudit run --inject-fault FAULT` of the mysql client on the script;
/// the run's output, its trace and its report.
fn run_with_fault(db: &Db, fault: &str, dir: &Path) -> (Output, Vec<Value>, Value) {
    let script = dir.join("script.sql");
    std::fs::write(&script, SCRIPT).expect("script");
    let trace = dir.join("trace.jsonl");
    let report = dir.join("report.json");
    let out = flowaudit()
        .current_dir(dir)
        .args(["run", "--skip-invariants", "--upstream"])
        .arg(format!("mysql://root@127.0.0.1:3306/{}", db.0))
        .args([
            "--inject-fault",
            fault,
            "--fail-on",
            "never",
            "--format",
            "json",
        ])
        .arg("--trace")
        .arg(&trace)
        .arg("--output")
        .arg(&report)
        .args(["--", "sh", "-c"])
        .arg(format!(
            "mysql --force -h \"$MYSQL_HOST\" -P \"$MYSQL_TCP_PORT\" -u root {} < '{}'",
            db.0,
            script.display()
        ))
        .output()
        .expect("flowaudit runs");
    let events = std::fs::read_to_string(&trace)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON trace line"))
        .collect();
    let report = std::fs::read_to_string(&report)
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or(Value::Null);
    (out, events, report)
}

fn rules(report: &Value) -> Vec<(String, String)> {
    let mut found: Vec<(String, String)> = report["findings"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|f| {
                    (
                        f["rule"].as_str().unwrap_or_default().to_owned(),
                        f["step"].as_str().unwrap_or_default().to_owned(),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    found.sort();
    found
}

fn error_code(event: &Value) -> Option<&str> {
    event["error"]["code"].as_str()
}

#[test]
fn a_failed_statement_is_undone_alone_and_the_commit_keeps_the_rest() {
    if !available() {
        return;
    }
    let db = Db::new("stmt");
    let dir = tempfile::tempdir().expect("temp dir");
    // Statement 3 of the step: BEGIN, INSERT 1, INSERT 2 (the marker does not count).
    let (out, events, report) = run_with_fault(&db, "checkout:3", dir.path());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("ERROR 1644 (FA001)") && stderr.contains("injected fault at checkout:3"),
        "the client gets the server's error: {stderr}"
    );
    let seen: Vec<(&str, Option<&str>, Option<&str>)> = events
        .iter()
        .map(|e| {
            (
                e["sql"].as_str().unwrap_or_default(),
                e["txn"].as_str(),
                error_code(e),
            )
        })
        .collect();
    assert_eq!(
        seen,
        vec![
            ("SET @flowaudit_step = 'checkout'", Some("idle"), None),
            ("BEGIN", Some("idle"), None),
            ("INSERT INTO t VALUES (1)", Some("open"), None),
            ("INSERT INTO t VALUES (2)", Some("open"), Some("FA001")),
            ("INSERT INTO t VALUES (3)", Some("open"), None),
            ("COMMIT", Some("open"), None),
        ],
        "the statement as the application sent it, failed with FA001"
    );
    assert!(events.iter().all(|e| e["source"] == "mysql-proxy"));
    assert_eq!(db.ids(), "1,3", "InnoDB undid the failed statement only");
    assert_eq!(
        rules(&report),
        vec![
            ("commit-after-error".into(), "checkout".into()),
            ("partial-write-on-failure".into(), "checkout".into()),
        ],
        "{report:#}"
    );
    let notes = report.to_string();
    assert!(
        notes.contains("injected fault checkout:3") && notes.contains("INSERT INTO t VALUES (2)"),
        "the report says which statement failed: {notes}"
    );
}

#[test]
fn a_failed_commit_leaves_the_transaction_to_be_rolled_back() {
    if !available() {
        return;
    }
    let db = Db::new("commit");
    let dir = tempfile::tempdir().expect("temp dir");
    let (out, events, _) = run_with_fault(&db, "checkout:commit", dir.path());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("injected fault at checkout:commit"),
        "{out:?}"
    );
    let commit = events
        .iter()
        .find(|e| e["sql"] == "COMMIT")
        .expect("the COMMIT is recorded");
    assert_eq!(error_code(commit), Some("FA001"), "{commit}");
    assert_eq!(commit["txn"], "open");
    assert_eq!(db.ids(), "", "the disconnect rolled the transaction back");
}

#[test]
fn a_fault_that_never_fires_is_exit_2() {
    if !available() {
        return;
    }
    let db = Db::new("miss");
    let dir = tempfile::tempdir().expect("temp dir");
    let (out, _, _) = run_with_fault(&db, "payment:1", dir.path());
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("payment") && stderr.contains("checkout"),
        "{stderr}"
    );
    assert_eq!(db.ids(), "1,2,3", "nothing failed");
}

/// `run --upstream mysql://…` checks for a MySQL greeting before it runs the
/// command: a command that ran against no database proves nothing.
#[test]
fn run_against_an_unreachable_mysql_upstream_is_exit_2_and_never_runs_the_command() {
    let dir = tempfile::tempdir().expect("temp dir");
    let touched = dir.path().join("ran");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let out = flowaudit()
        .current_dir(dir.path())
        .args(["run", "--skip-invariants", "--upstream"])
        .arg(format!("mysql://root:hunter2@127.0.0.1:{port}/shop"))
        .args(["--", "touch"])
        .arg(&touched)
        .output()
        .expect("flowaudit runs");
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!(
            "no MySQL/MariaDB server answers at 127.0.0.1:{port}"
        )) && err.contains("the command was not run")
            && !err.contains("hunter2"),
        "{err}"
    );
    assert!(!touched.exists(), "the command ran");
}
