//! The PostgreSQL wire protocol spoken by hand on a `TcpStream`, for the
//! tests that send what no well-behaved client would: absurd lengths,
//! hostile values, a half-closed socket. Also a `flowaudit proxy` child
//! process whose stderr, descriptor limit and peak memory a test controls,
//! and a throwaway cluster that asks for a password.
//!
//! Message layouts: PostgreSQL protocol 3.0, "Message Formats".
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStderr, Command, Stdio};
use std::time::Duration;

use super::server_logs::{as_postgres, free_port, is_root, pg_bindir, run_ok};

/// Type OID of `numeric` (pg_type).
pub const NUMERIC_OID: u32 = 1700;

/// A message: tag, length (counting itself), body.
pub fn frame(tag: u8, body: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    out.extend_from_slice(&(body.len() as i32 + 4).to_be_bytes());
    out.extend_from_slice(body);
    out
}

/// StartupMessage for protocol 3.0.
pub fn startup_packet(user: &str, database: &str) -> Vec<u8> {
    let mut body = 196_608_u32.to_be_bytes().to_vec();
    for (key, value) in [("user", user), ("database", database)] {
        body.extend_from_slice(key.as_bytes());
        body.push(0);
        body.extend_from_slice(value.as_bytes());
        body.push(0);
    }
    body.push(0);
    let mut out = ((body.len() + 4) as u32).to_be_bytes().to_vec();
    out.extend(body);
    out
}

/// `Q`: a simple Query.
pub fn query(sql: &str) -> Vec<u8> {
    frame(b'Q', format!("{sql}\0").as_bytes())
}

/// `P`: Parse, with the parameter types given.
pub fn parse(statement: &str, sql: &str, types: &[u32]) -> Vec<u8> {
    let mut body = format!("{statement}\0{sql}\0").into_bytes();
    body.extend_from_slice(&(types.len() as i16).to_be_bytes());
    for t in types {
        body.extend_from_slice(&t.to_be_bytes());
    }
    frame(b'P', &body)
}

/// `B`: Bind with every value in binary format (format code 1 once) and
/// text results.
pub fn bind_binary(portal: &str, statement: &str, values: &[Vec<u8>]) -> Vec<u8> {
    let mut body = format!("{portal}\0{statement}\0").into_bytes();
    body.extend_from_slice(&1_i16.to_be_bytes());
    body.extend_from_slice(&1_i16.to_be_bytes());
    body.extend_from_slice(&(values.len() as i16).to_be_bytes());
    for v in values {
        body.extend_from_slice(&(v.len() as i32).to_be_bytes());
        body.extend_from_slice(v);
    }
    body.extend_from_slice(&0_i16.to_be_bytes());
    frame(b'B', &body)
}

/// `E`: Execute, all rows.
pub fn execute(portal: &str) -> Vec<u8> {
    let mut body = format!("{portal}\0").into_bytes();
    body.extend_from_slice(&0_i32.to_be_bytes());
    frame(b'E', &body)
}

/// `S`: Sync.
pub fn sync() -> Vec<u8> {
    frame(b'S', b"")
}

/// numeric's binary form (numeric_send): ndigits, weight, sign, dscale,
/// then the base-10000 digits.
pub fn numeric_binary(weight: i16, dscale: i16, digits: &[i16]) -> Vec<u8> {
    let mut v = (digits.len() as i16).to_be_bytes().to_vec();
    v.extend_from_slice(&weight.to_be_bytes());
    v.extend_from_slice(&0_u16.to_be_bytes());
    v.extend_from_slice(&dscale.to_be_bytes());
    for d in digits {
        v.extend_from_slice(&d.to_be_bytes());
    }
    v
}

/// The SQLSTATE of an ErrorResponse body (field `C`).
pub fn error_code(body: &[u8]) -> Option<String> {
    error_field(body, b'C')
}

/// A field of an ErrorResponse or NoticeResponse body.
pub fn error_field(body: &[u8], code: u8) -> Option<String> {
    let mut rest = body;
    while let Some((&field, tail)) = rest.split_first() {
        if field == 0 {
            return None;
        }
        let end = tail.iter().position(|&b| b == 0)?;
        if field == code {
            return Some(String::from_utf8_lossy(&tail[..end]).into_owned());
        }
        rest = &tail[end + 1..];
    }
    None
}

/// A client connection spoken by hand.
#[derive(Debug)]
pub struct Raw {
    pub stream: TcpStream,
}

