//! The command line: one module per subcommand. This is the only place that
//! prints; everything else returns values and typed errors.

pub mod analyze;
pub mod collect;
pub mod compare;
pub mod demo;
pub mod merge;
pub mod proxy;
pub mod rules;
pub mod run;
pub mod schema;

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::audit::at_or_above;
use crate::baseline::Baseline;
use crate::exit;
use crate::model::Severity;
use crate::redact::ParamsMode;
use crate::report::{Format, Report, render};
use crate::rules::RuleConfig;

#[derive(Debug, Parser)]
#[command(
    name = "flowaudit",
    version,
    about = "Audit the SQL your application runs, flow by flow: N+1 and repeated queries, \
             query budgets, slow statements.",
    after_help = "Exit codes: 0 no finding at or above --fail-on, 1 findings at or above it, \
                  2 flowaudit could not do its job."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the bundled shop's journey on embedded SQLite and audit it.
    Demo(demo::DemoArgs),
    /// Audit trace files (JSON Lines, one executed statement a line) and
    /// PostgreSQL / MySQL / MariaDB server logs.
    Analyze(analyze::AnalyzeArgs),
    /// Compare two traces of the same flows run with different amounts of data:
    /// statements whose count grows with the data are N+1s.
    Compare(compare::CompareArgs),
    /// Receive OpenTelemetry traces over OTLP/HTTP and audit their database
    /// spans as they arrive; stop with Ctrl-C or SIGTERM.
    Collect(collect::CollectArgs),
    /// Combine JSON reports of the same flows from many machines or CI
    /// shards into one: counts add, findings merge by rule, step and
    /// fingerprint.
    Merge(merge::MergeArgs),
    /// Relay PostgreSQL connections to --upstream, record every statement,
    /// and audit them when stopped (Ctrl-C or SIGTERM).
    Proxy(proxy::ProxyArgs),
    /// Run a command against a recording proxy (DATABASE_URL, PGHOST and
    /// PGPORT point at it) and audit what it ran when it ends.
    Run(run::RunArgs),
    /// The rule catalogue: list the rules, or explain one.
    Rules(rules::RulesArgs),
    /// Review a database's relationships: declared and implied foreign keys,
    /// their indexes and types, orphan rows, an ER diagram.
    Schema(schema::SchemaArgs),
}

/// Race mode, shared by `demo`, `proxy` and `run` (issue 19; see
/// [`crate::race`]).
#[derive(Debug, Clone, Args)]
pub struct RaceArgs {
    /// Run STEP in several instances at once and force the interleaving that
    /// loses updates: a write of a row read without a lock waits until the
    /// other instances have read it too. The report then shows `lost-update`
    /// and the data invariants what it did to the data.
    #[arg(long, value_name = "STEP")]
    pub race: Option<String>,
    /// How many instances of the step race (with `run`: how many copies of
    /// the command run at once, each with FLOWAUDIT_INSTANCE=1..N and a
    /// proxy port of its own). Through the proxy, the step's first statement
    /// waits until N instances have reached the step (or the timeout).
    #[arg(
        long,
        value_name = "N",
        default_value_t = crate::race::DEFAULT_INSTANCES as u16,
        value_parser = clap::value_parser!(u16).range(2..=64),
        requires = "race"
    )]
    pub race_instances: u16,
    /// The longest a write is held waiting for the other instances, in
    /// milliseconds; a hold that ends this way is noted in the report.
    #[arg(
        long,
        value_name = "MS",
        default_value_t = crate::race::DEFAULT_TIMEOUT.as_millis() as u64,
        value_parser = clap::value_parser!(u64).range(1..=600_000),
        requires = "race"
    )]
    pub race_timeout: u64,
}

impl RaceArgs {
    /// The race asked for, if any.
    pub fn spec(&self) -> Option<crate::race::RaceSpec> {
        self.race.as_ref().map(|step| crate::race::RaceSpec {
            step: step.clone(),
            instances: usize::from(self.race_instances),
            timeout: std::time::Duration::from_millis(self.race_timeout),
        })
    }
}

/// The error when the race step never ran in two instances at once: the run
/// proves nothing about a race (exit 2).
pub(crate) fn race_missed(
    spec: &crate::race::RaceSpec,
    summary: &crate::race::RaceSummary,
    report: &Report,
) -> anyhow::Error {
    let what = match summary.entered {
        0 => format!("step {} never ran", spec.step),
        1 => format!("only one connection ran step {}", spec.step),
        n => format!(
            "{n} connections ran step {}, but one after another, never two at once",
            spec.step
        ),
    };
    anyhow::anyhow!(
        "--race {} did not race: {what}, so no interleaving was forced
  steps that ran: {}
           hint: name a step that the {} instances run at the same time (markers: SET \
         flowaudit.step = '…'), and check that each instance reached it",
        spec.step,
        steps_that_ran(report),
        spec.instances
    )
}

