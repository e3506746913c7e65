//! `flowaudit run -- CMD ARGS…`: start the proxy on a free loopback port, run
//! CMD with `DATABASE_URL`, `PGHOST` and `PGPORT` pointing at it (and
//! `PGUSER`, `PGDATABASE` from the URL), and audit
//! what it ran when it ends. The exit code is CMD's failure first (1), else
//! the audit's.
//!
//! With `--race STEP --race-instances N`, CMD runs N times at once, each copy
//! with `FLOWAUDIT_INSTANCE=K` (1 to N) and its own port of the proxy, so
//! that every connection is known to be instance K's (issue 19).

use std::ffi::OsString;
use std::io::IsTerminal;
use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Context;
use clap::Args;

use crate::capture::proxy::{Protocol, Proxy, url_through};
use crate::exit;

use super::AuditArgs;
use super::proxy::{CaptureArgs, InvariantChecks, note_unprinted, stderr_log};

#[derive(Debug, Clone, Args)]
pub struct RunArgs {
    /// Address for the proxy; default: a free port on loopback.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:0")]
    pub listen: SocketAddr,
    #[command(flatten)]
    pub capture: CaptureArgs,
    #[command(flatten)]
    pub audit: AuditArgs,
    /// The command to run, after `--`.
    #[arg(last = true, required = true, value_name = "CMD")]
    pub command: Vec<OsString>,
}

/// How long the proxy waits for the command's connections after it exits.
const GRACE: Duration = Duration::from_secs(2);
/// Bound on connecting to --database before the command starts.
const CHECK_TIMEOUT: Duration = Duration::from_secs(10);

pub fn run(args: &RunArgs) -> anyhow::Result<u8> {
    let upstream = args.capture.upstream()?;
    let (recorder, recording) = args.capture.start(&args.audit)?;
    let runtime = super::proxy::runtime()?;
    let (log, log_lines) = stderr_log();
    let instances = args.capture.race.spec().map_or(1, |spec| spec.instances);
    let (statuses, findings) = runtime.block_on(async {
        // Before CMD runs: a command that ran against no database proves
        // nothing, and may have done its other work all the same (issue 14).
        upstream.probe().await.map_err(|reason| {
            anyhow::anyhow!(
                "no {} server answers at {} (--upstream): {reason}\n  hint: start the \
                 server or fix --upstream; the command was not run",
                match upstream.protocol {
                    Protocol::Postgres => "PostgreSQL",
                    Protocol::Mysql => "MySQL/MariaDB",
                },
                upstream.describe()
            )
        })?;
        if let Some(url) = recording.database() {
            crate::schema::introspect::Conn::open(url, CHECK_TIMEOUT)
                .await
                .map_err(|e| {
                    anyhow::anyhow!(
                        "--database: {e}\n  hint: check that the server runs and the URL is \
                         right; the command was not run"
                    )
                })?
                .close()
                .await;
        }
        let invariants =
            InvariantChecks::connect(recording.invariant_database(), recording.config()).await?;
        let protocol = upstream.protocol;
        let mut proxy = Proxy::bind(args.listen, upstream, recorder)
            .await
            .map(|p| {
                p.with_fault(recording.fault_hook())
                    .with_checks(invariants.as_ref().map(InvariantChecks::step_checks))
                    .with_race(recording.race())
                    .with_startup_timeout(args.capture.startup_timeout())
            })
            .with_context(|| format!("cannot listen on {}", args.listen))?;
        if args.capture.race.race.is_some() {
            proxy = proxy
                .with_instances(instances)
                .await
                .with_context(|| format!("cannot listen on {}", args.listen))?;
        }
        let (program, rest) = args
            .command
            .split_first()
            .context("no command given after --")?;
        let mut children = Vec::with_capacity(instances);
        for (index, addr) in proxy.local_addrs()?.into_iter().enumerate() {
            let database_url =
                url_through(&args.capture.upstream, addr).map_err(anyhow::Error::msg)?;
            let mut command = tokio::process::Command::new(program);
            command.args(rest).env("DATABASE_URL", &database_url);
            match protocol {
                Protocol::Postgres => {
                    command
                        .env("PGHOST", addr.ip().to_string())
                        .env("PGPORT", addr.port().to_string());
                }
                Protocol::Mysql => {
                    command.envs(crate::capture::mysql::client_env(addr));
                }
            }
            if args.capture.race.race.is_some() {
                command.env("FLOWAUDIT_INSTANCE", (index + 1).to_string());
            }
            // libpq's other defaults, from the URL, so that `psql` alone
            // connects where DATABASE_URL does (the password stays in
            // DATABASE_URL only).
            if protocol == Protocol::Postgres
                && let Ok(url) = url::Url::parse(&database_url)
            {
                if !url.username().is_empty() {
                    command.env("PGUSER", percent_decode(url.username()));
                }
                let database = url.path().trim_start_matches('/');
                if !database.is_empty() {
                    command.env("PGDATABASE", percent_decode(database));
                }
            }
            let child = command.kill_on_drop(true).spawn().with_context(|| {
                format!(
                    "cannot run {}\n  hint: check that the command exists and is on PATH",
                    program.to_string_lossy()
                )
            })?;
            children.push(child);
        }
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let serving = tokio::spawn(proxy.serve(
            async {
                let _ = stop_rx.await;
            },
            GRACE,
            log,
        ));
        let statuses = wait_forwarding_signals(&mut children).await;
        let _ = stop_tx.send(());
        let _ = serving.await;
        let statuses = statuses.context("cannot wait for the command")?;
        let findings = match invariants {
            Some(checks) => checks.finish().await?,
            None => Vec::new(),
        };
        anyhow::Ok((statuses, findings))
    })?;
    // Whatever task is left goes with the runtime, and with it the last
    // handle on the writer's channel, so that the writer can finish.
    drop(runtime);
    // What became of each copy of the command that failed (with one copy:
    // "CMD exited with status 1"; racing: "instance 2: CMD exited …").
    let name = args.command[0].to_string_lossy();
    let failures: Vec<String> = statuses
        .iter()
        .enumerate()
        .filter(|(_, status)| !status.success())
        .map(|(index, status)| {
            let who = if statuses.len() > 1 {
                format!("instance {}: {name}", index + 1)
            } else {
                name.to_string()
            };
            match status.code() {
                Some(code) => format!("{who} exited with status {code}"),
                None => format!("{who} was ended by a signal ({status})"),
            }
        })
        .collect();
    let say_failures = || {
        for failure in &failures {
            eprintln!("flowaudit: {failure}");
        }
    };
    let mut report = match recording.finish(
        findings,
        "does the command connect to $DATABASE_URL / PGHOST?",
    ) {
        Ok(report) => report,
        Err(e) => {
            // Its failure may be why nothing came; the run is exit 2 still.
            say_failures();
            return Err(e);
        }
    };
    note_unprinted(&mut report, log_lines);
    if statuses.len() > 1 {
        report.notes.extend(failures.iter().cloned());
    }
    let audit_code = args.audit.emit(&mut report)?;
    if !failures.is_empty() {
        say_failures();
        return Ok(exit::FINDINGS);
    }
    Ok(audit_code)
}

