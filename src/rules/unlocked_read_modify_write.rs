//! `unlocked-read-modify-write`: a row read by key, then updated by the same
//! key to a value the application computed, with nothing to stop another
//! session changing it in between.

use foldhash::{HashMap, HashMapExt};
use std::collections::BTreeMap;

use super::units::{
    KeyedRead, KeyedWrite, MAX_EXAMPLES, NoSettings, ValueRef, failed, fingerprinted, keyed_read,
    keyed_write, step_finding,
};
use super::{Rule, RuleMeta, RuleSetup, Statement, documented_rule};
use crate::fingerprint::StatementKind;
use crate::model::{Finding, Severity};

pub static META: RuleMeta = RuleMeta {
    id: "unlocked-read-modify-write",
    default_severity: Severity::Warning,
    summary: "a row read and then updated without a lock or guard",
    doc: UnlockedReadModifyWrite::DOC,
    build,
    judges_transactions: false,
};

/// Reads remembered per connection.
const READS_CAP: usize = 1024;

documented_rule! {
    /// ## What it does
    /// Flags an UPDATE that sets a row, found by key (`WHERE id = ?`, nothing
    /// else), to values the application computed (`SET stock = ?`, no
    /// column on the right side), when the same step read that row by the same
    /// key and value earlier on the same connection without `FOR UPDATE` or
    /// `FOR SHARE`. It fires whether the two ran in one transaction or in
    /// autocommit, where no lock can protect the row at all. Keys are seen
    /// through casts (`id = $1::BIGINT`, `CAST(? AS INTEGER)`, `'7'::bigint`)
    /// and in every placeholder style (`$1`, `?`, `%s`, `%(name)s`, `:name`),
    /// a bind value naming the same row as the literal it stands for.
    ///
    /// ## Why is this bad?
    /// Two requests read the same stock (5), each computes 5 − 2 = 3, each
    /// writes 3: four units sold, two taken off. In PostgreSQL's and MySQL's
    /// default isolation a plain SELECT takes no lock, so the transaction
    /// does not help; in autocommit nothing does.
    ///
    /// ## Example
    /// ```sql
    /// SELECT stock FROM inventory WHERE product_id = $1;           -- 5
    /// UPDATE inventory SET stock = $1 WHERE product_id = $2;       -- 3, computed in the app
    /// ```
    ///
    /// ## How to fix
    /// Let the database compute it, guarded:
    /// `UPDATE inventory SET stock = stock - $1 WHERE product_id = $2 AND
    /// stock >= $1` (and check the row count); or lock the row when reading
    /// it (`SELECT … FOR UPDATE`) inside the transaction that writes it; or
    /// use a version column (`… WHERE id = $1 AND version = $2`).
    pub struct UnlockedReadModifyWrite {
        severity: Severity,
        reads_by_fp: HashMap<u64, Option<KeyedRead>>,
        writes_by_fp: HashMap<u64, Option<KeyedWrite>>,
        /// Per connection: the (step, instance) the reads belong to, and the
        /// rows read: (table, keys with their values) → (locked, example).
        reads: HashMap<u64, ((usize, u64), Reads)>,
        /// Per (step, read fingerprint): see [`ReadExample`].
        read_examples: HashMap<(usize, u64), ReadExample>,
        /// (flow, step, fingerprint) → (hash, count, examples).
        found: BTreeMap<(String, String, String), Found>,
    }
}

/// Rows read: the row's hash (table, key columns and values) → whether the
/// read locked it, and the read's fingerprint hash.
type Reads = HashMap<u64, (bool, u64)>;

/// The first read of a fingerprint in a step, for the examples: its row's
/// hash, its example and its fingerprint text. Only the first is formatted,
/// so that reads cost no text per statement; a write of another row is shown
/// beside the read's fingerprint and that row's key.
type ReadExample = (u64, String, String);
type Found = (u64, u64, Vec<String>);