/// Options shared by the commands that audit.
#[derive(Debug, Clone, Args)]
pub struct AuditArgs {
    /// A rule file, or a directory of them (*.toml); repeatable. Default:
    /// ./rules when it exists. The built-in defaults always load first.
    #[arg(long = "rules", value_name = "PATH")]
    pub rules: Vec<PathBuf>,
    /// Report format.
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub format: Format,
    /// Write the report to FILE instead of standard output.
    #[arg(long, value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// Exit 1 when a finding at or above this severity remains [default: error;
    /// for demo: never].
    #[arg(long, value_enum, value_name = "LEVEL")]
    pub fail_on: Option<FailOn>,
    /// Judge the run against a baseline written by --write-baseline: counts
    /// above it are `query-count-regression`, findings in it are known.
    #[arg(long, value_name = "FILE")]
    pub baseline: Option<PathBuf>,
    /// Write this run's counts and findings as a baseline to FILE; its findings
    /// are then known, so the run passes (regressions against a --baseline
    /// given too still fail it).
    #[arg(long, value_name = "FILE")]
    pub write_baseline: Option<PathBuf>,
    /// Bind values in the trace (proxy, run, demo) and in the report (every
    /// auditing command): as sent, as keyed hashes, or dropped.
    ///
    /// With `drop`, repeated-query cannot tell a repeat from a loop,
    /// n-plus-one counts every run as a new value, and
    /// unlocked-read-modify-write cannot match rows by bound keys.
    #[arg(long, value_enum, value_name = "MODE", default_value_t = ParamsMode::Keep)]
    pub params: ParamsMode,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum FailOn {
    Error,
    Warning,
    Info,
    Never,
}

impl FailOn {
    pub(crate) fn level(self) -> Option<Severity> {
        match self {
            FailOn::Error => Some(Severity::Error),
            FailOn::Warning => Some(Severity::Warning),
            FailOn::Info => Some(Severity::Info),
            FailOn::Never => None,
        }
    }
}

impl AuditArgs {
    /// The rule directories to read: those given, else `./rules` if present.
    pub fn rule_dirs(&self) -> Vec<PathBuf> {
        if self.rules.is_empty() && Path::new("rules").is_dir() {
            vec![PathBuf::from("rules")]
        } else {
            self.rules.clone()
        }
    }

    pub fn load_rules(&self) -> anyhow::Result<RuleConfig> {
        RuleConfig::load(&self.rule_dirs()).map_err(|e| {
            anyhow::anyhow!(
                "invalid rule file: {e}\n  hint: fix that key; rules/README.md documents every key \
                 of a rule file"
            )
        })
    }

    /// The `--baseline`, read and checked; a bad file is an error naming it.
    pub fn load_baseline(&self) -> anyhow::Result<Option<Baseline>> {
        let Some(path) = &self.baseline else {
            return Ok(None);
        };
        Baseline::load(path).map(Some).map_err(|e| {
            anyhow::anyhow!(
                "{e}\n  hint: write a baseline with --write-baseline FILE (README, \"CI\")"
            )
        })
    }

    /// Writes the baseline when asked (its findings become known), then the
    /// report where asked, and says which exit code it calls for.
    pub fn emit(&self, report: &mut Report) -> anyhow::Result<u8> {
        self.emit_failing_on(report, FailOn::Error)
    }

    /// As [`Self::emit`], with `default` standing for `--fail-on` when it is
    /// not given.
    pub fn emit_failing_on(&self, report: &mut Report, default: FailOn) -> anyhow::Result<u8> {
        if let Some(path) = &self.write_baseline {
            std::fs::write(path, Baseline::of(report).to_json())
                .with_context(|| format!("cannot write the baseline to {}", path.display()))?;
            let (regressions, known): (Vec<_>, Vec<_>) = std::mem::take(&mut report.findings)
                .into_iter()
                .partition(|f| f.rule == crate::rules::QUERY_COUNT_REGRESSION);
            report.findings = regressions;
            report.known.extend(known);
            report.known.sort_by(|a, b| a.sort_key().cmp(&b.sort_key()));
            let s = &mut report.summary;
            s.known = report.known.len() as u64;
            let count = |l| report.findings.iter().filter(|f| f.severity == l).count() as u64;
            s.errors = count(Severity::Error);
            s.warnings = count(Severity::Warning);
            s.infos = count(Severity::Info);
        }
        let width = match &self.output {
            Some(_) => 80,
            None => terminal_width(),
        };
        let text = render(
            report,
            self.format,
            width,
            self.fail_on.unwrap_or(default).level(),
        );
        match &self.output {
            Some(path) => std::fs::write(path, &text)
                .with_context(|| format!("cannot write the report to {}", path.display()))?,
            None => print_stdout(&text)?,
        }
        Ok(self.exit_code(report, default))
    }

