//! `lost-update`: two connections read the same row, each wrote back a value
//! computed from what it read, and the later write overwrote the earlier one.
//! Where `unlocked-read-modify-write` says an update *could* be lost, this
//! rule shows one that *was*, from the order of the statements in the trace.

use foldhash::{HashMap, HashMapExt};
use std::collections::BTreeMap;

use super::units::{
    KeyedRead, KeyedWrite, MAX_EXAMPLES, NoSettings, ValueRef, failed, fingerprinted, step_finding,
};
use super::{Rule, RuleMeta, RuleSetup, Statement, documented_rule};
use crate::attribute::TxnOp;
use crate::fingerprint::StatementKind;
use crate::model::{Event, Finding, Severity};

pub static META: RuleMeta = RuleMeta {
    id: "lost-update",
    default_severity: Severity::Error,
    summary: "two sessions read a row and wrote it back; the later write overwrote the earlier",
    doc: LostUpdate::DOC,
    build,
    judges_transactions: false,
};

/// Rows followed at once; past it the record starts afresh (an update lost
/// across the clearing is missed, never invented).
const ROWS_CAP: usize = 4096;
/// Tables a connection's reads in one step are remembered for.
const TABLES_CAP: usize = 16;
/// Connections whose read of one row is remembered.
const READERS_CAP: usize = 64;
/// Writes of one open transaction waiting for its COMMIT.
const PENDING_CAP: usize = 1024;

documented_rule! {
    /// ## What it does
    /// Follows every row read and updated by key (`WHERE id = ?`, nothing
    /// else) across connections, and reports an update that was lost: a
    /// connection read the row without a lock, another connection's write of
    /// that row then took effect (committed, or in autocommit), and the
    /// first connection still wrote the row to a value it computed from its
    /// read (`SET stock = ?`). Its write overwrote the other's: the row holds
    /// one update where two ran. A write takes effect at its transaction's
    /// COMMIT (a rollback drops it), so a read that ran before the other's
    /// COMMIT read the old value, as in PostgreSQL's and MySQL's default
    /// isolation. The finding names the row, both reads, both writes and
    /// the values written.
    ///
    /// It needs two sessions at once, which a test run seldom has:
    /// `--race STEP` (`demo`, `proxy`, `run --race-instances N`) runs the
    /// step in several instances and holds each write of a row read without
    /// a lock until the others have read it too, so that this interleaving
    /// happens every time it can.
    ///
    /// ## Why is this bad?
    /// Two customers buy 2 of the last 10 units at once:
    ///
    /// ```text
    /// A: SELECT stock FROM products WHERE id = 7      -- 10
    /// B: SELECT stock FROM products WHERE id = 7      -- 10
    /// A: UPDATE products SET stock = 8 WHERE id = 7   -- 10 - 2
    /// B: UPDATE products SET stock = 8 WHERE id = 7   -- 10 - 2, A's update lost
    /// ```
    ///
    /// Four units sold, two taken off the stock; the data no longer adds up
    /// (the shop's `stock-follows-orders` invariant shows it). A transaction
    /// around each read and write does not help: in READ COMMITTED (and
    /// MySQL's REPEATABLE READ for a plain SELECT) B's write waits for A's
    /// lock, then overwrites A's committed value all the same.
    ///
    /// ## Example
    /// ```sql
    /// SELECT stock FROM products WHERE id = $1;          -- conn 1, '7'
    /// SELECT stock FROM products WHERE id = $1;          -- conn 2, '7'
    /// UPDATE products SET stock = $1 WHERE id = $2;      -- conn 1, '8', '7'
    /// UPDATE products SET stock = $1 WHERE id = $2;      -- conn 2, '8', '7'
    /// ```
    ///
    /// ## How to fix
    /// Let the database compute the new value, guarded: `UPDATE products SET
    /// stock = stock - $1 WHERE id = $2 AND stock >= $1` (and check the row
    /// count); or read with `SELECT … FOR UPDATE` in the transaction that
    /// writes (the second reader then waits for the first COMMIT and reads
    /// its value); or a version column (`… WHERE id = $1 AND version = $2`).
    /// Run the same race again: the rule stays silent and the invariants hold.
    pub struct LostUpdate {
        severity: Severity,
        reads_by_fp: HashMap<u64, Option<KeyedRead>>,
        writes_by_fp: HashMap<u64, Option<KeyedWrite>>,
        /// The fingerprint text of each read kind, for the examples.
        read_texts: HashMap<u64, String>,
        rows: HashMap<u64, RowState>,
        /// Per connection: its step, and the tables it read by key without
        /// a lock in it (hashes of their names).
        conn_tables: HashMap<u64, (usize, Vec<u64>)>,
        /// Writes of each connection's open transaction, in order.
        pending: HashMap<u64, Vec<Written>>,
        /// (flow, step, write fingerprint) → (hash, count, examples).
        found: BTreeMap<(String, String, String), Found>,
    }
}

