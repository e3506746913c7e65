//! `flowaudit analyze FILE...`: audit trace files and server logs.

use std::io::{BufRead, IsTerminal, Read};
use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::{Args, ValueEnum};

use crate::audit::Audit;
use crate::capture::logs::{self, LogError, LogFormat, LogOptions, LogReader};
use crate::capture::otlp::StepFrom;
use crate::capture::otlp::reader::{OtlpError, OtlpReader};
use crate::capture::pipeline::{self, Item};
use crate::report::Report;
use crate::trace::{TraceError, TraceReader};

use super::AuditArgs;
use super::schema::review_schema;
use crate::schema::Touched;

#[derive(Debug, Clone, Args)]
pub struct AnalyzeArgs {
    /// Files to audit, in order: traces (JSON Lines, one statement a line),
    /// PostgreSQL / MySQL / MariaDB server logs, or OpenTelemetry traces (OTLP
    /// JSON); `.gz` files are read as they are.
    #[arg(required = true, value_name = "FILE")]
    pub files: Vec<PathBuf>,
    /// Input format; `auto` detects it from each file's first lines and the
    /// report says which it chose.
    #[arg(long, value_enum, default_value_t = InputFormat::Auto, value_name = "FORMAT")]
    pub input: InputFormat,
    /// PostgreSQL's log_line_prefix, for reading pg-stderr logs (`SHOW
    /// log_line_prefix` on the server).
    #[arg(long, value_name = "PREFIX", default_value = logs::DEFAULT_LOG_LINE_PREFIX)]
    pub log_line_prefix: String,
    /// For OpenTelemetry input: where a statement's step comes from when no
    /// `flowaudit.step` attribute names it, tried in order before the default
    /// (the nearest `http.route`, else the root span's name): `attr:NAME`, an
    /// attribute of the span or its nearest ancestor that has it, or
    /// `name:REGEX`, the nearest ancestor span whose name matches (its first
    /// capture group, else the whole name). Repeatable.
    #[arg(long, value_name = "RULE")]
    pub step_from: Vec<StepFrom>,
    /// The application's database (postgres://…, mysql://…, sqlite:PATH): once
    /// the input is read, the rule files' [[invariant]] queries run on it, and
    /// the schema rules review the tables the statements touched. Read-only,
    /// with a statement timeout.
    #[arg(long, value_name = "URL")]
    pub database: Option<String>,
    /// Audit without the rule files' [[invariant]]s. Without it, invariants
    /// and no --database is exit 2: nothing would check them.
    #[arg(long)]
    pub skip_invariants: bool,
    /// Pass when the files hold no statement. Without it, that is exit 2: a
    /// gate that read nothing proves nothing.
    #[arg(long)]
    pub allow_empty: bool,
    #[command(flatten)]
    pub audit: AuditArgs,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum InputFormat {
    /// Detect the format from the content.
    Auto,
    /// flowaudit's trace format.
    Jsonl,
    /// PostgreSQL's stderr log (or the collector's .log files), read with --log-line-prefix.
    PgStderr,
    /// PostgreSQL's csvlog.
    PgCsv,
    /// PostgreSQL's jsonlog (15 and later).
    PgJson,
    /// The MySQL / MariaDB general query log.
    MysqlGeneral,
    /// OpenTelemetry traces as the Collector's file exporter writes them (OTLP
    /// JSON, one request a line): database spans are the statements.
    OtlpJson,
}

impl InputFormat {
    fn format(self) -> Option<LogFormat> {
        match self {
            InputFormat::Auto => None,
            InputFormat::Jsonl => Some(LogFormat::Jsonl),
            InputFormat::PgStderr => Some(LogFormat::PgStderr),
            InputFormat::PgCsv => Some(LogFormat::PgCsv),
            InputFormat::PgJson => Some(LogFormat::PgJson),
            InputFormat::MysqlGeneral => Some(LogFormat::MysqlGeneral),
            InputFormat::OtlpJson => Some(LogFormat::OtlpJson),
        }
    }
}

/// Connection ids are unique within one trace; files are separate traces, so
/// each file's ids are moved into a range of their own.
const CONN_RANGE_BITS: u32 = 40;

/// Inputs above this size show a progress bar (on a terminal).
const PROGRESS_BYTES: u64 = 8 << 20;

pub fn run(args: &AnalyzeArgs) -> anyhow::Result<u8> {
    let config = args.audit.load_rules()?;
    let mut report = analyze(args, &config)?;
    args.audit.emit(&mut report)
}

fn cannot_read(path: &Path, source: &std::io::Error) -> anyhow::Error {
    anyhow::anyhow!(
        "cannot read trace {}: {source}\n  hint: check the path; analyze takes trace files \
         written by `flowaudit proxy --trace`, `demo --trace` or by hand (see README, \
         \"The trace file\"), and PostgreSQL or MySQL server logs (README, \"Server logs\")",
        path.display()
    )
}

fn log_error(e: LogError) -> anyhow::Error {
    match e {
        LogError::Io { path, source } => cannot_read(&path, &source),
        e @ LogError::UnknownFormat { .. } => anyhow::anyhow!(
            "{e}\n  hint: name the format with --input; for a PostgreSQL stderr log, give the \
             server's log_line_prefix with --log-line-prefix (README, \"Server logs\")"
        ),
        other => other.into(),
    }
}

/// A progress bar over the file's bytes when stderr is a terminal and the file is large.
fn progress(path: &Path) -> Option<indicatif::ProgressBar> {
    let len = std::fs::metadata(path).ok()?.len();
    if len < PROGRESS_BYTES || !std::io::stderr().is_terminal() {
        return None;
    }
    let bar = indicatif::ProgressBar::new(len);
    if let Ok(style) = indicatif::ProgressStyle::with_template(
        "{msg} {bar:30} {bytes}/{total_bytes} ({bytes_per_sec}, {eta})",
    ) {
        bar.set_style(style);
    }
    bar.set_message(path.display().to_string());
    Some(bar)
}

/// Audits the files and returns the report (tests call this directly).
pub fn analyze(args: &AnalyzeArgs, config: &crate::rules::RuleConfig) -> anyhow::Result<Report> {
    super::require_invariant_database(config, args.database.as_deref(), args.skip_invariants)?;
    let baseline = args.audit.load_baseline()?;
    let mut audit = Audit::with_baseline(config, baseline.as_ref())
        .context("invalid rule settings")?
        .with_params(args.audit.params)
        .with_timeline(args.audit.format == crate::report::Format::Html);
    let options = LogOptions {
        log_line_prefix: args.log_line_prefix.clone(),
        ..LogOptions::default()
    };
    let mut notes = Vec::new();
    // With --database, the tables and joins the statements used.
    let mut touched = args.database.as_ref().map(|_| Touched::default());
    let mut read: u64 = 0;
    for (index, path) in args.files.iter().enumerate() {
        let (format, detected) = match args.input.format() {
            Some(f) => (f, false),
            None => match logs::detect(path, &options) {
                Ok(f) => (f, true),
                // A trace by its name: its reader names the malformed line.
                Err(LogError::UnknownFormat { .. })
                    if path.to_string_lossy().contains(".jsonl") =>
                {
                    (LogFormat::Jsonl, true)
                }
                Err(e) => return Err(log_error(e)),
            },
        };
        let bar = progress(path);
        let wrap_bar = bar.clone();
        let offset = (index as u64) << CONN_RANGE_BITS;
        audit.begin_input(path.display().to_string());
        let take = |item: Item| match item {
            Item::Event(mut event, line) => {
                read += 1;
                if let Some(conn) = event.conn.as_mut() {
                    *conn = conn.wrapping_add(offset);
                } else if index > 0 {
                    event.conn = Some(offset);
                }
                if let Some(t) = touched.as_mut() {
                    t.observe(&event.sql);
                }
                match line {
                    Some(line) => audit.push_at(event, line),
                    None => audit.push(event),
                }
            }
            // A session the log saw end: what the audit kept for it goes.
            Item::Closed(conn) => audit.connection_closed(conn.wrapping_add(offset)),
        };
        if format == LogFormat::Jsonl && detected {
            notes.push(format!("{}: read as jsonl (detected)", path.display()));
        }
        // The file is read on a thread of its own while this one audits.
        let read_notes = pipeline::run(
            |feed| {
                read_file(
                    path,
                    format,
                    detected,
                    &options,
                    &args.step_from,
                    wrap_bar,
                    &mut |item| feed.push(item),
                )
            },
            take,
        )?;
        notes.extend(read_notes);
        if let Some(bar) = bar {
            bar.finish_and_clear();
        }
    }
    if read == 0 && !args.allow_empty {
        return Err(nothing_read(&args.files, &notes));
    }
    if let Some(url) = args.database.as_ref().filter(|_| !args.skip_invariants) {
        audit.add_findings(check_invariants(url, config)?);
    }
    let mut report = audit.finish();
    report.notes.extend(notes);
    report.inputs = args.files.iter().map(|p| p.display().to_string()).collect();
    if let (Some(url), Some(touched)) = (&args.database, touched) {
        review_schema(url, touched, config, baseline.as_ref(), &mut report)?;
    }
    Ok(report)
}

/// Reads one file, handing its events in order to `feed` (which says
/// whether to go on), then returns the reader's notes, or the error that
/// stopped it.
fn read_file(
    path: &Path,
    format: LogFormat,
    detected: bool,
    options: &LogOptions,
    step_from: &[StepFrom],
    bar: Option<indicatif::ProgressBar>,
    feed: &mut dyn FnMut(Item) -> bool,
) -> anyhow::Result<Vec<String>> {
    let input: Box<dyn BufRead> = logs::open(path, move |f| -> Box<dyn Read> {
        match bar {
            Some(b) => Box::new(b.wrap_read(f)),
            None => Box::new(f),
        }
    })
    .map_err(log_error)?;
    if format == LogFormat::Jsonl {
        let mut reader = TraceReader::new(input, path);
        while let Some(event) = reader.next() {
            let event = event.map_err(|e| match e {
                TraceError::Io { path, source } => cannot_read(&path, &source),
                e => anyhow::anyhow!(
                    "{e}\n  hint: every line of a trace is one JSON object with at least a \
                     string field \"sql\" (see README, \"The trace file\"); fix or remove \
                     that line"
                ),
            })?;
            if !feed(Item::Event(event, Some(reader.line()))) {
                break;
            }
        }
        return Ok(Vec::new());
    }
    if format == LogFormat::OtlpJson {
        let otlp = crate::capture::otlp::Options {
            step_from: step_from.to_vec(),
            ..Default::default()
        };
        let mut reader = OtlpReader::new(input, path, otlp);
        while let Some(event) = reader.next() {
            let (event, line) = event.map_err(|e| match e {
                OtlpError::Io { path, source } => cannot_read(&path, &source),
                e => anyhow::anyhow!(
                    "{e}\n  hint: every line of an OTLP JSON file is one \
                     ExportTraceServiceRequest object, as the OpenTelemetry Collector's file \
                     exporter writes it (README, \"OpenTelemetry traces\")"
                ),
            })?;
            if !feed(Item::Event(event, Some(line))) {
                break;
            }
            // A request's connection ends with its trace.
            while let Some(conn) = reader.take_closed() {
                if !feed(Item::Closed(conn)) {
                    break;
                }
            }
        }
        return Ok(reader.notes(detected));
    }
    let mut reader = LogReader::new(input, path, format, detected, options).map_err(log_error)?;
    while let Some(event) = reader.next() {
        // The log readers do not say where a statement's lines began.
        if !feed(Item::Event(event.map_err(log_error)?, None)) {
            break;
        }
        // A session the log saw end, after its last statement.
        while let Some(conn) = reader.take_closed() {
            if !feed(Item::Closed(conn)) {
                break;
            }
        }
    }
    Ok(reader.summary().notes())
}

/// No statement in any file: exit 2 rather than a pass on nothing (issue 14).
/// The readers' notes say why a log held none (the setting that logs them).
fn nothing_read(files: &[PathBuf], notes: &[String]) -> anyhow::Error {
    let names: Vec<String> = files.iter().map(|p| p.display().to_string()).collect();
    let mut message = format!("no statement was read from {}", names.join(", "));
    for note in notes {
        message.push_str(&format!("\n  {note}"));
    }
    message.push_str(
        "\n  hint: check that this is the trace or server log of the run you meant to audit \
         (a server logs statements only when told to: README, \"Server logs\"); \
         --allow-empty passes an empty input",
    );
    anyhow::anyhow!(message)
}

/// Every invariant of the rule files, once, on the database at `url`.
fn check_invariants(
    url: &str,
    config: &crate::rules::RuleConfig,
) -> anyhow::Result<Vec<crate::model::Finding>> {
    let invariants = crate::invariants::Invariants::from_config(config);
    if invariants.is_empty() {
        return Ok(Vec::new());
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime
        .block_on(async {
            let runner = crate::invariants::InvariantRunner::connect(
                url,
                invariants,
                crate::invariants::DEFAULT_TIMEOUT,
            )
            .await?;
            let found = runner.all_at_end().await;
            runner.close().await;
            found
        })
        .map_err(|e| {
            anyhow::anyhow!(
                "{e}\n  hint: check --database, or fix the invariant's query in that rule file \
                 (rules/README.md, \"[[invariant]]\")"
            )
        })
}
