//! `flowaudit demo`: run the bundled shop's journey on embedded SQLite,
//! capture every statement in-process, and audit it. `--products N` sizes the
//! catalogue, so that traces at two sizes can go to `flowaudit compare`.
//! `--race checkout` runs several customers' checkouts at once and forces the
//! interleaving that loses updates (issue 19, [`crate::race`]).

use std::path::PathBuf;

use anyhow::Context;
use clap::Args;

use crate::audit::Audit;
use crate::demo::{DemoRun, DemoSettings};
use crate::fault::FaultSpec;
use crate::invariants::Invariants;
use crate::rules::RuleConfig;
use crate::trace::TraceWriter;

use super::{AuditArgs, FailOn, RaceArgs};

#[derive(Debug, Clone, Args)]
pub struct DemoArgs {
    /// Run the corrected code paths (JOINs, the user loaded once, one
    /// transaction, guarded stock updates) instead of the shipped ones.
    #[arg(long)]
    pub fixed: bool,
    /// Keep the shop's database in this SQLite file, to inspect it after the
    /// run; default: in memory. The shop's tables in it are dropped and
    /// created afresh. With --race the file is put in WAL mode, and stays so.
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
    /// Make a statement fail on purpose: the Nth statement of step STEP
    /// (counted from 1 in trace order, transaction control included; write
    /// the trace of a run without the fault to see the numbering), or the
    /// step's first COMMIT with STEP:commit. SQLite runs a failing statement
    /// in its place; the report shows whether the step's writes rolled back
    /// together (partial-write-on-failure, invariant-violated).
    #[arg(long, value_name = "STEP:N", conflicts_with = "race")]
    pub inject_fault: Option<FaultSpec>,
    /// `--race checkout`: as many customers as `--race-instances` register,
    /// fill their carts with the same products and check out at the same
    /// time, on a database file in WAL mode (`--db`, or a temporary one);
    /// the demo races only its checkout.
    #[command(flatten)]
    pub race: RaceArgs,
    #[command(flatten)]
    pub audit: AuditArgs,
}

impl DemoArgs {
    pub fn settings(&self, config: &RuleConfig) -> DemoSettings {
        DemoSettings {
            fixed: self.fixed,
            db: self.db.clone(),
            capture: true,
            products: usize::from(self.products),
            fault: self.inject_fault.clone(),
            invariants: Invariants::from_config(config),
            race: self.race.spec(),
        }
    }
}

/// The rule files, with the shop's invariants (`rules/shop.toml`, built in)
/// added unless a rule file already declares one of the same name.
pub fn load_rules(args: &DemoArgs) -> anyhow::Result<RuleConfig> {
    let mut config = args.audit.load_rules()?;
    let mut shop = RuleConfig::builtin()?;
    shop.add(
        std::path::Path::new(crate::demo::SHOP_RULES_PATH),
        crate::demo::SHOP_RULES,
    )?;
    for invariant in shop.invariants {
        if !config.invariants.iter().any(|i| i.name == invariant.name) {
            config.invariants.push(invariant);
        }
    }
    Ok(config)
}

/// The demo exits 0 after its report unless `--fail-on` is given (DESIGN.md).
pub fn run(args: &DemoArgs) -> anyhow::Result<u8> {
    let config = load_rules(args)?;
    let demo = crate::demo::run(&args.settings(&config)).map_err(|e| match e {
        crate::demo::DemoError::Invariant(e) => anyhow::anyhow!(
            "{e}\n  hint: fix the invariant's query in that rule file (rules/README.md, \"[[invariant]]\")"
        ),
        e @ crate::demo::DemoError::RaceStep { .. } => anyhow::anyhow!(
            "{e}\n  hint: flowaudit demo --race checkout [--race-instances N]; to race another \
             step, run your own application with flowaudit run --race STEP"
        ),
        e => anyhow::anyhow!(
            "the demo shop failed: {e}\n  hint: with --db, check that PATH is a writable SQLite file"
        ),
    })?;
    if let Some(path) = &args.trace {
        write_trace(&demo, path, args.audit.params)?;
    }
    let baseline = args.audit.load_baseline()?;
    let mut audit = Audit::with_baseline(&config, baseline.as_ref())
        .context("invalid rule settings")?
        .with_params(args.audit.params)
        .with_timeline(args.audit.format == crate::report::Format::Html);
    for event in demo.events {
        audit.push(event);
    }
    audit.add_findings(demo.invariant_findings);
    let mut report = audit.finish();
    if let (Some(spec), Some((step, error))) = (&args.inject_fault, &demo.failure) {
        report.notes.push(format!(
            "injected fault {spec}: step {step} failed with: {error}"
        ));
    } else if let Some(spec) = &args.inject_fault {
        return Err(super::fault_missed(spec, &report));
    }
    if let (Some(spec), Some(summary)) = (args.race.spec(), &demo.race) {
        if !summary.raced() {
            return Err(super::race_missed(&spec, summary, &report));
        }
        report.notes.push(summary.note(&spec));
        for (customer, checkout) in &demo.checkouts {
            if let Err(why) = checkout {
                report
                    .notes
                    .push(format!("customer {customer}'s checkout was refused: {why}"));
            }
        }
    }
    args.audit.emit_failing_on(&mut report, FailOn::Never)
}

fn write_trace(
    demo: &DemoRun,
    path: &std::path::Path,
    params: crate::redact::ParamsMode,
) -> anyhow::Result<()> {
    let context = || format!("cannot write the trace to {}", path.display());
    let file = std::fs::File::create(path).with_context(context)?;
    let mut writer = TraceWriter::new(std::io::BufWriter::new(file)).with_params(params);
    for event in &demo.events {
        writer.write(event).with_context(context)?;
    }
    writer.flush().with_context(context)
}
