//! Server logs from the real servers: a throwaway PostgreSQL cluster logging
//! to stderr, csvlog and jsonlog at once, and MariaDB's general query log,
//! each fed the workloads in tests/workloads/ and then analyzed.
//!
//! When a server is missing the test says why and passes, unless CI=true.
//! FLOWAUDIT_KEEP_LOGS=DIR copies the logs there (how tests/fixtures/logs/
//! was made).

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;

use flowaudit::capture::logs::{self, LogFormat, LogOptions, LogReader};
use flowaudit::model::Event;
use support::server_logs::{GeneralLog, LoggingCluster, as_postgres, only_connections, run_ok};

fn skip(reason: &str) {
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("{reason} (CI=true: a missing server fails the test)");
    }
    eprintln!("skipped: {reason}");
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn keep(path: &Path, name: &str) {
    if let Ok(dir) = std::env::var("FLOWAUDIT_KEEP_LOGS") {
        std::fs::create_dir_all(&dir).expect("keep dir");
        std::fs::copy(path, Path::new(&dir).join(name)).expect("copy log");
    }
}

fn events(path: &Path, format: LogFormat) -> (Vec<Event>, logs::LogSummary) {
    let options = LogOptions::default();
    let input = logs::open(path, |f| Box::new(f)).expect("open log");
    let mut reader = LogReader::new(input, path, format, false, &options).expect("reader");
    let events: Vec<Event> = reader.by_ref().map(|e| e.expect("event")).collect();
    (events, reader.summary().clone())
}

/// The JSON report of `flowaudit analyze` on a file.
fn analyze(path: &Path) -> serde_json::Value {
    let out = assert_cmd::Command::cargo_bin("flowaudit")
        .expect("binary")
        .args([
            "analyze",
            "--skip-invariants",
            "--format",
            "json",
            "--fail-on",
            "never",
        ])
        .arg(path)
        .output()
        .expect("runs");
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("json report")
}

/// (flow, step, statements, queries, connections) per step, sorted.
fn steps(report: &serde_json::Value) -> Vec<(String, String, u64, u64, u64)> {
    let mut out = Vec::new();
    for flow in report["flows"].as_array().expect("flows") {
        for s in flow["steps"].as_array().expect("steps") {
            out.push((
                flow["name"].as_str().unwrap_or_default().to_owned(),
                s["name"].as_str().unwrap_or_default().to_owned(),
                s["statements"].as_u64().unwrap_or_default(),
                s["queries"].as_u64().unwrap_or_default(),
                s["connections"].as_u64().unwrap_or_default(),
            ));
        }
    }
    out.sort();
    out
}

