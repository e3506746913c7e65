//! A MySQL driver's own test suite through the MySQL proxy (issue 17):
//! PyMySQL's tests, from its source distribution on PyPI, run twice against
//! the machine's MariaDB: directly, then through `flowaudit proxy --upstream
//! mysql://127.0.0.1:3306`. The suite reads its server from
//! `pymysql/tests/databases.json`; each run writes that file with its own
//! port into a copy of the suite of its own.
//!
//! This checks that the same tests pass both ways and that at least
//! [`MIN_PASSED`] pass directly; and that the proxy recorded the suite's
//! statements: the same ones as the server's general query log shows for the
//! suite's connections (those of a user of its own), plus those sent on a
//! connection the server had already closed, recorded with SQLSTATE 08S01,
//! and the errors the suite provokes with the server's SQLSTATE. It prints
//! both runs' counts and times, and every test whose outcome differs with
//! its message.
//!
//! Where the suite comes from (tests/driver_suite/suite.txt, pinned by hash;
//! tests/driver_suite/setup.sh fetches it): PyMySQL 0.10.1 is the last release
//! whose sdist ships its suite (`pymysql/tests`); from 1.0 on the sdist holds
//! only `tests/test_auth.py`, for MySQL 8's SHA-256 users. The driver under
//! test is the sdist's own `pymysql`: the venv has no other, so suite and
//! driver match.
//!
//! What is not run: the suite skips by itself what needs things this machine
//! lacks (a Unix socket, the PAM, SHA-256, "two questions" and "three
//! attempts" auth plugins, an `unix_socket` user, a server with a legacy
//! configuration, manual intervention); those skips are the same both ways.
//! [`DESELECTED`] lists the tests left out of both runs, each with why.
//!
//! Needs MariaDB on 127.0.0.1:3306 and tests/driver_suite/setup.sh to have
//! run: without them it says so and skips, except with CI=true, where it
//! fails.

mod support;

use std::collections::BTreeMap;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use support::pg::ProxyProcess;
use support::server_logs::{GeneralLog, mysql};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");
const MARIADB: &str = "127.0.0.1:3306";

/// Fewer passing tests than this directly means the suite did not really
/// run: of its 167 tests, 150 pass on MariaDB 10.11, 14 skip themselves, one
/// is an expected failure and two are [`DESELECTED`].
const MIN_PASSED: usize = 140;

/// Tests left out of both runs: (pytest node id, why).
const DESELECTED: [(&str, &str); 2] = [
    (
        "pymysql/tests/test_load_local.py::TestLoadLocal::test_load_file",
        "loads pymysql/tests/data/load_local_data.txt, which the sdist does not ship \
         (its MANIFEST.in leaves data/ out); test_no_file still runs LOAD DATA LOCAL INFILE",
    ),
    (
        "pymysql/tests/test_load_local.py::TestLoadLocal::test_unbuffered_load_file",
        "the same missing data file, with an unbuffered cursor",
    ),
];

/// One run of the suite may take this long before it is stopped: directly
/// it takes 4 to 10 s, 2 s of it one test's deliberate sleep.
const RUN_TIMEOUT: Duration = Duration::from_secs(300);

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Outcome {
    Passed,
    Failed,
    Error,
    /// Skipped by the suite, or an expected failure (pytest's JUnit XML
    /// writes both as `<skipped>`).
    Skipped,
}

/// One run: each test's outcome and, unless it passed, its message.
#[derive(Debug)]
struct Run {
    tests: BTreeMap<String, (Outcome, String)>,
    elapsed: Duration,
    summary: String,
}

impl Run {
    fn count(&self, outcome: Outcome) -> usize {
        self.tests.values().filter(|(o, _)| *o == outcome).count()
    }

    fn passed(&self) -> Vec<&str> {
        self.tests
            .iter()
            .filter(|(_, (o, _))| *o == Outcome::Passed)
            .map(|(id, _)| id.as_str())
            .collect()
    }

    fn describe(&self) -> String {
        format!(
            "{} passed, {} failed, {} errors, {} skipped in {:.1} s (pytest: {})",
            self.count(Outcome::Passed),
            self.count(Outcome::Failed),
            self.count(Outcome::Error),
            self.count(Outcome::Skipped),
            self.elapsed.as_secs_f64(),
            self.summary
        )
    }
}

