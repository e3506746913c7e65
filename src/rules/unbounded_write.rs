//! `unbounded-write`: UPDATE or DELETE without WHERE.

use foldhash::{HashMap, HashMapExt};

use super::units::{NoSettings, fingerprinted, lacks_where, step_finding};
use super::{Rule, RuleMeta, RuleSetup, Statement, documented_rule, thousands};
use crate::fingerprint::StatementKind;
use crate::model::{Finding, Severity};

pub static META: RuleMeta = RuleMeta {
    id: "unbounded-write",
    default_severity: Severity::Error,
    summary: "UPDATE or DELETE without WHERE",
    doc: UnboundedWrite::DOC,
    build,
    judges_transactions: false,
};

documented_rule! {
    /// ## What it does
    /// Flags an `UPDATE` or `DELETE` with no `WHERE` clause (a `WHERE` inside a
    /// subquery does not count), once per fingerprint and step, with how many
    /// times it ran.
    ///
    /// ## Why is this bad?
    /// It changes every row of the table. In a user flow that is almost always
    /// a lost condition (a filter the ORM dropped, a variable that was empty),
    /// and on production data it rewrites or deletes everything.
    ///
    /// ## Example
    /// ```sql
    /// DELETE FROM cart_items;   -- meant: WHERE cart_id = $1
    /// ```
    ///
    /// ## How to fix
    /// Add the condition that names the rows meant. A deliberate full-table
    /// change (a maintenance job) belongs in its own step, allowed with an
    /// `[[allow]]` that says why; to empty a table, `TRUNCATE` says so.
    pub struct UnboundedWrite {
        severity: Severity,
        groups: HashMap<(usize, u64), Group>,
        /// Fingerprints already judged: whether they lack a WHERE.
        judged: HashMap<u64, bool>,
    }
}

/// Per (step, fingerprint hash): flow/step, text, runs, example.
type Group = ((String, String), String, u64, String);

fn build(setup: &RuleSetup<'_>) -> Result<Box<dyn Rule>, toml::de::Error> {
    let _: NoSettings = setup.settings()?;
    Ok(Box::new(UnboundedWrite {
        severity: setup.severity,
        groups: HashMap::new(),
        judged: HashMap::new(),
    }))
}

impl Rule for UnboundedWrite {
    fn observe(&mut self, s: &Statement<'_>) {
        if !matches!(
            s.fingerprint.kind,
            StatementKind::Update | StatementKind::Delete
        ) {
            return;
        }
        let unbounded = *self
            .judged
            .entry(s.fingerprint.hash)
            .or_insert_with(|| lacks_where(&s.event.sql).unwrap_or(false));
        if !unbounded {
            return;
        }
        let group = self
            .groups
            .entry((s.step, s.fingerprint.hash))
            .or_insert_with(|| {
                (
                    (s.key.flow.clone(), s.key.step.clone()),
                    s.fingerprint.text.clone(),
                    0,
                    s.example(),
                )
            });
        group.2 += 1;
    }

    fn finish(&mut self, out: &mut Vec<Finding>) {
        for ((_, hash), (key, text, runs, example)) in &self.groups {
            out.push(fingerprinted(
                step_finding(
                    &META,
                    self.severity,
                    key,
                    format!(
                        "{} without WHERE changes every row of the table; ran {}×",
                        if text.starts_with("update") {
                            "UPDATE"
                        } else {
                            "DELETE"
                        },
                        thousands(*runs)
                    ),
                    *runs,
                    vec![example.clone()],
                    "add the WHERE that names the rows meant; allow a deliberate full-table change \
                 with an [[allow]] that says why",
                ),
                text,
                *hash,
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::rules::testing::{audit, events, fired};

    #[test]
    fn fires_on_update_and_delete_without_where() {
        let found = audit(
            events(&[
                (1, "DELETE FROM cart_items", &[], Some(3)),
                (1, "UPDATE products SET price_cents = $1", &["1"], Some(24)),
            ]),
            "",
        );
        let f = fired(&found, "unbounded-write");
        assert_eq!(f.len(), 2, "{found:#?}");
        assert!(
            f.iter()
                .any(|f| f.message.starts_with("DELETE without WHERE"))
        );
    }

    #[test]
    fn silent_with_a_where_even_a_trivial_one_elsewhere() {
        let found = audit(
            events(&[
                (
                    1,
                    "DELETE FROM cart_items WHERE cart_id = $1",
                    &["1"],
                    Some(3),
                ),
                (
                    1,
                    "UPDATE t SET a = 1 WHERE id IN (SELECT id FROM u)",
                    &[],
                    None,
                ),
                (1, "SELECT * FROM t", &[], None),
            ]),
            "",
        );
        assert!(fired(&found, "unbounded-write").is_empty(), "{found:#?}");
    }
}