/// (rule, flow, step) per finding.
fn findings(report: &serde_json::Value) -> Vec<(String, String, String)> {
    report["findings"]
        .as_array()
        .expect("findings")
        .iter()
        .map(|f| {
            (
                f["rule"].as_str().unwrap_or_default().to_owned(),
                f["flow"].as_str().unwrap_or_default().to_owned(),
                f["step"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}

fn step(flow: &str, name: &str, statements: u64, queries: u64) -> (String, String, u64, u64, u64) {
    (flow.into(), name.into(), statements, queries, 1)
}

#[test]
fn postgres_logs_in_three_formats_give_the_workloads_statements_and_findings() {
    if Command::new("psql").arg("--version").output().is_err() {
        return skip("psql is not installed");
    }
    let Some(cluster) = LoggingCluster::start_logging("stderr,csvlog,jsonlog") else {
        return skip("no PostgreSQL server binaries under /usr/lib/postgresql/*/bin");
    };
    let port = cluster.port;
    let work = cluster.dir();

    let workloads = root().join("tests/workloads");
    let script = work.join("pg_shop.sql");
    std::fs::copy(workloads.join("pg_shop.sql"), &script).expect("copy workload");
    let bench = work.join("pg_stock.pgbench");
    std::fs::copy(workloads.join("pg_stock.pgbench"), &bench).expect("copy workload");
    // The workloads run through flowaudit's proxy, so that one run gives both
    // captures: the server's logs and the proxy's trace, which must agree.
    let proxy =
        support::pg::ProxyProcess::start(&format!("postgres://127.0.0.1:{port}/postgres"), &[]);
    let proxy_port = proxy.port();
    let conn = ["-h", "127.0.0.1", "-p", &proxy_port, "-U", "postgres"];
    let mut psql = conn.to_vec();
    psql.extend([
        "-X",
        "-q",
        "-d",
        "postgres",
        "-f",
        script.to_str().expect("path"),
    ]);
    // The workload's failing statement makes psql say so; it goes on.
    let _ = as_postgres("psql", &psql).output().expect("psql runs");
    let mut pgbench = conn.to_vec();
    pgbench.extend(["-n", "-M", "extended", "-t", "5", "-f"]);
    pgbench.push(bench.to_str().expect("path"));
    pgbench.push("postgres");
    run_ok(&mut as_postgres("pgbench", &pgbench));
    let through_proxy = proxy.stop();
    cluster.stop();

    let mut reports = Vec::new();
    for (file, format) in [
        ("pg", LogFormat::PgStderr),
        ("pg.csv", LogFormat::PgCsv),
        ("pg.json", LogFormat::PgJson),
    ] {
        let path = cluster.log(file);
        keep(&path, &format!("real-{}", format.name()));
        let (events, summary) = events(&path, format);
        assert_eq!(summary.not_understood_lines(), 0, "{summary:?}");
        let sql: Vec<&str> = events.iter().map(|e| e.sql.as_str()).collect();

        // The prepared lookups became the statement they ran, with their values.
        let lookups: Vec<_> = events
            .iter()
            .filter(|e| e.sql == "SELECT stock FROM inventory WHERE product_id = $1")
            .map(|e| e.params.clone())
            .collect();
        let expected: Vec<_> = (1..=6).map(|i| Some(vec![Some(i.to_string())])).collect();
        assert_eq!(lookups, expected, "{format}: {sql:#?}");
        let note = events
            .iter()
            .find(|e| e.sql.starts_with("SELECT $1::text"))
            .expect("the note lookup");
        assert_eq!(note.params, Some(vec![Some("it's".into()), None]));
        // The multi-line statement, whole.
        assert!(
            sql.contains(&"SELECT name\n  FROM products\n WHERE id = 2 /*step='cart_lookup'*/;"),
            "{format}: {sql:#?}"
        );
        // The failure, in the transaction it broke.
        let failed = events
            .iter()
            .find(|e| e.sql.contains("no_such_table"))
            .expect("the failed statement");
        let error = failed.error.as_ref().expect("an error");
        assert!(error.message.contains("no_such_table"), "{error:?}");
        if format != LogFormat::PgStderr {
            assert_eq!(error.code, "42P01");
        }
        let rollback = events
            .iter()
            .find(|e| e.sql == "ROLLBACK;")
            .expect("rollback");
        assert_eq!(rollback.txn, Some(flowaudit::model::TxnStatus::Failed));
        // pgbench's extended protocol: one event per execute, two parameters each.
        let checks: Vec<_> = events
            .iter()
            .filter(|e| e.sql.contains("stock_check"))
            .collect();
        assert_eq!(checks.len(), 5, "{format}");
        for c in &checks {
            let p = c.params.as_ref().expect("parameters");
            assert_eq!(p.len(), 2);
            assert_eq!(p[0], p[1]);
            let v: u32 = p[0].as_deref().expect("a value").parse().expect("a number");
            assert!((1..=1_000_000).contains(&v));
            assert!(c.duration_us.is_some(), "durations pair with executes");
        }
        // Two sessions: psql's, pgbench's.
        let mut conns: Vec<_> = events.iter().filter_map(|e| e.conn).collect();
        conns.dedup();
        assert_eq!(conns.len(), 2, "{format}: {conns:?}");

        let report = analyze(&path);
        let notes = report["notes"].to_string();
        assert!(
            notes.contains(&format!("read as {} (detected)", format.name())),
            "{notes}"
        );
        reports.push(report);
    }
    reports.push(through_proxy.report);
    for report in &reports {
        assert_eq!(
            steps(report),
            vec![
                step("shop", "browse", 8, 8),
                step("shop", "cart", 4, 4),
                step("shop", "cart_lookup", 1, 1),
                step("shop", "checkout", 4, 2),
                step("shop", "setup", 4, 4),
                step("stock", "stock_check", 5, 5),
            ]
        );
        assert_eq!(
            findings(report),
            vec![
                ("n-plus-one".into(), "shop".into(), "browse".into()),
                ("repeated-query".into(), "shop".into(), "cart".into()),
                // setup creates and fills two tables in autocommit.
                ("non-atomic-write".into(), "shop".into(), "setup".into()),
            ]
        );
    }
}

fn mysql(args: &[&str], input: Option<&Path>) -> std::process::Output {
    let mut c = Command::new("mysql");
    c.args([
        "-h",
        "127.0.0.1",
        "-P",
        "3306",
        "-u",
        "root",
        "--batch",
        "--skip-column-names",
    ])
    .args(args);
    if let Some(path) = input {
        c.stdin(std::fs::File::open(path).expect("workload"));
    }
    c.output().expect("mysql runs")
}

/// The general log is the server's, one at a time: the tests that switch it
/// on take turns.
static GENERAL_LOG: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Creates database `db`, switches the general log on into a file of its
/// own for the time `run` takes, then puts the log settings back and drops
/// `db`, even when `run` panics. The log's text, or why MariaDB is not there
/// to write it.
fn with_general_log(db: &str, run: impl FnOnce()) -> Result<String, &'static str> {
    if Command::new("mysql").arg("--version").output().is_err() {
        return Err("the mysql client is not installed");
    }
    let ping = mysql(&["-e", "select 1"], None);
    if !ping.status.success() {
        return Err("MariaDB does not answer on 127.0.0.1:3306");
    }
    let _turn = GENERAL_LOG.lock().unwrap_or_else(|e| e.into_inner());
    let setup = mysql(&["-e", &format!("CREATE DATABASE {db}")], None);
    assert!(
        setup.status.success(),
        "{}",
        String::from_utf8_lossy(&setup.stderr)
    );
    struct DropDb<'a>(&'a str);
    impl Drop for DropDb<'_> {
        fn drop(&mut self) {
            let _ = mysql(&["-e", &format!("DROP DATABASE {}", self.0)], None);
        }
    }
    let _db = DropDb(db);
    let general = GeneralLog::start();
    run();
    Ok(general.into_text())
}

#[test]
fn mariadb_general_log_gives_the_workloads_statements_and_findings() {
    let db = format!("flowaudit_logs_{}", std::process::id());
    let dir = tempfile::tempdir().expect("temp dir");
    let text = with_general_log(&db, || {
        let run = mysql(
            &["--comments", "-D", &db],
            Some(&root().join("tests/workloads/mysql_shop.sql")),
        );
        assert!(
            run.status.success(),
            "{}",
            String::from_utf8_lossy(&run.stderr)
        );
    });
    let text = match text {
        Ok(text) => text,
        Err(reason) => return skip(reason),
    };
    let filtered = dir.path().join("ours.log");
    std::fs::write(&filtered, only_connections(&text, &db)).expect("write");
    keep(&filtered, "real-mysql-general");

    let (events, summary) = events(&filtered, LogFormat::MysqlGeneral);
    assert_eq!(summary.not_understood_lines(), 0, "{summary:?}");
    let sql: Vec<&str> = events.iter().map(|e| e.sql.as_str()).collect();
    // Each EXECUTE counts once, as the statement it ran with its value.
    for i in 1..=6 {
        let text = format!("SELECT stock FROM inventory WHERE product_id = {i}");
        assert_eq!(sql.iter().filter(|s| **s == text).count(), 1, "{sql:#?}");
    }
    assert!(!sql.iter().any(|s| s.starts_with("EXECUTE")), "{sql:#?}");
    assert!(
        sql.contains(&"SELECT name\n  FROM products\n WHERE id = 2 /*step='cart_lookup'*/"),
        "{sql:#?}"
    );
    let commit = events.iter().find(|e| e.sql == "COMMIT").expect("commit");
    assert_eq!(commit.txn, Some(flowaudit::model::TxnStatus::Open));

    let report = analyze(&filtered);
    assert!(
        report["notes"]
            .to_string()
            .contains("read as mysql-general (detected)"),
        "{}",
        report["notes"]
    );
    assert_eq!(
        steps(&report),
        vec![
            step("shop", "browse", 14, 8),
            step("shop", "cart", 2, 2),
            step("shop", "cart_lookup", 1, 1),
            step("shop", "checkout", 3, 1),
            step("shop", "setup", 4, 4),
        ]
    );
    assert_eq!(
        findings(&report),
        vec![
            ("n-plus-one".into(), "shop".into(), "browse".into()),
            ("repeated-query".into(), "shop".into(), "cart".into()),
            // setup creates and fills two tables in autocommit.
            ("non-atomic-write".into(), "shop".into(), "setup".into()),
        ]
    );
}

// The committed logs in tests/fixtures/logs/ were made by the two tests above
// (FLOWAUDIT_KEEP_LOGS), each with a truncated last line added; the
// custom-prefix one is written by hand in the log_min_duration_statement form.

fn fixture(name: &str) -> PathBuf {
    root().join("tests/fixtures/logs").join(name)
}

fn pg_fixture_steps() -> Vec<(String, String, u64, u64, u64)> {
    vec![
        step("shop", "browse", 8, 8),
        step("shop", "cart", 4, 4),
        step("shop", "cart_lookup", 1, 1),
        step("shop", "checkout", 4, 2),
        step("shop", "setup", 4, 4),
        step("stock", "stock_check", 5, 5),
    ]
}

fn shop_findings() -> Vec<(String, String, String)> {
    vec![
        ("n-plus-one".into(), "shop".into(), "browse".into()),
        ("repeated-query".into(), "shop".into(), "cart".into()),
        // setup creates and fills two tables in autocommit.
        ("non-atomic-write".into(), "shop".into(), "setup".into()),
    ]
}

#[test]
fn fixture_logs_in_every_format_read_the_same_workload() {
    for (file, format) in [
        ("pg-stderr.log", "pg-stderr"),
        ("pg-stderr.log.gz", "pg-stderr"),
        ("pg.csv", "pg-csv"),
        ("pg.json", "pg-json"),
    ] {
        let path = fixture(file);
        let report = analyze(&path);
        assert_eq!(steps(&report), pg_fixture_steps(), "{file}");
        assert_eq!(findings(&report), shop_findings(), "{file}");
        let notes: Vec<String> = report["notes"]
            .as_array()
            .expect("notes")
            .iter()
            .map(|n| n.as_str().unwrap_or_default().to_owned())
            .collect();
        assert!(
            notes[0].contains(&format!("read as {format} (detected)")),
            "{notes:?}"
        );
        assert!(notes[0].ends_with("1 not understood"), "{notes:?}");
        // The truncated last line is counted, with where it is, and not read.
        let last = std::fs::read_to_string(fixture(file.trim_end_matches(".gz")))
            .expect("fixture")
            .lines()
            .count();
        assert!(
            notes[1].contains("truncated last line")
                && notes[1].contains(&format!("{}:{last}: ", path.display())),
            "{notes:?}"
        );
        assert_eq!(report["sources"], serde_json::json!(["pg-log"]));
    }
    let report = analyze(&fixture("mysql-general.log"));
    assert_eq!(
        steps(&report),
        vec![
            step("shop", "browse", 14, 8),
            step("shop", "cart", 2, 2),
            step("shop", "cart_lookup", 1, 1),
            step("shop", "checkout", 3, 1),
            step("shop", "setup", 4, 4),
        ]
    );
    assert_eq!(findings(&report), shop_findings());
    assert_eq!(report["sources"], serde_json::json!(["mysql-log"]));
    assert!(
        report["notes"][1]
            .to_string()
            .contains("truncated last line")
    );
}

#[test]
fn fixture_events_carry_parameters_errors_and_multi_line_statements() {
    for (file, format) in [
        ("pg-stderr.log", LogFormat::PgStderr),
        ("pg.csv", LogFormat::PgCsv),
        ("pg.json", LogFormat::PgJson),
    ] {
        let (events, summary) = events(&fixture(file), format);
        assert_eq!(summary.statements, events.len() as u64);
        let note = events
            .iter()
            .find(|e| e.sql.starts_with("SELECT $1::text"))
            .expect("the note lookup");
        assert_eq!(note.params, Some(vec![Some("it's".into()), None]), "{file}");
        assert!(
            events
                .iter()
                .any(|e| e.sql
                    == "SELECT name\n  FROM products\n WHERE id = 2 /*step='cart_lookup'*/;"),
            "{file}"
        );
        let failed = events
            .iter()
            .find(|e| e.sql.contains("no_such_table"))
            .expect("failed");
        assert!(failed.error.is_some(), "{file}");
        assert!(events.iter().all(|e| e.source.as_deref() == Some("pg-log")));
        let checks = events.iter().filter(|e| e.sql.contains("stock_check"));
        assert!(checks.clone().count() == 5 && checks.clone().all(|e| e.params.is_some()));
    }
}

#[test]
fn custom_prefix_duration_lines_and_errors_without_log_statement() {
    let out = assert_cmd::Command::cargo_bin("flowaudit")
        .expect("binary")
        .args([
            "analyze",
            "--skip-invariants",
            "--input",
            "pg-stderr",
            "--log-line-prefix",
            "%t [%p-%l] %q%u@%d %c app=%a ",
            "--format",
            "json",
        ])
        .arg(fixture("pg-duration-custom-prefix.log"))
        .output()
        .expect("runs");
    // The N+1 is an error: exit 1.
    assert_eq!(out.status.code(), Some(1));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    let mut got = steps(&report);
    got.iter_mut().for_each(|s| s.4 = 1);
    assert_eq!(
        got,
        vec![step("web", "list", 6, 6), step("worker", "list", 1, 1)]
    );
    assert_eq!(report["flows"][0]["steps"][0]["duration_us"], 2250);
    assert_eq!(
        findings(&report),
        vec![("n-plus-one".into(), "web".into(), "list".into())]
    );
    let notes = report["notes"].to_string();
    assert!(
        notes.contains("read as pg-stderr (given with --input)"),
        "{notes}"
    );
    assert!(
        notes.contains("(no log_line_prefix match), first at ")
            && notes.contains("pg-duration-custom-prefix.log:33: garbage line here"),
        "{notes}"
    );

    let (events, _) = logs::read_str(
        &std::fs::read_to_string(fixture("pg-duration-custom-prefix.log")).expect("fixture"),
        LogFormat::PgStderr,
        &LogOptions {
            log_line_prefix: "%t [%p-%l] %q%u@%d %c app=%a ".into(),
            ..LogOptions::default()
        },
    )
    .expect("reads");
    let failed = events.last().expect("events");
    assert_eq!(failed.sql, "INSERT INTO products VALUES (1)");
    assert_eq!(failed.application_name.as_deref(), Some("worker"));
    assert!(
        failed
            .error
            .as_ref()
            .is_some_and(|e| e.message.contains("products_pkey"))
    );
    assert_eq!(
        events[1].sql,
        "SELECT id FROM products\nORDER BY id LIMIT 5"
    );
    assert_ne!(events[0].conn, failed.conn);
}

#[test]
fn a_file_in_no_format_is_exit_2_naming_the_formats_tried() {
    let out = assert_cmd::Command::cargo_bin("flowaudit")
        .expect("binary")
        .args(["analyze", "--skip-invariants"])
        .arg(fixture("not-a-log.txt"))
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(
            "not-a-log.txt: not in any format flowaudit reads (tried pg-stderr with \
             --log-line-prefix '%m [%p] %q%u@%d ', pg-csv, pg-json, mysql-general, otlp-json, jsonl)"
        ),
        "{err}"
    );
    // A stderr log read with the wrong prefix is not detected either.
    let out = assert_cmd::Command::cargo_bin("flowaudit")
        .expect("binary")
        .args([
            "analyze",
            "--skip-invariants",
            "--log-line-prefix",
            "%t <%c> ",
        ])
        .arg(fixture("pg-stderr.log"))
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn a_log_without_statements_says_which_setting_logs_them() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("quiet.log");
    std::fs::write(
        &path,
        "2026-11-25 14:54:33.058 UTC [12103] LOG:  starting PostgreSQL 15\n\
         2026-11-25 14:54:33.065 UTC [12103] LOG:  database system is ready to accept connections\n",
    )
    .expect("write");
    let out = assert_cmd::Command::cargo_bin("flowaudit")
        .expect("binary")
        .args(["analyze", "--skip-invariants"])
        .arg(&path)
        .output()
        .expect("runs");
    // Issue 14: reading nothing is exit 2, and the message says what to set.
    assert_eq!(out.status.code(), Some(2));
    let text = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(
        text.contains("no statement was read from") && text.contains("quiet.log"),
        "{text}"
    );
    assert!(
        text.contains("read as pg-stderr (detected): 2 lines, 0 statements")
            && text.contains("log_min_duration_statement = 0"),
        "{text}"
    );
}