fn percent_decode(text: &str) -> String {
    percent_encoding::percent_decode_str(text)
        .decode_utf8_lossy()
        .into_owned()
}

/// Waits for every copy of the command; SIGINT and SIGTERM sent to
/// flowaudit go on to those still running. A Ctrl-C typed at the terminal
/// already reaches them, as they share the terminal's foreground process
/// group; it is not sent a second time.
async fn wait_forwarding_signals(
    children: &mut [tokio::process::Child],
) -> std::io::Result<Vec<std::process::ExitStatus>> {
    use nix::sys::signal::{Signal, kill};
    use nix::unistd::Pid;
    use tokio::signal::unix::{SignalKind, signal};
    let mut int = signal(SignalKind::interrupt())?;
    let mut term = signal(SignalKind::terminate())?;
    let mut statuses = Vec::with_capacity(children.len());
    for index in 0..children.len() {
        loop {
            let sig = tokio::select! {
                status = children[index].wait() => {
                    statuses.push(status?);
                    break;
                }
                _ = int.recv() => Signal::SIGINT,
                _ = term.recv() => Signal::SIGTERM,
            };
            if sig == Signal::SIGINT && terminal_delivers_to_child() {
                continue;
            }
            for child in &children[index..] {
                if let Some(pid) = child.id().and_then(|id| i32::try_from(id).ok()) {
                    let _ = kill(Pid::from_raw(pid), sig);
                }
            }
        }
    }
    Ok(statuses)
}

/// True when flowaudit's process group is the terminal's foreground group:
/// then the terminal sent the Ctrl-C to the whole group, the command included.
fn terminal_delivers_to_child() -> bool {
    let stdin = std::io::stdin();
    stdin.is_terminal()
        && nix::unistd::tcgetpgrp(&stdin).is_ok_and(|group| group == nix::unistd::getpgrp())
}
