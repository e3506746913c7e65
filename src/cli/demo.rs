//! `flowaudit demo`: run the bundled shop's journey on embedded SQLite,
//! capture every statement in-process, and audit it. `--products N` sizes the
//! catalogue, so that traces at two sizes can go to `flowaudit compare`.

use std::path::PathBuf;

use anyhow::Context;
use clap::Args;

use crate::audit::Audit;
use crate::demo::{DemoRun, DemoSettings};
use crate::trace::TraceWriter;

use super::{AuditArgs, FailOn};

#[derive(Debug, Clone, Args)]
pub struct DemoArgs {
    /// Run the corrected code paths (JOINs, the user loaded once, one
    /// transaction, guarded stock updates) instead of the shipped ones.
    #[arg(long)]
    pub fixed: bool,
    /// Keep the shop's database in this SQLite file, to inspect it after the
    /// run; default: in memory. The shop's tables in it are dropped and
    /// created afresh.
    #[arg(long, value_name = "PATH")]
    pub db: Option<PathBuf>,
    /// Products in the shop's catalogue, 1 to 10000: the first 24 are named,
    /// the rest made up, all dealt out over its four categories. Trace the
    /// journey at two sizes and `flowaudit compare` the traces to see which
    /// statements grow with the data.
    #[arg(
        long,
        value_name = "N",
        default_value_t = crate::demo::DEFAULT_PRODUCTS as u16,
        value_parser = clap::value_parser!(u16).range(1..=crate::demo::MAX_PRODUCTS as i64)
    )]
    pub products: u16,
    /// Also write the captured statements to FILE as a trace, which
    /// `flowaudit analyze FILE` audits to the same findings.
    #[arg(long, value_name = "FILE")]
    pub trace: Option<PathBuf>,
    #[command(flatten)]
    pub audit: AuditArgs,
}

impl DemoArgs {
    pub fn settings(&self) -> DemoSettings {
        DemoSettings {
            fixed: self.fixed,
            db: self.db.clone(),
            capture: true,
            products: usize::from(self.products),
        }
    }
}

/// The demo exits 0 after its report unless `--fail-on` is given (DESIGN.md).
pub fn run(args: &DemoArgs) -> anyhow::Result<u8> {
    let config = args.audit.load_rules()?;
    let demo = crate::demo::run(&args.settings()).map_err(|e| {
        anyhow::anyhow!("the demo shop failed: {e}\n  hint: with --db, check that PATH is a writable SQLite file")
    })?;
    if let Some(path) = &args.trace {
        write_trace(&demo, path)?;
    }
    let baseline = args.audit.load_baseline()?;
    let mut audit =
        Audit::with_baseline(&config, baseline.as_ref()).context("invalid rule settings")?;
    for event in demo.events {
        audit.push(event);
    }
    let mut report = audit.finish();
    args.audit.emit_failing_on(&mut report, FailOn::Never)
}

fn write_trace(demo: &DemoRun, path: &std::path::Path) -> anyhow::Result<()> {
    let context = || format!("cannot write the trace to {}", path.display());
    let file = std::fs::File::create(path).with_context(context)?;
    let mut writer = TraceWriter::new(std::io::BufWriter::new(file));
    for event in &demo.events {
        writer.write(event).with_context(context)?;
    }
    writer.flush().with_context(context)
}
