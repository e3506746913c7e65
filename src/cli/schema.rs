//! `flowaudit schema URL`: a DBA review of a schema's relationships —
//! declared and implied foreign keys, their indexes and types, orphan rows —
//! as a table, JSON, Markdown, or an ER diagram (Mermaid, Graphviz dot).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use clap::Args;

use crate::audit::at_or_above;
use crate::exit;
use crate::rules::RuleConfig;
use crate::schema::report::{SchemaFormat, render};
use crate::schema::{ReviewOptions, SchemaFilter, SchemaReview, Touched, review};
use crate::trace::TraceReader;

use super::{AuditArgs, FailOn, print_stdout};

#[derive(Debug, Clone, Args)]
pub struct SchemaArgs {
    /// The database: postgres://user@host/db, mysql://root@host/db (MariaDB
    /// too), sqlite://path.db (opened read-only).
    #[arg(value_name = "URL")]
    pub url: String,
    /// Review only this schema (PostgreSQL) or database (MySQL); repeatable.
    /// Default: every user schema, no system catalogue (for MySQL, the URL's
    /// database when it names one).
    #[arg(long = "schema", value_name = "NAME")]
    pub include: Vec<String>,
    /// Leave this schema or database out; repeatable.
    #[arg(long = "exclude-schema", value_name = "NAME")]
    pub exclude: Vec<String>,
    /// A trace whose JOIN conditions imply relationships too; repeatable.
    #[arg(long, value_name = "FILE")]
    pub trace: Vec<PathBuf>,
    /// Bound on connecting and on every statement flowaudit runs, in seconds.
    #[arg(long, value_name = "SECONDS", default_value_t = 30)]
    pub timeout: u64,
    /// A rule file, or a directory of them (*.toml); repeatable. Default:
    /// ./rules when it exists. The built-in defaults always load first.
    #[arg(long = "rules", value_name = "PATH")]
    pub rules: Vec<PathBuf>,
    /// Report format: a relationships table and findings, JSON, Markdown, an
    /// ER diagram (mermaid, dot), or a self-contained HTML page with the
    /// diagram and the findings marked on it.
    #[arg(long, value_enum, default_value_t = SchemaFormat::Table)]
    pub format: SchemaFormat,
    /// Write the report to FILE instead of standard output.
    #[arg(long, value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// Exit 1 when a finding at or above this severity remains [default:
    /// error; for --format mermaid and dot: never, a diagram is not a gate].
    #[arg(long, value_enum, value_name = "LEVEL")]
    pub fail_on: Option<FailOn>,
}

pub fn run(args: &SchemaArgs) -> anyhow::Result<u8> {
    let config = load_rules(&args.rules, args.fail_on)?;
    let review = review_database(args, &config)?;
    let width = if args.output.is_some() {
        80
    } else {
        super::terminal_width()
    };
    let text = render(&review, args.format, width);
    match &args.output {
        Some(path) => std::fs::write(path, &text)
            .with_context(|| format!("cannot write the report to {}", path.display()))?,
        None => print_stdout(&text)?,
    }
    // A diagram is drawn, not a gate: it passes unless --fail-on asks (issue 14).
    let default = match args.format {
        SchemaFormat::Mermaid | SchemaFormat::Dot => FailOn::Never,
        _ => FailOn::Error,
    };
    Ok(match args.fail_on.unwrap_or(default).level() {
        Some(level) if at_or_above(&review.findings, level) > 0 => exit::FINDINGS,
        _ => exit::OK,
    })
}

/// The rule files, loaded as the auditing commands load them.
pub fn load_rules(dirs: &[PathBuf], fail_on: Option<FailOn>) -> anyhow::Result<RuleConfig> {
    AuditArgs {
        rules: dirs.to_vec(),
        format: crate::report::Format::Table,
        output: None,
        fail_on,
        baseline: None,
        write_baseline: None,
        params: crate::redact::ParamsMode::Keep,
    }
    .load_rules()
}

/// Runs the review (tests call this directly).
pub fn review_database(args: &SchemaArgs, config: &RuleConfig) -> anyhow::Result<SchemaReview> {
    let mut joins = BTreeSet::new();
    for path in &args.trace {
        joins.extend(trace_joins(path)?.joins);
    }
    let options = ReviewOptions {
        filter: SchemaFilter {
            include: args.include.clone(),
            exclude: args.exclude.clone(),
        },
        tables: None,
        joins: joins.into_iter().collect(),
        timeout: Duration::from_secs(args.timeout.max(1)),
    };
    review(&args.url, &options, config).map_err(database_error)
}

/// A review error with what to do about it.
pub fn database_error(e: crate::schema::SchemaError) -> anyhow::Error {
    use crate::schema::SchemaError;
    match e {
        SchemaError::Connect { .. } => anyhow::anyhow!(
            "{e}\n  hint: check that the server runs and the URL (postgres://user@host:5432/db, \
             mysql://user@host:3306/db, sqlite://path.db) is right"
        ),
        SchemaError::Settings { .. } => anyhow::anyhow!(
            "invalid rule settings: {e}\n  hint: rules/README.md documents every key"
        ),
        other => other.into(),
    }
}

/// The tables a trace's statements touch and the column pairs they join on.
pub fn trace_joins(path: &Path) -> anyhow::Result<Touched> {
    let mut touched = Touched::default();
    for event in TraceReader::open(path)? {
        touched.observe(&event?.sql);
    }
    Ok(touched)
}

/// Adds the schema rules' findings on the tables the traces touched (and the
/// relationships their joins imply) to the report.
pub fn review_schema(
    url: &str,
    touched: Touched,
    config: &RuleConfig,
    baseline: Option<&crate::baseline::Baseline>,
    report: &mut crate::report::Report,
) -> anyhow::Result<()> {
    use crate::model::Severity;
    let options = ReviewOptions {
        tables: Some(touched.tables),
        joins: touched.joins.into_iter().collect(),
        ..ReviewOptions::default()
    };
    let review = review(url, &options, config).map_err(database_error)?;
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