/// A finding in the making: the write fingerprint's hash, the updates lost,
/// the examples, and the rows they show (each row's first loss only, so that
/// the examples name as many rows as they can).
type Found = (u64, u64, Vec<String>, Vec<u64>);

/// What is known of one row.
#[derive(Debug, Default)]
struct RowState {
    /// Writes of the row that took effect so far.
    version: u64,
    /// The latest read of each connection.
    reads: Vec<Read>,
    /// The latest write that took effect.
    last: Option<Written>,
}

#[derive(Debug, Clone, Copy)]
struct Read {
    conn: u64,
    step: usize,
    /// The row's version the read saw.
    version: u64,
    locked: bool,
    fingerprint: u64,
}

/// A write of a row, waiting for its COMMIT or taken effect.
#[derive(Debug, Clone)]
struct Written {
    conn: u64,
    instance: Option<u64>,
    row: u64,
    /// When the connection read the row without a lock in the same step
    /// and wrote a value it computed: the read (else nothing can be lost
    /// by this write).
    read: Option<Read>,
    /// The statement, its values and its step, formatted only for a write
    /// that may overwrite another (`read` is known).
    shown: Option<Shown>,
    /// The row's version once this write took effect.
    applied: u64,
}

#[derive(Debug, Clone)]
struct Shown {
    flow: String,
    step: String,
    fingerprint: String,
    fingerprint_hash: u64,
    row: String,
    example: String,
    values: String,
}

fn build(setup: &RuleSetup<'_>) -> Result<Box<dyn Rule>, toml::de::Error> {
    let _: NoSettings = setup.settings()?;
    Ok(Box::new(LostUpdate {
        severity: setup.severity,
        reads_by_fp: HashMap::new(),
        writes_by_fp: HashMap::new(),
        read_texts: HashMap::new(),
        rows: HashMap::new(),
        conn_tables: HashMap::new(),
        pending: HashMap::new(),
        found: BTreeMap::new(),
    }))
}

fn table_hash(table: &str) -> u64 {
    use std::hash::BuildHasher;
    foldhash::fast::FixedState::with_seed(1).hash_one(table)
}

fn pairs(pairs: &[(String, ValueRef)], event: &Event) -> String {
    pairs
        .iter()
        .map(|(col, v)| format!("{col} = '{}'", v.resolve(event).unwrap_or("?")))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The two sessions by their application instances when they differ,
/// else by their connections.
fn who(this: &Written, that: &Written) -> (String, String) {
    match (this.instance, that.instance) {
        (Some(a), Some(b)) if a != b => (format!("instance {a}"), format!("instance {b}")),
        _ => (format!("conn {}", this.conn), format!("conn {}", that.conn)),
    }
}

/// The parsed shape of a statement, cached by fingerprint; a literal key
/// differs from run to run, so such shapes are parsed again.
fn cached<'a, T: Clone>(
    cache: &'a mut HashMap<u64, Option<T>>,
    hash: u64,
    sql: &str,
    parse: fn(&str) -> Option<T>,
    keys: fn(&T) -> &[(String, ValueRef)],
) -> Option<std::borrow::Cow<'a, T>> {
    let entry = cache.entry(hash).or_insert_with(|| parse(sql)).as_ref()?;
    if keys(entry)
        .iter()
        .any(|(_, v)| matches!(v, ValueRef::Literal(_)))
    {
        return parse(sql).map(std::borrow::Cow::Owned);
    }
    Some(std::borrow::Cow::Borrowed(entry))
}

