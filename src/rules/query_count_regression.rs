//! `query-count-regression`: a step or fingerprint running more statements than
//! the `--baseline` records (issue 8).

use foldhash::{HashMap, HashMapExt};

use serde::Deserialize;

use super::{QUERY_COUNT_REGRESSION, Rule, RuleMeta, RuleSetup, Statement, documented_rule};
use crate::baseline::Baseline;
use crate::model::{Finding, Severity, StepKey};

pub static META: RuleMeta = RuleMeta {
    id: QUERY_COUNT_REGRESSION,
    default_severity: Severity::Error,
    summary: "more statements than the baseline allows",
    doc: QueryCountRegression::DOC,
    build,
};

documented_rule! {
    /// ## What it does
    /// Compares every step of the run with the baseline given by `--baseline
    /// FILE` (written earlier with `--write-baseline FILE`) and reports each
    /// step that ran more statements than the baseline records, and each
    /// fingerprint that ran more often in a step (or is new in it). Steps the
    /// baseline does not have are not judged. Without `--baseline` the rule
    /// does nothing.
    ///
    /// ## Why is this bad?
    /// Query counts creep up one change at a time: an eager load dropped here,
    /// a lookup in a loop there. A baseline in CI makes the change that adds
    /// statements fail, while the counts the project already lives with pass.
    ///
    /// ## Example
    /// The baseline records `checkout › browse` at 10 statements, the
    /// inventory lookup at 8 runs; a change adds a price lookup per product:
    /// browse runs 18 statements, and the new fingerprint ran 8× where the
    /// baseline has none.
    ///
    /// ## How to fix
    /// Remove the extra statements (batch them, eager-load). If the growth is
    /// meant, write the baseline again with `--write-baseline` in the same
    /// change, so the review sees the new counts.
    ///
    /// ## Settings
    /// `tolerance_statements` (integer, default 0) and `tolerance_percent`
    /// (number, default 0): a count may exceed the baseline by the larger of
    /// the two before it is a regression.
    pub struct QueryCountRegression {
        severity: Severity,
        tolerance: Tolerance,
        baseline: Option<Baseline>,
        /// Per step id: its names, statements and runs per fingerprint hash
        /// (with the fingerprint text, kept once).
        steps: HashMap<usize, StepRuns>,
    }
}

#[derive(Debug, Clone, Copy, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct Tolerance {
    tolerance_statements: u64,
    tolerance_percent: f64,
}

impl Tolerance {
    /// The most a count may be, given its baseline.
    fn allowed(self, base: u64) -> u64 {
        let by_percent = (base as f64 * self.tolerance_percent / 100.0).ceil() as u64;
        base + self.tolerance_statements.max(by_percent)
    }
}

#[derive(Debug)]
struct StepRuns {
    key: StepKey,
    statements: u64,
    fingerprints: HashMap<u64, (String, u64)>,
}

fn build(setup: &RuleSetup<'_>) -> Result<Box<dyn Rule>, toml::de::Error> {
    let tolerance: Tolerance = setup.settings()?;
    if !(tolerance.tolerance_percent >= 0.0 && tolerance.tolerance_percent.is_finite()) {
        return Err(serde::de::Error::custom(
            "tolerance_percent: expected a number of 0 or more",
        ));
    }
    Ok(Box::new(QueryCountRegression {
        severity: setup.severity,
        tolerance,
        baseline: setup.baseline.cloned(),
        steps: HashMap::new(),
    }))
}

impl Rule for QueryCountRegression {
    fn observe(&mut self, s: &Statement<'_>) {
        let Some(baseline) = &self.baseline else {
            return;
        };
        let runs = match self.steps.entry(s.step) {
            std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::hash_map::Entry::Vacant(e) => {
                if baseline.step(&s.key.flow, &s.key.step).is_none() {
                    return;
                }
                e.insert(StepRuns {
                    key: s.key.clone(),
                    statements: 0,
                    fingerprints: HashMap::new(),
                })
            }
        };
        runs.statements += 1;
        runs.fingerprints
            .entry(s.fingerprint.hash)
            .or_insert_with(|| (s.fingerprint.text.clone(), 0))
            .1 += 1;
    }

