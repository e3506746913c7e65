//! `flowaudit compare SMALL LARGE`: audit two traces of the same flows run
//! with different amounts of data, and report the statements whose count
//! grows with the data (issue 8; the logic is in [`crate::scale`]).

use std::path::PathBuf;

use clap::Args;

use super::AuditArgs;
use super::analyze::{AnalyzeArgs, InputFormat, analyze};

#[derive(Debug, Clone, Args)]
pub struct CompareArgs {
    /// The trace recorded with less data.
    #[arg(value_name = "SMALL")]
    pub small: PathBuf,
    /// The trace of the same flows recorded with more data.
    #[arg(value_name = "LARGE")]
    pub large: PathBuf,
    #[command(flatten)]
    pub audit: AuditArgs,
}

pub fn run(args: &CompareArgs) -> anyhow::Result<u8> {
    let config = args.audit.load_rules()?;
    let mut report = compare(args, &config)?;
    args.audit.emit(&mut report)
}

/// Audits both traces and compares them (tests call this directly).
pub fn compare(
    args: &CompareArgs,
    config: &crate::rules::RuleConfig,
) -> anyhow::Result<crate::report::Report> {
    let audit_of = |file: &PathBuf, baseline: Option<PathBuf>| {
        let one = AnalyzeArgs {
            files: vec![file.clone()],
            input: InputFormat::Auto,
            log_line_prefix: crate::capture::logs::DEFAULT_LOG_LINE_PREFIX.to_owned(),
            step_from: Vec::new(),
            database: None,
            // compare takes no --database: its invariants are never checked.
            skip_invariants: true,
            allow_empty: false,
            audit: AuditArgs {
                baseline,
                write_baseline: None,
                ..args.audit.clone()
            },
        };
        analyze(&one, config)
    };
    // A baseline describes the large run's counts; the small run is only a reference.
    let small = audit_of(&args.small, None)?;
    let large = audit_of(&args.large, args.audit.baseline.clone())?;
    let comparison = crate::scale::comparison(
        &small,
        &large,
        (
            &args.small.display().to_string(),
            &args.large.display().to_string(),
        ),
    );
    let mut report = crate::scale::compare(config, &small, large);
    report.comparison = Some(comparison);
    Ok(report)
}