/// The venv's Python and the unpacked suite, when tests/driver_suite/setup.sh
/// has run and MariaDB answers. Otherwise says why and skips, except in CI
/// (`CI=true`), where it fails.
fn available() -> Option<(PathBuf, PathBuf)> {
    let dir = Path::new(ROOT).join("tests/driver_suite");
    let pinned = std::fs::read_to_string(dir.join("suite.txt")).expect("suite.txt");
    let version = pinned
        .lines()
        .find_map(|l| l.strip_prefix("PyMySQL=="))
        .and_then(|l| l.split_whitespace().next())
        .expect("suite.txt pins PyMySQL==VERSION");
    let python = dir.join(".venv/bin/python");
    let suite = dir.join(format!(".venv/PyMySQL-{version}"));
    let reason =
        if TcpStream::connect_timeout(&MARIADB.parse().expect("address"), Duration::from_secs(2))
            .is_err()
        {
            format!("no MariaDB server answers on {MARIADB}")
        } else if Command::new("mysql").arg("--version").output().is_err() {
            "the mysql client is not installed".to_owned()
        } else if !python.exists() || !suite.join("pymysql/tests/base.py").exists() {
            "PyMySQL's test suite is missing (run tests/driver_suite/setup.sh)".to_owned()
        } else {
            return Some((python, suite));
        };
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("driver suite: {reason} (required in CI)");
    }
    eprintln!("skipping the driver suite: {reason}");
    None
}

/// The suite's two databases (its `databases.json` names two), made empty
/// before each run, and a user of its own, so that the server's general log
/// tells the suite's connections from any other client's. All dropped at the
/// end.
struct Sandbox {
    user: String,
    dbs: [String; 2],
}

impl Sandbox {
    fn new() -> Sandbox {
        let pid = std::process::id();
        let sandbox = Sandbox {
            user: format!("flowaudit_suite_{pid}"),
            dbs: [
                format!("flowaudit_suite_{pid}_1"),
                format!("flowaudit_suite_{pid}_2"),
            ],
        };
        // Root's rights, as the suite expects (it reads mysql.user, kills
        // its own connections); no password, like root here.
        sandbox.admin(&format!(
            "DROP USER IF EXISTS '{u}'@'127.0.0.1'; CREATE USER '{u}'@'127.0.0.1'; \
             GRANT ALL PRIVILEGES ON *.* TO '{u}'@'127.0.0.1' WITH GRANT OPTION;",
            u = sandbox.user
        ));
        sandbox
    }

    fn recreate(&self) {
        let sql: String = self
            .dbs
            .iter()
            .map(|db| format!("DROP DATABASE IF EXISTS {db}; CREATE DATABASE {db};"))
            .collect();
        self.admin(&sql);
    }

    fn admin(&self, sql: &str) {
        let out = mysql(&["-e", sql]);
        assert!(
            out.status.success(),
            "{sql}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        for db in &self.dbs {
            let _ = mysql(&["-e", &format!("DROP DATABASE IF EXISTS {db}")]);
        }
        let _ = mysql(&[
            "-e",
            &format!("DROP USER IF EXISTS '{}'@'127.0.0.1'", self.user),
        ]);
    }
}

/// Copies the unpacked suite to `to`, without compiled bytecode.
fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for entry in std::fs::read_dir(from).expect("read suite dir") {
        let entry = entry.expect("dir entry");
        let (src, dst) = (entry.path(), to.join(entry.file_name()));
        if entry.file_type().expect("file type").is_dir() {
            if entry.file_name() != "__pycache__" {
                copy_tree(&src, &dst);
            }
        } else {
            std::fs::copy(&src, &dst).expect("copy suite file");
        }
    }
}

