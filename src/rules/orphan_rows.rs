//! `orphan-rows`: child rows whose parent does not exist (a schema rule).

use super::{Rule, RuleMeta, RuleSetup, documented_rule, thousands};
use crate::model::{Finding, Severity};
use crate::schema::lint::{Context, NotATraceRule, SchemaRule, finding};
use crate::schema::model::Enforcement;
use crate::schema::orphans::{Limits, Outcome};
use crate::schema::relations::Origin;

pub static META: RuleMeta = RuleMeta {
    id: "orphan-rows",
    default_severity: Severity::Error,
    summary: "child rows whose parent does not exist",
    doc: OrphanRows::DOC,
    build,
    judges_transactions: false,
};

documented_rule! {
    /// ## What it does
    /// Counts, for every relationship nothing enforces on every row, the child
    /// rows whose key is set but matches no parent row, and reports the count
    /// and the first rows (by the child's primary key). It searches implied
    /// relationships (see `missing-foreign-key`) and declared foreign keys
    /// that are not enforced: SQLite's (checked only on connections that turn
    /// `PRAGMA foreign_keys` on), PostgreSQL's `NOT VALID` ones, and those of
    /// tables whose engine ignores them (MyISAM).
    ///
    /// The queries run on a read-only connection with a statement timeout;
    /// child tables estimated above `max_table_rows` are skipped with a note.
    ///
    /// ## Why is this bad?
    /// An orphan is a broken reference already in the data: inner joins drop
    /// it, reports undercount, code that loads its parent fails, and adding
    /// (or validating) the foreign key fails until it is fixed.
    ///
    /// ## Example
    /// ```sql
    /// SELECT o.id, o.customer_id FROM orders o
    /// WHERE o.customer_id IS NOT NULL
    ///   AND NOT EXISTS (SELECT 1 FROM customers c WHERE c.id = o.customer_id);
    /// ```
    ///
    /// ## How to fix
    /// Decide per row: restore the parent, point the row at the right one, set
    /// the key to NULL, or delete the row. Then enforce the relationship
    /// (declare it, `VALIDATE CONSTRAINT`, move the table to InnoDB, or turn
    /// `PRAGMA foreign_keys` on in every connection).
    ///
    /// ## Settings
    /// `max_table_rows` (integer, default 1000000): child tables estimated
    /// above this are not searched. `sample_rows` (integer, default 5): rows
    /// shown per finding.
    pub struct OrphanRows {
        severity: Severity,
    }
}

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
struct Settings {
    max_table_rows: i64,
    sample_rows: usize,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            max_table_rows: 1_000_000,
            sample_rows: 5,
        }
    }
}

/// The orphan search's limits from the rule's settings.
pub fn limits(settings: &toml::Table) -> Result<Limits, toml::de::Error> {
    let s: Settings = toml::Value::Table(settings.clone()).try_into()?;
    if s.max_table_rows < 0 {
        return Err(serde::de::Error::custom(
            "max_table_rows: must be 0 or more",
        ));
    }
    Ok(Limits {
        max_table_rows: s.max_table_rows,
        sample_rows: s.sample_rows,
    })
}

fn build(setup: &RuleSetup<'_>) -> Result<Box<dyn Rule>, toml::de::Error> {
    schema_rule(setup)?;
    Ok(Box::new(NotATraceRule))
}

pub fn schema_rule(setup: &RuleSetup<'_>) -> Result<Box<dyn SchemaRule>, toml::de::Error> {
    limits(&setup.settings)?;
    Ok(Box::new(OrphanRows {
        severity: setup.severity,
    }))
}

impl SchemaRule for OrphanRows {
    fn check(&self, cx: &Context<'_>, out: &mut Vec<Finding>) {
        for check in cx.orphans {
            let Outcome::Found { count, sample } = &check.outcome else {
                continue;
            };
            let Some(r) = cx.relationships.get(check.index) else {
                continue;
            };
            if *count == 0 {
                continue;
            }
            let engine = cx
                .schema
                .table(&r.child)
                .and_then(|t| t.engine.as_deref())
                .filter(|e| !e.eq_ignore_ascii_case("InnoDB"));
            let keeps_none;
            let why = match (r.origin, r.enforcement) {
                (Origin::Naming | Origin::Trace, _) if engine.is_some() => {
                    keeps_none = format!(
                        "no foreign key: {} tables keep none",
                        engine.unwrap_or_default()
                    );
                    keeps_none.as_str()
                }
                (Origin::Naming | Origin::Trace, _) => "no foreign key",
                (_, Some(Enforcement::NotValid)) => "the foreign key is NOT VALID",
                (_, Some(Enforcement::PerConnection)) => {
                    "SQLite checks the foreign key only with PRAGMA foreign_keys on"
                }
                _ => "the foreign key is not enforced",
            };
            let mut f = finding(
                &META,
                self.severity,
                cx,
                &r.child,
                r.describe(cx.schema),
                format!(
                    "{} {} of {} {} to no row of {} ({why})",
                    thousands(*count),
                    if *count == 1 { "row" } else { "rows" },
                    crate::schema::relations::shown(cx.schema, &r.child),
                    if *count == 1 { "refers" } else { "refer" },
                    crate::schema::relations::shown(cx.schema, &r.parent),
                ),
                "restore, repoint, null or delete those rows, then enforce the relationship",
            );
            f.count = *count;
            f.examples.clone_from(sample);
            out.push(f);
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::schema::lint::testing::{run, schema, table};
    use crate::schema::orphans::{Check, Outcome};

    #[test]
    fn reports_count_and_rows_found() {
        let s = schema(vec![
            table("customers", &["id"], &["id"]),
            table("orders", &["id", "customer_id"], &["id"]),
        ]);
        let found = Check {
            index: 0,
            outcome: Outcome::Found {
                count: 2,
                sample: vec!["id=7, customer_id=99".into(), "id=8, customer_id=98".into()],
            },
        };
        let f = run("orphan-rows", &s, &[found]);
        assert_eq!(f.len(), 1);
        assert_eq!(f[0].count, 2);
        assert_eq!(
            f[0].message,
            "2 rows of orders refer to no row of customers (no foreign key)"
        );
        assert_eq!(f[0].examples[0], "id=7, customer_id=99");
    }

    #[test]
    fn none_found_or_skipped_is_quiet() {
        let s = schema(vec![
            table("customers", &["id"], &["id"]),
            table("orders", &["id", "customer_id"], &["id"]),
        ]);
        let zero = Check {
            index: 0,
            outcome: Outcome::Found {
                count: 0,
                sample: vec![],
            },
        };
        let skipped = Check {
            index: 0,
            outcome: Outcome::Skipped {
                reason: "big".into(),
            },
        };
        assert!(run("orphan-rows", &s, &[zero, skipped]).is_empty());
    }

    #[test]
    fn limits_are_validated() {
        let e =
            crate::rules::RuleConfig::builtin_with("[rules.orphan-rows]\nmax_table_rows = -1\n")
                .expect_err("negative");
        assert!(e.to_string().contains("max_table_rows"), "{e}");
        let e = crate::rules::RuleConfig::builtin_with("[rules.orphan-rows]\nmax_rows = 5\n")
            .expect_err("unknown");
        assert!(e.to_string().contains("unknown field `max_rows`"), "{e}");
    }
}
