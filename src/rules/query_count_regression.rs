//! `query-count-regression`: a step running more queries than the `--baseline`
//! records (issue 8), judged on the step's queries so that a fix which swaps
//! fingerprints passes (issue 14).

use foldhash::{HashMap, HashMapExt};

use serde::Deserialize;

use super::{
    QUERY_COUNT_REGRESSION, Rule, RuleMeta, RuleSetup, Statement, documented_rule, thousands,
};
use crate::baseline::{Baseline, changes};
use crate::model::{Finding, Severity, StepKey};
use crate::report::table::plural;

pub static META: RuleMeta = RuleMeta {
    id: QUERY_COUNT_REGRESSION,
    default_severity: Severity::Error,
    summary: "a step running more queries than the baseline allows",
    doc: QueryCountRegression::DOC,
    build,
    judges_transactions: false,
};

documented_rule! {
    /// ## What it does
    /// Compares every step of the run with the baseline given by `--baseline
    /// FILE` (written earlier with `--write-baseline FILE`) and reports each
    /// step that ran more queries than the baseline records, by more than the
    /// tolerance. Queries are what a framework's query counter counts:
    /// transaction control (BEGIN, COMMIT, SAVEPOINT, …), session settings and
    /// driver housekeeping never count. The finding lists the queries added
    /// and removed against the baseline, by fingerprint with their counts.
    ///
    /// A new fingerprint in a step whose queries did not rise is no
    /// regression: the JOIN or the `= ANY(?)` batch that replaced an N+1 is
    /// the fix. Such steps, and steps that ran fewer queries, are listed
    /// with their changes under the report's `tighten` (write the baseline
    /// again to record them). Steps the baseline does not have are not
    /// judged; the baseline's steps the run lacks are `missing-step`'s.
    /// Without `--baseline` the rule does nothing.
    ///
    /// ## Why is this bad?
    /// Query counts creep up one change at a time: an eager load dropped here,
    /// a lookup in a loop there. A baseline in CI makes the change that adds
    /// queries fail, while the counts the project already lives with pass.
    ///
    /// ## Example
    /// The baseline records `checkout › browse` at 10 queries, the inventory
    /// lookup at 8 runs; a change adds a price lookup per product: browse
    /// runs 18 queries, and the finding says `+8× select prices.amount from
    /// prices where prices.product_id = ?`.
    ///
    /// ## How to fix
    /// Remove the extra queries (batch them, eager-load). If the growth is
    /// meant, write the baseline again with `--write-baseline` in the same
    /// change, so the review sees the new counts.
    ///
    /// ## Settings
    /// `tolerance` (default 0): how many queries a step may run above the
    /// baseline, as a number (`2`) or a percentage of the baseline's count
    /// (`"10%"`, rounded up). `[[rules.query-count-regression.step]]` entries
    /// (`flow`, optional, `step`, `tolerance`) set it for one step.
    pub struct QueryCountRegression {
        severity: Severity,
        settings: Settings,
        baseline: Option<Baseline>,
        /// Per step id: its names, queries and runs per query fingerprint
        /// hash (with the fingerprint text, kept once).
        steps: HashMap<usize, StepRuns>,
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Settings {
    #[serde(default)]
    tolerance: Tolerance,
    #[serde(default)]
    step: Vec<StepTolerance>,
    /// Before issue 14 the rule judged statements with these two keys; they
    /// are refused with the key that replaced them rather than read with a
    /// meaning they did not have.
    tolerance_statements: Option<toml::Value>,
    tolerance_percent: Option<toml::Value>,
}

/// `[[rules.query-count-regression.step]]`: one step's own tolerance.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct StepTolerance {
    /// Any flow when left out.
    flow: Option<String>,
    step: String,
    tolerance: Tolerance,
}

/// How far above the baseline a step's queries may go.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Tolerance {
    Queries(u64),
    Percent(f64),
}

