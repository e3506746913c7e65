//! MySQL drivers' own test suites through the MySQL proxy (issue 17): each
//! runs twice against the machine's MariaDB, directly and then through
//! `flowaudit proxy --upstream mysql://127.0.0.1:3306`, in a copy of its own
//! pointed at the server or the proxy the way the suite reads its settings.
//! The suites, from their source distributions on PyPI (pinned by hash in
//! tests/driver_suite/suite.txt; tests/driver_suite/setup.sh fetches them):
//! - [`PYMYSQL`]: PyMySQL 0.10.1, pure Python, the text protocol with
//!   multi-statements and LOAD DATA LOCAL. 0.10.1 is the last release whose
//!   sdist ships its suite (`pymysql/tests`); from 1.0 on the sdist holds
//!   only `tests/test_auth.py`, for MySQL 8's SHA-256 users. The driver under
//!   test is the sdist's own `pymysql` (the venv has no other).
//! - [`MARIADB_CONNECTOR`]: MariaDB Connector/Python 1.1.14 on Debian's
//!   Connector/C: the binary protocol, executemany as MariaDB's bulk execute,
//!   a prepare and its execute sent together, XA, change user.
//!
//! For each this checks that the same tests pass both ways (but those that
//! fail through the proxy by design, each named with why), that enough pass
//! directly to mean the suite ran; and that the proxy recorded the suite's
//! statements: the same ones as the server's general query log shows for the
//! suite's connections (those of a user of its own, and any on its
//! databases), plus those sent on a connection the server had already
//! closed, recorded with SQLSTATE 08S01; and the errors the suite provokes
//! with the server's SQLSTATE. It prints both runs' counts and times, and
//! every test whose outcome differs with its message.
//!
//! What is not run: each suite skips by itself what needs things this
//! machine lacks (a Unix socket; the PAM, SHA-256, "two questions" and
//! "three attempts" auth plugins; newer servers or Connector/C; a server
//! with a legacy configuration; manual intervention); those skips are the
//! same both ways. Each suite's `deselected` lists the tests left out of
//! both runs, each with why.
//!
//! Needs MariaDB on 127.0.0.1:3306 and tests/driver_suite/setup.sh to have
//! run: without them a suite's test says so and skips, except with CI=true,
//! where it fails.

mod support;

use std::collections::BTreeMap;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use flowaudit::fingerprint::fingerprint;
use serde_json::Value;
use support::pg::ProxyProcess;
use support::server_logs::{GeneralLog, mysql};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");
const MARIADB: &str = "127.0.0.1:3306";

