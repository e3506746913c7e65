//! `flowaudit proxy`: relay PostgreSQL or MySQL/MariaDB connections, record every statement,
//! and audit them when stopped (SIGINT or SIGTERM). The recording pieces are
//! shared with `flowaudit run`.

use std::io::IsTerminal;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use anyhow::Context;
use clap::Args;

use crate::audit::Audit;
use crate::capture::proxy::{
    self, FaultHook, Log, LogLines, Protocol, Proxy, Recorder, Sink, Stats, StepChecks,
    StepTracker, Upstream, Writer,
};
use crate::fault::{FaultInjector, FaultSpec};
use crate::invariants::{InvariantError, InvariantRunner, Invariants};
use crate::model::Event;
use crate::model::Finding;
use crate::redact::ParamsMode;
use crate::report::{CaptureStats, Report};

use super::schema::review_schema;
use super::{AuditArgs, RaceArgs};
use crate::baseline::Baseline;
use crate::rules::RuleConfig;
use crate::schema::Touched;

#[derive(Debug, Clone, Args)]
pub struct ProxyArgs {
    /// Address to listen on. Loopback by default; listening on another
    /// interface exposes the database to whoever can reach it.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:6432")]
    pub listen: SocketAddr,
    #[command(flatten)]
    pub capture: CaptureArgs,
    #[command(flatten)]
    pub audit: AuditArgs,
}

/// Where to relay to and where to keep what was recorded.
#[derive(Debug, Clone, Args)]
pub struct CaptureArgs {
    /// The server to relay to, as a URL: postgres://HOST:PORT/… for
    /// PostgreSQL, mysql://HOST:PORT/… (or mariadb://) for MySQL and MariaDB
    /// (user, password and database are the client's own and are not used).
    #[arg(long, value_name = "URL")]
    pub upstream: String,
    /// Also write every recorded statement to FILE (JSON Lines), which
    /// `flowaudit analyze FILE` audits to the same findings.
    #[arg(long, value_name = "FILE")]
    pub trace: Option<PathBuf>,
    /// The application's database (postgres://…, mysql://…, sqlite:PATH):
    /// the rule files' [[invariant]] queries run on it when a step ends (the
    /// statement that starts the next step waits for them) and at the end,
    /// and the schema rules review the tables the statements touched.
    /// Read-only, with a statement timeout.
    #[arg(long, value_name = "URL")]
    pub database: Option<String>,
    /// Make a statement fail on purpose: the Nth statement of step STEP
    /// (counted from 1 in the order sent, transaction control included,
    /// markers excluded; write a trace of a run without the fault to see the
    /// numbering), or the step's first COMMIT with STEP:commit. The server runs
    /// a statement that raises SQLSTATE FA001 in its place (PostgreSQL: a DO
    /// block; MySQL/MariaDB: SIGNAL, error 1644), so the client gets that
    /// error and the transaction follows as after any error.
    /// When the fault does not fire (the step never ran, or ran fewer than N
    /// statements), the run is exit 2 and the message lists the steps that ran.
    #[arg(long, value_name = "STEP:N")]
    pub inject_fault: Option<FaultSpec>,
    /// Audit without the rule files' [[invariant]]s. Without it, invariants
    /// and no --database is exit 2: nothing would check them.
    #[arg(long)]
    pub skip_invariants: bool,
    /// Pass when no statement reached the proxy. Without it, that is exit 2:
    /// a gate that saw nothing proves nothing.
    #[arg(long)]
    pub allow_empty: bool,
    /// Close a client that is not through its startup and authentication
    /// SECS seconds after it connected, as PostgreSQL does at its
    /// authentication_timeout (60 s there too): a client that connects and
    /// sends nothing would otherwise hold a file descriptor for good.
    #[arg(
        long,
        value_name = "SECS",
        default_value_t = proxy::DEFAULT_STARTUP_TIMEOUT.as_secs(),
        value_parser = clap::value_parser!(u64).range(1..=86_400)
    )]
    pub startup_timeout: u64,
    #[command(flatten)]
    pub race: RaceArgs,
}

/// What became of the injected fault, for the report's notes.
#[derive(Debug, Default)]
struct FaultOutcome {
    hit: Option<String>,
}

