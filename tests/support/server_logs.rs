//! Servers that log every statement, for the tests that compare what
//! flowaudit's proxy recorded with what the server itself logged: a throwaway
//! PostgreSQL cluster writing stderr and csvlog, and MariaDB's general query
//! log switched on for one run.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// True when we run as root: the PostgreSQL server refuses to, so its
/// programs run as the `postgres` user.
pub fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

/// `program args…`, as the postgres user when we are root.
pub fn as_postgres(program: &str, args: &[&str]) -> Command {
    if is_root() {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--", program]).args(args);
        c
    } else {
        let mut c = Command::new(program);
        c.args(args);
        c
    }
}

pub fn run_ok(cmd: &mut Command) -> String {
    let out = cmd.output().expect("command runs");
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The newest PostgreSQL server programs of this machine.
pub fn pg_bindir() -> Option<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|e| Some(e.ok()?.path().join("bin")))
        .filter(|p| p.join("initdb").exists())
        .collect();
    dirs.sort();
    dirs.pop()
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// A throwaway PostgreSQL cluster on a free loopback port that logs every
/// statement with its duration to `log/pg` (stderr format, prefix
/// `%m [%p] %q%u@%d `), `log/pg.csv` and, when asked, `log/pg.json`.
/// Stopped when dropped.
#[derive(Debug)]
pub struct LoggingCluster {
    pub port: u16,
    dir: tempfile::TempDir,
    pg_ctl: PathBuf,
    sentinels: u32,
}

/// Where each of the cluster's logs stood at a moment: byte offsets.
#[derive(Debug, Clone, Copy)]
pub struct LogMark {
    stderr: u64,
    csv: u64,
}

impl LoggingCluster {
    /// Logging to stderr and csvlog; `None` when this machine has no
    /// PostgreSQL server programs.
    pub fn start() -> Option<LoggingCluster> {
        Self::start_logging("stderr,csvlog")
    }

    /// With the given `log_destination`.
    pub fn start_logging(destinations: &str) -> Option<LoggingCluster> {
        let bin = pg_bindir()?;
        let dir = tempfile::tempdir().expect("temp dir");
        if is_root() {
            run_ok(Command::new("chown").arg("postgres").arg(dir.path()));
        }
        let w = dir.path().to_str().expect("utf-8 path").to_owned();
        let data = format!("{w}/data");
        run_ok(&mut as_postgres(
            bin.join("initdb").to_str().expect("path"),
            &["-D", &data, "-A", "trust", "-U", "postgres", "--no-sync"],
        ));
        let port = free_port();
        let options = format!(
            "-p {port} -k {w} -c listen_addresses=127.0.0.1 -c logging_collector=on \
             -c log_destination={destinations} -c log_directory={w}/log -c log_filename=pg \
             -c log_statement=all -c log_min_duration_statement=0 \
             -c log_line_prefix='%m [%p] %q%u@%d ' -c fsync=off"
        );
        let pg_ctl = bin.join("pg_ctl");
        run_ok(&mut as_postgres(
            pg_ctl.to_str().expect("path"),
            &[
                "-D",
                &data,
                "-w",
                "-l",
                &format!("{w}/server.log"),
                "-o",
                &options,
                "start",
            ],
        ));
        Some(LoggingCluster {
            port,
            dir,
            pg_ctl,
            sentinels: 0,
        })
    }

    pub fn url(&self, db: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{db}", self.port)
    }

    /// A log file: `pg`, `pg.csv` or `pg.json`.
    pub fn log(&self, name: &str) -> PathBuf {
        self.dir.path().join("log").join(name)
    }

    /// A directory the server may read, for the files a test hands it.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Stops the server, so that everything it logged is in the files; the
    /// files stay until this is dropped.
    pub fn stop(&self) {
        let data = self.dir.path().join("data");
        let _ = as_postgres(
            self.pg_ctl.to_str().unwrap_or("pg_ctl"),
            &[
                "-D",
                data.to_str().unwrap_or(""),
                "-m",
                "fast",
                "-w",
                "stop",
            ],
        )
        .output();
    }