fn build(setup: &RuleSetup<'_>) -> Result<Box<dyn Rule>, toml::de::Error> {
    let _: NoSettings = setup.settings()?;
    Ok(Box::new(UnlockedReadModifyWrite {
        severity: setup.severity,
        reads_by_fp: HashMap::new(),
        writes_by_fp: HashMap::new(),
        reads: HashMap::new(),
        read_examples: HashMap::new(),
        found: BTreeMap::new(),
    }))
}

fn has_literal(keys: &[(String, ValueRef)]) -> bool {
    keys.iter().any(|(_, v)| matches!(v, ValueRef::Literal(_)))
}

impl Rule for UnlockedReadModifyWrite {
    fn observe(&mut self, s: &Statement<'_>) {
        if failed(s.event) {
            return;
        }
        let here = (s.step, s.instance);
        match s.fingerprint.kind {
            StatementKind::Select => {
                let cached = self
                    .reads_by_fp
                    .entry(s.fingerprint.hash)
                    .or_insert_with(|| keyed_read(&s.event.sql));
                let fresh;
                let read = match cached {
                    // Literal keys differ from run to run: read them again.
                    Some(r) if has_literal(&r.keyed.keys) => {
                        fresh = keyed_read(&s.event.sql);
                        match &fresh {
                            Some(r) => r,
                            None => return,
                        }
                    }
                    Some(r) => &*r,
                    None => return,
                };
                let Some(key) = read.keyed.row(s.event) else {
                    return;
                };
                let locked = read.locked;
                self.read_examples
                    .entry((s.step, s.fingerprint.hash))
                    .or_insert_with(|| (key, s.example(), s.fingerprint.text.clone()));
                let entry = self
                    .reads
                    .entry(s.conn)
                    .or_insert_with(|| (here, HashMap::new()));
                if entry.0 != here {
                    *entry = (here, HashMap::new());
                }
                if entry.1.len() < READS_CAP || entry.1.contains_key(&key) {
                    entry.1.insert(key, (locked, s.fingerprint.hash));
                }
            }
            StatementKind::Update => {
                // Only an update after reads of the same step on its
                // connection can be a read-modify-write.
                if !self
                    .reads
                    .get(&s.conn)
                    .is_some_and(|(at, reads)| *at == here && !reads.is_empty())
                {
                    return;
                }
                let cached = self
                    .writes_by_fp
                    .entry(s.fingerprint.hash)
                    .or_insert_with(|| keyed_write(&s.event.sql));
                let fresh;
                let write = match cached {
                    Some(w) if !w.absolute => return,
                    Some(w) if has_literal(&w.keyed.keys) => {
                        fresh = keyed_write(&s.event.sql);
                        match &fresh {
                            Some(w) => w,
                            None => return,
                        }
                    }
                    Some(w) => &*w,
                    None => return,
                };
                let Some(key) = write.keyed.row(s.event) else {
                    return;
                };
                let Some((_, reads)) = self.reads.get(&s.conn) else {
                    return;
                };
                let Some(&(locked, read_fp)) = reads.get(&key) else {
                    return;
                };
                if locked {
                    return;
                }
                let entry = self
                    .found
                    .entry((
                        s.key.flow.clone(),
                        s.key.step.clone(),
                        s.fingerprint.text.clone(),
                    ))
                    .or_insert_with(|| (s.fingerprint.hash, 0, Vec::new()));
                entry.1 += 1;
                if entry.2.len() + 2 <= MAX_EXAMPLES {
                    // The read of this very row (issue 13: the example paired
                    // the first read of its kind with every write).
                    let read = match self.read_examples.get(&(s.step, read_fp)) {
                        Some((row, example, _)) if *row == key => example.clone(),
                        Some((_, _, text)) => {
                            let keys: Vec<String> = write
                                .keyed
                                .keys
                                .iter()
                                .map(|(col, v)| {
                                    format!("{col} = '{}'", v.resolve(s.event).unwrap_or_default())
                                })
                                .collect();
                            format!("{text}  -- the row {}", keys.join(", "))
                        }
                        None => String::new(),
                    };
                    entry.2.push(format!("read:  {read}"));
                    entry.2.push(format!("wrote: {}", s.example()));
                }
            }
            _ => {}
        }
    }

