//! Shared by the tests that need the machine's PostgreSQL server: a throwaway
//! database per test, a proxy process, and the real clients (psql, pgbench).
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub const PG_ADDR: &str = "127.0.0.1:5432";

/// True when PostgreSQL and its client programs are here. Without them the
/// test says why and skips, except in CI (`CI=true`), where it fails.
pub fn available(what: &str) -> bool {
    let server =
        TcpStream::connect_timeout(&PG_ADDR.parse().expect("address"), Duration::from_secs(2))
            .is_ok();
    let clients = Command::new("psql").arg("--version").output().is_ok()
        && Command::new("pgbench").arg("--version").output().is_ok();
    if server && clients {
        return true;
    }
    let reason = if server {
        "psql and pgbench are not installed"
    } else {
        "no PostgreSQL server answers on 127.0.0.1:5432"
    };
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("{what}: {reason} (required in CI)");
    }
    eprintln!("skipping {what}: {reason}");
    false
}

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// A database of its own for one test, dropped at the end.
#[derive(Debug)]
pub struct TestDb {
    pub name: String,
}

impl TestDb {
    pub fn new(tag: &str) -> TestDb {
        let name = format!(
            "flowaudit_{tag}_{}_{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        admin(&format!("DROP DATABASE IF EXISTS {name}"));
        admin(&format!("CREATE DATABASE {name}"));
        TestDb { name }
    }

    /// Runs SQL directly on the server (not through a proxy).
    pub fn direct(&self, sql: &str) -> String {
        let out = Command::new("psql")
            .args([
                "-X",
                "-q",
                "-At",
                "-v",
                "ON_ERROR_STOP=1",
                "-h",
                "127.0.0.1",
                "-p",
                "5432",
            ])
            .args(["-U", "postgres", "-d", &self.name, "-c", sql])
            .output()
            .expect("psql runs");
        assert!(
            out.status.success(),
            "{sql}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }

    pub fn url(&self, addr: &str) -> String {
        format!("postgres://postgres@{addr}/{}", self.name)
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        admin(&format!(
            "DROP DATABASE IF EXISTS {} WITH (FORCE)",
            self.name
        ));
    }
}

fn admin(sql: &str) {
    let out = Command::new("psql")
        .args([
            "-X",
            "-q",
            "-h",
            "127.0.0.1",
            "-p",
            "5432",
            "-U",
            "postgres",
            "-d",
            "test",
        ])
        .args(["-c", sql])
        .output()
        .expect("psql runs");
    assert!(
        out.status.success(),
        "{sql}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A `flowaudit proxy` process writing its trace and JSON report to a
/// directory of its own.
#[derive(Debug)]
pub struct ProxyProcess {
    child: Child,
    pub addr: SocketAddr,
    pub dir: tempfile::TempDir,
    stderr: Arc<Mutex<String>>,
}

/// What a stopped proxy left.
#[derive(Debug)]
pub struct Stopped {
    pub code: Option<i32>,
    pub report: serde_json::Value,
    pub trace: Vec<serde_json::Value>,
    pub trace_text: String,
    pub stderr: String,
}

impl ProxyProcess {
    pub fn start(upstream: &str, extra: &[&str]) -> ProxyProcess {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut child = Command::new(env!("CARGO_BIN_EXE_flowaudit"))
            .args(["proxy", "--listen", "127.0.0.1:0", "--upstream", upstream])
            .arg("--trace")
            .arg(dir.path().join("trace.jsonl"))
            .args(["--format", "json", "--fail-on", "never", "--output"])
            .arg(dir.path().join("report.json"))
            .args(extra)
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("flowaudit proxy starts");
        let mut lines = BufReader::new(child.stderr.take().expect("stderr"));
        let mut first = String::new();
        lines.read_line(&mut first).expect("a line on stderr");
        let addr = first
            .split_whitespace()
            .find_map(|w| w.parse::<SocketAddr>().ok())
            .unwrap_or_else(|| panic!("no listening address in {first:?}"));
        let stderr = Arc::new(Mutex::new(first));
        let sink = stderr.clone();
        std::thread::spawn(move || {
            for line in lines.lines().map_while(Result::ok) {
                let mut s = sink.lock().expect("stderr buffer");
                s.push_str(&line);
                s.push('\n');
            }
        });
        ProxyProcess {
            child,
            addr,
            dir,
            stderr,
        }
    }

    pub fn port(&self) -> String {
        self.addr.port().to_string()
    }

    pub fn trace_path(&self) -> PathBuf {
        self.dir.path().join("trace.jsonl")
    }

    /// SIGTERM, then the exit code and stderr, for a run that writes no report.
    pub fn stop_without_report(mut self) -> (Option<i32>, String) {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).expect("signal");
        let status = self.child.wait().expect("proxy exits");
        std::thread::sleep(Duration::from_millis(50));
        let stderr = self.stderr.lock().expect("stderr").clone();
        (status.code(), stderr)
    }

    /// SIGTERM, then the report and the trace.
    pub fn stop(mut self) -> Stopped {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).expect("signal");
        let status = self.child.wait().expect("proxy exits");
        std::thread::sleep(Duration::from_millis(50));
        let report_text =
            std::fs::read_to_string(self.dir.path().join("report.json")).unwrap_or_default();
        let trace_text = std::fs::read_to_string(self.trace_path()).unwrap_or_default();
        let stderr = self.stderr.lock().expect("stderr").clone();
        let report = serde_json::from_str(&report_text)
            .unwrap_or_else(|e| panic!("report is JSON ({e}): {report_text}\nstderr: {stderr}"));
        let trace = trace_text
            .lines()
            .map(|l| serde_json::from_str(l).expect("trace line is JSON"))
            .collect();
        Stopped {
            code: status.code(),
            report,
            trace,
            trace_text,
            stderr,
        }
    }
}

/// psql through `port` on the given database.
pub fn psql(port: &str, db: &str, args: &[&str]) -> Output {
    psql_command(port, db, args).output().expect("psql runs")
}

/// The psql command of [`psql`], for a test that starts it in the background.
pub fn psql_command(port: &str, db: &str, args: &[&str]) -> Command {
    let mut command = Command::new("psql");
    command
        .args([
            "-X",
            "-h",
            "127.0.0.1",
            "-p",
            port,
            "-U",
            "postgres",
            "-d",
            db,
        ])
        .args(args);
    command
}

/// pgbench through `port` on the given database, options first.
pub fn pgbench(port: &str, db: &str, args: &[&str]) -> Output {
    Command::new("pgbench")
        .args(args)
        .args(["-h", "127.0.0.1", "-p", port, "-U", "postgres", db])
        .output()
        .expect("pgbench runs")
}

pub fn text(out: &Output) -> String {
    format!(
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// The events of a trace whose SQL contains `needle`.
pub fn with_sql<'a>(trace: &'a [serde_json::Value], needle: &str) -> Vec<&'a serde_json::Value> {
    trace
        .iter()
        .filter(|e| e["sql"].as_str().is_some_and(|s| s.contains(needle)))
        .collect()
}

/// The PostgreSQL server programs (initdb, pg_ctl) of this machine.
pub fn server_bin() -> Option<PathBuf> {
    let root = Path::new("/usr/lib/postgresql");
    let mut versions: Vec<PathBuf> = std::fs::read_dir(root)
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
        .filter(|p| p.join("initdb").exists())
        .collect();
    versions.sort();
    versions.pop()
}

/// The client corpus' Python (asyncpg, psycopg 3; `tests/corpus/setup.sh`
/// installs it). Without it the test says why and skips, except in CI
/// (`CI=true`), where it fails.
pub fn corpus_python(what: &str) -> Option<PathBuf> {
    let python = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpus/.venv/bin/python");
    if python.exists() {
        return Some(python);
    }
    let reason = "the corpus venv is missing (run tests/corpus/setup.sh)";
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("{what}: {reason} (required in CI)");
    }
    eprintln!("skipping {what}: {reason}");
    None
}

/// Runs an inline Python `script` with `python`, `DATABASE_URL` set to `url`;
/// panics with its output when it fails.
pub fn run_python(python: &Path, script: &str, url: &str) -> Output {
    let out = Command::new(python)
        .args(["-c", script])
        .env("DATABASE_URL", url)
        .output()
        .expect("python runs");
    assert!(out.status.success(), "python failed: {}", text(&out));
    out
}
