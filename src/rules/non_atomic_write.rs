//! `non-atomic-write`: the writes of one step not sharing one transaction.

use foldhash::{HashMap, HashMapExt, HashSet};
use std::collections::{BTreeMap, BTreeSet};

use super::units::{MAX_EXAMPLES, NoSettings, Tracker, failed, step_finding};
use super::{Rule, RuleMeta, RuleSetup, Statement, documented_rule};
use crate::model::{Finding, Severity};

pub static META: RuleMeta = RuleMeta {
    id: "non-atomic-write",
    default_severity: Severity::Error,
    summary: "the writes of one step not sharing one transaction",
    doc: NonAtomicWrite::DOC,
    build,
    judges_transactions: true,
};

documented_rule! {
    /// ## What it does
    /// Flags a step whose writes (INSERT, UPDATE, DELETE, MERGE, upserts that
    /// succeeded) do not all run in one transaction: some run in autocommit,
    /// or the step commits several transactions one after another (an ORM
    /// session committed after every write). Only a step whose writes touch
    /// at least two tables is judged: writes to one table, each in its own
    /// unit, are usually separate requests of one step (two "add to cart"
    /// clicks), each atomic by itself. A step that marks repeat (each marker
    /// starts a new run) is judged run by run. In MySQL, DDL commits the open
    /// transaction implicitly, which splits it too. The finding lists the
    /// writes, each with the unit it ran in.
    ///
    /// ## Why is this bad?
    /// A step is one unit of work for the user (check out, transfer, sign
    /// up). When its writes commit separately, a failure between two of them
    /// leaves the first ones saved: an order without items, stock taken for
    /// an order that does not exist, money debited and not credited.
    ///
    /// ## Example
    /// ```sql
    /// INSERT INTO orders (user_id, total_cents) VALUES ($1, $2);   -- autocommit
    /// INSERT INTO order_items (order_id, product_id, quantity) VALUES ($1, $2, $3);
    /// UPDATE inventory SET stock = $1 WHERE product_id = $2;
    /// ```
    ///
    /// ## How to fix
    /// Run the step's writes in one transaction (`BEGIN … COMMIT`, the
    /// framework's `transaction.atomic()` / `@Transactional` /
    /// `ActiveRecord::Base.transaction`), and commit the ORM session once, at
    /// the end of the unit of work.
    pub struct NonAtomicWrite {
        severity: Severity,
        tracker: Tracker,
        /// Per step: the writes of its runs still open, oldest first (at
        /// most [`RUNS_OPEN`]). Runs of a step that race (`--race`, or
        /// requests marked per connection) interleave, so each is followed
        /// apart; a run is judged when the step's later runs push it out,
        /// or at the end.
        current: HashMap<usize, Vec<Run>>,
        /// (flow, step) → (offending runs, the first offending run's message
        /// and examples).
        found: BTreeMap<(String, String), (u64, String, Vec<String>)>,
        /// Per connection: the steps it wrote in, so that its entries in
        /// those steps' runs (`Run::last_unit`) go when it closes: a run of
        /// a pgbench log's step sees every connection of the log.
        wrote_in: HashMap<u64, HashSet<usize>>,
    }
}

/// Runs of one step followed at once.
const RUNS_OPEN: usize = 16;

#[derive(Debug)]
struct Run {
    instance: u64,
    key: (String, String),
    writes: u64,
    autocommit: u64,
    /// The transactions its writes ran in, counted: a connection runs one
    /// transaction at a time, so a unit other than its connection's last is
    /// a new one. A set of every unit would grow with the run (a pgbench
    /// log is one step of 200,000 transactions).
    units: u64,
    last_unit: HashMap<u64, u64>,
    /// The first units, in order, to number the examples' transactions.
    numbered: Vec<u64>,
    tables: BTreeSet<String>,
    examples: Vec<String>,
}

/// The table a write changes, read from its normalised text: the name after
/// `into`, `update` or `from`.
fn target(fingerprint: &str) -> String {
    let mut words = fingerprint.split_whitespace();
    let mut previous = "";
    for word in words.by_ref() {
        if matches!(previous, "into" | "update" | "from") {
            return word.trim_matches(['"', '`', '(']).to_owned();
        }
        previous = word;
    }
    String::new()
}

