//! `open-transaction`: a transaction holding writes or locks still open when
//! its step ends, or any transaction left open when its connection's
//! statements end (issue 13, defect 7).

use foldhash::{HashMap, HashMapExt};
use std::collections::BTreeMap;

use super::units::{NoSettings, Tracker, step_finding};
use super::{Rule, RuleMeta, RuleSetup, Shown, Statement, documented_rule};
use crate::attribute::TxnOp;
use crate::fingerprint::StatementKind;
use crate::model::{Finding, Severity};

pub static META: RuleMeta = RuleMeta {
    id: "open-transaction",
    default_severity: Severity::Error,
    summary: "a transaction still open when its step ends",
    doc: OpenTransaction::DOC,
    build,
    judges_transactions: true,
};

documented_rule! {
    /// ## What it does
    /// Flags a transaction that is still open when its step ends (the next
    /// statement of its connection belongs to another step) while it holds
    /// writes or row locks: INSERT, UPDATE, DELETE, MERGE, DDL, `SELECT … FOR
    /// UPDATE` / `FOR NO KEY UPDATE` / `FOR SHARE` / `FOR KEY SHARE` (MySQL:
    /// `LOCK IN SHARE MODE`), advisory locks (`pg_advisory_lock`,
    /// `pg_advisory_xact_lock`, MySQL `GET_LOCK`) or `LOCK TABLE`. Any
    /// transaction, read-only or not, still open when its connection's
    /// statements end (the connection closed, or the trace ended) without
    /// COMMIT or ROLLBACK is flagged too.
    ///
    /// A read-only transaction that crosses a step boundary is only an info:
    /// ORMs do that when they behave normally. SQLAlchemy reloads expired
    /// attributes after `commit()` (`return user.id`), which begins a
    /// transaction holding one SELECT that the next step commits.
    ///
    /// Transaction control without attribution of its own belongs to the
    /// step of the statements it encloses, so a COMMIT right after the
    /// step's last statement closes it in time. The finding names the
    /// statement that began the transaction and the step that sent it.
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
        /// Per connection: its open transaction.
        open: HashMap<u64, Open>,
        /// (flow, step, what) → (count, examples).
        found: BTreeMap<(FlowStep, Verdict), (u64, Vec<String>)>,
    }
}

/// A step by its names: (flow, step).
type FlowStep = (String, String);

/// An open transaction as the rule follows it.
#[derive(Debug)]
struct Open {
    /// The tracker's unit id.
    unit: u64,
    /// The step (index and names) it is held against: where it began, or
    /// the step a read-only transaction crossed into.
    step: usize,
    key: FlowStep,
    /// The statement that began it, the first after a BEGIN, and the step
    /// that sent them; kept unformatted, as most transactions end unreported.
    began: Shown,
    then: Option<Shown>,
    began_in: String,
    /// BEGIN waits for the statement after it to complete `began`.
    began_with_begin_only: bool,
    /// The first write or lock it holds, if any.
    holds: Option<Shown>,
    /// Reported as an error already: not judged again.
    reported: bool,
}

/// How an open transaction was judged, most serious first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Verdict {
    /// Holding writes or locks when its step ended.
    HeldAcrossSteps,
    /// Still open when its connection's statements ended.
    LeftOpen,
    /// Read-only, carried into the next step.
    ReadOnlyAcrossSteps,
}

/// Why a transaction is judged.
enum End<'a> {
    /// The next statement of its connection, in another step.
    StepEnded(&'a Statement<'a>),
    /// No statement of its connection came after it.
    ConnectionEnded,
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

/// The write or lock a statement takes, if any (its normalised text).
fn takes_lock_or_writes(s: &Statement<'_>) -> bool {
    let kind = s.fingerprint.kind;
    if kind.is_write() || kind == StatementKind::Ddl {
        return true;
    }
    let text = s.fingerprint.text.as_str();
    text.starts_with("lock ")
        || [
            " for update",
            " for no key update",
            " for share",
            " for key share",
            " lock in share mode",
            "advisory_lock",
            "advisory_xact_lock",
            "get_lock(",
        ]
        .iter()
        .any(|p| text.contains(p))
}

impl OpenTransaction {
    fn report(&mut self, key: FlowStep, verdict: Verdict, example: String) {
        let entry = self.found.entry((key, verdict)).or_default();
        entry.0 += 1;
        if entry.1.len() < super::units::MAX_EXAMPLES {
            entry.1.push(example);
        }
    }