impl Default for Tolerance {
    fn default() -> Self {
        Tolerance::Queries(0)
    }
}

impl Tolerance {
    /// The most queries a step may run, given its baseline.
    fn allowed(self, base: u64) -> u64 {
        base + match self {
            Tolerance::Queries(n) => n,
            Tolerance::Percent(p) => (base as f64 * p / 100.0).ceil() as u64,
        }
    }
}

impl std::fmt::Display for Tolerance {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Tolerance::Queries(n) => write!(f, "{n}"),
            Tolerance::Percent(p) => write!(f, "{p}%"),
        }
    }
}

impl<'de> Deserialize<'de> for Tolerance {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor;
        const EXPECTED: &str = "a number of queries (2) or a percentage (\"10%\")";
        impl serde::de::Visitor<'_> for Visitor {
            type Value = Tolerance;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(EXPECTED)
            }
            fn visit_u64<E: serde::de::Error>(self, n: u64) -> Result<Tolerance, E> {
                Ok(Tolerance::Queries(n))
            }
            fn visit_i64<E: serde::de::Error>(self, n: i64) -> Result<Tolerance, E> {
                u64::try_from(n)
                    .map(Tolerance::Queries)
                    .map_err(|_| E::custom(format!("tolerance {n}: expected {EXPECTED}")))
            }
            fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<Tolerance, E> {
                text.trim()
                    .strip_suffix('%')
                    .and_then(|p| p.trim().parse::<f64>().ok())
                    .filter(|p| p.is_finite() && *p >= 0.0)
                    .map(Tolerance::Percent)
                    .ok_or_else(|| E::custom(format!("tolerance {text:?}: expected {EXPECTED}")))
            }
        }
        d.deserialize_any(Visitor)
    }
}

impl Settings {
    /// The tolerance of one step: its own entry (one naming its flow before
    /// one for any flow), else the rule's.
    fn tolerance(&self, key: &StepKey) -> Tolerance {
        let own = |with_flow: bool| {
            self.step.iter().find(|t| {
                t.step == key.step
                    && match &t.flow {
                        Some(flow) => with_flow && *flow == key.flow,
                        None => !with_flow,
                    }
            })
        };
        own(true)
            .or_else(|| own(false))
            .map_or(self.tolerance, |t| t.tolerance)
    }
}

#[derive(Debug)]
struct StepRuns {
    key: StepKey,
    queries: u64,
    fingerprints: HashMap<u64, (String, u64)>,
}

fn build(setup: &RuleSetup<'_>) -> Result<Box<dyn Rule>, toml::de::Error> {
    let settings: Settings = setup.settings()?;
    for (key, given) in [
        ("tolerance_statements", &settings.tolerance_statements),
        ("tolerance_percent", &settings.tolerance_percent),
    ] {
        if given.is_some() {
            return Err(serde::de::Error::custom(format!(
                "{key}: replaced by `tolerance`, which counts queries, not statements (issue \
                 14): write tolerance = 2 or tolerance = \"10%\""
            )));
        }
    }
    Ok(Box::new(QueryCountRegression {
        severity: setup.severity,
        settings,
        baseline: setup.baseline.cloned(),
        steps: HashMap::new(),
    }))
}