/// The hook that picks the statement to fail: it follows the run's steps as
/// statements are sent, and lets the fault's counter decide.
fn fault_hook(spec: FaultSpec, outcome: Arc<Mutex<FaultOutcome>>, protocol: Protocol) -> FaultHook {
    let (failing, syntax) = match protocol {
        Protocol::Postgres => (spec.failing_sql_postgres(), crate::redact::Syntax::Postgres),
        Protocol::Mysql => (spec.failing_sql_mysql(), crate::redact::Syntax::MySql),
    };
    let mut steps = StepTracker::default();
    let mut injector = FaultInjector::new(spec);
    let decide = move |conn: u64, sql: &str, application_name: Option<&str>| -> Option<String> {
        let seen = steps.see(conn, sql, application_name);
        let step = seen.step.unwrap_or_default();
        let is_commit = !seen.marker
            && crate::attribute::TxnOp::of(&crate::fingerprint::fingerprint(sql))
                == Some(crate::attribute::TxnOp::Commit);
        if !injector.decide(&step, seen.marker, is_commit) {
            return None;
        }
        if let Ok(mut o) = outcome.lock() {
            let shown = crate::redact::sql(sql, syntax);
            o.hit = Some(shown.split_whitespace().collect::<Vec<_>>().join(" "));
        }
        Some(failing.clone())
    };
    FaultHook(Arc::new(Mutex::new(decide)))
}

/// Messages about single connections go to stderr, prefixed, from a thread
/// of their own: the relay never waits on a stderr nobody reads.
pub fn stderr_log() -> (Log, LogLines) {
    proxy::log_to(std::io::stderr())
}

/// How long the end of a run waits for the last messages to reach stderr.
const LOG_DRAIN: Duration = Duration::from_millis(500);

/// Says in the report how many messages about connections stderr missed.
pub fn note_unprinted(report: &mut Report, lines: LogLines) {
    let dropped = lines.finish(LOG_DRAIN);
    if dropped > 0 {
        report.notes.push(format!(
            "{} not printed: stderr was not read as fast as they came, and the proxy drops \
             them rather than wait",
            crate::rules::plural(
                dropped,
                "message about connections was",
                "messages about connections were"
            )
        ));
    }
}

/// The audit, fed by the writer thread as statements arrive.
#[derive(Debug)]
pub struct AuditSink {
    audit: Audit,
    /// `--params`, for the trace (the audit applies it itself).
    params: ParamsMode,
    /// With --database: the tables and joins the statements used.
    touched: Option<Touched>,
}

impl Sink for AuditSink {
    fn event(&mut self, event: Event) {
        if let Some(t) = self.touched.as_mut() {
            t.observe(&event.sql);
        }
        self.audit.push(event);
    }

    fn connection_closed(&mut self, conn: u64) {
        self.audit.connection_closed(conn);
    }

    fn params(&self) -> ParamsMode {
        self.params
    }
}

/// A recording in progress: the writer thread and the shared counters.
#[derive(Debug)]
pub struct Recording {
    writer: Writer<AuditSink>,
    stats: Arc<Stats>,
    trace: Option<PathBuf>,
    database: Option<String>,
    config: RuleConfig,
    baseline: Option<Baseline>,
    fault: Option<(FaultSpec, Arc<Mutex<FaultOutcome>>)>,
    skip_invariants: bool,
    allow_empty: bool,
    /// With --race: the race's state, shared by every connection.
    race: Option<proxy::Race>,
    protocol: Protocol,
}

impl CaptureArgs {
    pub fn startup_timeout(&self) -> Duration {
        Duration::from_secs(self.startup_timeout)
    }

    pub fn upstream(&self) -> anyhow::Result<Upstream> {
        Upstream::from_url(&self.upstream).map_err(|e| {
            anyhow::anyhow!(
                "{e}\n  hint: for example --upstream postgres://127.0.0.1:5432/app or \
                 --upstream mysql://127.0.0.1:3306/app"
            )
        })
    }

