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
    /// Also review this database's relationships (the schema rules), limited
    /// to the tables the traces touched: postgres://…, mysql://…, sqlite://….
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
    let mut report = audit.finish();
    report.inputs = args.files.iter().map(|p| p.display().to_string()).collect();
    if let Some(url) = &args.database {
        review_schema(url, &args.files, config, baseline.as_ref(), &mut report)?;
    }
    Ok(report)
}

/// Adds the schema rules' findings on the tables the traces touched (and the
/// relationships their joins imply) to the report.
fn review_schema(
    url: &str,
    files: &[PathBuf],
    config: &crate::rules::RuleConfig,
    baseline: Option<&crate::baseline::Baseline>,
    report: &mut Report,
) -> anyhow::Result<()> {
    use crate::model::Severity;
    let mut tables = std::collections::BTreeSet::new();
    let mut joins = std::collections::BTreeSet::new();
    for path in files {
        let (t, j) = super::schema::trace_joins(path)?;
        tables.extend(t);
        joins.extend(j);
    }
    let options = crate::schema::ReviewOptions {
        tables: Some(tables),
        joins: joins.into_iter().collect(),
        ..crate::schema::ReviewOptions::default()
    };
    let review =
        crate::schema::review(url, &options, config).map_err(super::schema::database_error)?;
    // Findings the --baseline has are known, as for the trace's own.
    for f in review.findings {
        if baseline.is_some_and(|b| b.knows(&f)) {
            report.known.push(f);
        } else {
            report.findings.push(f);
        }
    }
    report.known.sort_by(|a, b| a.sort_key().cmp(&b.sort_key()));
    report.summary.known = report.known.len() as u64;
    report
        .findings
        .sort_by(|a, b| a.sort_key().cmp(&b.sort_key()));
    report.allowed.extend(review.allowed);
    report
        .allowed
        .sort_by(|a, b| a.finding.sort_key().cmp(&b.finding.sort_key()));
    report.notes.extend(review.notes);
    let count = |l: Severity| report.findings.iter().filter(|f| f.severity == l).count() as u64;
    report.summary.errors = count(Severity::Error);
    report.summary.warnings = count(Severity::Warning);
    report.summary.infos = count(Severity::Info);
    report.summary.allowed = report.allowed.len() as u64;
    Ok(())
}