impl Raw {
    /// Connects; every read gives up after `timeout`.
    pub fn connect(addr: SocketAddr, timeout: Duration) -> std::io::Result<Raw> {
        let stream = TcpStream::connect_timeout(&addr, Duration::from_secs(10))?;
        stream.set_read_timeout(Some(timeout))?;
        stream.set_nodelay(true)?;
        Ok(Raw { stream })
    }

    pub fn send(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.stream.write_all(bytes)
    }

    /// Sends a StartupMessage (the server trusts the user) and reads up to
    /// the first ReadyForQuery.
    pub fn login(&mut self, user: &str, database: &str) -> std::io::Result<Vec<(u8, Vec<u8>)>> {
        self.send(&startup_packet(user, database))?;
        self.until_ready()
    }

    /// One whole message from the server.
    pub fn message(&mut self) -> std::io::Result<(u8, Vec<u8>)> {
        let mut head = [0u8; 5];
        self.stream.read_exact(&mut head)?;
        let len = i32::from_be_bytes([head[1], head[2], head[3], head[4]]);
        let len = usize::try_from(len - 4)
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::InvalidData, "negative length"))?;
        let mut body = vec![0u8; len];
        self.stream.read_exact(&mut body)?;
        Ok((head[0], body))
    }

    /// Messages up to and including the next ReadyForQuery; an
    /// ErrorResponse does not stop it.
    pub fn until_ready(&mut self) -> std::io::Result<Vec<(u8, Vec<u8>)>> {
        let mut seen = Vec::new();
        loop {
            let (tag, body) = self.message()?;
            seen.push((tag, body));
            if tag == b'Z' {
                return Ok(seen);
            }
        }
    }

    /// Messages up to the next ReadyForQuery or the end of the stream (an
    /// ErrorResponse, then closed); an error only when nothing came.
    pub fn until_ready_or_end(&mut self) -> std::io::Result<Vec<(u8, Vec<u8>)>> {
        let mut seen = Vec::new();
        loop {
            match self.message() {
                Ok((tag, body)) => {
                    seen.push((tag, body));
                    if tag == b'Z' {
                        return Ok(seen);
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof && !seen.is_empty() => {
                    return Ok(seen);
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Reads and discards everything up to the end of the stream; the number
    /// of bytes read, or the error that ended it.
    pub fn drain(&mut self) -> Result<u64, std::io::Error> {
        std::io::copy(&mut self.stream, &mut std::io::sink())
    }

    pub fn shutdown_write(&self) -> std::io::Result<()> {
        self.stream.shutdown(Shutdown::Write)
    }
}

/// Peak resident memory of a process in KiB (`VmHWM` in /proc/PID/status).
pub fn vm_hwm_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("/proc status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmHWM in /proc status")
}

/// How a [`ProxyChild`] runs.
#[derive(Debug, Default, Clone)]
pub struct Spawn<'a> {
    /// Extra options after `proxy --listen … --upstream … --trace …`.
    pub args: &'a [&'a str],
    /// Run under `prlimit --nofile=N`.
    pub nofile: Option<u64>,
    /// Leave stderr a pipe that nobody reads after its first line.
    pub stderr_unread: bool,
}

/// What a stopped [`ProxyChild`] left.
#[derive(Debug)]
pub struct Stopped {
    pub code: Option<i32>,
    pub trace: String,
    pub stderr: String,
    /// The JSON report (empty when the run wrote none).
    pub report: String,
}

/// A `flowaudit proxy` process (the binary the tests built).
#[derive(Debug)]
pub struct ProxyChild {
    pub child: Child,
    pub addr: SocketAddr,
    pub dir: tempfile::TempDir,
    /// The pipe, read by a thread unless `stderr_unread`.
    stderr: Option<BufReader<ChildStderr>>,
    captured: std::sync::Arc<std::sync::Mutex<String>>,
}

impl ProxyChild {
    pub fn start(upstream: &str, how: &Spawn<'_>) -> ProxyChild {
        let dir = tempfile::tempdir().expect("temp dir");
        let binary = env!("CARGO_BIN_EXE_flowaudit");
        let mut command = match how.nofile {
            Some(n) => {
                let mut c = Command::new("prlimit");
                c.arg(format!("--nofile={n}:{n}")).arg("--").arg(binary);
                c
            }
            None => Command::new(binary),
        };
        command
            .args(["proxy", "--listen", "127.0.0.1:0", "--upstream", upstream])
            .arg("--trace")
            .arg(dir.path().join("trace.jsonl"))
            .args(["--format", "json", "--fail-on", "never", "--output"])
            .arg(dir.path().join("report.json"))
            .args(how.args)
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut child = command.spawn().expect("flowaudit proxy starts");
        let mut lines = BufReader::new(child.stderr.take().expect("stderr"));
        let mut first = String::new();
        lines.read_line(&mut first).expect("a line on stderr");
        let addr = first
            .split_whitespace()
            .find_map(|w| w.parse::<SocketAddr>().ok())
            .unwrap_or_else(|| panic!("no listening address in {first:?}"));
        let captured = std::sync::Arc::new(std::sync::Mutex::new(first));
        let stderr = if how.stderr_unread {
            Some(lines)
        } else {
            read_into(lines, captured.clone());
            None
        };
        ProxyChild {
            child,
            addr,
            dir,
            stderr,
            captured,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn trace_path(&self) -> PathBuf {
        self.dir.path().join("trace.jsonl")
    }

    pub fn trace_text(&self) -> String {
        std::fs::read_to_string(self.trace_path()).unwrap_or_default()
    }

    pub fn vm_hwm_kib(&self) -> u64 {
        vm_hwm_kib(self.pid())
    }

    /// Starts reading a stderr that was left unread.
    pub fn read_stderr(&mut self) {
        if let Some(lines) = self.stderr.take() {
            read_into(lines, self.captured.clone());
        }
    }

    /// What the proxy wrote on stderr so far (what was read of it).
    pub fn stderr(&self) -> String {
        self.captured.lock().expect("stderr buffer").clone()
    }

    /// SIGTERM, then what the proxy left.
    pub fn stop(mut self) -> Stopped {
        self.read_stderr();
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM).expect("signal");
        let status = self.child.wait().expect("proxy exits");
        std::thread::sleep(Duration::from_millis(50));
        Stopped {
            code: status.code(),
            trace: self.trace_text(),
            stderr: self.stderr(),
            report: std::fs::read_to_string(self.dir.path().join("report.json"))
                .unwrap_or_default(),
        }
    }

    /// SIGKILL: the proxy gets no chance to write anything more.
    pub fn kill(mut self) -> String {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.trace_text()
    }
}

impl Drop for ProxyChild {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn read_into(mut lines: BufReader<ChildStderr>, sink: std::sync::Arc<std::sync::Mutex<String>>) {
    std::thread::spawn(move || {
        let mut line = String::new();
        while lines.read_line(&mut line).is_ok_and(|n| n > 0) {
            sink.lock().expect("stderr buffer").push_str(&line);
            line.clear();
        }
    });
}

/// A throwaway cluster on a free loopback port that asks every TCP client
/// for a scram-sha-256 password (user `postgres`, password `secret`).
/// Stopped when dropped.
#[derive(Debug)]
pub struct PasswordCluster {
    pub port: u16,
    dir: tempfile::TempDir,
    pg_ctl: PathBuf,
}

impl PasswordCluster {
    /// `None` when this machine has no PostgreSQL server programs.
    pub fn start() -> Option<PasswordCluster> {
        let bin = pg_bindir()?;
        let dir = tempfile::tempdir().expect("temp dir");
        let w = dir.path().to_str().expect("utf-8 path").to_owned();
        std::fs::write(dir.path().join("pw"), "secret").expect("password file");
        if is_root() {
            run_ok(Command::new("chown").args(["-R", "postgres"]).arg(&w));
        }
        run_ok(&mut as_postgres(
            bin.join("initdb").to_str().expect("path"),
            &[
                "-D",
                &format!("{w}/data"),
                "-A",
                "scram-sha-256",
                "-U",
                "postgres",
                "--pwfile",
                &format!("{w}/pw"),
                "--no-sync",
            ],
        ));
        let port = free_port();
        let pg_ctl = bin.join("pg_ctl");
        run_ok(&mut as_postgres(
            pg_ctl.to_str().expect("path"),
            &[
                "-D",
                &format!("{w}/data"),
                "-w",
                "-l",
                &format!("{w}/server.log"),
                "-o",
                &format!("-p {port} -k {w} -c listen_addresses=127.0.0.1 -c fsync=off"),
                "start",
            ],
        ));
        Some(PasswordCluster { port, dir, pg_ctl })
    }

    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for PasswordCluster {
    fn drop(&mut self) {
        let data = self.dir.path().join("data");
        let _ = as_postgres(
            self.pg_ctl.to_str().unwrap_or("pg_ctl"),
            &[
                "-D",
                data.to_str().unwrap_or(""),
                "-m",
                "immediate",
                "-w",
                "stop",
            ],
        )
        .output();
    }
}