    /// Judges a transaction at the end of its step or of its connection. A
    /// read-only one carried into the next step is followed on, held against
    /// that step; any other is judged once.
    fn judge(&mut self, open: &mut Open, end: End<'_>) {
        if open.reported {
            return;
        }
        let began = match &open.then {
            Some(then) => format!(
                "{}; {}  (sent in step {})",
                open.began.example(),
                then.example(),
                open.began_in
            ),
            None => format!("{}  (sent in step {})", open.began.example(), open.began_in),
        };
        let (verdict, example) = match end {
            End::ConnectionEnded => (
                Verdict::LeftOpen,
                format!("{began}  -- still open at the end of the trace or of its connection"),
            ),
            End::StepEnded(next) => {
                let when = format!(
                    "still open when step {} began with: {}",
                    next.key.step,
                    next.example()
                );
                match &open.holds {
                    Some(holds) => (
                        Verdict::HeldAcrossSteps,
                        format!("{began}  -- holding {}  -- {when}", holds.example()),
                    ),
                    None => (Verdict::ReadOnlyAcrossSteps, format!("{began}  -- {when}")),
                }
            }
        };
        self.report(open.key.clone(), verdict, example);
        if verdict == Verdict::ReadOnlyAcrossSteps
            && let End::StepEnded(next) = end
        {
            open.step = next.step;
            open.key = (next.key.flow.clone(), next.key.step.clone());
            return;
        }
        open.reported = true;
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
            if self
                .open
                .get(&s.conn)
                .is_some_and(|o| o.unit == ended.unit.id)
            {
                self.open.remove(&s.conn);
            }
        }
        let Some(unit) = seen.unit else { return };
        if seen.ended.iter().any(|e| e.unit.id == unit) {
            return;
        }
        let Some(mut open) = self.open.remove(&s.conn).filter(|o| o.unit == unit) else {
            let is_begin = s.txn_op == Some(TxnOp::Begin);
            self.open.insert(
                s.conn,
                Open {
                    unit,
                    step: s.step,
                    key: (s.key.flow.clone(), s.key.step.clone()),
                    began: s.shown(),
                    then: None,
                    began_in: s.key.step.clone(),
                    began_with_begin_only: is_begin,
                    holds: takes_lock_or_writes(s).then(|| s.shown()),
                    reported: false,
                },
            );
            return;
        };
        if open.step != s.step {
            self.judge(&mut open, End::StepEnded(s));
        }
        if open.began_with_begin_only {
            // The statement that made the transaction: BEGIN alone says little.
            open.then = Some(s.shown());
            open.began_with_begin_only = false;
        }
        if open.holds.is_none() && takes_lock_or_writes(s) {
            open.holds = Some(s.shown());
        }
        self.open.insert(s.conn, open);
    }

    fn connection_closed(&mut self, conn: u64) {
        self.tracker.connection_closed(conn);
    }

    fn finish(&mut self, out: &mut Vec<Finding>) {
        let mut left: Vec<_> = self.open.drain().collect();
        left.sort_by_key(|(conn, _)| *conn);
        for (_, mut open) in left {
            self.judge(&mut open, End::ConnectionEnded);
        }
        for ((key, verdict), (count, examples)) in &self.found {
            let s = if *count == 1 { "" } else { "s" };
            let (severity, message) = match verdict {
                Verdict::HeldAcrossSteps => (
                    self.severity,
                    format!(
                        "{count} transaction{s} holding writes or locks still open when the step ended"
                    ),
                ),
                Verdict::LeftOpen => (
                    self.severity,
                    format!(
                        "{count} transaction{s} never committed or rolled back: still open when \
                         the connection closed or the trace ended"
                    ),
                ),
                Verdict::ReadOnlyAcrossSteps => (
                    self.severity.min(Severity::Info),
                    format!(
                        "{count} read-only transaction{s} carried into the next step (an ORM \
                         reloading after commit does this; it holds a snapshot, no locks)"
                    ),
                ),
            };
            out.push(step_finding(
                &META,
                severity,
                key,
                message,
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
    use crate::model::Severity;
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
        assert_eq!(f[0].severity, Severity::Error);
        assert!(f[0].examples[0].contains("still open when step ship began"));
        // Issue 13, defect 7: the statement that began it, and its step.
        assert!(
            f[0].examples[0].starts_with("BEGIN; UPDATE carts SET total = $1 WHERE id = $2  -- params: '1', '2'  (sent in step pay)"),
            "{}",
            f[0].examples[0]
        );
    }

    /// Issue 13, defect 7: SQLAlchemy reloads an expired attribute after
    /// commit (BEGIN; SELECT users.id …) and the next step commits it: a
    /// read-only transaction crossing a step boundary is an info, no error.
    #[test]
    fn read_only_transaction_crossing_a_step_is_info() {
        let found = audit(
            events(&[
                (1, "SET flowaudit.step = 'register'", &[], None),
                (1, "BEGIN", &[], None),
                (
                    1,
                    "INSERT INTO users (email) VALUES ($1) RETURNING users.id",
                    &["a@b"],
                    Some(1),
                ),
                (1, "COMMIT", &[], None),
                (1, "BEGIN", &[], None),
                (
                    1,
                    "SELECT users.id FROM users WHERE users.id = $1",
                    &["1"],
                    Some(1),
                ),
                (1, "SET flowaudit.step = 'login'", &[], None),
                (
                    1,
                    "SELECT users.email FROM users WHERE users.id = $1",
                    &["1"],
                    Some(1),
                ),
                (1, "COMMIT", &[], None),
            ]),
            "",
        );
        let f = fired(&found, "open-transaction");
        assert_eq!(f.len(), 1, "{found:#?}");
        assert_eq!(f[0].severity, Severity::Info);
        assert_eq!(f[0].step, "register");
        assert!(
            f[0].examples[0].starts_with(
                "BEGIN; SELECT users.id FROM users WHERE users.id = $1  -- params: '1'  \
                 (sent in step register)  -- still open when step login began with: \
                 SELECT users.email"
            ),
            "{}",
            f[0].examples[0]
        );
    }

    /// Issue 13, defect 7: row locks held across a step boundary are an error,
    /// as writes are; the example names the BEGIN, its first statement and
    /// the step that sent them.
    #[test]
    fn row_locks_crossing_a_step_are_an_error() {
        for lock in [
            "FOR UPDATE",
            "FOR NO KEY UPDATE",
            "FOR SHARE",
            "FOR KEY SHARE",
        ] {
            let read = format!("SELECT qty FROM stock WHERE item = $1 {lock}");
            let found = audit(
                events(&[
                    (1, "SET flowaudit.step = 'reserve'", &[], None),
                    (1, "BEGIN", &[], None),
                    (1, "SELECT 1", &[], Some(1)),
                    (1, &read, &["7"], Some(1)),
                    (1, "SET flowaudit.step = 'pay'", &[], None),
                    (1, "SELECT 2", &[], Some(1)),
                    (1, "COMMIT", &[], None),
                ]),
                "",
            );
            let f = fired(&found, "open-transaction");
            assert_eq!(f.len(), 1, "{lock}: {found:#?}");
            assert_eq!(f[0].severity, Severity::Error, "{lock}");
            assert_eq!(f[0].step, "reserve");
            let example = &f[0].examples[0];
            assert!(
                example
                    .starts_with("BEGIN; SELECT 1  (sent in step reserve)  -- holding SELECT qty"),
                "{example}"
            );
            assert!(example.contains(lock), "{example}");
        }
        for lock in [
            "SELECT pg_advisory_xact_lock($1)",
            "SELECT pg_advisory_lock($1)",
            "LOCK TABLE stock IN EXCLUSIVE MODE",
        ] {
            let found = audit(
                events(&[
                    (1, "SET flowaudit.step = 'reserve'", &[], None),
                    (1, "BEGIN", &[], None),
                    (1, lock, &["7"], Some(1)),
                    (1, "SET flowaudit.step = 'pay'", &[], None),
                    (1, "SELECT 2", &[], Some(1)),
                ]),
                "",
            );
            let f = fired(&found, "open-transaction");
            assert_eq!(f.len(), 1, "{lock}: {found:#?}");
            assert_eq!(f[0].severity, Severity::Error, "{lock}");
            assert!(f[0].message.contains("holding writes or locks"), "{lock}");
        }
    }

    /// Issue 13, defect 7: any transaction still open when its connection's
    /// statements end is an error, read-only or not.
    #[test]
    fn open_when_the_connection_ends_is_an_error() {
        let found = audit(
            events(&[
                (1, "SET flowaudit.step = 'browse'", &[], None),
                (1, "BEGIN", &[], None),
                (1, "SELECT * FROM products", &[], Some(3)),
                (2, "SELECT 1", &[], Some(1)),
                (2, "BEGIN", &[], None),
                (2, "SELECT 2", &[], Some(1)),
                (2, "COMMIT", &[], None),
            ]),
            "",
        );
        let f = fired(&found, "open-transaction");
        assert_eq!(f.len(), 1, "{found:#?}");
        assert_eq!(f[0].severity, Severity::Error);
        assert!(f[0].message.contains("never committed or rolled back"));
        assert!(
            f[0].examples[0].starts_with("BEGIN; SELECT * FROM products  (sent in step browse)"),
            "{}",
            f[0].examples[0]
        );
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