    /// psql on the cluster directly (not through a proxy), stopping at the
    /// first error.
    pub fn psql(&self, db: &str, args: &[&str]) -> String {
        run_ok(
            Command::new("psql")
                .args([
                    "-X",
                    "-q",
                    "-At",
                    "-v",
                    "ON_ERROR_STOP=1",
                    "-h",
                    "127.0.0.1",
                ])
                .args(["-p", &self.port.to_string(), "-U", "postgres", "-d", db])
                .args(args),
        )
    }

    /// A statement on the `postgres` database that both logs must show before
    /// the returned mark is taken: everything logged before it is then in the
    /// files (the server logs a statement before the client sees it finish).
    pub fn mark(&mut self) -> LogMark {
        self.sentinels += 1;
        let tag = format!("flowaudit-sentinel-{}", self.sentinels);
        self.psql("postgres", &["-c", &format!("SELECT '{tag}'")]);
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let seen = |name: &str| {
                std::fs::read(self.log(name)).is_ok_and(|b| memchr_find(&b, tag.as_bytes()))
            };
            if seen("pg") && seen("pg.csv") {
                break;
            }
            assert!(Instant::now() < deadline, "{tag} never reached the logs");
            std::thread::sleep(Duration::from_millis(20));
        }
        let len = |name: &str| std::fs::metadata(self.log(name)).map_or(0, |m| m.len());
        LogMark {
            stderr: len("pg"),
            csv: len("pg.csv"),
        }
    }

    /// The records of database `db` logged between two marks, written to
    /// `dir/pg.log` and `dir/pg.csv`; returns those two paths.
    pub fn slice(&self, from: LogMark, to: LogMark, db: &str, dir: &Path) -> (PathBuf, PathBuf) {
        let read = |name: &str, from: u64, to: u64| {
            let bytes = std::fs::read(self.log(name)).expect("log file");
            String::from_utf8_lossy(&bytes[from as usize..to as usize]).into_owned()
        };
        let stderr = only_database_stderr(&read("pg", from.stderr, to.stderr), db);
        let csv = only_database_csv(&read("pg.csv", from.csv, to.csv), db);
        let (a, b) = (dir.join("pg.log"), dir.join("pg.csv"));
        std::fs::write(&a, stderr).expect("write log slice");
        std::fs::write(&b, csv).expect("write log slice");
        (a, b)
    }
}

impl Drop for LoggingCluster {
    fn drop(&mut self) {
        self.stop();
    }
}

fn memchr_find(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// The stderr log's records whose prefix names `db` (`… user@db `); a record
/// is its first line and the tab-indented lines that continue it.
fn only_database_stderr(text: &str, db: &str) -> String {
    let tag = format!("@{db} ");
    let mut out = String::new();
    let mut keep = false;
    for line in text.split_inclusive('\n') {
        if !line.starts_with('\t') {
            keep = line.split(']').nth(1).is_some_and(|rest| {
                rest.split_whitespace()
                    .next()
                    .is_some_and(|who| format!("{who} ").ends_with(&tag))
            });
        }
        if keep {
            out.push_str(line);
        }
    }
    out
}

/// The csvlog's records whose `database_name` (the third column) is `db`;
/// fields in quotes may hold newlines.
fn only_database_csv(text: &str, db: &str) -> String {
    let mut out = String::new();
    let mut record = String::new();
    let mut quoted = false;
    for c in text.chars() {
        record.push(c);
        if c == '"' {
            quoted = !quoted;
        } else if c == '\n' && !quoted {
            if csv_field(&record, 2).as_deref() == Some(db) {
                out.push_str(&record);
            }
            record.clear();
        }
    }
    out
}

/// Field `n` of one CSV record, unquoted.
fn csv_field(record: &str, n: usize) -> Option<String> {
    let mut field = 0;
    let mut quoted = false;
    let mut value = String::new();
    let mut chars = record.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '"' if quoted && chars.peek() == Some(&'"') => {
                chars.next();
                value.push('"');
            }
            '"' => quoted = !quoted,
            ',' if !quoted => {
                if field == n {
                    return Some(value);
                }
                field += 1;
                value.clear();
            }
            _ => value.push(c),
        }
    }
    (field == n).then_some(value)
}

