//! `missing-step`: a step the `--baseline` records that the run did not run
//! (issue 14).

use foldhash::HashSet;
use std::collections::BTreeSet;

use super::units::NoSettings;
use super::{MISSING_STEP, Rule, RuleMeta, RuleSetup, Statement, documented_rule};
use crate::baseline::Baseline;
use crate::model::{Finding, Severity};
use crate::report::table::plural;

pub static META: RuleMeta = RuleMeta {
    id: MISSING_STEP,
    default_severity: Severity::Info,
    summary: "a step of the baseline that the run did not run",
    doc: MissingStep::DOC,
    build,
    judges_transactions: false,
};

documented_rule! {
    /// ## What it does
    /// With `--baseline FILE`, reports every step the baseline records that
    /// ran no statement in this run. Without `--baseline` the rule does
    /// nothing.
    ///
    /// ## Why is this bad?
    /// `query-count-regression` judges only the steps that ran: a step that
    /// was renamed, or that the test run skipped, silently stops being
    /// checked, and its old counts stay in the baseline for ever. A step that
    /// ran nothing may also be a step whose work moved elsewhere.
    ///
    /// ## Example
    /// The baseline has `checkout › browse` at 10 queries; the application's
    /// tags now say `step='catalogue'`. The run has a new step `catalogue`,
    /// which no baseline judges, and `browse` is missing.
    ///
    /// ## How to fix
    /// If the step was renamed or removed, write the baseline again with
    /// `--write-baseline` in the same change, so the review sees it. If the
    /// test run skipped it, make it run the step again.
    pub struct MissingStep {
        severity: Severity,
        baseline: Option<Baseline>,
        /// (flow, step) of every step that ran, in the baseline or not.
        ran: BTreeSet<(String, String)>,
        /// The steps (indexes) already in `ran`.
        seen: HashSet<usize>,
    }
}

fn build(setup: &RuleSetup<'_>) -> Result<Box<dyn Rule>, toml::de::Error> {
    let _: NoSettings = setup.settings()?;
    Ok(Box::new(MissingStep {
        severity: setup.severity,
        baseline: setup.baseline.cloned(),
        ran: BTreeSet::new(),
        seen: HashSet::default(),
    }))
}

impl Rule for MissingStep {
    fn observe(&mut self, s: &Statement<'_>) {
        if self.baseline.is_none() {
            return;
        }
        // Cloned once per step, not per statement: a step is known by its
        // index first.
        if self.seen.insert(s.step) {
            self.ran.insert((s.key.flow.clone(), s.key.step.clone()));
        }
    }

    fn finish(&mut self, out: &mut Vec<Finding>) {
        let Some(baseline) = &self.baseline else {
            return;
        };
        for (flow, steps) in &baseline.flows {
            for (step, base) in steps {
                if self.ran.contains(&(flow.clone(), step.clone())) {
                    continue;
                }
                out.push(Finding {
                    rule: META.id,
                    severity: self.severity,
                    flow: flow.clone(),
                    step: step.clone(),
                    message: format!(
                        "step {flow} › {step} did not run; the baseline has it at {} ({})",
                        plural(base.queries(), "query", "queries"),
                        plural(base.statements, "statement", "statements"),
                    ),
                    fingerprint: None,
                    fingerprint_hash: None,
                    count: 0,
                    examples: Vec::new(),
                    location: None,
                    driver: None,
                    help: "if the step was renamed or removed, write the baseline again with \
                           --write-baseline; if the run skipped it, run it again"
                        .to_owned(),
                });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::META;
    use crate::audit::Audit;
    use crate::baseline::Baseline;
    use crate::model::Severity;
    use crate::rules::RuleConfig;
    use crate::rules::testing::events;

    fn run(steps: &[&str], baseline: Option<&Baseline>) -> crate::report::Report {
        let config = RuleConfig::builtin().expect("defaults");
        let mut audit = Audit::with_baseline(&config, baseline).expect("build");
        let mut rows: Vec<(u64, String)> = vec![(1, "SET flowaudit.flow = 'shop'".into())];
        for step in steps {
            rows.push((1, format!("SET flowaudit.step = '{step}'")));
            rows.push((1, format!("select * from {step}")));
        }
        let rows: Vec<(u64, &str, &[&str], Option<u64>)> = rows
            .iter()
            .map(|(c, sql)| (*c, sql.as_str(), &[][..], None))
            .collect();
        for e in events(&rows) {
            audit.push(e);
        }
        audit.finish()
    }

    #[test]
    fn fires_on_a_baseline_step_the_run_lacks() {
        let baseline = Baseline::of(&run(&["browse", "pay"], None));
        let renamed = run(&["catalogue", "pay"], Some(&baseline));
        let fired: Vec<_> = renamed
            .findings
            .iter()
            .filter(|f| f.rule == META.id)
            .collect();
        assert_eq!(fired.len(), 1, "{:?}", renamed.findings);
        assert_eq!(fired[0].severity, Severity::Info);
        assert_eq!(
            (fired[0].flow.as_str(), fired[0].step.as_str()),
            ("shop", "browse")
        );
        assert_eq!(
            fired[0].message,
            "step shop › browse did not run; the baseline has it at 1 query (1 statement)"
        );
        // It is a judgement against the baseline, never stored in the next one.
        assert!(Baseline::of(&renamed).findings.is_empty());
    }

    #[test]
    fn silent_when_every_step_ran_or_without_a_baseline() {
        let baseline = Baseline::of(&run(&["browse", "pay"], None));
        let report = run(&["pay", "browse", "extra"], Some(&baseline));
        assert!(!report.findings.iter().any(|f| f.rule == META.id));
        let report = run(&[], None);
        assert!(!report.findings.iter().any(|f| f.rule == META.id));
    }
}