#[test]
fn a_gzipped_trace_reads_as_the_trace() {
    use std::io::Write;
    let dir = tempfile::tempdir().expect("temp dir");
    let plain = root().join("tests/fixtures/checkout.jsonl");
    let gz = dir.path().join("checkout.jsonl.gz");
    let mut enc = flate2::write::GzEncoder::new(
        std::fs::File::create(&gz).expect("create"),
        flate2::Compression::default(),
    );
    enc.write_all(&std::fs::read(&plain).expect("fixture"))
        .expect("compress");
    enc.finish().expect("finish");
    let a = analyze(&plain);
    let b = analyze(&gz);
    assert_eq!(a["summary"], b["summary"]);
    assert_eq!(steps(&a), steps(&b));
    assert_eq!(findings(&a), findings(&b));
    assert!(a["summary"]["statements"].as_u64() > Some(0));
}

/// The corpus venv's Python, when `tests/corpus/setup.sh` has made it.
fn corpus_python() -> Option<PathBuf> {
    let python = root().join("tests/corpus/.venv/bin/python");
    let has_pymysql = Command::new(&python)
        .args(["-c", "import pymysql"])
        .output()
        .is_ok_and(|o| o.status.success());
    has_pymysql.then_some(python)
}

/// issue 13, defect 5: pymysql turns autocommit off at connect (`SET
/// AUTOCOMMIT = 0`), so a checkout's writes up to its one `conn.commit()` are
/// one transaction, not writes in autocommit; a commit after each write does
/// split them.
#[test]
fn pymysql_with_autocommit_off_commits_its_checkout_once() {
    let Some(python) = corpus_python() else {
        return skip("no Python with pymysql in tests/corpus/.venv (run tests/corpus/setup.sh)");
    };
    let db = format!("flowaudit_pymysql_{}", std::process::id());
    let dir = tempfile::tempdir().expect("temp dir");
    let text = with_general_log(&db, || {
        let schema = mysql(
            &[
                "-D",
                &db,
                "-e",
                "CREATE TABLE orders (id INT AUTO_INCREMENT PRIMARY KEY, user_id INT, \
                 total_cents INT); \
                 CREATE TABLE order_items (order_id INT, product_id INT, quantity INT); \
                 CREATE TABLE inventory (product_id INT PRIMARY KEY, stock INT); \
                 INSERT INTO inventory VALUES (7, 10), (19, 10);",
            ],
            None,
        );
        assert!(
            schema.status.success(),
            "{}",
            String::from_utf8_lossy(&schema.stderr)
        );
        for mode in ["once", "each"] {
            let out = Command::new(&python)
                .arg(root().join("tests/workloads/pymysql_checkout.py"))
                .args([db.as_str(), mode])
                .output()
                .expect("python runs");
            assert!(
                out.status.success(),
                "{mode}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
    });
    let text = match text {
        Ok(text) => text,
        Err(reason) => return skip(reason),
    };
    let filtered = dir.path().join("ours.log");
    std::fs::write(&filtered, only_connections(&text, &db)).expect("write");
    assert!(
        text.to_ascii_uppercase().contains("SET AUTOCOMMIT = 0"),
        "pymysql turned autocommit off: {text}"
    );

    let (events, _) = events(&filtered, LogFormat::MysqlGeneral);
    let once: Vec<&Event> = {
        let start = events
            .iter()
            .position(|e| e.sql.contains("'checkout_once'"))
            .expect("the first run");
        let end = events
            .iter()
            .position(|e| e.sql.contains("'checkout_each'"))
            .expect("the second run");
        events[start..end].iter().collect()
    };
    let writes: Vec<_> = once
        .iter()
        .filter(|e| e.sql.starts_with("INSERT") || e.sql.starts_with("UPDATE"))
        .map(|e| e.txn)
        .collect();
    assert_eq!(
        writes,
        vec![Some(flowaudit::model::TxnStatus::Open); 5],
        "{once:#?}"
    );

    let report = analyze(&filtered);
    let checkout = |flow: &str| {
        report["flows"]
            .as_array()
            .expect("flows")
            .iter()
            .find(|f| f["name"] == flow)
            .and_then(|f| {
                f["steps"]
                    .as_array()?
                    .iter()
                    .find(|s| s["name"] == "checkout")
            })
            .cloned()
            .unwrap_or_else(|| panic!("{flow} › checkout in {report:#}"))
    };
    assert_eq!(checkout("checkout_once")["transactions"], 1, "{report:#}");
    assert_eq!(checkout("checkout_each")["transactions"], 5, "{report:#}");
    assert_eq!(
        findings(&report),
        vec![(
            "non-atomic-write".into(),
            "checkout_each".into(),
            "checkout".into()
        )],
        "{report:#}"
    );
}

/// Issue 13, defect 6: in server logs a connection is its session (pg: the
/// session id or process id; MySQL: the thread id), and a marker sets the
/// step of its own session. Two sessions marking request_a and request_b
/// interleaved keep their steps; a session that never marks follows the
/// latest marker (a harness marking while another session runs the queries).
#[test]
fn markers_in_server_logs_apply_to_their_own_session() {
    for file in ["pg-two-sessions.log", "mysql-two-sessions.log"] {
        let report = analyze(&fixture(file));
        let got: Vec<(String, u64, u64)> = steps(&report)
            .into_iter()
            .map(|(_, step, statements, _, connections)| (step, statements, connections))
            .collect();
        assert_eq!(
            got,
            vec![
                ("browse".to_owned(), 2, 1),
                ("cart".to_owned(), 1, 1),
                ("request_a".to_owned(), 3, 1),
                ("request_b".to_owned(), 2, 1),
            ],
            "{file}"
        );
    }
}

/// Issue 15, item 11: one unbalanced quote in a real csvlog costs the record
/// it is in, which is reported with its `file:line`; every other statement
/// is still read (before, the record swallowed the next 16 MB of the log).
#[test]
fn an_unbalanced_quote_in_a_csvlog_costs_its_record_alone() {
    if Command::new("psql").arg("--version").output().is_err() {
        return skip("psql is not installed");
    }
    let Some(cluster) = LoggingCluster::start_logging("csvlog") else {
        return skip("no PostgreSQL server binaries under /usr/lib/postgresql/*/bin");
    };
    // Statements on one line, and every tenth over two lines (a quoted field
    // holding a newline, which must not be taken for damage).
    let mut script = String::new();
    for n in 1..=300 {
        if n % 10 == 0 {
            script.push_str(&format!("SELECT 'row-{n}'\n  AS tag;\n"));
        } else {
            script.push_str(&format!("SELECT 'row-{n}' AS tag;\n"));
        }
    }
    let file = cluster.dir().join("rows.sql");
    std::fs::write(&file, script).expect("write script");
    cluster.psql("postgres", &["-f", file.to_str().expect("path")]);
    cluster.stop();
    let log = std::fs::read_to_string(cluster.log("pg.csv")).expect("csvlog");
    let dir = tempfile::tempdir().expect("temp dir");

    // (damaged statement, the text to damage): a record on one line, and the
    // first line of a record over two.
    for (damaged, text) in [(101, "'row-101' AS tag;"), (150, "'row-150'\n")] {
        let at = log.find(text).expect("the statement is logged");
        let line = log[..at].matches('\n').count() + 1;
        let bad = format!("{}'row-\"{}", &log[..at], &log[at + "'row-".len()..]);
        let path = dir.path().join(format!("damaged-{damaged}.csv"));
        std::fs::write(&path, bad).expect("write damaged log");

        let (events, summary) = events(&path, LogFormat::PgCsv);
        let mut read: Vec<u32> = events
            .iter()
            .filter_map(|e| {
                let tag = e.sql.split("'row-").nth(1)?;
                tag.split('\'').next()?.parse().ok()
            })
            .collect();
        read.sort_unstable();
        let expected: Vec<u32> = (1..=300).filter(|&n| n != damaged).collect();
        assert_eq!(read, expected, "damaged row-{damaged}: {summary:?}");
        // Their durations are read too.
        assert!(
            events
                .iter()
                .filter(|e| e.sql.contains("'row-"))
                .all(|e| e.duration_us.is_some()),
            "{summary:?}"
        );
        let at = format!("{}:{line}", path.display());
        assert!(
            summary.not_understood.values().any(|n| n.at == at),
            "damaged row-{damaged} at {at}: {summary:?}"
        );
    }
}