/// The mysql client on the machine's MariaDB as root.
pub fn mysql(args: &[&str]) -> std::process::Output {
    Command::new("mysql")
        .args(["-h", "127.0.0.1", "-P", "3306", "-u", "root", "--batch"])
        .arg("--skip-column-names")
        .args(args)
        .output()
        .expect("mysql runs")
}

/// MariaDB's general query log switched to a file of our own for one run;
/// the server's previous setting comes back when this is dropped.
#[derive(Debug)]
pub struct GeneralLog {
    dir: tempfile::TempDir,
    restore: String,
    on: bool,
}

impl GeneralLog {
    pub fn start() -> GeneralLog {
        let dir = tempfile::tempdir().expect("temp dir");
        // The server writes the log as its own user.
        let mut perms = std::fs::metadata(dir.path()).expect("meta").permissions();
        std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o777);
        std::fs::set_permissions(dir.path(), perms).expect("chmod");
        let before = mysql(&["-e", "select @@general_log, @@general_log_file"]);
        let before = String::from_utf8_lossy(&before.stdout).trim().to_owned();
        let (was_on, old_file) = before.split_once('\t').unwrap_or(("0", "general.log"));
        let restore = format!(
            "SET GLOBAL general_log = {}; SET GLOBAL general_log_file = '{}'",
            if was_on == "1" { "ON" } else { "OFF" },
            old_file.replace('\'', "''")
        );
        let log = dir.path().join("general.log");
        let on = mysql(&[
            "-e",
            &format!(
                "SET GLOBAL general_log_file = '{}'; SET GLOBAL general_log = ON",
                log.display()
            ),
        ]);
        assert!(
            on.status.success(),
            "{}",
            String::from_utf8_lossy(&on.stderr)
        );
        GeneralLog {
            dir,
            restore,
            on: true,
        }
    }

    /// Switches the log off and writes the lines of the connections that
    /// opened database `db` to `to`: the log is the whole server's.
    pub fn finish(self, db: &str, to: &Path) {
        let text = self.into_text();
        std::fs::write(to, only_connections(&text, db)).expect("write log");
    }

    /// Switches the log off and gives all it holds.
    pub fn into_text(mut self) -> String {
        let _ = mysql(&["-e", &self.restore]);
        self.on = false;
        // Binary values of prepared statements are written as their bytes.
        let bytes = std::fs::read(self.dir.path().join("general.log")).expect("general log");
        String::from_utf8_lossy(&bytes).into_owned()
    }
}

impl Drop for GeneralLog {
    fn drop(&mut self) {
        if self.on {
            let _ = mysql(&["-e", &self.restore]);
        }
    }
}

/// Keeps the lines of the connections whose Connect line names `db` (and
/// the header).
pub fn only_connections(text: &str, db: &str) -> String {
    let mut ours = std::collections::HashSet::new();
    let mut keep_line = true;
    let mut out = String::new();
    for line in text.lines() {
        let t = line
            .split_once('\t')
            .map_or(line, |(_, r)| r)
            .trim_start_matches(['\t', ' ']);
        let digits: String = t.chars().take_while(char::is_ascii_digit).collect();
        let is_entry = !digits.is_empty()
            && t[digits.len()..].starts_with(' ')
            && t[digits.len() + 1..]
                .chars()
                .next()
                .is_some_and(|c| c.is_ascii_uppercase());
        if is_entry {
            if t.contains(&format!(" on {db} using")) {
                ours.insert(digits.clone());
            }
            keep_line = ours.contains(&digits);
        } else if line.starts_with('/') || line.starts_with("Tcp port") || line.starts_with("Time")
        {
            keep_line = true;
        }
        if keep_line {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}
