//! Secrets never reach what flowaudit writes or shows (issue 15), checked
//! with real clients and servers: passwords in SQL sent through the proxy by
//! psql (`CREATE ROLE … PASSWORD`, and the SCRAM verifier `\password`
//! sends), logged by PostgreSQL and MariaDB, or left in clear by a trace an
//! older flowaudit wrote; bind values under `--params hash|drop`; passwords in
//! URLs and DSNs echoed by messages; and authentication through the proxy to
//! a server that checks passwords (cleartext, md5, SCRAM). Each test looks
//! for the secret in everything the run left: the trace, the report in every
//! format, and standard error.
//!
//! When a server or client is missing the test says why and passes, unless
//! CI=true.

mod support;

use std::path::Path;
use std::process::{Command, Output};

use support::pg::{self, ProxyProcess, TestDb};
use support::server_logs::{GeneralLog, LoggingCluster, mysql};

const FORMATS: [&str; 5] = ["table", "json", "markdown", "sarif", "junit"];

fn skip(reason: &str) {
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("{reason} (CI=true: a missing server fails the test)");
    }
    eprintln!("skipped: {reason}");
}

fn flowaudit() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_flowaudit"));
    cmd.env_remove("DATABASE_URL");
    cmd
}

fn both(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// `analyze FILES` in every report format, with `extra` options: everything
/// the runs printed, reports and standard error, one after the other.
fn every_report(files: &[&Path], extra: &[&str]) -> String {
    let mut all = String::new();
    for format in FORMATS {
        let out = flowaudit()
            .args(["analyze", "--skip-invariants", "--fail-on", "never"])
            .args(["--format", format])
            .args(extra)
            .args(files)
            .output()
            .expect("flowaudit runs");
        assert_eq!(
            out.status.code(),
            Some(0),
            "analyze --format {format}: {}",
            both(&out)
        );
        all.push_str(&both(&out));
    }
    all
}

/// Fails naming the secret and where it showed.
fn assert_hidden(what: &str, text: &str, secrets: &[&str]) {
    for secret in secrets {
        if let Some(at) = text.find(secret) {
            let from = at.saturating_sub(80);
            let context = text.get(from..(at + secret.len() + 40).min(text.len()));
            panic!("{what} shows {secret:?}: …{}…", context.unwrap_or(""));
        }
    }
}

/// A cluster-wide role, dropped when the test ends however it ends.
struct Role<'a> {
    name: String,
    db: &'a TestDb,
}

impl Drop for Role<'_> {
    fn drop(&mut self) {
        let _ = Command::new("psql")
            .args([
                "-X",
                "-q",
                "-h",
                "127.0.0.1",
                "-p",
                "5432",
                "-U",
                "postgres",
            ])
            .args(["-d", &self.db.name, "-c"])
            .arg(format!("DROP ROLE IF EXISTS {}", self.name))
            .output();
    }
}