    fn finish(&mut self, out: &mut Vec<Finding>) {
        let Some(baseline) = &self.baseline else {
            return;
        };
        for runs in self.steps.values() {
            let Some(base) = baseline.step(&runs.key.flow, &runs.key.step) else {
                continue;
            };
            let where_ = format!("{} › {}", runs.key.flow, runs.key.step);
            if runs.statements > self.tolerance.allowed(base.statements) {
                out.push(self.finding(
                    runs,
                    format!(
                        "step {where_} ran {} statements, the baseline has {} (+{})",
                        runs.statements,
                        base.statements,
                        runs.statements - base.statements
                    ),
                    None,
                    runs.statements,
                ));
            }
            for (hash, (text, count)) in &runs.fingerprints {
                let hash = format!("{hash:016x}");
                let before = base.fingerprints.get(&hash).map_or(0, |b| b.count);
                if *count > self.tolerance.allowed(before) {
                    let message = if before == 0 {
                        format!(
                            "ran {count}× in {where_}, where the baseline has no such statement"
                        )
                    } else {
                        format!(
                            "ran {count}× in {where_}, the baseline has {before}× (+{})",
                            count - before
                        )
                    };
                    out.push(self.finding(runs, message, Some((text, hash)), *count));
                }
            }
        }
    }
}

impl QueryCountRegression {
    fn finding(
        &self,
        runs: &StepRuns,
        message: String,
        fingerprint: Option<(&String, String)>,
        count: u64,
    ) -> Finding {
        let (fingerprint, fingerprint_hash) = match fingerprint {
            Some((text, hash)) => (Some(text.clone()), Some(hash)),
            None => (None, None),
        };
        Finding {
            location: None,
            rule: META.id,
            severity: self.severity,
            flow: runs.key.flow.clone(),
            step: runs.key.step.clone(),
            message,
            fingerprint,
            fingerprint_hash,
            count,
            examples: Vec::new(),
            help: "remove the extra statements (batch, eager-load), or write the baseline again \
                   with --write-baseline if the growth is meant"
                .to_owned(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::META;
    use crate::audit::Audit;
    use crate::baseline::Baseline;
    use crate::model::Event;
    use crate::rules::RuleConfig;
    use crate::rules::testing::events;

    fn trace(extra: usize) -> Vec<Event> {
        let mut rows: Vec<(u64, &str, &[&str], Option<u64>)> = vec![
            (1, "SET flowaudit.flow = 'shop'", &[], None),
            (1, "SET flowaudit.step = 'browse'", &[], None),
            (1, "select * from products", &[], Some(3)),
            (1, "select * from stock where id = 1", &[], None),
            (1, "select * from stock where id = 2", &[], None),
        ];
        for _ in 0..extra {
            rows.push((1, "select * from prices where id = 3", &[], None));
        }
        events(&rows)
    }

    fn run(extra: usize, baseline: Option<&Baseline>, rules: &str) -> crate::report::Report {
        let config = RuleConfig::builtin_with(rules).expect("valid");
        let mut audit = Audit::with_baseline(&config, baseline).expect("build");
        for e in trace(extra) {
            audit.push(e);
        }
        audit.finish()
    }

    #[test]
    fn fires_on_more_statements_and_new_fingerprints() {
        let baseline = Baseline::of(&run(0, None, ""));
        let same = run(0, Some(&baseline), "");
        assert!(same.findings.is_empty(), "{:?}", same.findings);
        let more = run(1, Some(&baseline), "");
        let fired: Vec<&str> = more
            .findings
            .iter()
            .filter(|f| f.rule == META.id)
            .map(|f| f.message.as_str())
            .collect();
        assert_eq!(
            fired,
            [
                "step shop › browse ran 4 statements, the baseline has 3 (+1)",
                "ran 1× in shop › browse, where the baseline has no such statement",
            ]
        );
    }

    #[test]
    fn tolerance_lets_small_growth_pass() {
        let baseline = Baseline::of(&run(2, None, ""));
        let rules = "[rules.query-count-regression]\ntolerance_statements = 2\n";
        let fired = |extra, rules| {
            run(extra, Some(&baseline), rules)
                .findings
                .iter()
                .filter(|f| f.rule == META.id)
                .count()
        };
        assert_eq!(fired(4, rules), 0);
        assert_eq!(fired(5, rules), 2);
        // prices: 2 → 3 is +50%; the step: 5 → 6 is +20%.
        assert_eq!(
            fired(
                3,
                "[rules.query-count-regression]\ntolerance_percent = 50\n"
            ),
            0
        );
        assert_eq!(fired(3, ""), 2);
    }

    #[test]
    fn silent_without_a_baseline_and_refuses_unknown_keys() {
        let report = run(3, None, "");
        assert!(!report.findings.iter().any(|f| f.rule == META.id));
        let e = RuleConfig::builtin_with("[rules.query-count-regression]\ntolerance = 1\n")
            .expect_err("unknown key");
        assert!(e.to_string().contains("unknown field `tolerance`"), "{e}");
        let e =
            RuleConfig::builtin_with("[rules.query-count-regression]\ntolerance_percent = -1\n")
                .expect_err("negative");
        assert!(e.to_string().contains("tolerance_percent"), "{e}");
    }
}