impl LostUpdate {
    fn read(&mut self, s: &Statement<'_>) {
        let Some(read) = cached(
            &mut self.reads_by_fp,
            s.fingerprint.hash,
            &s.event.sql,
            super::units::keyed_read,
            |r| &r.keyed.keys,
        ) else {
            return;
        };
        let Some(row) = read.keyed.row(s.event) else {
            return;
        };
        let locked = read.locked;
        if !locked {
            let table = table_hash(&read.keyed.table);
            let (step, tables) = self
                .conn_tables
                .entry(s.conn)
                .or_insert_with(|| (s.step, Vec::new()));
            if *step != s.step {
                *step = s.step;
                tables.clear();
            }
            if !tables.contains(&table) && tables.len() < TABLES_CAP {
                tables.push(table);
            }
        }
        self.read_texts
            .entry(s.fingerprint.hash)
            .or_insert_with(|| s.fingerprint.text.clone());
        if self.rows.len() >= ROWS_CAP && !self.rows.contains_key(&row) {
            self.rows.clear();
        }
        let state = self.rows.entry(row).or_default();
        let read = Read {
            conn: s.conn,
            step: s.step,
            version: state.version,
            locked,
            fingerprint: s.fingerprint.hash,
        };
        match state.reads.iter_mut().find(|r| r.conn == s.conn) {
            Some(r) => *r = read,
            None => {
                if state.reads.len() >= READERS_CAP {
                    state.reads.remove(0);
                }
                state.reads.push(read);
            }
        }
    }

    fn write(&mut self, s: &Statement<'_>) {
        let Some(shape) = self
            .writes_by_fp
            .entry(s.fingerprint.hash)
            .or_insert_with(|| super::units::keyed_write(&s.event.sql))
        else {
            return;
        };
        let fresh;
        let write = if shape
            .keyed
            .keys
            .iter()
            .any(|(_, v)| matches!(v, ValueRef::Literal(_)))
        {
            // A key written inline differs from statement to statement, and
            // parsing each is the cost of this rule. Only a computed write by
            // a connection that read the table without a lock in its step
            // can overwrite another's update; a relative write with an
            // inline key is not followed (a computed write over it is missed).
            let table = table_hash(&shape.keyed.table);
            let read_it = self
                .conn_tables
                .get(&s.conn)
                .is_some_and(|(step, tables)| *step == s.step && tables.contains(&table));
            if !shape.absolute || !read_it {
                return;
            }
            fresh = super::units::keyed_write(&s.event.sql);
            match &fresh {
                Some(w) => w,
                None => return,
            }
        } else {
            &*shape
        };
        let Some(row) = write.keyed.row(s.event) else {
            return;
        };
        let read = write
            .absolute
            .then(|| self.rows.get(&row))
            .flatten()
            .and_then(|state| state.reads.iter().find(|r| r.conn == s.conn))
            .filter(|r| !r.locked && r.step == s.step)
            .copied();
        let shown = read.map(|_| Shown {
            flow: s.key.flow.clone(),
            step: s.key.step.clone(),
            fingerprint: s.fingerprint.text.clone(),
            fingerprint_hash: s.fingerprint.hash,
            row: format!(
                "{}({})",
                write.keyed.table,
                pairs(&write.keyed.keys, s.event)
            ),
            example: s.example(),
            values: pairs(&write.sets, s.event),
        });
        let written = Written {
            conn: s.conn,
            instance: s.event.instance,
            row,
            read,
            shown,
            applied: 0,
        };
        if s.txn.is_some() {
            let pending = self.pending.entry(s.conn).or_default();
            if pending.len() < PENDING_CAP {
                pending.push(written);
            }
        } else {
            self.apply(written);
        }
    }