/// Runs the suite in a copy of its own, its `databases.json` pointing at
/// `port`, and reads each test's outcome from pytest's JUnit XML.
fn run_suite(python: &Path, suite: &Path, sandbox: &Sandbox, port: u16, label: &str) -> Run {
    sandbox.recreate();
    let work = tempfile::tempdir().expect("temp dir");
    let tree = work.path().join("suite");
    copy_tree(suite, &tree);
    // The suite's own default settings, at our address and databases.
    let config = serde_json::json!([
        {"host": "127.0.0.1", "port": port, "user": sandbox.user, "passwd": "",
         "db": sandbox.dbs[0], "use_unicode": true, "local_infile": true},
        {"host": "127.0.0.1", "port": port, "user": sandbox.user, "passwd": "",
         "db": sandbox.dbs[1]},
    ]);
    std::fs::write(
        tree.join("pymysql/tests/databases.json"),
        config.to_string(),
    )
    .expect("write databases.json");

    let junit = work.path().join("junit.xml");
    let output = work.path().join("output.txt");
    let mut cmd = Command::new(python);
    // `python -m` puts the suite's directory first on sys.path: its pymysql
    // is the one imported.
    cmd.args(["-m", "pytest", "-p", "no:cacheprovider", "-q", "-rfE"])
        .arg(format!("--junitxml={}", junit.display()));
    for (id, _) in DESELECTED {
        cmd.arg(format!("--deselect={id}"));
    }
    let log = std::fs::File::create(&output).expect("output file");
    let started = Instant::now();
    let mut child = cmd
        .arg("pymysql/tests")
        .current_dir(&tree)
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .stdin(Stdio::null())
        .stdout(log.try_clone().expect("output file"))
        .stderr(log)
        .spawn()
        .expect("pytest starts");
    let status = loop {
        if let Some(status) = child.try_wait().expect("pytest wait") {
            break status;
        }
        if started.elapsed() > RUN_TIMEOUT {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "{label}: the suite ran longer than {RUN_TIMEOUT:?}:\n{}",
                std::fs::read_to_string(&output).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let elapsed = started.elapsed();
    let text = std::fs::read_to_string(&output).unwrap_or_default();
    // 0: all passed; 1: some failed. Anything else is pytest failing to run.
    assert!(
        matches!(status.code(), Some(0 | 1)),
        "{label}: pytest exited {status}:\n{text}"
    );
    let xml = std::fs::read_to_string(&junit).expect("pytest wrote its JUnit XML");
    let summary = text
        .lines()
        .rev()
        .find(|l| l.contains(" in ") && (l.contains("passed") || l.contains("failed")))
        .unwrap_or("no summary line")
        .trim_matches(['=', ' '])
        .to_owned();
    Run {
        tests: parse_junit(&xml),
        elapsed,
        summary,
    }
}

/// Each `<testcase>` of pytest's JUnit XML: `classname::name` → outcome and
/// the message of its failure, error or skip.
fn parse_junit(xml: &str) -> BTreeMap<String, (Outcome, String)> {
    let mut tests = BTreeMap::new();
    for case in xml.split("<testcase ").skip(1) {
        // ElementTree escapes `>` in attributes, so the first one ends the tag.
        let (tag, rest) = case.split_once('>').expect("a testcase tag ends");
        let id = format!(
            "{}::{}",
            attribute(tag, "classname").expect("classname"),
            attribute(tag, "name").expect("name")
        );
        let body = if tag.ends_with('/') {
            ""
        } else {
            rest.split("</testcase>").next().unwrap_or("")
        };
        let first = |child: &'static str| body.find(&format!("<{child}")).map(|at| (at, child));
        let found = [first("failure"), first("error"), first("skipped")]
            .into_iter()
            .flatten()
            .min();
        let (outcome, message) = match found {
            None => (Outcome::Passed, String::new()),
            Some((at, child)) => {
                let element = &body[at..];
                let element_tag = element.split('>').next().unwrap_or("");
                let message = attribute(element_tag, "message").unwrap_or_default();
                let outcome = match child {
                    "failure" => Outcome::Failed,
                    "error" => Outcome::Error,
                    _ => Outcome::Skipped,
                };
                (outcome, message)
            }
        };
        let previous = tests.insert(id.clone(), (outcome, message));
        assert!(previous.is_none(), "{id} twice in the JUnit XML");
    }
    tests
}

/// The unescaped value of attribute `name` in a start tag's text (what
/// follows the element's name).
fn attribute(tag: &str, name: &str) -> Option<String> {
    let tag = format!(" {tag}");
    let start = tag.find(&format!(" {name}=\""))? + name.len() + 3;
    let end = start + tag[start..].find('"')?;
    Some(
        tag[start..end]
            .replace("&quot;", "\"")
            .replace("&apos;", "'")
            .replace("&lt;", "<")
            .replace("&gt;", ">")
            .replace("&#10;", "\n")
            .replace("&amp;", "&"),
    )
}

#[test]
fn pymysql_suite_passes_the_same_through_the_proxy() {
    let Some((python, suite)) = available() else {
        return;
    };
    let sandbox = Sandbox::new();
    for (id, why) in DESELECTED {
        eprintln!("deselected in both runs: {id}: {why}");
    }

    let direct = run_suite(&python, &suite, &sandbox, 3306, "direct");
    eprintln!("direct:        {}", direct.describe());

    let general_log = GeneralLog::start();
    let proxy = ProxyProcess::start(&format!("mysql://{MARIADB}"), &[]);
    let through = run_suite(
        &python,
        &suite,
        &sandbox,
        proxy.addr.port(),
        "through the proxy",
    );
    let stopped = proxy.stop();
    let logged = String::from_utf8_lossy(&general_log.into_bytes()).into_owned();
    eprintln!("through proxy: {}", through.describe());

    // Every test whose outcome differs, with its messages.
    let mut differ = Vec::new();
    let ids: std::collections::BTreeSet<&String> =
        direct.tests.keys().chain(through.tests.keys()).collect();
    for id in ids {
        let (a, b) = (direct.tests.get(id), through.tests.get(id));
        if a.map(|t| t.0) != b.map(|t| t.0) {
            differ.push(format!(
                "  {id}\n    direct: {a:?}\n    proxy:  {b:?}",
                a = a.map(|(o, m)| format!("{o:?} {m}")),
                b = b.map(|(o, m)| format!("{o:?} {m}")),
            ));
        }
    }
    if !differ.is_empty() {
        eprintln!("tests whose outcome differs:\n{}", differ.join("\n"));
    }
    for (id, (outcome, message)) in &direct.tests {
        if matches!(outcome, Outcome::Failed | Outcome::Error) {
            eprintln!("fails directly too: {id}: {message}");
        }
    }

    assert!(
        direct.count(Outcome::Passed) >= MIN_PASSED,
        "only {} tests passed directly (at least {MIN_PASSED} expected): {}",
        direct.count(Outcome::Passed),
        direct.describe()
    );
    assert_eq!(
        direct.passed(),
        through.passed(),
        "the pass sets differ:\n{}",
        differ.join("\n")
    );

    // The proxy recorded the suite: its statements, from many connections,
    // and the errors it provokes with the server's SQLSTATE.
    assert_eq!(stopped.code, Some(0), "{}", stopped.stderr);
    let trace = &stopped.trace;
    let conns: std::collections::BTreeSet<String> =
        trace.iter().map(|e| e["conn"].to_string()).collect();
    eprintln!(
        "the proxy's trace: {} statements on {} connections, {} with an error",
        trace.len(),
        conns.len(),
        trace.iter().filter(|e| e["error"].is_object()).count()
    );
    assert!(
        trace.len() >= through.count(Outcome::Passed),
        "{} statements recorded for {} passing tests",
        trace.len(),
        through.count(Outcome::Passed)
    );
    let foreign: Vec<&Value> = trace
        .iter()
        .filter(|e| e["source"] != "mysql-proxy")
        .collect();
    assert!(foreign.is_empty(), "not from the MySQL proxy: {foreign:?}");
    // test_nextset_error sends `SELECT 0; xyzzy;` three times with
    // CLIENT_MULTI_STATEMENTS: the second statement is a syntax error (1064,
    // SQLSTATE 42000).
    let syntax_errors = trace
        .iter()
        .filter(|e| e["sql"].as_str().is_some_and(|s| s.contains("xyzzy")))
        .filter(|e| e["error"]["code"] == "42000")
        .count();
    assert_eq!(
        syntax_errors, 3,
        "the suite's three `xyzzy` syntax errors, recorded with SQLSTATE 42000:\n{}",
        stopped.trace_text
    );

    // The same statements as the server's general log shows for the suite's
    // connections (its user's), each multi-statement query split into its
    // statements as the trace records them.
    let mut in_log = BTreeMap::<String, i64>::new();
    for statement in logged_statements(&logged, &sandbox.user) {
        *in_log.entry(statement).or_default() += 1;
    }
    let logged_total: i64 = in_log.values().sum();
    let mut only_traced = Vec::new();
    for event in trace {
        let sql = event["sql"].as_str().unwrap_or_default();
        for statement in statements(sql) {
            match in_log.get_mut(&statement) {
                Some(n) if *n > 0 => *n -= 1,
                _ => only_traced.push(event),
            }
        }
    }
    let only_logged: Vec<(&String, &i64)> = in_log.iter().filter(|(_, n)| **n > 0).collect();
    // A statement sent on a connection the server had already closed (the
    // suite's gone-away and killed-connection tests) never reaches its log:
    // the proxy records it with SQLSTATE 08S01.
    let (unsent, unlogged): (Vec<&Value>, Vec<&Value>) = only_traced
        .into_iter()
        .partition(|e| e["error"]["code"] == "08S01");
    eprintln!(
        "the general log: {} statements of the suite's connections; the trace has {} more, \
         sent on connections the server had closed: {:?}",
        logged_total,
        unsent.len(),
        unsent.iter().map(|e| &e["sql"]).collect::<Vec<_>>()
    );
    assert!(
        only_logged.is_empty() && unlogged.is_empty(),
        "the trace and the general log differ:\n  only in the log: {only_logged:?}\n  \
         only in the trace: {unlogged:?}"
    );
}

/// The statements of the general log's `Query` and `Init DB` entries on the
/// connections that `user` opened; `Init DB` as the trace records it
/// (`USE \`db\``).
fn logged_statements(log: &str, user: &str) -> Vec<String> {
    // Entries: `[YYMMDD HH:MM:SS]\t  ID Command\tArgument`; an argument's
    // further lines follow unmarked.
    let mut entries: Vec<(String, String, String)> = Vec::new();
    for line in log.lines() {
        let rest = line
            .split_once('\t')
            .map_or(line, |(_, r)| r)
            .trim_start_matches(['\t', ' ']);
        let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
        let entry = (!digits.is_empty())
            .then(|| rest[digits.len()..].strip_prefix(' '))
            .flatten()
            .filter(|r| r.starts_with(|c: char| c.is_ascii_uppercase()))
            .and_then(|r| r.split_once('\t'));
        match entry {
            Some((command, argument)) => {
                entries.push((digits, command.to_owned(), argument.to_owned()));
            }
            None if line.starts_with('/') || line.starts_with("Tcp port") => {}
            None if line.starts_with("Time\t") => {}
            None => {
                if let Some(last) = entries.last_mut() {
                    last.2.push('\n');
                    last.2.push_str(line);
                }
            }
        }
    }
    let ours: std::collections::HashSet<&str> = entries
        .iter()
        .filter(|(_, command, argument)| {
            command == "Connect" && argument.starts_with(&format!("{user}@"))
        })
        .map(|(id, _, _)| id.as_str())
        .collect();
    entries
        .iter()
        .filter(|(id, _, _)| ours.contains(id.as_str()))
        .flat_map(|(_, command, argument)| match command.as_str() {
            "Query" => statements(argument),
            "Init DB" => vec![format!("USE `{argument}`")],
            _ => Vec::new(),
        })
        .collect()
}

/// The statements of a query text, split at the semicolons outside quotes,
/// each trimmed: what a multi-statement query runs one by one.
fn statements(sql: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut current = String::new();
    let mut quote: Option<char> = None;
    let mut escaped = false;
    for c in sql.chars() {
        match (quote, c) {
            _ if escaped => escaped = false,
            (Some(_), '\\') => escaped = true,
            (Some(q), c) if c == q => quote = None,
            (None, '\'' | '"' | '`') => quote = Some(c),
            (None, ';') => {
                out.push(std::mem::take(&mut current));
                continue;
            }
            _ => {}
        }
        current.push(c);
    }
    out.push(current);
    out.into_iter()
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
        .collect()
}