    /// Loads the rules, opens the trace file and starts the writer.
    pub fn start(&self, audit_args: &AuditArgs) -> anyhow::Result<(Recorder, Recording)> {
        let protocol = self.upstream()?.protocol;
        let config = audit_args.load_rules()?;
        super::require_invariant_database(&config, self.database.as_deref(), self.skip_invariants)?;
        let baseline = audit_args.load_baseline()?;
        let audit = Audit::with_baseline(&config, baseline.as_ref())
            .context("invalid rule settings")?
            .with_params(audit_args.params)
            .with_timeline(audit_args.format == crate::report::Format::Html);
        let trace: Option<Box<dyn std::io::Write + Send>> = match &self.trace {
            Some(path) => Some(Box::new(std::fs::File::create(path).with_context(
                || format!("cannot write the trace to {}", path.display()),
            )?)),
            None => None,
        };
        let stats = Arc::new(Stats::default());
        let sink = AuditSink {
            audit,
            params: audit_args.params,
            touched: self.database.as_ref().map(|_| Touched::default()),
        };
        let (recorder, writer) = proxy::start_writer(trace, sink, stats.clone());
        Ok((
            recorder,
            Recording {
                writer,
                stats,
                trace: self.trace.clone(),
                database: self.database.clone(),
                config,
                baseline,
                fault: self
                    .inject_fault
                    .clone()
                    .map(|spec| (spec, Arc::new(Mutex::new(FaultOutcome::default())))),
                skip_invariants: self.skip_invariants,
                allow_empty: self.allow_empty,
                race: self
                    .race
                    .spec()
                    .map(|spec| proxy::Race::new(Arc::new(crate::race::Scheduler::new(spec)))),
                protocol,
            },
        ))
    }
}

/// The data invariants of the rule files, run on `--database` when a step
/// ends and when the run ends.
#[derive(Debug)]
pub struct InvariantChecks {
    runner: Arc<InvariantRunner>,
    checks: StepChecks,
    findings: Arc<Mutex<Vec<Finding>>>,
    error: Arc<Mutex<Option<InvariantError>>>,
}

impl InvariantChecks {
    /// Connects when there is a database and invariants to check on it.
    pub async fn connect(
        database: Option<&str>,
        config: &RuleConfig,
    ) -> anyhow::Result<Option<InvariantChecks>> {
        let invariants = Invariants::from_config(config);
        let Some(url) = database.filter(|_| !invariants.is_empty()) else {
            return Ok(None);
        };
        let runner = InvariantRunner::connect(url, invariants, crate::invariants::DEFAULT_TIMEOUT)
            .await
            .map_err(invariant_error)?;
        let runner = Arc::new(runner);
        let findings: Arc<Mutex<Vec<Finding>>> = Arc::default();
        let error: Arc<Mutex<Option<InvariantError>>> = Arc::default();
        let (r, f, e) = (runner.clone(), findings.clone(), error.clone());
        let checks = StepChecks::new(move |flow, step| {
            let (r, f, e) = (r.clone(), f.clone(), e.clone());
            Box::pin(async move {
                match r.after_step(&flow, &step).await {
                    Ok(found) => f
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .extend(found),
                    Err(err) => {
                        e.lock()
                            .unwrap_or_else(PoisonError::into_inner)
                            .get_or_insert(err);
                    }
                }
            })
        });
        Ok(Some(InvariantChecks {
            runner,
            checks,
            findings,
            error,
        }))
    }

    pub fn step_checks(&self) -> StepChecks {
        self.checks.clone()
    }

    /// Checks the step still current and the end-of-run invariants; the
    /// findings of every check, or the first invariant that failed.
    pub async fn finish(self) -> anyhow::Result<Vec<Finding>> {
        for (flow, step) in self.checks.current() {
            self.checks.check(flow, step).await;
        }
        let at_end = self.runner.at_end().await;
        if let Some(err) = self
            .error
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
        {
            return Err(invariant_error(err));
        }
        let mut findings =
            std::mem::take(&mut *self.findings.lock().unwrap_or_else(PoisonError::into_inner));
        findings.extend(at_end.map_err(invariant_error)?);
        Ok(findings)
    }
}

fn invariant_error(e: InvariantError) -> anyhow::Error {
    anyhow::anyhow!(
        "{e}\n  hint: check --database, or fix the invariant's query in that rule file \
         (rules/README.md, \"[[invariant]]\")"
    )
}