    fn connection_closed(&mut self, conn: u64) {
        self.reads.remove(&conn);
    }

    fn finish(&mut self, out: &mut Vec<Finding>) {
        for ((flow, step, text), (hash, count, examples)) in &self.found {
            out.push(fingerprinted(step_finding(
                &META,
                self.severity,
                &(flow.clone(), step.clone()),
                format!(
                    "a row read by key is then updated by the same key to a value computed in \
                     the application, with no lock on the read and no guard on the update \
                     ({count}×): a concurrent request can change it in between, and one of the \
                     two updates is lost"
                ),
                *count,
                examples.clone(),
                "update relative to the row and guard it (SET stock = stock - ? WHERE id = ? AND \
                 stock >= ?), or read it with SELECT … FOR UPDATE in the transaction that writes it",
            ), text, *hash));
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::rules::testing::{audit, events, fired};

    const READ: &str = "SELECT inventory.stock FROM inventory WHERE inventory.product_id = ?";

    #[test]
    fn fires_on_read_then_computed_write_of_the_same_row() {
        let found = audit(
            events(&[
                (1, READ, &["7"], Some(1)),
                (
                    1,
                    "UPDATE inventory SET stock = ? WHERE product_id = ?",
                    &["2", "7"],
                    Some(1),
                ),
            ]),
            "",
        );
        let f = fired(&found, "unlocked-read-modify-write");
        assert_eq!(f.len(), 1, "{found:#?}");
        assert_eq!(f[0].examples.len(), 2);
    }

    /// Each write is shown with the read of its own row (issue 13: the
    /// Django corpus showed the read of product 7 beside the write of 19).
    #[test]
    fn examples_pair_each_write_with_the_read_of_its_row() {
        const WRITE: &str = "UPDATE inventory SET stock = ? WHERE product_id = ?";
        let found = audit(
            events(&[
                (1, READ, &["7"], Some(1)),
                (1, WRITE, &["2", "7"], Some(1)),
                (1, READ, &["19"], Some(1)),
                (1, WRITE, &["3", "19"], Some(1)),
            ]),
            "",
        );
        let f = fired(&found, "unlocked-read-modify-write");
        assert_eq!(f.len(), 1, "{found:#?}");
        let values: Vec<&str> = f[0]
            .examples
            .iter()
            .map(|e| e.rsplit("  -- ").next().unwrap_or_default())
            .collect();
        assert_eq!(
            values,
            [
                "params: '7'",
                "params: '2', '7'",
                "the row product_id = '19'",
                "params: '3', '19'"
            ]
        );
    }

    #[test]
    fn silent_with_a_lock_a_relative_update_a_guard_or_another_row() {
        for (read, read_params, write, write_params) in [
            (
                "SELECT stock FROM inventory WHERE product_id = $1 FOR UPDATE",
                &["7"][..],
                "UPDATE inventory SET stock = $1 WHERE product_id = $2",
                &["2", "7"][..],
            ),
            (
                READ,
                &["7"][..],
                "UPDATE inventory SET stock = stock - ? WHERE product_id = ?",
                &["2", "7"][..],
            ),
            (
                READ,
                &["7"][..],
                "UPDATE inventory SET stock = ? WHERE product_id = ? AND stock = ?",
                &["2", "7", "4"][..],
            ),
            (
                READ,
                &["8"][..],
                "UPDATE inventory SET stock = ? WHERE product_id = ?",
                &["2", "7"][..],
            ),
        ] {
            let found = audit(
                events(&[
                    (1, read, read_params, Some(1)),
                    (1, write, write_params, Some(1)),
                ]),
                "",
            );
            assert!(
                fired(&found, "unlocked-read-modify-write").is_empty(),
                "{write}: {found:#?}"
            );
        }
    }
}
