//! `open-transaction`: a transaction still open when its step ends or the
//! trace ends.

use foldhash::{HashMap, HashMapExt};
use std::collections::BTreeMap;

use super::units::{NoSettings, Tracker, step_finding};
use super::{Rule, RuleMeta, RuleSetup, Statement, documented_rule};
use crate::model::{Finding, Severity};

pub static META: RuleMeta = RuleMeta {
    id: "open-transaction",
    default_severity: Severity::Error,
    summary: "a transaction still open when its step ends",
    doc: OpenTransaction::DOC,
    build,
};

documented_rule! {
    /// ## What it does
    /// Flags a transaction that is still open when the next statement of its
    /// connection belongs to another step (its step ended without COMMIT or
    /// ROLLBACK), or when the trace ends. Transaction control without
    /// attribution of its own belongs to the step of the statements it
    /// encloses, so a COMMIT right after the step's last statement closes it
    /// in time.
    ///
    /// ## Why is this bad?
    /// An open transaction holds its locks and its snapshot: other requests
    /// wait on its rows, VACUUM cannot clean behind it, and its writes are
    /// neither committed nor rolled back: the next request on the pooled
    /// connection inherits them, or they vanish when the connection closes.
    ///
    /// ## Example
    /// ```sql
    /// BEGIN;
    /// UPDATE carts SET updated_at = now() WHERE id = $1;
    /// -- the handler returns early on a validation error: no COMMIT, no ROLLBACK
    /// ```
    ///
    /// ## How to fix
    /// End every transaction on every path: use the driver's scoped
    /// transaction (`with conn.transaction():`, `tx.commit()` with rollback
    /// on drop), and return connections to the pool only when idle (most
    /// pools can check or reset them).
    pub struct OpenTransaction {
        severity: Severity,
        tracker: Tracker,
        /// Per connection: the open unit's id, step index and (flow, step).
        open: HashMap<u64, (u64, usize, (String, String), String)>,
        /// (flow, step) → (count, examples).
        found: BTreeMap<(String, String), (u64, Vec<String>)>,
    }
}

fn build(setup: &RuleSetup<'_>) -> Result<Box<dyn Rule>, toml::de::Error> {
    let _: NoSettings = setup.settings()?;
    Ok(Box::new(OpenTransaction {
        severity: setup.severity,
        tracker: Tracker::default(),
        open: HashMap::new(),
        found: BTreeMap::new(),
    }))
}

impl OpenTransaction {
    fn report(&mut self, key: (String, String), example: String) {
        let entry = self.found.entry(key).or_default();
        entry.0 += 1;
        if entry.1.len() < super::units::MAX_EXAMPLES {
            entry.1.push(example);
        }
    }
}

impl Rule for OpenTransaction {
    fn observe(&mut self, s: &Statement<'_>) {
        let seen = self.tracker.observe(s);
        if s.event.cut_by_stop {
            // The proxy's stop ended the connection and its transaction, not
            // the application (issue 13, defect 11).
            self.open.remove(&s.conn);
            return;
        }
        for ended in &seen.ended {
            if self.open.get(&s.conn).is_some_and(|o| o.0 == ended.unit.id) {
                self.open.remove(&s.conn);
            }
        }
        let Some(unit) = seen.unit else { return };
        if seen.ended.iter().any(|e| e.unit.id == unit) {
            return;
        }
        match self.open.get(&s.conn) {
            Some((id, step, key, first)) if *id == unit => {
                if *step != s.step {
                    let message = format!(
                        "{first}  -- still open when step {} began with: {}",
                        s.key.step,
                        s.example()
                    );
                    let key = key.clone();
                    self.open.remove(&s.conn);
                    self.report(key, message);
                }
            }
            _ => {
                self.open.insert(
                    s.conn,
                    (
                        unit,
                        s.step,
                        (s.key.flow.clone(), s.key.step.clone()),
                        s.example(),
                    ),
                );
            }
        }
    }

    fn finish(&mut self, out: &mut Vec<Finding>) {
        let mut left: Vec<_> = self.open.drain().collect();
        left.sort_by_key(|(conn, _)| *conn);
        for (_, (_, _, key, first)) in left {
            self.report(
                key,
                format!("{first}  -- still open at the end of the trace"),
            );
        }
        for (key, (count, examples)) in &self.found {
            out.push(step_finding(
                &META,
                self.severity,
                key,
                format!(
                    "{count} transaction{} begun in this step still open when the step ended",
                    if *count == 1 { "" } else { "s" }
                ),
                *count,
                examples.clone(),
                "end every transaction on every path (COMMIT or ROLLBACK): use the driver's \
                 scoped transaction, which rolls back when dropped",
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::rules::testing::{audit, events, fired};

    #[test]
    fn fires_when_the_next_step_starts_inside_the_transaction() {
        let found = audit(
            events(&[
                (1, "SET flowaudit.step = 'pay'", &[], None),
                (1, "BEGIN", &[], None),
                (
                    1,
                    "UPDATE carts SET total = $1 WHERE id = $2",
                    &["1", "2"],
                    Some(1),
                ),
                (1, "SET flowaudit.step = 'ship'", &[], None),
                (1, "SELECT 1", &[], Some(1)),
                (1, "COMMIT", &[], None),
            ]),
            "",
        );
        let f = fired(&found, "open-transaction");
        assert_eq!(f.len(), 1, "{found:#?}");
        assert_eq!(f[0].step, "pay");
        assert!(f[0].examples[0].contains("still open when step ship began"));
    }

    #[test]
    fn fires_at_the_end_of_the_trace() {
        let found = audit(
            events(&[
                (1, "BEGIN", &[], None),
                (1, "INSERT INTO t VALUES (1)", &[], Some(1)),
            ]),
            "",
        );
        let f = fired(&found, "open-transaction");
        assert_eq!(f.len(), 1, "{found:#?}");
        assert!(f[0].examples[0].contains("end of the trace"));
    }

    #[test]
    fn silent_when_committed_or_rolled_back_in_the_step() {
        let found = audit(
            events(&[
                (1, "SET flowaudit.step = 'pay'", &[], None),
                (1, "BEGIN", &[], None),
                (1, "INSERT INTO t VALUES (1)", &[], Some(1)),
                (1, "COMMIT", &[], None),
                (1, "BEGIN", &[], None),
                (1, "INSERT INTO t VALUES (2)", &[], Some(1)),
                (1, "ROLLBACK", &[], None),
                (1, "SET flowaudit.step = 'ship'", &[], None),
                (1, "SELECT 1", &[], Some(1)),
            ]),
            "",
        );
        assert!(fired(&found, "open-transaction").is_empty(), "{found:#?}");
    }
}