fn build(setup: &RuleSetup<'_>) -> Result<Box<dyn Rule>, toml::de::Error> {
    let _: NoSettings = setup.settings()?;
    Ok(Box::new(NonAtomicWrite {
        severity: setup.severity,
        tracker: Tracker::default(),
        current: HashMap::new(),
        found: BTreeMap::new(),
        wrote_in: HashMap::new(),
    }))
}

impl NonAtomicWrite {
    fn judge(&mut self, run: Run) {
        if run.writes < 2 || run.tables.len() < 2 || (run.autocommit == 0 && run.units <= 1) {
            return;
        }
        let transactions = format!(
            "{} transaction{}",
            run.units,
            if run.units == 1 { "" } else { "s" }
        );
        // "The rest" only when some ran in autocommit (issue 14).
        let split = match (run.autocommit, run.units) {
            (0, _) => format!("in {transactions}"),
            (n, 0) => format!("{n} in autocommit"),
            (n, _) => format!("{n} in autocommit, the rest in {transactions}"),
        };
        let message = format!(
            "{} writes do not share one transaction: {split}",
            run.writes
        );
        let entry = self
            .found
            .entry(run.key)
            .or_insert_with(|| (0, message, run.examples));
        entry.0 += 1;
    }
}

impl Rule for NonAtomicWrite {
    fn observe(&mut self, s: &Statement<'_>) {
        let seen = self.tracker.observe(s);
        if !s.fingerprint.kind.is_write() || failed(s.event) {
            return;
        }
        let runs = self.current.entry(s.step).or_default();
        let at = match runs.iter().position(|r| r.instance == s.instance) {
            Some(at) => at,
            None => {
                if runs.len() >= RUNS_OPEN {
                    let oldest = runs.remove(0);
                    self.judge(oldest);
                }
                let runs = self.current.entry(s.step).or_default();
                runs.push(Run {
                    instance: s.instance,
                    key: (s.key.flow.clone(), s.key.step.clone()),
                    writes: 0,
                    autocommit: 0,
                    units: 0,
                    last_unit: HashMap::new(),
                    numbered: Vec::new(),
                    tables: BTreeSet::new(),
                    examples: Vec::new(),
                });
                runs.len() - 1
            }
        };
        let Some(run) = self.current.get_mut(&s.step).and_then(|r| r.get_mut(at)) else {
            return;
        };
        run.writes += 1;
        if run.tables.len() < 2 {
            run.tables.insert(target(&s.fingerprint.text));
        }
        match seen.unit {
            None => run.autocommit += 1,
            Some(u) => match run.last_unit.insert(s.conn, u) {
                Some(last) if last == u => {}
                last => {
                    if last.is_none() {
                        self.wrote_in.entry(s.conn).or_default().insert(s.step);
                    }
                    run.units += 1;
                }
            },
        }
        if run.examples.len() < MAX_EXAMPLES {
            let label = match seen.unit {
                None => "autocommit".to_owned(),
                Some(u) => {
                    // Numbered within the run, in order of appearance.
                    let n = match run.numbered.iter().position(|x| *x == u) {
                        Some(i) => i + 1,
                        None => {
                            run.numbered.push(u);
                            run.numbered.len()
                        }
                    };
                    format!("transaction {n}")
                }
            };
            run.examples.push(format!("[{label}] {}", s.example()));
        }
    }

    fn connection_closed(&mut self, conn: u64) {
        self.tracker.connection_closed(conn);
        for step in self.wrote_in.remove(&conn).unwrap_or_default() {
            for run in self.current.get_mut(&step).into_iter().flatten() {
                run.last_unit.remove(&conn);
            }
        }
    }

