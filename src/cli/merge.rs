//! `flowaudit merge REPORT.json...`: combine the JSON reports of the same
//! flows from many machines or CI shards into one, rendered in any format and
//! gated by `--fail-on` (issue 20; the logic is in [`crate::report::merge`]).

use std::path::PathBuf;

use clap::Args;

use super::{AuditArgs, FailOn};
use crate::redact::ParamsMode;
use crate::report::Format;
use crate::report::merge::{MergeError, merge, parse};

#[derive(Debug, Clone, Args)]
pub struct MergeArgs {
    /// JSON reports written by `--format json` (one is re-rendered).
    #[arg(value_name = "REPORT.json")]
    pub files: Vec<PathBuf>,
    /// Report format.
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub format: Format,
    /// Write the report to FILE instead of standard output.
    #[arg(long, value_name = "FILE")]
    pub output: Option<PathBuf>,
    /// Exit 1 when a merged finding at or above this severity remains
    /// [default: error].
    #[arg(long, value_enum, value_name = "LEVEL")]
    pub fail_on: Option<FailOn>,
}

pub fn run(args: &MergeArgs) -> anyhow::Result<u8> {
    let mut report = merged(args)?;
    // Rendering, writing and the exit code are the auditing commands'.
    let emit = AuditArgs {
        rules: Vec::new(),
        format: args.format,
        output: args.output.clone(),
        fail_on: args.fail_on,
        baseline: None,
        write_baseline: None,
        params: ParamsMode::Keep,
    };
    emit.emit(&mut report)
}

/// Reads and merges the reports (tests call this directly).
pub fn merged(args: &MergeArgs) -> anyhow::Result<crate::report::Report> {
    if args.files.is_empty() {
        anyhow::bail!(
            "{}\n  hint: give the JSON reports to merge: flowaudit merge shard-1.json \
             shard-2.json (each written with --format json)",
            MergeError::NoReports
        );
    }
    let mut reports = Vec::with_capacity(args.files.len());
    for path in &args.files {
        let name = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| {
            anyhow::anyhow!(
                "cannot read report {name}: {e}\n  hint: check the path; merge reads the files \
                 that --format json --output FILE wrote"
            )
        })?;
        let report = parse(&name, &text).map_err(|e| {
            let hint = match e {
                MergeError::Version { .. } => {
                    "merge reports written by the same flowaudit version as this one"
                }
                _ => "merge the JSON reports that `flowaudit … --format json` wrote, unchanged",
            };
            anyhow::anyhow!("{e}\n  hint: {hint}")
        })?;
        reports.push(report);
    }
    Ok(merge(reports)?)
}
