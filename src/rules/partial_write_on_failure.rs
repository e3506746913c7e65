//! `partial-write-on-failure`: a step in which a statement failed, while
//! writes of the same step made before it were committed.

use foldhash::{HashMap, HashMapExt, HashSet, HashSetExt};
use std::collections::BTreeMap;

use super::units::{MAX_EXAMPLES, NoSettings, Outcome, Tracker, failed, step_finding};
use super::{Rule, RuleMeta, RuleSetup, Statement, documented_rule};
use crate::model::{Finding, Severity};

pub static META: RuleMeta = RuleMeta {
    id: "partial-write-on-failure",
    default_severity: Severity::Error,
    summary: "a failed step left some of its writes behind",
    doc: PartialWriteOnFailure::DOC,
    build,
    judges_transactions: true,
};

/// Writes kept per run of a step, and failed runs kept for the end.
const CAP: usize = 256;
/// Writes per run whose example is kept.
const EXAMPLED: usize = 32;

documented_rule! {
    /// ## What it does
    /// Flags a step in which a statement failed while writes of the same step
    /// (run), made before the failure, were committed: in autocommit, in a
    /// transaction committed before the failure, or in the failing
    /// transaction when its COMMIT kept them (MySQL and SQLite keep a
    /// transaction's other writes after an error; PostgreSQL rolls all of it
    /// back). The finding lists the writes left behind.
    ///
    /// With `flowaudit demo --inject-fault STEP:N` this proves atomicity: the
    /// Nth statement of the step fails on purpose, and the step passes only if
    /// everything it wrote before rolled back with it.
    ///
    /// ## Why is this bad?
    /// The user saw the step fail, but part of it happened: an order without
    /// its items, stock taken for no order, a cart emptied for an order that
    /// does not exist. Nothing retries or cleans it up.
    ///
    /// ## Example
    /// ```sql
    /// INSERT INTO orders (user_id, total_cents) VALUES ($1, $2);    -- autocommit: kept
    /// INSERT INTO order_items (order_id, product_id) VALUES ($1, $2);  -- fails
    /// ```
    ///
    /// ## How to fix
    /// Run the step's writes in one transaction and roll it back when any
    /// statement fails (see `non-atomic-write`).
    pub struct PartialWriteOnFailure {
        severity: Severity,
        tracker: Tracker,
        /// How the units that hold kept writes ended; only those, so that
        /// memory does not grow with the transactions of the trace.
        outcomes: HashMap<u64, Outcome>,
        /// Units holding writes of a current or failed run, not ended yet.
        pending: HashSet<u64>,
        current: HashMap<usize, Run>,
        failed_runs: Vec<Run>,
    }
}

#[derive(Debug)]
struct Run {
    instance: u64,
    key: (String, String),
    /// (seq, unit, example) of each successful write; the example only for
    /// the first [`EXAMPLED`] writes, which are all a finding shows.
    writes: Vec<(u64, Option<u64>, Option<String>)>,
    /// The first failed statement: (seq, example).
    failure: Option<(u64, String)>,
}

fn build(setup: &RuleSetup<'_>) -> Result<Box<dyn Rule>, toml::de::Error> {
    let _: NoSettings = setup.settings()?;
    Ok(Box::new(PartialWriteOnFailure {
        severity: setup.severity,
        tracker: Tracker::default(),
        outcomes: HashMap::new(),
        pending: HashSet::new(),
        current: HashMap::new(),
        failed_runs: Vec::new(),
    }))
}

impl PartialWriteOnFailure {
    fn retire(&mut self, run: Run) {
        if run.failure.is_some() && self.failed_runs.len() < CAP {
            self.failed_runs.push(run);
            return;
        }
        // Nothing will ask how this run's units ended.
        for (_, unit, _) in &run.writes {
            if let Some(u) = unit {
                self.pending.remove(u);
                self.outcomes.remove(u);
            }
        }
    }
}

impl Rule for PartialWriteOnFailure {
    fn observe(&mut self, s: &Statement<'_>) {
        let seen = self.tracker.observe(s);
        for ended in &seen.ended {
            if self.pending.remove(&ended.unit.id) {
                self.outcomes.insert(ended.unit.id, ended.outcome);
            }
        }
        let is_write = s.fingerprint.kind.is_write();
        let is_failed = failed(s.event);
        if !is_write && !is_failed {
            return;
        }
        if self
            .current
            .get(&s.step)
            .is_some_and(|r| r.instance != s.instance)
            && let Some(old) = self.current.remove(&s.step)
        {
            self.retire(old);
        }
        let run = self.current.entry(s.step).or_insert_with(|| Run {
            instance: s.instance,
            key: (s.key.flow.clone(), s.key.step.clone()),
            writes: Vec::new(),
            failure: None,
        });
        if is_failed {
            if run.failure.is_none() {
                run.failure = Some((s.seq, s.example()));
            }
        } else if run.failure.is_none() && run.writes.len() < CAP {
            let example = (run.writes.len() < EXAMPLED).then(|| s.example());
            run.writes.push((s.seq, seen.unit, example));
            if let Some(u) = seen.unit {
                self.pending.insert(u);
            }
        }
    }