impl Recording {
    /// The fault hook for the proxy, when a fault was asked for.
    pub fn fault_hook(&self) -> Option<FaultHook> {
        self.fault
            .as_ref()
            .map(|(spec, outcome)| fault_hook(spec.clone(), outcome.clone(), self.protocol))
    }

    /// The race, with --race.
    pub fn race(&self) -> Option<proxy::Race> {
        self.race.clone()
    }

    pub fn config(&self) -> &RuleConfig {
        &self.config
    }

    pub fn database(&self) -> Option<&str> {
        self.database.as_deref()
    }

    /// The database to check the invariants on: none with --skip-invariants.
    pub fn invariant_database(&self) -> Option<&str> {
        self.database.as_deref().filter(|_| !self.skip_invariants)
    }

    /// Waits for the writer (every recorder must be gone) and audits, adding
    /// the `invariants`' findings. A run that recorded no statement (unless
    /// --allow-empty) or whose fault did not fire is an error: `nothing` says
    /// what to check when no statement came (issue 14).
    pub fn finish(self, invariants: Vec<Finding>, nothing: &str) -> anyhow::Result<Report> {
        let sink = self.writer.finish().with_context(|| match &self.trace {
            Some(path) => format!("cannot write the trace to {}", path.display()),
            None => "the recording failed".into(),
        })?;
        let s = &self.stats;
        let capture = CaptureStats {
            connections: Stats::get(&s.connections),
            recorded: Stats::get(&s.recorded),
            dropped: Stats::get(&s.dropped),
            undecoded_frames: Stats::get(&s.undecoded_frames),
            refused: Stats::get(&s.refused),
        };
        if capture.recorded == 0 && !self.allow_empty {
            anyhow::bail!(
                "no statement reached the proxy: {nothing}\n  connections relayed: {}, \
                 refused: {}\n  hint: --allow-empty passes a run without statements",
                capture.connections,
                capture.refused,
            );
        }
        let mut audit = sink.audit;
        audit.add_findings(invariants);
        let mut report = audit.finish();
        if let (Some(url), Some(touched)) = (&self.database, sink.touched) {
            review_schema(
                url,
                touched,
                &self.config,
                self.baseline.as_ref(),
                &mut report,
            )?;
        }
        if capture.dropped > 0 {
            let (what, were) = if capture.dropped == 1 {
                ("statement", "was")
            } else {
                ("statements", "were")
            };
            report.notes.push(format!(
                "{} {what} {were} not recorded: the trace writer fell behind, and the proxy \
                 drops rather than slow the application; counts above are lower bounds",
                crate::rules::thousands(capture.dropped)
            ));
        }
        if capture.undecoded_frames > 0 {
            report.notes.push(format!(
                "{} forwarded that flowaudit could not decode",
                crate::rules::plural(
                    capture.undecoded_frames,
                    "protocol message was",
                    "protocol messages were"
                )
            ));
        }
        if capture.refused > 0 {
            report.notes.push(format!(
                "{} refused by the proxy (database unreachable, too many connections for its \
                 file descriptors, or a direct TLS handshake); see the messages above",
                crate::rules::plural(capture.refused, "connection was", "connections were")
            ));
        }
        report.capture = Some(capture);
        if let Some((spec, outcome)) = &self.fault {
            let hit = outcome.lock().ok().and_then(|o| o.hit.clone());
            let Some(sql) = hit else {
                return Err(super::fault_missed(spec, &report));
            };
            report.notes.push(format!(
                "injected fault {spec}: the server ran a failing statement (SQLSTATE {}) in \
                 place of: {sql}",
                crate::fault::POSTGRES_SQLSTATE
            ));
        }
        if let Some(race) = &self.race {
            let spec = race.scheduler().spec();
            let summary = race.scheduler().summary();
            if !summary.raced() {
                return Err(super::race_missed(spec, &summary, &report));
            }
            report.notes.push(summary.note(spec));
            let late = race.barrier_timeouts();
            if late > 0 {
                report.notes.push(format!(
                    "race on step {}: {} waited for the other instances until the {} s \
                     timeout",
                    spec.step,
                    crate::rules::plural(late, "start of the step", "starts of the step"),
                    spec.timeout.as_secs_f64()
                ));
            }
        }
        if let Some(path) = &self.trace {
            report.inputs = vec![path.display().to_string()];
        }
        Ok(report)
    }
}