/// psql's `\password ROLE` through `port`, typed on a terminal (`script`
/// gives psql one): psql computes the SCRAM verifier and sends it as `ALTER
/// USER role PASSWORD 'SCRAM-SHA-256$…'`. False when `script` is missing.
fn backslash_password(port: &str, db: &str, role: &str, password: &str) -> bool {
    use std::io::{Read, Write};
    if Command::new("script").arg("--version").output().is_err() {
        skip("script (util-linux) is not installed: \\password is not typed");
        return false;
    }
    let psql = format!("psql -X -h 127.0.0.1 -p {port} -U postgres -d {db} -c '\\password {role}'");
    let mut child = Command::new("script")
        .args(["-qec", &psql, "/dev/null"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("script runs");
    let mut stdin = child.stdin.take().expect("stdin");
    let mut stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = std::sync::mpsc::channel::<Vec<u8>>();
    std::thread::spawn(move || {
        let mut buf = [0u8; 256];
        while let Ok(n) = stdout.read(&mut buf) {
            if n == 0 || tx.send(buf[..n].to_vec()).is_err() {
                break;
            }
        }
    });
    // psql asks twice; each answer is typed once asked (it flushes what
    // the terminal held before).
    let mut seen = String::new();
    for prompt in ["Enter new password", "Enter it again"] {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while !seen.contains(prompt) {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match rx.recv_timeout(left) {
                Ok(bytes) => seen.push_str(&String::from_utf8_lossy(&bytes)),
                Err(_) => panic!("psql never asked {prompt:?}: {seen}"),
            }
        }
        seen = seen.replacen(prompt, "", 1);
        std::thread::sleep(std::time::Duration::from_millis(100));
        writeln!(stdin, "{password}").expect("type the password");
    }
    drop(stdin);
    let out = child.wait_with_output().expect("script ends");
    assert!(out.status.success(), "\\password: {seen}{}", both(&out));
    true
}

/// Issue 15, secret 1: psql's role passwords, in clear and as the verifier
/// `\password` computes, cross the proxy and are in no trace, report or
/// message; the statements are recorded, with `PASSWORD '***'`.
#[test]
fn role_passwords_sent_by_psql_are_in_no_trace_or_report() {
    if !pg::available("psql through the proxy") {
        return;
    }
    let db = TestDb::new("secrets");
    let role = Role {
        name: format!("flowaudit_secret_{}", std::process::id()),
        db: &db,
    };
    let proxy = ProxyProcess::start(&format!("postgres://postgres@{}/test", pg::PG_ADDR), &[]);
    let port = proxy.port();
    let sent = pg::psql(
        &port,
        &db.name,
        &[
            "-v",
            "ON_ERROR_STOP=1",
            "-c",
            &format!(
                "CREATE ROLE {} LOGIN PASSWORD 'hunter2-in-clear'",
                role.name
            ),
            // Twice: a repeated-query finding shows it as its example.
            "-c",
            &format!(
                "ALTER ROLE {} ENCRYPTED PASSWORD $pw$dollar-hunter2$pw$",
                role.name
            ),
            "-c",
            &format!(
                "ALTER ROLE {} ENCRYPTED PASSWORD $pw$dollar-hunter2$pw$",
                role.name
            ),
        ],
    );
    assert!(sent.status.success(), "{}", pg::text(&sent));
    let typed = backslash_password(&port, &db.name, &role.name, "typed-hunter2");
    let verifier = db.direct(&format!(
        "SELECT rolpassword FROM pg_authid WHERE rolname = '{}'",
        role.name
    ));
    let stopped = proxy.stop();
    let trace = stopped.trace_text.clone();

    // The verifier and each of its parts: salt, StoredKey, ServerKey.
    let mut secrets = vec!["hunter2-in-clear", "dollar-hunter2", "typed-hunter2"];
    if typed {
        assert!(verifier.starts_with("SCRAM-SHA-256$"), "{verifier}");
        secrets.extend(verifier.split(['$', ':']).filter(|p| p.len() >= 16));
        secrets.push(&verifier);
    }
    assert_hidden("the trace", &trace, &secrets);
    let password_statements = pg::with_sql(&stopped.trace, "PASSWORD '***'");
    assert_eq!(
        password_statements.len(),
        if typed { 4 } else { 3 },
        "{trace}"
    );
    if typed {
        let sent_by_psql = pg::with_sql(&stopped.trace, "ALTER USER");
        assert_eq!(sent_by_psql.len(), 1, "\\password's statement: {trace}");
    }
    assert_hidden("the proxy's report", &stopped.report.to_string(), &secrets);
    assert_hidden("the proxy's stderr", &stopped.stderr, &secrets);
    let reports = every_report(&[&stopped_trace_file(&stopped)], &[]);
    assert_hidden("analyze of the trace", &reports, &secrets);
    assert!(
        reports.contains("ENCRYPTED PASSWORD '***'"),
        "the repeat is an example: {reports}"
    );
}

/// Issue 15, secret 1: the report's note on an injected fault quotes the
/// statement the fault replaced, without its password.
#[test]
fn the_statement_a_fault_replaced_is_quoted_without_its_password() {
    if !pg::available("--inject-fault through the proxy") {
        return;
    }
    let db = TestDb::new("fault");
    let proxy = ProxyProcess::start(
        &format!("postgres://postgres@{}/test", pg::PG_ADDR),
        &["--inject-fault", "accounts:1"],
    );
    // The fault fails the CREATE ROLE in the server: no role to drop.
    let sent = pg::psql(
        &proxy.port(),
        &db.name,
        &[
            "-c",
            "SET flowaudit.step = 'accounts'",
            "-c",
            "CREATE ROLE flowaudit_never LOGIN PASSWORD 'fault-hunter2'",
        ],
    );
    assert!(
        !sent.status.success(),
        "the fault fired: {}",
        pg::text(&sent)
    );
    let stopped = proxy.stop();
    let report = stopped.report.to_string();
    for (what, text) in [
        ("the report", &report),
        ("the trace", &stopped.trace_text),
        ("stderr", &stopped.stderr),
    ] {
        assert_hidden(what, text, &["fault-hunter2"]);
    }
    assert!(
        report.contains("in place of: CREATE ROLE flowaudit_never LOGIN PASSWORD '***'"),
        "{report}"
    );
}

/// The trace a stopped proxy wrote, still on disk when the caller reads it.
fn stopped_trace_file(stopped: &pg::Stopped) -> tempfile::TempPath {
    let file = tempfile::Builder::new()
        .suffix(".jsonl")
        .tempfile()
        .expect("temp file");
    std::fs::write(file.path(), &stopped.trace_text).expect("write trace");
    file.into_temp_path()
}

/// Issue 15, secret 1: a trace written before flowaudit hid passwords (or
/// by hand) holds them in clear; analyze shows none, in any format, also in
/// a finding's example and fingerprint, and in the server's error message.
#[test]
fn passwords_in_an_old_trace_are_in_no_report() {
    let dir = tempfile::tempdir().expect("temp dir");
    let trace = dir.path().join("old.jsonl");
    let lines = [
        r#"{"sql": "SET flowaudit.step = 'accounts'", "conn": 1}"#,
        r#"{"sql": "CREATE ROLE app LOGIN PASSWORD 'hunter2-clear'", "conn": 1, "source": "proxy"}"#,
        r#"{"sql": "ALTER ROLE app PASSWORD 'SCRAM-SHA-256$4096:c2FsdHNhbHRzYWx0$U3RvcmVkS2V5U3RvcmVkS2V5:U2VydmVyS2V5U2VydmVyS2V5'", "conn": 1}"#,
        r#"{"sql": "ALTER ROLE app PASSWORD 'SCRAM-SHA-256$4096:c2FsdHNhbHRzYWx0$U3RvcmVkS2V5U3RvcmVkS2V5:U2VydmVyS2V5U2VydmVyS2V5'", "conn": 1}"#,
        r#"{"sql": "ALTER ROLE app PASSWORD $$dollar-hunter2$$ VALID UNTIL 'infinity'", "conn": 1}"#,
        r#"{"sql": "ALTER ROLE app PASSWORD E'escaped\\'hunter2'", "conn": 1}"#,
        r#"{"sql": "CREATE USER 'app'@'%' IDENTIFIED BY 'mysql-hunter2'", "conn": 2, "source": "mysql-log"}"#,
        r#"{"sql": "SET PASSWORD FOR 'app'@'%' = PASSWORD('set-hunter2')", "conn": 2}"#,
        r#"{"sql": "ALTER ROLE app PASSWORD 'failing-hunter2' FOO", "conn": 1, "error": {"code": "42601", "message": "syntax error at or near \"FOO\" after 'failing-hunter2'"}}"#,
    ];
    std::fs::write(&trace, lines.join("\n")).expect("write trace");
    let secrets = [
        "hunter2-clear",
        "c2FsdHNhbHRzYWx0",
        "U3RvcmVkS2V5U3RvcmVkS2V5",
        "U2VydmVyS2V5U2VydmVyS2V5",
        "dollar-hunter2",
        "escaped",
        "mysql-hunter2",
        "set-hunter2",
        "failing-hunter2",
    ];
    let reports = every_report(&[&trace], &[]);
    assert_hidden("analyze of an old trace", &reports, &secrets);
    // The repeated ALTER is a finding whose example shows the statement.
    assert!(
        reports.contains("ALTER ROLE app PASSWORD '***'"),
        "{reports}"
    );
}

/// Issue 15, secret 1: the messages that quote a log's line (a line not
/// understood, the first line of a file in no format) show no password.
#[test]
fn log_lines_quoted_in_messages_show_no_password() {
    let dir = tempfile::tempdir().expect("temp dir");
    // The server was still writing: the last line has no line end, and is
    // counted as not understood, with its text as the example.
    let pg_log = dir.path().join("pg.log");
    std::fs::write(
        &pg_log,
        "2026-01-02 03:04:05.006 UTC [42] app@shop LOG:  statement: SELECT 1\n\
         2026-01-02 03:04:05.007 UTC [42] app@shop LOG:  statement: ALTER ROLE app \
         PASSWORD 'cut-hunter2'",
    )
    .expect("write log");
    let general = dir.path().join("general.log");
    std::fs::write(
        &general,
        "/usr/sbin/mariadbd, Version: 10.11.6-MariaDB (Debian). started with:\n\
         Tcp port: 3306  Unix socket: /run/mysqld/mysqld.sock\n\
         Time\t\t    Id Command\tArgument\n\
         \t\t    27 Connect\troot@localhost on shop using TCP/IP\n\
         \t\t    27 Query\tSELECT 1\n\
         \t\t    27 Query\tCREATE USER app IDENTIFIED BY 'cut-hunter3'",
    )
    .expect("write log");
    let secrets = ["cut-hunter2", "cut-hunter3", "first-hunter4"];
    for (log, format) in [(&pg_log, "pg-stderr"), (&general, "mysql-general")] {
        let reports = every_report(&[log.as_path()], &["--input", format]);
        assert!(reports.contains("not understood"), "{reports}");
        assert_hidden(
            &format!("analyze of a cut {format} log"),
            &reports,
            &secrets,
        );
    }
    let unknown = dir.path().join("notes.txt");
    std::fs::write(
        &unknown,
        "CREATE ROLE app PASSWORD 'first-hunter4'\nnothing flowaudit reads\n",
    )
    .expect("write file");
    let out = flowaudit()
        .args(["analyze", "--skip-invariants"])
        .arg(&unknown)
        .output()
        .expect("runs");
    assert_eq!(out.status.code(), Some(2), "{}", both(&out));
    assert!(both(&out).contains("first line"), "{}", both(&out));
    assert_hidden("a file in no format", &both(&out), &secrets);
}

/// Issue 15, secret 1: PostgreSQL logs the password statements it runs as
/// they were sent; analyze of its stderr log and its csvlog shows none.
#[test]
fn passwords_in_postgres_logs_are_in_no_report() {
    if Command::new("psql").arg("--version").output().is_err() {
        return skip("psql is not installed");
    }
    let Some(cluster) = LoggingCluster::start() else {
        return skip("no PostgreSQL server binaries under /usr/lib/postgresql/*/bin");
    };
    cluster.psql(
        "postgres",
        &[
            "-c",
            "CREATE ROLE logged_app LOGIN PASSWORD 'logged-hunter2'",
            "-c",
            "ALTER ROLE logged_app PASSWORD $$dollar-hunter2$$",
            "-c",
            "ALTER ROLE logged_app PASSWORD $$dollar-hunter2$$",
            "-c",
            "ALTER ROLE logged_app PASSWORD 'SCRAM-SHA-256$4096:c2FsdHNhbHRzYWx0$U3RvcmVkS2V5U3RvcmVkS2V5:U2VydmVyS2V5U2VydmVyS2V5'",
        ],
    );
    cluster.stop();
    let (stderr_log, csv_log) = (cluster.log("pg"), cluster.log("pg.csv"));
    let text = std::fs::read_to_string(&stderr_log).expect("the server's log");
    assert!(
        text.contains("logged-hunter2"),
        "the server logs it: {text}"
    );
    let secrets = [
        "logged-hunter2",
        "dollar-hunter2",
        "c2FsdHNhbHRzYWx0",
        "U3RvcmVkS2V5U3RvcmVkS2V5",
    ];
    for (log, format) in [(&stderr_log, "pg-stderr"), (&csv_log, "pg-csv")] {
        let reports = every_report(&[log.as_path()], &["--input", format]);
        assert_hidden(&format!("analyze of the {format} log"), &reports, &secrets);
        assert!(reports.contains("PASSWORD '***'"), "{format}: {reports}");
    }
}

/// Issue 15, secret 1: MariaDB's general query log keeps `IDENTIFIED BY`
/// and `SET PASSWORD` in clear; analyze of it shows none (each is sent twice,
/// so that a repeated-query finding shows it as its example).
#[test]
fn passwords_in_the_mariadb_general_log_are_in_no_report() {
    if !mysql(&["-e", "SELECT 1"]).status.success() {
        return skip("no MariaDB answers on 127.0.0.1:3306");
    }
    let db = format!("flowaudit_secrets_{}", std::process::id());
    let user = format!("fa_secret_{}", std::process::id());
    let run = |sql: &str| {
        let out = mysql(&["-e", sql]);
        assert!(out.status.success(), "{sql}: {}", both(&out));
    };
    run(&format!("CREATE DATABASE {db}"));
    let dir = tempfile::tempdir().expect("temp dir");
    let log = dir.path().join("general.log");
    let general = GeneralLog::start();
    let statements = mysql(&[
        "-D",
        &db,
        "-e",
        &format!(
            "CREATE USER '{user}'@'localhost' IDENTIFIED BY 'created-hunter2'; \
             SET PASSWORD FOR '{user}'@'localhost' = PASSWORD('set-hunter2'); \
             SET PASSWORD FOR '{user}'@'localhost' = PASSWORD('set-hunter2'); \
             ALTER USER '{user}'@'localhost' IDENTIFIED BY 'altered-hunter2'; \
             ALTER USER '{user}'@'localhost' IDENTIFIED BY 'altered-hunter2'; \
             DROP USER '{user}'@'localhost'"
        ),
    ]);
    general.finish(&db, &log);
    run(&format!("DROP DATABASE {db}"));
    assert!(statements.status.success(), "{}", both(&statements));
    let text = std::fs::read_to_string(&log).expect("general log");
    assert!(text.contains("created-hunter2"), "MariaDB logs it: {text}");
    let secrets = ["created-hunter2", "set-hunter2", "altered-hunter2"];
    let reports = every_report(&[&log], &["--input", "mysql-general"]);
    assert_hidden("analyze of the general log", &reports, &secrets);
    // (SET PASSWORD is a session setting, which no rule shows.)
    assert!(reports.contains("IDENTIFIED BY '***'"), "{reports}");
}

/// Issue 15, secret 3: a password given in a URL's query (`?password=`) or
/// in a key=value DSN is not echoed by an error message, as the URL's
/// user-info password already was not.
#[test]
fn passwords_in_urls_and_dsns_are_not_echoed() {
    let dir = tempfile::tempdir().expect("temp dir");
    let trace = dir.path().join("t.jsonl");
    std::fs::write(&trace, "{\"sql\": \"SELECT id FROM users\"}\n").expect("write trace");
    // Nothing listens on port 1: every connection is refused at once.
    let urls = [
        "postgres://app@127.0.0.1:1/shop?password=query-hunter2",
        "postgres://app:userinfo-hunter2@127.0.0.1:1/shop?sslpassword=ssl-hunter2",
        "mysql://app@127.0.0.1:1/shop?password=query-hunter2",
        "host=127.0.0.1 port=1 user=app password=dsn-hunter2 dbname=shop",
        "host=127.0.0.1 port=1 password = 'quoted dsn-hunter2'",
    ];
    let secrets = [
        "query-hunter2",
        "userinfo-hunter2",
        "ssl-hunter2",
        "dsn-hunter2",
    ];
    for url in urls {
        let mut runs: Vec<(String, Output)> = vec![
            (
                "schema".into(),
                flowaudit()
                    .args(["schema", "--timeout", "2", url])
                    .current_dir(dir.path())
                    .output()
                    .expect("runs"),
            ),
            (
                "analyze --database".into(),
                flowaudit()
                    .args(["analyze", "--skip-invariants", "--database", url])
                    .arg(&trace)
                    .current_dir(dir.path())
                    .output()
                    .expect("runs"),
            ),
            (
                "run --upstream".into(),
                flowaudit()
                    .args(["run", "--upstream", url, "--", "true"])
                    .current_dir(dir.path())
                    .output()
                    .expect("runs"),
            ),
        ];
        if !url.starts_with("postgres") && !url.starts_with("mysql") {
            // A PostgreSQL or MySQL URL would start a proxy that waits for
            // Ctrl-C (`run` above checks the upstream first).
            let out = flowaudit()
                .args(["proxy", "--listen", "127.0.0.1:0", "--upstream", url])
                .current_dir(dir.path())
                .output()
                .expect("runs");
            runs.push(("proxy --upstream".into(), out));
        }
        for (command, out) in runs {
            assert_eq!(
                out.status.code(),
                Some(2),
                "{command} {url}: {}",
                both(&out)
            );
            assert_hidden(&format!("{command} {url}"), &both(&out), &secrets);
        }
    }
    // An invariant's --database, which opens its own connection.
    let rules = dir.path().join("rules");
    std::fs::create_dir(&rules).expect("rules dir");
    std::fs::write(
        rules.join("inv.toml"),
        "[[invariant]]\nname = \"none\"\nsql = \"SELECT 1 WHERE false\"\n",
    )
    .expect("write rules");
    for url in urls {
        let out = flowaudit()
            .args(["analyze", "--database", url])
            .arg(&trace)
            .current_dir(dir.path())
            .output()
            .expect("runs");
        assert_eq!(out.status.code(), Some(2), "{url}: {}", both(&out));
        assert_hidden(
            &format!("analyze invariants on {url}"),
            &both(&out),
            &secrets,
        );
    }
}

/// The JSON findings of a report, without their examples: what `keep` and
/// `hash` must agree on.
fn judged(report: &serde_json::Value) -> Vec<String> {
    let mut out: Vec<String> = report["findings"]
        .as_array()
        .expect("findings")
        .iter()
        .map(|f| {
            format!(
                "{} {} {} {} {}× {}",
                f["rule"], f["flow"], f["step"], f["fingerprint"], f["count"], f["message"]
            )
        })
        .collect();
    out.sort();
    out
}

fn json_of(out: &Output) -> serde_json::Value {
    assert!(matches!(out.status.code(), Some(0 | 1)), "{}", both(out));
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", both(out)))
}

/// Every bind value a trace holds, as text.
fn values_of(trace: &str) -> Vec<String> {
    let mut values = Vec::new();
    for line in trace.lines() {
        let event: serde_json::Value = serde_json::from_str(line).expect("trace line");
        for v in event["params"].as_array().into_iter().flatten() {
            if let Some(s) = v.as_str() {
                values.push(s.to_owned());
            }
        }
    }
    values
}

/// Issue 15, secret 2: the demo shop's journey (a real flow, with N+1
/// loops, repeated queries and a read-modify-write found by comparing bind
/// values) gives the same findings under `--params hash` as under `keep`,
/// live and from its trace; values show as `#…` hashes and none in clear.
/// Under `drop` no value is left and no finding is one `keep` does not make.
#[test]
fn params_hash_keeps_the_findings_and_drop_keeps_no_value() {
    let dir = tempfile::tempdir().expect("temp dir");
    let demo = |params: &str| {
        let trace = dir.path().join(format!("{params}.jsonl"));
        let out = flowaudit()
            .args(["demo", "--format", "json", "--params", params, "--trace"])
            .arg(&trace)
            .current_dir(dir.path())
            .output()
            .expect("demo runs");
        let report = json_of(&out);
        let trace_text = std::fs::read_to_string(&trace).expect("trace");
        (report, trace, trace_text)
    };
    let analyze = |trace: &Path| {
        let out = flowaudit()
            .args([
                "analyze",
                "--skip-invariants",
                "--fail-on",
                "never",
                "--format",
                "json",
            ])
            .arg(trace)
            .current_dir(dir.path())
            .output()
            .expect("analyze runs");
        json_of(&out)
    };
    let (keep, keep_trace, keep_text) = demo("keep");
    let (hash, hash_trace, hash_text) = demo("hash");
    let (drop, drop_trace, drop_text) = demo("drop");

    let kept = judged(&keep);
    for rule in ["n-plus-one", "repeated-query", "unlocked-read-modify-write"] {
        assert!(
            kept.iter().any(|f| f.contains(&format!("\"{rule}\""))),
            "the flow has a {rule} finding: {kept:#?}"
        );
    }
    assert_eq!(judged(&hash), kept, "hash, live");
    // The demo's invariants ran live; the traces are judged without them.
    let from_keep = judged(&analyze(&keep_trace));
    assert_eq!(
        judged(&analyze(&hash_trace)),
        from_keep,
        "hash, from its trace"
    );

    // Values: the e-mail addresses, names, password hashes, ids the flow bound.
    let values = values_of(&keep_text);
    assert!(values.iter().any(|v| v.contains('@')), "{values:?}");
    let clear: Vec<&str> = values
        .iter()
        .map(String::as_str)
        .filter(|v| v.len() >= 5)
        .collect();
    assert!(!clear.is_empty());
    let hashed = values_of(&hash_text);
    assert_eq!(hashed.len(), values.len());
    assert!(
        hashed.iter().all(|h| h.len() == 17 && h.starts_with('#')),
        "{hashed:?}"
    );
    assert_hidden("the hashed trace", &hash_text, &clear);
    let hash_report = hash.to_string();
    assert_hidden("the report under hash", &hash_report, &clear);
    assert!(hash_report.contains("-- params: '#"), "{hash_report}");
    assert!(hash_report.contains("--params hash"), "the report says so");

    assert!(values_of(&drop_text).is_empty());
    assert!(drop_text.contains("\"params_dropped\":true"));
    assert_hidden("the trace under drop", &drop_text, &clear);
    assert_hidden("the report under drop", &drop.to_string(), &clear);
    assert!(!drop.to_string().contains("-- params:"));
    for finding in judged(&drop)
        .into_iter()
        .chain(judged(&analyze(&drop_trace)))
    {
        if finding.contains("\"repeated-query\"") {
            assert!(
                kept.contains(&finding),
                "a repeat drop cannot know: {finding}"
            );
        }
    }
}

/// Issue 15, secret 2, through the proxy as the CI recipes run it: `run
/// --params hash` writes a trace whose bind values are all hashes, reports
/// the same findings as `keep`, with hashed examples, and `analyze` of the
/// hashed trace finds them again.
#[test]
fn run_with_params_hash_records_no_value() {
    if !pg::available("run --params hash") {
        return;
    }
    let db = TestDb::new("params");
    let dir = tempfile::tempdir().expect("temp dir");
    let script = dir.path().join("values.pgbench");
    std::fs::write(
        &script,
        "\\set a 4242001\n\\set b 4242002\n\
         SELECT :a::int AS v;\nSELECT :a::int AS v;\nSELECT :b::int AS v;\n",
    )
    .expect("write script");
    let run = |params: &str| {
        let trace = dir.path().join(format!("{params}.jsonl"));
        let report = dir.path().join(format!("{params}.json"));
        let out = flowaudit()
            .args([
                "run",
                "--upstream",
                &db.url(pg::PG_ADDR),
                "--params",
                params,
            ])
            .args(["--format", "json", "--fail-on", "never", "--trace"])
            .arg(&trace)
            .arg("--output")
            .arg(&report)
            .args(["--", "pgbench", "-n", "-M", "extended", "-t", "1", "-f"])
            .arg(&script)
            .arg(&db.name)
            .current_dir(dir.path())
            .output()
            .expect("run runs");
        assert_eq!(out.status.code(), Some(0), "{}", both(&out));
        let text = std::fs::read_to_string(&report).expect("report");
        let report: serde_json::Value = serde_json::from_str(&text).expect("json report");
        (report, trace)
    };
    let (keep, _) = run("keep");
    let (hash, hash_trace) = run("hash");
    let found = judged(&keep);
    assert!(
        found.iter().any(|f| f.contains("\"repeated-query\"")),
        "{found:#?}"
    );
    assert_eq!(judged(&hash), found);
    let text = std::fs::read_to_string(&hash_trace).expect("trace");
    let values = values_of(&text);
    assert_eq!(values.len(), 3, "{text}");
    assert!(values.iter().all(|v| v.starts_with('#')), "{values:?}");
    assert_eq!(values[0], values[1]);
    assert_ne!(values[0], values[2]);
    let secrets = ["4242001", "4242002"];
    assert_hidden("the trace under hash", &text, &secrets);
    assert_hidden("the report under hash", &hash.to_string(), &secrets);
    let again = flowaudit()
        .args([
            "analyze",
            "--skip-invariants",
            "--fail-on",
            "never",
            "--format",
            "json",
        ])
        .arg(&hash_trace)
        .output()
        .expect("analyze runs");
    assert_eq!(judged(&json_of(&again)), found);
}

/// Issue 15, secret 4: clients log in through the proxy to a server that
/// checks passwords (cleartext `password`, `md5`, `scram-sha-256`); the
/// passwords, which in cleartext cross the proxy as they are, are in no
/// trace, report or message, and the logins work (and a wrong password
/// fails), so authentication passed through untouched.
#[test]
fn logging_in_through_the_proxy_leaves_no_password_anywhere() {
    if Command::new("psql").arg("--version").output().is_err() {
        return skip("psql is not installed");
    }
    let Some(cluster) = LoggingCluster::start() else {
        return skip("no PostgreSQL server binaries under /usr/lib/postgresql/*/bin");
    };
    let users = [
        ("fa_clear", "password", "clear-hunter2"),
        ("fa_md5", "md5", "md5-hunter2"),
        ("fa_scram", "scram-sha-256", "scram-hunter2"),
    ];
    for (user, method, password) in users {
        let encryption = if method == "md5" {
            "md5"
        } else {
            "scram-sha-256"
        };
        cluster.psql(
            "postgres",
            &[
                "-c",
                &format!("SET password_encryption = '{encryption}'"),
                "-c",
                &format!("CREATE ROLE {user} LOGIN PASSWORD '{password}'"),
            ],
        );
    }
    let mut hba = String::from("local all all trust\nhost all postgres 127.0.0.1/32 trust\n");
    for (user, method, _) in users {
        hba.push_str(&format!("host all {user} 127.0.0.1/32 {method}\n"));
    }
    let hba_path = cluster.dir().join("data/pg_hba.conf");
    std::fs::write(&hba_path, hba).expect("write pg_hba.conf");
    cluster.psql("postgres", &["-c", "SELECT pg_reload_conf()"]);

    let proxy = ProxyProcess::start(
        &format!("postgres://127.0.0.1:{}/postgres", cluster.port),
        &[],
    );
    let port = proxy.port();
    let login = |user: &str, password: &str| {
        Command::new("psql")
            .args(["-X", "-At", "-h", "127.0.0.1", "-p", &port, "-U", user])
            .args(["-d", "postgres", "-c", "SELECT current_user"])
            .env("PGPASSWORD", password)
            .env("PGSSLMODE", "disable")
            .output()
            .expect("psql runs")
    };
    for (user, method, password) in users {
        let ok = login(user, password);
        assert!(ok.status.success(), "{method}: {}", both(&ok));
        assert_eq!(String::from_utf8_lossy(&ok.stdout).trim(), user);
        let wrong = login(user, "not-it");
        assert!(!wrong.status.success(), "{method} checks the password");
    }
    let stopped = proxy.stop();
    let secrets: Vec<&str> = users.iter().map(|(_, _, p)| *p).collect();
    assert_eq!(
        pg::with_sql(&stopped.trace, "current_user").len(),
        users.len(),
        "{}",
        stopped.trace_text
    );
    assert_hidden("the trace", &stopped.trace_text, &secrets);
    assert_hidden("the proxy's report", &stopped.report.to_string(), &secrets);
    assert_hidden("the proxy's stderr", &stopped.stderr, &secrets);
    let trace = stopped_trace_file(&stopped);
    assert_hidden(
        "analyze of the trace",
        &every_report(&[&trace], &[]),
        &secrets,
    );
}