impl Rule for QueryCountRegression {
    fn observe(&mut self, s: &Statement<'_>) {
        let Some(baseline) = &self.baseline else {
            return;
        };
        if !s.is_query() {
            return;
        }
        let runs = match self.steps.entry(s.step) {
            std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::hash_map::Entry::Vacant(e) => {
                if baseline.step(&s.key.flow, &s.key.step).is_none() {
                    return;
                }
                e.insert(StepRuns {
                    key: s.key.clone(),
                    queries: 0,
                    fingerprints: HashMap::new(),
                })
            }
        };
        runs.queries += 1;
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
            let tolerance = self.settings.tolerance(&runs.key);
            let before = base.queries();
            if runs.queries <= tolerance.allowed(before) {
                continue;
            }
            let now = runs
                .fingerprints
                .iter()
                .map(|(hash, (text, count))| (format!("{hash:016x}"), text.as_str(), *count));
            let changes = changes(base, now);
            let within = match tolerance {
                Tolerance::Queries(0) => String::new(),
                t => format!(", over the tolerance of {t}"),
            };
            let mut message = format!(
                "step {} › {} ran {}, the baseline has {} (+{}{within})",
                runs.key.flow,
                runs.key.step,
                plural(runs.queries, "query", "queries"),
                thousands(before),
                thousands(runs.queries - before),
            );
            if !changes.is_empty() {
                message.push_str(": ");
                message.push_str(&changes);
            }
            out.push(Finding {
                rule: META.id,
                severity: self.severity,
                flow: runs.key.flow.clone(),
                step: runs.key.step.clone(),
                message,
                fingerprint: None,
                fingerprint_hash: None,
                count: runs.queries,
                examples: Vec::new(),
                location: None,
                driver: None,
                help: "remove the added queries (batch, eager-load), or write the baseline again \
                       with --write-baseline if the growth is meant"
                    .to_owned(),
            });
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

    /// browse: the products, a stock lookup per product (`n` of them, or one
    /// batch when `n` is 0), `extra` price lookups, and transaction control.
    fn trace(n: usize, extra: usize) -> Vec<Event> {
        let mut rows: Vec<(u64, String)> = vec![
            (1, "SET flowaudit.flow = 'shop'".into()),
            (1, "SET flowaudit.step = 'browse'".into()),
            (1, "BEGIN".into()),
            (1, "select * from products".into()),
        ];
        for i in 0..n {
            rows.push((1, format!("select * from stock where id = {i}")));
        }
        if n == 0 {
            rows.push((1, "SAVEPOINT s1".into()));
            rows.push((1, "select * from stock where id = any('{1,2}')".into()));
            rows.push((1, "RELEASE SAVEPOINT s1".into()));
        }
        for _ in 0..extra {
            rows.push((1, "select * from prices where id = 3".into()));
        }
        rows.push((1, "COMMIT".into()));
        let rows: Vec<(u64, &str, &[&str], Option<u64>)> = rows
            .iter()
            .map(|(c, sql)| (*c, sql.as_str(), &[][..], Some(1)))
            .collect();
        events(&rows)
    }

    fn run(
        n: usize,
        extra: usize,
        baseline: Option<&Baseline>,
        rules: &str,
    ) -> crate::report::Report {
        let config = RuleConfig::builtin_with(rules).expect("valid");
        let mut audit = Audit::with_baseline(&config, baseline).expect("build");
        for e in trace(n, extra) {
            audit.push(e);
        }
        audit.finish()
    }

    fn fired(report: &crate::report::Report) -> Vec<&str> {
        report
            .findings
            .iter()
            .filter(|f| f.rule == META.id)
            .map(|f| f.message.as_str())
            .collect()
    }

    #[test]
    fn fires_on_more_queries_listing_the_added_and_removed() {
        let baseline = Baseline::of(&run(2, 0, None, ""));
        let same = run(2, 0, Some(&baseline), "");
        assert!(fired(&same).is_empty(), "{:?}", same.findings);
        assert!(same.tighten.is_empty(), "{:?}", same.tighten);
        assert_eq!(
            fired(&run(1, 2, Some(&baseline), "")),
            [
                "step shop › browse ran 4 queries, the baseline has 3 (+1): \
                 +2× select * from prices where id = ?; −1× select * from stock where id = ?"
            ]
        );
    }

    /// Issue 14: the fix replaces the loop with a batch and wraps it in a
    /// savepoint. New fingerprints and more statements, fewer queries: no
    /// regression, and the change is listed to tighten the baseline.
    #[test]
    fn a_fix_that_swaps_fingerprints_passes_and_is_listed() {
        let baseline = Baseline::of(&run(5, 0, None, ""));
        let fixed = run(0, 0, Some(&baseline), "");
        assert!(fired(&fixed).is_empty(), "{:?}", fixed.findings);
        let browse = &fixed.flows[0].steps[0];
        assert!(browse.statements > 5, "{browse:?}");
        assert_eq!((browse.queries, browse.baseline_queries), (2, Some(6)));
        assert_eq!(
            fixed.tighten,
            [
                "shop › browse: 2 queries, the baseline has 6 (−4): \
                 +1× select * from stock where id = any(?); −5× select * from stock where id = ?",
                "fixed: n-plus-one · shop › browse (select * from stock where id = ?)",
            ]
        );
        assert_eq!(
            fixed.notes,
            ["to tighten the baseline, run the same command with --write-baseline FILE"]
        );
        // As many queries as the baseline, some of them other ones: listed too.
        let baseline = Baseline::of(&run(2, 0, None, ""));
        let swapped = run(1, 1, Some(&baseline), "");
        assert!(fired(&swapped).is_empty(), "{:?}", swapped.findings);
        assert_eq!(
            swapped.tighten,
            [
                "shop › browse: 3 queries, as the baseline, by other statements: \
                 +1× select * from prices where id = ?; −1× select * from stock where id = ?"
            ]
        );
    }

    #[test]
    fn tolerance_absolute_percent_and_per_step() {
        // browse: 1 + 4 = 5 queries.
        let baseline = Baseline::of(&run(4, 0, None, ""));
        let count = |extra, rules: &str| fired(&run(4, extra, Some(&baseline), rules)).len();
        assert_eq!(count(1, ""), 1);
        let two = "[rules.query-count-regression]\ntolerance = 2\n";
        assert_eq!(count(2, two), 0);
        assert_eq!(count(3, two), 1);
        assert!(
            fired(&run(4, 3, Some(&baseline), two))[0].contains("(+3, over the tolerance of 2)")
        );
        // 20% of 5 is 1; 30% of 5 rounds up to 2.
        let percent = |p| format!("[rules.query-count-regression]\ntolerance = \"{p}%\"\n");
        assert_eq!(count(1, &percent(20)), 0);
        assert_eq!(count(2, &percent(20)), 1);
        assert_eq!(count(2, &percent(30)), 0);
        // A step's own tolerance wins over the rule's; one naming the flow
        // wins over one for any flow.
        let per_step = "[rules.query-count-regression]\ntolerance = 0\n\
            [[rules.query-count-regression.step]]\nstep = \"browse\"\ntolerance = 1\n\
            [[rules.query-count-regression.step]]\nflow = \"shop\"\nstep = \"browse\"\n\
            tolerance = 3\n\
            [[rules.query-count-regression.step]]\nflow = \"other\"\nstep = \"browse\"\n\
            tolerance = 0\n";
        assert_eq!(count(3, per_step), 0);
        assert_eq!(count(4, per_step), 1);
    }

    #[test]
    fn silent_without_a_baseline_and_refuses_bad_keys() {
        let report = run(3, 3, None, "");
        assert!(fired(&report).is_empty());
        let refused = |text: &str| {
            RuleConfig::builtin_with(&format!("[rules.query-count-regression]\n{text}\n"))
                .expect_err(text)
                .to_string()
        };
        let e = refused("tolerance_statements = 1");
        assert!(
            e.contains("tolerance_statements: replaced by `tolerance`"),
            "{e}"
        );
        let e = refused("tolerance_percent = 5");
        assert!(
            e.contains("tolerance_percent: replaced by `tolerance`"),
            "{e}"
        );
        for bad in [
            "tolerance = -1",
            "tolerance = \"ten\"",
            "tolerance = \"-5%\"",
        ] {
            let e = refused(bad);
            assert!(e.contains("a percentage (\"10%\")"), "{bad}: {e}");
        }
        let e = refused("tolerence = 1");
        assert!(e.contains("unknown field `tolerence`"), "{e}");
    }
}