    /// A write takes effect: it overwrote the row's latest write when its
    /// own read came before that one took effect.
    fn apply(&mut self, mut w: Written) {
        let state = self.rows.entry(w.row).or_default();
        state.version += 1;
        w.applied = state.version;
        let lost = match (&w.read, &w.shown, &state.last) {
            (Some(read), Some(shown), Some(last))
                if last.conn != w.conn && last.applied > read.version =>
            {
                Some((*read, shown.clone(), last.clone()))
            }
            _ => None,
        };
        let other_read = lost.as_ref().and_then(|(_, _, last)| {
            state
                .reads
                .iter()
                .find(|r| r.conn == last.conn && r.version < last.applied)
                .copied()
        });
        state.last = Some(w.clone());
        if let Some((read, shown, last)) = lost {
            self.lost(&w, read, &shown, &last, other_read);
        }
    }

    fn lost(
        &mut self,
        w: &Written,
        read: Read,
        shown: &Shown,
        last: &Written,
        other: Option<Read>,
    ) {
        let entry = self
            .found
            .entry((
                shown.flow.clone(),
                shown.step.clone(),
                shown.fingerprint.clone(),
            ))
            .or_insert_with(|| (shown.fingerprint_hash, 0, Vec::new(), Vec::new()));
        entry.1 += 1;
        if entry.2.len() + 4 > MAX_EXAMPLES || entry.3.contains(&w.row) {
            return;
        }
        entry.3.push(w.row);
        let (this, that) = who(w, last);
        let text = |r: &Read| {
            self.read_texts
                .get(&r.fingerprint)
                .cloned()
                .unwrap_or_default()
        };
        // First the whole story on one line (the table shows the first
        // example), then the reads and the two writes.
        let (overwritten, earlier_write) = match &last.shown {
            Some(earlier) => (
                format!(
                    "{that}'s {}, both computed from the same read",
                    earlier.values
                ),
                format!("{that} wrote: {}", earlier.example),
            ),
            None => (
                format!("{that}'s relative update, from a read before it"),
                format!("{that} wrote it (a relative update)"),
            ),
        };
        entry.2.push(format!(
            "{}: {this} wrote {} over {overwritten}",
            shown.row, shown.values
        ));
        entry.2.push(match other {
            Some(o) if o.fingerprint != read.fingerprint => {
                format!(
                    "read: {}  -- by {that}; {}  -- by {this}",
                    text(&o),
                    text(&read)
                )
            }
            Some(_) => format!("read: {}  -- by {that} and {this}", text(&read)),
            None => format!("read: {}  -- by {this}", text(&read)),
        });
        entry.2.push(earlier_write);
        entry.2.push(format!("{this} wrote: {}", shown.example));
    }
}

impl Rule for LostUpdate {
    fn observe(&mut self, s: &Statement<'_>) {
        match s.txn_op {
            Some(TxnOp::Commit) if !failed(s.event) => {
                for w in self.pending.remove(&s.conn).unwrap_or_default() {
                    self.apply(w);
                }
                return;
            }
            Some(TxnOp::Commit | TxnOp::Rollback) => {
                self.pending.remove(&s.conn);
                return;
            }
            _ => {}
        }
        if failed(s.event) {
            return;
        }
        match s.fingerprint.kind {
            StatementKind::Select => self.read(s),
            StatementKind::Update => self.write(s),
            _ => {}
        }
    }

    fn connection_closed(&mut self, conn: u64) {
        // What it had not committed, it never will.
        self.pending.remove(&conn);
        self.conn_tables.remove(&conn);
    }