    fn connection_closed(&mut self, conn: u64) {
        self.tracker.connection_closed(conn);
    }

    fn finish(&mut self, out: &mut Vec<Finding>) {
        let mut runs: Vec<(usize, Run)> = self.current.drain().collect();
        runs.sort_by_key(|(step, _)| *step);
        for (_, run) in runs {
            self.retire(run);
        }
        // (flow, step) → (runs, message, examples)
        let mut found: BTreeMap<(String, String), (u64, String, Vec<String>)> = BTreeMap::new();
        for run in &self.failed_runs {
            let Some((_, failure)) = &run.failure else {
                continue;
            };
            let kept: Vec<&(u64, Option<u64>, Option<String>)> = run
                .writes
                .iter()
                .filter(|(_, unit, _)| match unit {
                    None => true,
                    Some(u) => self.outcomes.get(u) == Some(&Outcome::Committed),
                })
                .collect();
            if kept.is_empty() {
                continue;
            }
            let entry = found.entry(run.key.clone()).or_insert_with(|| {
                let mut examples: Vec<String> = kept
                    .iter()
                    .filter_map(|(_, unit, ex)| Some((unit, ex.as_ref()?)))
                    .take(MAX_EXAMPLES - 1)
                    .map(|(unit, ex)| {
                        let how = if unit.is_some() {
                            "committed"
                        } else {
                            "autocommit"
                        };
                        format!("[{how}] {ex}")
                    })
                    .collect();
                examples.push(format!("[failed] {failure}"));
                (
                    0,
                    format!(
                        "a statement failed, and {} write{} of the step made before it stayed \
                         committed",
                        kept.len(),
                        if kept.len() == 1 { "" } else { "s" }
                    ),
                    examples,
                )
            });
            entry.0 += 1;
        }
        for (key, (count, message, examples)) in found {
            let message = if count > 1 {
                format!(
                    "{message} (and in {} more failed {} of the step)",
                    count - 1,
                    if count == 2 { "run" } else { "runs" }
                )
            } else {
                message
            };
            out.push(step_finding(
                &META,
                self.severity,
                &key,
                message,
                count,
                examples,
                "run the step's writes in one transaction and roll it back when a statement \
                 fails",
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::model::{Event, SqlError};
    use crate::rules::testing::{audit, fired};

    fn ev(sql: &str, source: &str, error: bool) -> Event {
        Event {
            sql: sql.into(),
            conn: Some(1),
            source: Some(source.into()),
            error: error.then(|| SqlError {
                code: "23503".into(),
                message: "violates foreign key".into(),
            }),
            ..Event::default()
        }
    }

    #[test]
    fn autocommit_writes_before_a_failure_are_left_behind() {
        let found = audit(
            vec![
                ev("INSERT INTO orders (user_id) VALUES (1)", "proxy", false),
                ev(
                    "INSERT INTO order_items (order_id) VALUES (99)",
                    "proxy",
                    true,
                ),
            ],
            "",
        );
        let f = fired(&found, "partial-write-on-failure");
        assert_eq!(f.len(), 1, "{found:#?}");
        assert!(f[0].examples[0].starts_with("[autocommit] INSERT INTO orders"));
        assert!(f[0].examples[1].starts_with("[failed] INSERT INTO order_items"));
    }

    fn commit_after_error(source: &str) -> Vec<Event> {
        vec![
            ev("BEGIN", source, false),
            ev("INSERT INTO orders (user_id) VALUES (1)", source, false),
            ev(
                "INSERT INTO order_items (order_id) VALUES (99)",
                source,
                true,
            ),
            ev("COMMIT", source, false),
        ]
    }

    #[test]
    fn mysql_commit_after_an_error_keeps_the_earlier_writes() {
        let found = audit(commit_after_error("mysql-log"), "");
        assert_eq!(
            fired(&found, "partial-write-on-failure").len(),
            1,
            "{found:#?}"
        );
        assert_eq!(fired(&found, "commit-after-error").len(), 1);
    }

    #[test]
    fn postgres_commit_after_an_error_rolls_back_so_nothing_is_left() {
        let found = audit(commit_after_error("proxy"), "");
        assert!(
            fired(&found, "partial-write-on-failure").is_empty(),
            "{found:#?}"
        );
        assert_eq!(fired(&found, "commit-after-error").len(), 1);
    }

    #[test]
    fn a_rolled_back_transaction_leaves_nothing() {
        let mut t = commit_after_error("mysql-log");
        t[3] = ev("ROLLBACK", "mysql-log", false);
        let found = audit(t, "");
        assert!(
            fired(&found, "partial-write-on-failure").is_empty(),
            "{found:#?}"
        );
        assert!(fired(&found, "commit-after-error").is_empty());
    }
}
