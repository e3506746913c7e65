//! `flowaudit analyze FILE...`: audit trace files.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, ValueEnum};

use crate::audit::Audit;
use crate::report::Report;
use crate::trace::{TraceError, TraceReader};

use super::AuditArgs;

#[derive(Debug, Clone, Args)]
pub struct AnalyzeArgs {
    /// Trace files to audit, in order (JSON Lines: one statement a line).
    #[arg(required = true, value_name = "FILE")]
    pub files: Vec<PathBuf>,
    /// Input format.
    #[arg(long, value_enum, default_value_t = InputFormat::Auto, value_name = "FORMAT")]
    pub input: InputFormat,
    /// The application's database (sqlite:PATH, postgres://…, mysql://…):
    /// the rule files' [[invariant]] queries run on it once the trace is
    /// read, on a read-only connection with a statement timeout.
    #[arg(long, value_name = "URL")]
    pub database: Option<String>,
    #[command(flatten)]
    pub audit: AuditArgs,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum InputFormat {
    /// Detect the format from the content (today: JSON Lines traces).
    Auto,
    /// flowaudit's trace format.
    Jsonl,
}

/// Connection ids are unique within one trace; files are separate traces, so
/// each file's ids are moved into a range of their own.
const CONN_RANGE_BITS: u32 = 40;

pub fn run(args: &AnalyzeArgs) -> anyhow::Result<u8> {
    let config = args.audit.load_rules()?;
    let mut report = analyze(args, &config)?;
    args.audit.emit(&mut report)
}

/// Audits the files and returns the report (tests call this directly).
pub fn analyze(args: &AnalyzeArgs, config: &crate::rules::RuleConfig) -> anyhow::Result<Report> {
    let baseline = args.audit.load_baseline()?;
    let mut audit =
        Audit::with_baseline(config, baseline.as_ref()).context("invalid rule settings")?;
    for (index, path) in args.files.iter().enumerate() {
        let reader = TraceReader::open(path).map_err(|e| match e {
            TraceError::Io { path, source } => anyhow::anyhow!(
                "cannot read trace {}: {source}\n  hint: check the path; analyze takes trace files \
                 written by `flowaudit proxy --trace`, `demo --trace` or by hand (see README, \
                 \"The trace file\")",
                path.display()
            ),
            other => other.into(),
        })?;
        let offset = (index as u64) << CONN_RANGE_BITS;
        for event in reader {
            let mut event = event.map_err(|e| {
                anyhow::anyhow!(
                    "{e}\n  hint: every line of a trace is one JSON object with at least a string \
                     field \"sql\" (see README, \"The trace file\"); fix or remove that line"
                )
            })?;
            if let Some(conn) = event.conn.as_mut() {
                *conn = conn.wrapping_add(offset);
            } else if index > 0 {
                event.conn = Some(offset);
            }
            audit.push(event);
        }
    }
    if let Some(url) = &args.database {
        audit.add_findings(check_invariants(url, config)?);
    }
    let mut report = audit.finish();
    report.inputs = args.files.iter().map(|p| p.display().to_string()).collect();
    Ok(report)
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