/// One driver's own suite: where it is, how it is pointed at a server, and
/// what is left out of it.
struct Suite {
    /// What the output calls it.
    name: &'static str,
    /// Its sdist's name in suite.txt: setup.sh unpacks it to
    /// `.venv/NAME-VERSION`.
    package: &'static str,
    /// Where pytest runs, in the unpacked sdist, and what it collects there.
    workdir: &'static str,
    tests: &'static str,
    /// Points the suite, in its copy `tree`, at `port` as the sandbox's
    /// user: writes its settings file, or gives environment variables.
    configure: fn(tree: &Path, sandbox: &Sandbox, port: u16) -> Vec<(&'static str, String)>,
    /// Fewer passing tests than this directly means the suite did not
    /// really run.
    min_passed: usize,
    /// Tests left out of both runs: (pytest node id, why).
    deselected: &'static [(&'static str, &'static str)],
    /// Tests that pass directly and fail through the proxy by design:
    /// (JUnit `classname::name`, why). They must fail through the proxy.
    by_design: &'static [(&'static str, &'static str)],
    /// What else the proxy's trace of this suite must hold.
    check_trace: fn(&[Value]) -> Result<(), String>,
}

/// PyMySQL 0.10.1's suite: of its 167 tests, 150 pass on MariaDB 10.11, 14
/// skip themselves, one is an expected failure and two are deselected.
const PYMYSQL: Suite = Suite {
    name: "PyMySQL 0.10.1",
    package: "PyMySQL",
    workdir: ".",
    tests: "pymysql/tests",
    configure: |tree, sandbox, port| {
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
        Vec::new()
    },
    min_passed: 140,
    deselected: &[
        (
            "pymysql/tests/test_load_local.py::TestLoadLocal::test_load_file",
            "loads pymysql/tests/data/load_local_data.txt, which the sdist does not ship \
             (its MANIFEST.in leaves data/ out); test_no_file still runs LOAD DATA LOCAL INFILE",
        ),
        (
            "pymysql/tests/test_load_local.py::TestLoadLocal::test_unbuffered_load_file",
            "the same missing data file, with an unbuffered cursor",
        ),
    ],
    by_design: &[],
    check_trace: |trace| {
        // test_nextset_error sends `SELECT 0; xyzzy;` three times with
        // CLIENT_MULTI_STATEMENTS: the second statement is a syntax error
        // (1064, SQLSTATE 42000).
        let syntax_errors = trace
            .iter()
            .filter(|e| e["sql"].as_str().is_some_and(|s| s.contains("xyzzy")))
            .filter(|e| e["error"]["code"] == "42000")
            .count();
        if syntax_errors == 3 {
            Ok(())
        } else {
            Err(format!(
                "{syntax_errors} `xyzzy` syntax errors recorded with SQLSTATE 42000, not 3"
            ))
        }
    },
};

/// MariaDB Connector/Python 1.1.14's suite, on Debian's Connector/C.
const MARIADB_CONNECTOR: Suite = Suite {
    name: "MariaDB Connector/Python 1.1.14",
    package: "mariadb",
    workdir: "testing",
    tests: "test",
    // The suite reads its settings from the environment (test/conf_test.py).
    configure: |_, sandbox, port| {
        vec![
            ("TEST_DB_HOST", "127.0.0.1".to_owned()),
            ("TEST_DB_PORT", port.to_string()),
            ("TEST_DB_USER", sandbox.user.clone()),
            ("TEST_DB_DATABASE", sandbox.dbs[0].clone()),
        ]
    },
    min_passed: 170,
    deselected: &[
        (
            "test/integration/test_connection.py::TestConnection::test_tls_version",
            "needs a server with TLS; the machine's MariaDB has none (it fails directly)",
        ),
        (
            "test/integration/test_exception.py::TestException::test_conn_timeout_exception",
            "connects to an unroutable address and waits out the connect timeout (30 s); \
             no server is involved",
        ),
    ],
    by_design: &[(
        "test.integration.test_connection.TestConnection::test_compress",
        "asks for a compressed connection; the proxy clears CLIENT_COMPRESS in the \
         server's greeting so that it can read the packets (issue 17), and the session \
         runs uncompressed",
    )],
    check_trace: |_| Ok(()),
};

/// One run of a suite may take this long before it is stopped: directly
/// PyMySQL's takes 4 to 10 s, Connector/Python's about 20 s.
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

/// The venv's Python and the unpacked `suite`, when
/// tests/driver_suite/setup.sh has run and MariaDB answers. Otherwise says
/// why and skips, except in CI (`CI=true`), where it fails.
fn available(suite: &Suite) -> Option<(PathBuf, PathBuf)> {
    let dir = Path::new(ROOT).join("tests/driver_suite");
    let pinned = std::fs::read_to_string(dir.join("suite.txt")).expect("suite.txt");
    let version = pinned
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{}==", suite.package)))
        .and_then(|l| l.split_whitespace().next())
        .unwrap_or_else(|| panic!("suite.txt pins {}==VERSION", suite.package));
    let python = dir.join(".venv/bin/python");
    let tree = dir.join(format!(".venv/{}-{version}", suite.package));
    let reason =
        if TcpStream::connect_timeout(&MARIADB.parse().expect("address"), Duration::from_secs(2))
            .is_err()
        {
            format!("no MariaDB server answers on {MARIADB}")
        } else if Command::new("mysql").arg("--version").output().is_err() {
            "the mysql client is not installed".to_owned()
        } else if !python.exists() || !tree.join(suite.workdir).join(suite.tests).is_dir() {
            format!(
                "{}'s test suite is missing (run tests/driver_suite/setup.sh)",
                suite.name
            )
        } else {
            return Some((python, tree));
        };
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("driver suite: {reason} (required in CI)");
    }
    eprintln!("skipping {}: {reason}", suite.name);
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
    fn new(tag: &str) -> Sandbox {
        let pid = std::process::id();
        let sandbox = Sandbox {
            user: format!("flowaudit_{tag}_{pid}"),
            dbs: [
                format!("flowaudit_{tag}_{pid}_1"),
                format!("flowaudit_{tag}_{pid}_2"),
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

/// Runs `suite` in a copy of its own (`tree`) pointed at `port`, and reads
/// each test's outcome from pytest's JUnit XML.
fn run_suite(
    suite: &Suite,
    python: &Path,
    tree: &Path,
    sandbox: &Sandbox,
    port: u16,
    label: &str,
) -> Run {
    sandbox.recreate();
    let work = tempfile::tempdir().expect("temp dir");
    let copy = work.path().join("suite");
    copy_tree(tree, &copy);
    let env = (suite.configure)(&copy, sandbox, port);
    let junit = work.path().join("junit.xml");
    let output = work.path().join("output.txt");
    let mut cmd = Command::new(python);
    // `python -m` puts the working directory first on sys.path: PyMySQL's
    // suite imports the pymysql beside it. The root directory is the
    // working one, which node ids are relative to.
    cmd.args(["-m", "pytest", "-p", "no:cacheprovider", "-q", "-rfE"])
        .args(["--rootdir", "."])
        .arg(format!("--junitxml={}", junit.display()));
    for (id, _) in suite.deselected {
        cmd.arg(format!("--deselect={id}"));
    }
    let log = std::fs::File::create(&output).expect("output file");
    let started = Instant::now();
    let mut child = cmd
        .arg(suite.tests)
        .current_dir(copy.join(suite.workdir))
        .envs(env)
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
    same_through_the_proxy(&PYMYSQL, "pymysql");
}

#[test]
fn mariadb_connector_suite_passes_the_same_through_the_proxy() {
    same_through_the_proxy(&MARIADB_CONNECTOR, "mariadb_py");
}

/// The suites one at a time: each switches the server's general log on.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn same_through_the_proxy(suite: &Suite, tag: &str) {
    let Some((python, tree)) = available(suite) else {
        return;
    };
    let _alone = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let sandbox = Sandbox::new(tag);
    eprintln!("{}", suite.name);
    for (id, why) in suite.deselected {
        eprintln!("deselected in both runs: {id}: {why}");
    }

    let direct = run_suite(suite, &python, &tree, &sandbox, 3306, "direct");
    eprintln!("direct:        {}", direct.describe());

    let general_log = GeneralLog::start();
    let proxy = ProxyProcess::start(&format!("mysql://{MARIADB}"), &[]);
    let through = run_suite(
        suite,
        &python,
        &tree,
        &sandbox,
        proxy.addr.port(),
        "through the proxy",
    );
    let stopped = proxy.stop();
    let logged = general_log.into_text();
    // Kept for a look when the comparison below fails.
    let kept = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("driver-suite-{tag}"));
    std::fs::create_dir_all(&kept).expect("mkdir");
    std::fs::write(kept.join("general.log"), &logged).expect("keep the log");
    std::fs::write(kept.join("trace.jsonl"), &stopped.trace_text).expect("keep the trace");
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
        direct.count(Outcome::Passed) >= suite.min_passed,
        "only {} tests passed directly (at least {} expected): {}",
        direct.count(Outcome::Passed),
        suite.min_passed,
        direct.describe()
    );
    for (id, why) in suite.by_design {
        eprintln!("passes directly only, by design: {id}: {why}");
        assert_eq!(
            direct.tests.get(*id).map(|t| t.0),
            Some(Outcome::Passed),
            "{id} passes directly"
        );
        assert!(
            matches!(
                through.tests.get(*id).map(|t| t.0),
                Some(Outcome::Failed | Outcome::Error)
            ),
            "{id} fails through the proxy ({why})"
        );
    }
    let by_design: Vec<&str> = suite.by_design.iter().map(|(id, _)| *id).collect();
    let direct_passed: Vec<&str> = direct
        .passed()
        .into_iter()
        .filter(|id| !by_design.contains(id))
        .collect();
    assert_eq!(
        direct_passed,
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
    if let Err(e) = (suite.check_trace)(trace) {
        panic!("{e}:\n{}", stopped.trace_text);
    }
    let sqlstates: std::collections::BTreeSet<&str> = trace
        .iter()
        .filter_map(|e| e["error"]["code"].as_str())
        .collect();
    assert!(
        sqlstates
            .iter()
            .any(|c| c.len() == 5 && !c.starts_with("08")),
        "the server's errors recorded with their SQLSTATE: {sqlstates:?}"
    );

    // The log is the whole server's: another test switching it over to a
    // file of its own while this one ran (possible where several test
    // runs share the server, never in CI, where test binaries run one at a
    // time) took part of this run's statements away from it. Its switch
    // shows in this log, beside this test's own at the end.
    let switches = logged
        .lines()
        .filter(|l| l.contains("SET GLOBAL general_log"))
        .count();
    if switches > 1 && !std::env::var("CI").is_ok_and(|v| v == "true") {
        eprintln!(
            "skipping the comparison with the general log: another client switched it \
             during the run ({})",
            kept.display()
        );
        return;
    }

    // The same statements as the server's general log shows for the suite's
    // connections. The log writes a multi-statement query
    // whole, the trace each statement; a prepared statement's execution
    // with its values in place, the trace with `?` and `params` (so these
    // two are compared by fingerprint); a password as given, the trace as
    // `***`.
    let log = logged_statements(&logged, &sandbox);
    let mut exact = BTreeMap::<String, i64>::new();
    for statement in &log.queries {
        *exact.entry(hide_passwords(statement)).or_default() += 1;
    }
    let mut executed = BTreeMap::<String, i64>::new();
    for statement in &log.executed {
        *executed
            .entry(fingerprint(&without_escapes(statement)).text)
            .or_default() += 1;
    }
    let take = |counts: &mut BTreeMap<String, i64>, key: &str| match counts.get_mut(key) {
        Some(n) if *n > 0 => {
            *n -= 1;
            true
        }
        _ => false,
    };
    let mut only_traced = Vec::new();
    // Statements the server never answered (08S01) last: they may or may
    // not have reached its log, and must not take another's entry.
    let unanswered = |e: &&Value| e["error"]["code"] == "08S01";
    let answered_first = trace
        .iter()
        .filter(|e| !unanswered(e))
        .chain(trace.iter().filter(unanswered));
    for event in answered_first {
        let sql = event["sql"].as_str().unwrap_or_default();
        for statement in statements(sql) {
            let shape = fingerprint(&statement).text;
            let found = take(&mut exact, &statement)
                || take(&mut executed, &shape)
                // A statement that failed to prepare is recorded as failed;
                // the server logs only the prepares that succeed.
                || (event["error"].is_object() && statement.contains('?'));
            if !found {
                only_traced.push(event);
            }
        }
    }
    let only_logged: Vec<(&String, &i64)> = exact
        .iter()
        .chain(executed.iter())
        .filter(|(_, n)| **n > 0)
        .collect();
    // A statement sent on a connection the server had already closed (the
    // suite's gone-away and killed-connection tests) never reaches its log:
    // the proxy records it with SQLSTATE 08S01.
    let (unsent, unlogged): (Vec<&Value>, Vec<&Value>) = only_traced
        .into_iter()
        .partition(|e| e["error"]["code"] == "08S01");
    eprintln!(
        "the general log: {} statements and {} prepared statements' executions on the \
         suite's connections; the trace has {} more, sent on connections the server had \
         closed: {:?}",
        log.queries.len(),
        log.executed.len(),
        unsent.len(),
        unsent.iter().map(|e| &e["sql"]).collect::<Vec<_>>()
    );
    assert!(
        only_logged.is_empty() && unlogged.is_empty(),
        "the trace and the general log differ (both in {}):\n  only in the log: \
         {only_logged:?}\n  only in the trace: {unlogged:?}",
        kept.display()
    );
}

/// What the general log shows of some connections.
struct Logged {
    /// The statements of `Query` entries, and `Init DB` as the trace
    /// records it (`USE \`db\``).
    queries: Vec<String>,
    /// `Execute` entries: a prepared statement's text with its values.
    executed: Vec<String>,
}

/// What the general log shows of the sandbox's connections: those its user
/// opened, and those other users (the suite makes some) opened on its
/// databases.
fn logged_statements(log: &str, sandbox: &Sandbox) -> Logged {
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
            command == "Connect"
                && (argument.starts_with(&format!("{}@", sandbox.user))
                    || sandbox
                        .dbs
                        .iter()
                        .any(|db| argument.contains(&format!(" on {db} using "))))
        })
        .map(|(id, _, _)| id.as_str())
        .collect();
    let mut logged = Logged {
        queries: Vec::new(),
        executed: Vec::new(),
    };
    let mut previous = std::collections::HashMap::<&str, (&str, &str)>::new();
    for (id, command, argument) in entries
        .iter()
        .filter(|(id, _, _)| ours.contains(id.as_str()))
    {
        let before = previous.insert(id.as_str(), (command.as_str(), argument.as_str()));
        match command.as_str() {
            "Query" => logged.queries.extend(statements(argument)),
            "Init DB" => logged.queries.push(format!("USE `{argument}`")),
            // MariaDB's bulk execute (one command, many rows) of an UPDATE
            // or DELETE is logged once per row, its `?` left in: one
            // execution, as the trace records it.
            "Execute" if argument.contains('?') && before == Some(("Execute", argument)) => {}
            "Execute" => logged.executed.push(argument.clone()),
            _ => {}
        }
    }
    logged
}