    pub fn exit_code(&self, report: &Report, default: FailOn) -> u8 {
        match self.fail_on.unwrap_or(default).level() {
            Some(level) if at_or_above(&report.findings, level) > 0 => exit::FINDINGS,
            _ => exit::OK,
        }
    }
}

/// Refuses to pass a run whose rule files declare invariants that nothing will
/// check: without `--database` they would be skipped silently (issue 14).
pub(crate) fn require_invariant_database(
    config: &RuleConfig,
    database: Option<&str>,
    skip_invariants: bool,
) -> anyhow::Result<()> {
    if database.is_some() || skip_invariants || config.invariants.is_empty() {
        return Ok(());
    }
    let mut files: Vec<&str> = config.invariants.iter().map(|i| i.file.as_str()).collect();
    files.dedup();
    anyhow::bail!(
        "{} declares {} [[invariant]] but no --database was given to check {} on\n  hint: give \
         --database URL (the application's database), or --skip-invariants to audit without \
         them",
        files.join(", "),
        match config.invariants.len() {
            1 => "an".to_owned(),
            n => format!("{n}"),
        },
        if config.invariants.len() == 1 {
            "it"
        } else {
            "them"
        },
    )
}

/// The steps that ran and their statement counts, `flow › step (N)`, for
/// messages about a fault that did not fire.
pub(crate) fn steps_that_ran(report: &Report) -> String {
    let steps: Vec<String> = report
        .flows
        .iter()
        .flat_map(|flow| {
            flow.steps.iter().map(move |step| {
                format!(
                    "{} › {} ({} statement{})",
                    flow.name,
                    step.name,
                    step.statements,
                    if step.statements == 1 { "" } else { "s" }
                )
            })
        })
        .collect();
    if steps.is_empty() {
        "none".to_owned()
    } else {
        steps.join(", ")
    }
}

/// The error for an `--inject-fault` that never fired: a run that was meant
/// to prove a rollback proved nothing (issue 14).
pub(crate) fn fault_missed(spec: &crate::fault::FaultSpec, report: &Report) -> anyhow::Error {
    use crate::fault::FaultAt;
    let ran: u64 = report
        .flows
        .iter()
        .flat_map(|f| &f.steps)
        .filter(|s| s.name == spec.step)
        .map(|s| s.statements)
        .sum();
    let what = match (ran, spec.at) {
        (0, _) => format!("step {} never ran", spec.step),
        (_, FaultAt::Nth(n)) if ran < u64::from(n) => format!(
            "step {} ran {ran} statement{}, fewer than {n}",
            spec.step,
            if ran == 1 { "" } else { "s" }
        ),
        (_, FaultAt::Commit) => format!("step {} sent no COMMIT", spec.step),
        // The report attributes transaction control to the statements it
        // encloses; the fault's counter saw them in the order sent.
        (_, FaultAt::Nth(_)) => format!("no statement of step {} was its turn", spec.step),
    };
    anyhow::anyhow!(
        "--inject-fault {spec} did not fire: {what}, so nothing failed\n  steps that ran: {}\n  \
         hint: name a step and a statement number from this list (a trace of the run numbers \
         them)",
        steps_that_ran(report)
    )
}

pub(crate) fn terminal_width() -> usize {
    if std::io::stdout().is_terminal()
        && let Some((terminal_size::Width(w), _)) = terminal_size::terminal_size()
    {
        return usize::from(w).clamp(60, 160);
    }
    80
}

/// Prints to standard output; a closed pipe (`| head`) is not an error.
pub fn print_stdout(text: &str) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
            Err(e).context("cannot write to standard output")
        }
        _ => Ok(()),
    }
}

/// Parses the command line, runs the command, and maps the outcome to an exit code.
pub fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() {
                exit::TOOL_ERROR
            } else {
                exit::OK
            });
        }
    };
    let result = match cli.command {
        Command::Analyze(args) => analyze::run(&args),
        Command::Collect(args) => collect::run(&args),
        Command::Compare(args) => compare::run(&args),
        Command::Demo(args) => demo::run(&args),
        Command::Merge(args) => merge::run(&args),
        Command::Proxy(args) => proxy::run(&args),
        Command::Run(args) => run::run(&args),
        Command::Rules(args) => rules::run(&args),
        Command::Schema(args) => schema::run(&args),
    };
    match result {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("flowaudit: error: {e:#}");
            ExitCode::from(exit::TOOL_ERROR)
        }
    }
}
