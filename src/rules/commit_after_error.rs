//! `commit-after-error`: COMMIT after a failed statement in the same
//! transaction.

use std::collections::BTreeMap;

use super::units::{Dialect, NoSettings, Tracker, step_finding};
use super::{Rule, RuleMeta, RuleSetup, Statement, documented_rule};
use crate::model::{Finding, Severity};

pub static META: RuleMeta = RuleMeta {
    id: "commit-after-error",
    default_severity: Severity::Error,
    summary: "COMMIT issued after an error inside the transaction",
    doc: CommitAfterError::DOC,
    build,
    judges_transactions: true,
};

documented_rule! {
    /// ## What it does
    /// Flags a COMMIT of a transaction in which a statement failed (the
    /// event's `error`, or a `txn` status of `failed`) and no `ROLLBACK TO
    /// SAVEPOINT` recovered. The message says what the database did, by
    /// dialect (from the events' `source`).
    ///
    /// ## Why is this bad?
    /// The application carried on as if the error had not happened. In
    /// PostgreSQL the transaction was aborted at the error: the COMMIT
    /// silently rolls everything back (its command tag says ROLLBACK), so the
    /// application reports success for work that was lost. In MySQL/InnoDB
    /// and SQLite only the failed statement was undone: the COMMIT keeps every
    /// other write, so half of the unit of work is saved.
    ///
    /// ## Example
    /// ```sql
    /// BEGIN;
    /// INSERT INTO orders (user_id, total_cents) VALUES ($1, $2);
    /// INSERT INTO order_items (order_id, product_id) VALUES ($1, $2);  -- fails: foreign key
    /// COMMIT;   -- PostgreSQL: ROLLBACK; MySQL: the order is saved without items
    /// ```
    ///
    /// ## How to fix
    /// Roll back when a statement fails (let the error propagate out of the
    /// scoped transaction), or handle an expected error explicitly with a
    /// SAVEPOINT and `ROLLBACK TO SAVEPOINT` before carrying on.
    pub struct CommitAfterError {
        severity: Severity,
        tracker: Tracker,
        /// (flow, step) → (count, examples, dialects).
        found: BTreeMap<(String, String), Found>,
    }
}

/// How many, examples, and the dialects they ran on.
type Found = (u64, Vec<String>, Vec<Dialect>);

fn build(setup: &RuleSetup<'_>) -> Result<Box<dyn Rule>, toml::de::Error> {
    let _: NoSettings = setup.settings()?;
    Ok(Box::new(CommitAfterError {
        severity: setup.severity,
        tracker: Tracker::default(),
        found: BTreeMap::new(),
    }))
}

impl Rule for CommitAfterError {
    fn observe(&mut self, s: &Statement<'_>) {
        let seen = self.tracker.observe(s);
        for ended in seen.ended {
            if !ended.commit_after_error {
                continue;
            }
            let entry = self.found.entry(ended.unit.flow_step.clone()).or_default();
            entry.0 += 1;
            if entry.1.len() < super::units::MAX_EXAMPLES {
                entry.1.push(format!(
                    "{}  -- failed, then: {}",
                    ended.unit.failed_example.unwrap_or_default(),
                    s.example()
                ));
            }
            let dialect = Dialect::of(s.event);
            if !entry.2.contains(&dialect) {
                entry.2.push(dialect);
            }
        }
    }

    fn connection_closed(&mut self, conn: u64) {
        self.tracker.connection_closed(conn);
    }

    fn finish(&mut self, out: &mut Vec<Finding>) {
        for (key, (count, examples, dialects)) in &self.found {
            let effect = dialects
                .iter()
                .map(|d| match d {
                    Dialect::Postgres => {
                        "PostgreSQL had aborted the transaction, so the COMMIT rolled back all \
                         of it while the application went on as if it were saved"
                    }
                    Dialect::MySql => {
                        "MySQL undid only the failed statement, so the COMMIT kept the \
                         transaction's other writes: part of the unit of work was saved"
                    }
                    Dialect::Sqlite => {
                        "SQLite undid only the failed statement, so the COMMIT kept the \
                         transaction's other writes: part of the unit of work was saved"
                    }
                })
                .collect::<Vec<_>>()
                .join("; ");
            out.push(step_finding(
                &META,
                self.severity,
                key,
                format!(
                    "COMMIT after a failed statement in the same transaction ({count}×): {effect}"
                ),
                *count,
                examples.clone(),
                "roll back when a statement fails (let the error leave the scoped transaction), \
                 or recover from an expected error with SAVEPOINT and ROLLBACK TO SAVEPOINT",
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
                message: "foreign key".into(),
            }),
            ..Event::default()
        }
    }

    fn trace(source: &str, recover: bool) -> Vec<Event> {
        let mut t = vec![
            ev("BEGIN", source, false),
            ev("INSERT INTO orders (user_id) VALUES (1)", source, false),
            ev("SAVEPOINT s", source, false),
            ev(
                "INSERT INTO order_items (order_id) VALUES (99)",
                source,
                true,
            ),
        ];
        if recover {
            t.push(ev("ROLLBACK TO SAVEPOINT s", source, false));
        }
        t.push(ev("COMMIT", source, false));
        t
    }

    #[test]
    fn fires_with_the_dialects_consequence() {
        let pg = audit(trace("proxy", false), "");
        let f = fired(&pg, "commit-after-error");
        assert_eq!(f.len(), 1, "{pg:#?}");
        assert!(
            f[0].message.contains("rolled back all of it"),
            "{}",
            f[0].message
        );
        let my = audit(trace("mysql-log", false), "");
        let f = fired(&my, "commit-after-error");
        assert_eq!(f.len(), 1, "{my:#?}");
        assert!(
            f[0].message
                .contains("MySQL undid only the failed statement")
        );
    }

    #[test]
    fn silent_after_rollback_to_savepoint_or_without_error() {
        let found = audit(trace("proxy", true), "");
        assert!(fired(&found, "commit-after-error").is_empty(), "{found:#?}");
        let mut clean = trace("proxy", false);
        clean[3].error = None;
        let found = audit(clean, "");
        assert!(fired(&found, "commit-after-error").is_empty(), "{found:#?}");
    }
}