    fn finish(&mut self, out: &mut Vec<Finding>) {
        for ((flow, step, text), (hash, count, examples, _)) in &self.found {
            out.push(fingerprinted(
                step_finding(
                    &META,
                    self.severity,
                    &(flow.clone(), step.clone()),
                    format!(
                        "{} lost: two sessions read the same row, each wrote back a value \
                         computed from what it read, and the later write overwrote the \
                         earlier one",
                        super::plural(*count, "update", "updates")
                    ),
                    *count,
                    examples.clone(),
                    "let the database compute it, guarded (SET stock = stock - ? WHERE id = ? \
                     AND stock >= ?), or read with SELECT … FOR UPDATE in the transaction that \
                     writes",
                ),
                text,
                *hash,
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::model::{Event, TxnStatus};
    use crate::rules::testing::{audit, events, fired};

    const READ: &str = "SELECT stock FROM products WHERE id = $1";
    const WRITE: &str = "UPDATE products SET stock = $1 WHERE id = $2";

    #[test]
    fn two_reads_then_two_computed_writes_lose_the_first() {
        let found = audit(
            events(&[
                (1, READ, &["7"], Some(1)),
                (2, READ, &["7"], Some(1)),
                (1, WRITE, &["8", "7"], Some(1)),
                (2, WRITE, &["8", "7"], Some(1)),
            ]),
            "",
        );
        let f = fired(&found, "lost-update");
        assert_eq!(f.len(), 1, "{found:#?}");
        assert_eq!(f[0].count, 1);
        assert_eq!(f[0].severity, crate::model::Severity::Error);
        assert_eq!(
            f[0].examples,
            [
                "products(id = '7'): conn 2 wrote stock = '8' over conn 1's stock = '8', both \
                 computed from the same read",
                "read: select stock from products where id = ?  -- by conn 1 and conn 2",
                "conn 1 wrote: UPDATE products SET stock = $1 WHERE id = $2  -- params: '8', '7'",
                "conn 2 wrote: UPDATE products SET stock = $1 WHERE id = $2  -- params: '8', '7'",
            ]
        );
    }

    /// Racing application instances are named by their numbers.
    #[test]
    fn instances_are_named_by_number() {
        let mut race = events(&[
            (3, READ, &["7"], Some(1)),
            (4, READ, &["7"], Some(1)),
            (3, WRITE, &["2", "7"], Some(1)),
            (4, WRITE, &["2", "7"], Some(1)),
        ]);
        for (e, instance) in race.iter_mut().zip([1, 2, 1, 2]) {
            e.instance = Some(instance);
        }
        let found = audit(race, "");
        let f = fired(&found, "lost-update");
        assert_eq!(
            f[0].examples[0],
            "products(id = '7'): instance 2 wrote stock = '2' over instance 1's stock = '2', both \
             computed from the same read"
        );
    }

    /// Values written inline (psycopg2, the simple query protocol).
    #[test]
    fn inline_keys_and_values_are_followed() {
        let found = audit(
            events(&[
                (1, "SELECT stock FROM products WHERE id = 7", &[], Some(1)),
                (2, "SELECT stock FROM products WHERE id = 7", &[], Some(1)),
                (
                    1,
                    "UPDATE products SET stock = 8 WHERE id = 7",
                    &[],
                    Some(1),
                ),
                (
                    2,
                    "UPDATE products SET stock = 8 WHERE id = 7",
                    &[],
                    Some(1),
                ),
                (3, "SELECT stock FROM products WHERE id = 9", &[], Some(1)),
                (4, "SELECT stock FROM products WHERE id = 9", &[], Some(1)),
                (
                    3,
                    "UPDATE products SET stock = 8 WHERE id = 9",
                    &[],
                    Some(1),
                ),
                (
                    4,
                    "UPDATE products SET stock = 7 WHERE id = 9",
                    &[],
                    Some(1),
                ),
            ]),
            "",
        );
        let f = fired(&found, "lost-update");
        assert_eq!(f.len(), 1, "{found:#?}");
        assert_eq!(f[0].count, 2);
        assert!(
            f[0].examples[0].contains("conn 2 wrote stock = '8' over conn 1's stock = '8'"),
            "{:?}",
            f[0].examples
        );
        assert!(
            f[0].examples[4].contains("conn 4 wrote stock = '7' over conn 3's stock = '8'"),
            "{:?}",
            f[0].examples
        );
    }

    #[test]
    fn one_after_the_other_loses_nothing() {
        let found = audit(
            events(&[
                (1, READ, &["7"], Some(1)),
                (1, WRITE, &["8", "7"], Some(1)),
                (2, READ, &["7"], Some(1)),
                (2, WRITE, &["6", "7"], Some(1)),
                (3, READ, &["9"], Some(1)),
                (4, READ, &["7"], Some(1)),
                (3, WRITE, &["6", "9"], Some(1)),
            ]),
            "",
        );
        assert!(fired(&found, "lost-update").is_empty(), "{found:#?}");
    }

    /// A statement of `conn`, with the transaction status it started in.
    fn at(conn: u64, sql: &str, params: &[&str], open: bool) -> Event {
        Event {
            sql: sql.to_owned(),
            conn: Some(conn),
            params: (!params.is_empty())
                .then(|| params.iter().map(|p| Some((*p).to_owned())).collect()),
            txn: Some(if open {
                TxnStatus::Open
            } else {
                TxnStatus::Idle
            }),
            ..Event::default()
        }
    }

    /// In a transaction the write takes effect at COMMIT: a read before it
    /// saw the old value even when it ran after the UPDATE (READ
    /// COMMITTED); after the COMMIT, the new one.
    #[test]
    fn writes_take_effect_at_commit() {
        let race = |reads_b_after_commit: bool| {
            let mut e = vec![
                at(1, "BEGIN", &[], false),
                at(1, READ, &["7"], true),
                at(1, WRITE, &["8", "7"], true),
            ];
            let b_read = vec![at(2, "BEGIN", &[], false), at(2, READ, &["7"], true)];
            if reads_b_after_commit {
                e.push(at(1, "COMMIT", &[], true));
                e.extend(b_read);
            } else {
                e.extend(b_read);
                e.push(at(1, "COMMIT", &[], true));
            }
            e.push(at(2, WRITE, &["8", "7"], true));
            e.push(at(2, "COMMIT", &[], true));
            audit(e, "")
        };
        let found = race(false);
        assert_eq!(fired(&found, "lost-update").len(), 1, "{found:#?}");
        let found = race(true);
        assert!(fired(&found, "lost-update").is_empty(), "{found:#?}");
    }

    #[test]
    fn a_rolled_back_write_loses_nothing() {
        let found = audit(
            vec![
                at(1, "BEGIN", &[], false),
                at(1, READ, &["7"], true),
                at(2, READ, &["7"], false),
                at(1, WRITE, &["8", "7"], true),
                at(1, "ROLLBACK", &[], true),
                at(2, WRITE, &["8", "7"], false),
            ],
            "",
        );
        assert!(fired(&found, "lost-update").is_empty(), "{found:#?}");
    }

    #[test]
    fn silent_with_a_lock_or_a_relative_update() {
        for (read, write, params) in [
            (
                "SELECT stock FROM products WHERE id = $1 FOR UPDATE",
                WRITE,
                &["8", "7"][..],
            ),
            (
                READ,
                "UPDATE products SET stock = stock - $1 WHERE id = $2",
                &["2", "7"][..],
            ),
        ] {
            let found = audit(
                events(&[
                    (1, read, &["7"], Some(1)),
                    (2, read, &["7"], Some(1)),
                    (1, write, params, Some(1)),
                    (2, write, params, Some(1)),
                ]),
                "",
            );
            assert!(
                fired(&found, "lost-update").is_empty(),
                "{read} / {write}: {found:#?}"
            );
        }
    }

    /// A relative update by another session between the read and the
    /// computed write is lost as well.
    #[test]
    fn a_computed_write_over_a_relative_update_loses_it() {
        let found = audit(
            events(&[
                (1, READ, &["7"], Some(1)),
                (
                    2,
                    "UPDATE products SET stock = stock - $1 WHERE id = $2",
                    &["2", "7"],
                    Some(1),
                ),
                (1, WRITE, &["8", "7"], Some(1)),
            ]),
            "",
        );
        let f = fired(&found, "lost-update");
        assert_eq!(f.len(), 1, "{found:#?}");
        assert_eq!(f[0].examples[2], "conn 2 wrote it (a relative update)");
        assert!(
            f[0].examples[0].starts_with(
                "products(id = '7'): conn 1 wrote stock = '8' over conn 2's relative update"
            ),
            "{:?}",
            f[0].examples
        );
    }
}