    fn finish(&mut self, out: &mut Vec<Finding>) {
        let mut steps: Vec<(usize, Vec<Run>)> = self.current.drain().collect();
        steps.sort_by_key(|(step, _)| *step);
        for run in steps.into_iter().flat_map(|(_, runs)| runs) {
            self.judge(run);
        }
        for (key, (count, message, examples)) in &self.found {
            let message = if *count > 1 {
                format!(
                    "{message} (and in {} more {} of the step)",
                    count - 1,
                    if *count == 2 { "run" } else { "runs" }
                )
            } else {
                message.clone()
            };
            out.push(step_finding(
                &META,
                self.severity,
                key,
                message,
                *count,
                examples.clone(),
                "run the step's writes in one transaction (BEGIN … COMMIT, or the framework's \
                 transaction block) and commit the ORM session once, at the end",
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::model::Event;
    use crate::rules::testing::{audit, events, fired};

    /// Issue 19: two racing instances of a step interleave their writes;
    /// each run is judged whole, so the finding does not depend on how they
    /// interleaved.
    #[test]
    fn interleaved_runs_of_a_step_are_judged_apart() {
        let writes = [
            (1, "INSERT INTO orders (user_id) VALUES ($1)"),
            (2, "INSERT INTO orders (user_id) VALUES ($1)"),
            (1, "UPDATE inventory SET stock = $1 WHERE product_id = $2"),
            (1, "DELETE FROM cart_items WHERE cart_id = $1"),
            (2, "UPDATE inventory SET stock = $1 WHERE product_id = $2"),
            (2, "DELETE FROM cart_items WHERE cart_id = $1"),
        ];
        let messages = |order: &[usize]| {
            let events: Vec<Event> = order
                .iter()
                .map(|&i| {
                    let (instance, sql) = writes[i];
                    Event {
                        sql: sql.to_owned(),
                        conn: Some(instance),
                        instance: Some(instance),
                        step: Some("checkout".into()),
                        ..Event::default()
                    }
                })
                .collect();
            let found = audit(events, "");
            fired(&found, "non-atomic-write")
                .iter()
                .map(|f| f.message.clone())
                .collect::<Vec<_>>()
        };
        let one_by_one = messages(&[0, 2, 3, 1, 4, 5]);
        assert_eq!(
            one_by_one,
            [
                "3 writes do not share one transaction: 3 in autocommit (and in 1 more run of the \
              step)"
            ]
        );
        assert_eq!(messages(&[0, 1, 2, 3, 4, 5]), one_by_one);
        assert_eq!(messages(&[0, 1, 4, 2, 5, 3]), one_by_one);
    }

    #[test]
    fn fires_on_autocommit_writes_and_on_several_commits() {
        let found = audit(
            events(&[
                (
                    1,
                    "INSERT INTO orders (user_id) VALUES ($1)",
                    &["1"],
                    Some(1),
                ),
                (
                    1,
                    "INSERT INTO order_items (order_id) VALUES ($1)",
                    &["1"],
                    Some(1),
                ),
            ]),
            "",
        );
        let f = fired(&found, "non-atomic-write");
        assert_eq!(f.len(), 1, "{found:#?}");
        assert!(f[0].message.contains("2 in autocommit"), "{}", f[0].message);
        assert!(f[0].examples[0].starts_with("[autocommit] INSERT INTO orders"));

        let found = audit(
            events(&[
                (1, "BEGIN", &[], None),
                (
                    1,
                    "INSERT INTO orders (user_id) VALUES ($1)",
                    &["1"],
                    Some(1),
                ),
                (1, "COMMIT", &[], None),
                (1, "BEGIN", &[], None),
                (
                    1,
                    "INSERT INTO order_items (order_id) VALUES ($1)",
                    &["1"],
                    Some(1),
                ),
                (1, "COMMIT", &[], None),
            ]),
            "",
        );
        let f = fired(&found, "non-atomic-write");
        assert_eq!(f.len(), 1, "{found:#?}");
        assert_eq!(
            f[0].message,
            "2 writes do not share one transaction: in 2 transactions"
        );
    }

    /// Issue 14: "the rest" only follows an autocommit part.
    #[test]
    fn the_message_splits_autocommit_from_transactions() {
        let found = audit(
            events(&[
                (1, "INSERT INTO orders (user_id) VALUES (1)", &[], Some(1)),
                (1, "BEGIN", &[], None),
                (
                    1,
                    "INSERT INTO order_items (order_id) VALUES (1)",
                    &[],
                    Some(1),
                ),
                (
                    1,
                    "INSERT INTO order_items (order_id) VALUES (2)",
                    &[],
                    Some(1),
                ),
                (1, "COMMIT", &[], None),
            ]),
            "",
        );
        let f = fired(&found, "non-atomic-write");
        assert_eq!(
            f[0].message,
            "3 writes do not share one transaction: 1 in autocommit, the rest in 1 transaction"
        );
        let found = audit(
            events(&[
                (1, "INSERT INTO orders (user_id) VALUES (1)", &[], Some(1)),
                (
                    1,
                    "INSERT INTO order_items (order_id) VALUES (1)",
                    &[],
                    Some(1),
                ),
            ]),
            "",
        );
        let f = fired(&found, "non-atomic-write");
        assert_eq!(
            f[0].message,
            "2 writes do not share one transaction: 2 in autocommit"
        );
    }

    /// Transactions are counted per connection, without keeping every one
    /// (issue 16: a set of all of them made long steps quadratic): two
    /// connections interleaving their own transactions, one of them twice.
    #[test]
    fn transactions_of_interleaved_connections_are_counted_once_each() {
        let found = audit(
            events(&[
                (1, "BEGIN", &[], None),
                (2, "BEGIN", &[], None),
                (1, "INSERT INTO orders (user_id) VALUES (1)", &[], Some(1)),
                (
                    2,
                    "INSERT INTO order_items (order_id) VALUES (1)",
                    &[],
                    Some(1),
                ),
                (
                    1,
                    "INSERT INTO order_items (order_id) VALUES (2)",
                    &[],
                    Some(1),
                ),
                (
                    2,
                    "UPDATE inventory SET stock = 1 WHERE product_id = 3",
                    &[],
                    Some(1),
                ),
                (1, "COMMIT", &[], None),
                (2, "COMMIT", &[], None),
                (1, "BEGIN", &[], None),
                (1, "INSERT INTO orders (user_id) VALUES (2)", &[], Some(1)),
                (1, "COMMIT", &[], None),
            ]),
            "",
        );
        let f = fired(&found, "non-atomic-write");
        assert_eq!(f.len(), 1, "{found:#?}");
        assert!(
            f[0].message.contains("in 3 transactions"),
            "{}",
            f[0].message
        );
        let labels: Vec<&str> = f[0]
            .examples
            .iter()
            .map(|e| e.split(']').next().unwrap_or_default())
            .collect();
        assert_eq!(
            labels,
            [
                "[transaction 1",
                "[transaction 2",
                "[transaction 1",
                "[transaction 2",
                "[transaction 3"
            ]
        );
    }

    #[test]
    fn writes_to_one_table_in_separate_units_are_separate_requests() {
        let found = audit(
            events(&[
                (
                    1,
                    "INSERT INTO cart_items (cart_id, product_id) VALUES ($1, $2)",
                    &["1", "3"],
                    Some(1),
                ),
                (
                    1,
                    "INSERT INTO cart_items (cart_id, product_id) VALUES ($1, $2)",
                    &["1", "5"],
                    Some(1),
                ),
            ]),
            "",
        );
        assert!(fired(&found, "non-atomic-write").is_empty(), "{found:#?}");
        assert_eq!(
            super::target("update \"inventory\" set stock = ?"),
            "inventory"
        );
        assert_eq!(
            super::target("delete from cart_items where id = ?"),
            "cart_items"
        );
    }

    #[test]
    fn mysql_ddl_splits_the_transaction() {
        let mut trace = events(&[
            (1, "BEGIN", &[], None),
            (1, "INSERT INTO orders (user_id) VALUES (1)", &[], Some(1)),
            (1, "CREATE TABLE audit_log (id int)", &[], None),
            (
                1,
                "INSERT INTO order_items (order_id) VALUES (1)",
                &[],
                Some(1),
            ),
            (1, "COMMIT", &[], None),
        ]);
        let pg = audit(trace.clone(), "");
        assert!(fired(&pg, "non-atomic-write").is_empty(), "{pg:#?}");
        for e in &mut trace {
            e.source = Some("mysql-log".into());
        }
        let my = audit(trace, "");
        assert_eq!(fired(&my, "non-atomic-write").len(), 1, "{my:#?}");
    }

    #[test]
    fn silent_for_one_transaction_or_one_write() {
        let found = audit(
            events(&[
                (1, "BEGIN", &[], None),
                (
                    1,
                    "INSERT INTO orders (user_id) VALUES ($1)",
                    &["1"],
                    Some(1),
                ),
                (
                    1,
                    "UPDATE inventory SET stock = stock - $1 WHERE product_id = $2",
                    &["1", "2"],
                    Some(1),
                ),
                (1, "COMMIT", &[], None),
            ]),
            "",
        );
        assert!(fired(&found, "non-atomic-write").is_empty(), "{found:#?}");
        let found = audit(
            vec![Event {
                sql: "INSERT INTO t VALUES (1)".into(),
                ..Event::default()
            }],
            "",
        );
        assert!(fired(&found, "non-atomic-write").is_empty());
    }
}