/// A statement with each backslash escape in its quoted strings (`\'`,
/// `\\`, `\r`: how the general log writes a prepared statement's values) as
/// a plain `x`, which the fingerprint takes as one more character of the
/// value it replaces with `?`.
fn without_escapes(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len());
    let mut quote: Option<char> = None;
    let mut chars = sql.chars();
    while let Some(c) = chars.next() {
        match (quote, c) {
            (Some(_), '\\') => {
                chars.next();
                out.push('x');
                continue;
            }
            (Some(q), c) if c == q => quote = None,
            (None, '\'' | '"') => quote = Some(c),
            _ => {}
        }
        out.push(c);
    }
    out
}

/// A statement with the quoted strings after `IDENTIFIED` (a password, or
/// an authentication plugin's string) as `'***'`, as the trace records
/// them.
fn hide_passwords(sql: &str) -> String {
    let Some(at) = sql.to_ascii_lowercase().find("identified") else {
        return sql.to_owned();
    };
    let mut out = sql[..at].to_owned();
    let mut chars = sql[at..].chars().peekable();
    while let Some(c) = chars.next() {
        out.push(c);
        if c != '\'' {
            continue;
        }
        // Skip to the closing quote: `''` and `\'` are quotes inside.
        while let Some(c) = chars.next() {
            match c {
                '\\' => {
                    chars.next();
                }
                '\'' if chars.peek() == Some(&'\'') => {
                    chars.next();
                }
                '\'' => break,
                _ => {}
            }
        }
        out.push_str("***'");
    }
    out
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