/// How long open connections may take to finish once the proxy is stopped.
const GRACE: Duration = Duration::from_secs(2);

pub fn run(args: &ProxyArgs) -> anyhow::Result<u8> {
    let upstream = args.capture.upstream()?;
    let (recorder, recording) = args.capture.start(&args.audit)?;
    let runtime = runtime()?;
    let (log, log_lines) = stderr_log();
    let findings = runtime.block_on(async {
        let invariants =
            InvariantChecks::connect(recording.invariant_database(), recording.config()).await?;
        let proxy = Proxy::bind(args.listen, upstream.clone(), recorder)
            .await
            .map(|p| {
                p.with_fault(recording.fault_hook())
                    .with_checks(invariants.as_ref().map(InvariantChecks::step_checks))
                    .with_race(recording.race())
                    .with_startup_timeout(args.capture.startup_timeout())
            })
            .with_context(|| {
                format!(
                    "cannot listen on {}\n  hint: another program may use that port; choose \
                     another with --listen",
                    args.listen
                )
            })?;
        let addr = proxy.local_addr()?;
        let stop = stop_signal();
        if !addr.ip().is_loopback() {
            eprintln!(
                "flowaudit: warning: listening on {addr}, not on loopback: whoever reaches this \
                 address reaches the database through flowaudit"
            );
        }
        let (server, scheme) = match upstream.protocol {
            Protocol::Postgres => ("PostgreSQL", "postgres"),
            Protocol::Mysql => ("MySQL/MariaDB", "mysql"),
        };
        eprintln!(
            "flowaudit: relaying {addr} → {} ({server}); point the application at \
             {scheme}://…@{addr}/…; Ctrl-C stops and reports",
            upstream.describe()
        );
        let progress = live_counts(recording.stats.clone());
        proxy.serve(stop, GRACE, log).await;
        if let Some(progress) = progress {
            progress.abort();
        }
        match invariants {
            Some(checks) => checks.finish().await,
            None => Ok(Vec::new()),
        }
    })?;
    // Whatever task is left goes with the runtime, and with it the last
    // handle on the writer's channel, so that the writer can finish.
    drop(runtime);
    let mut report = recording.finish(
        findings,
        "does the application connect to the address above (host, port, sslmode=disable or \
         prefer)?",
    )?;
    note_unprinted(&mut report, log_lines);
    args.audit.emit(&mut report)
}

/// On a terminal, a line on stderr that counts connections and statements
/// while the proxy runs.
fn live_counts(stats: Arc<Stats>) -> Option<tokio::task::JoinHandle<()>> {
    if !std::io::stderr().is_terminal() {
        return None;
    }
    let bar = indicatif::ProgressBar::new_spinner();
    Some(tokio::spawn(async move {
        loop {
            bar.set_message(format!(
                "{} connections · {} statements recorded · {} dropped",
                crate::rules::thousands(Stats::get(&stats.connections)),
                crate::rules::thousands(Stats::get(&stats.recorded)),
                crate::rules::thousands(Stats::get(&stats.dropped)),
            ));
            bar.tick();
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }))
}

/// Resolves on SIGINT or SIGTERM. The handlers are installed when this is
/// called, not when the future is first polled: a SIGTERM that arrives right
/// after the proxy says it listens must stop it with its report, not kill it.
/// Call it inside the runtime.
pub fn stop_signal() -> impl Future<Output = ()> {
    use tokio::signal::unix::{SignalKind, signal};
    let handlers = (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    );
    async move {
        match handlers {
            (Ok(mut int), Ok(mut term)) => {
                tokio::select! {
                    _ = int.recv() => {}
                    _ = term.recv() => {}
                }
            }
            _ => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
}

/// The proxy's runtime: one thread, as PgBouncer has. Measured with
/// benches/proxy_pgbench.sh on a 2-core machine, two worker threads did no
/// better when the machine was quiet (0.87–0.94× PgBouncer against
/// 0.87–0.90×) and worse when other work loaded it (0.99× against 1.09×).
pub fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}
