//! `unindexed-foreign-key`: a foreign key with no index that starts with its
//! columns (a schema rule).

use super::{Rule, RuleMeta, RuleSetup, documented_rule};
use crate::model::{Finding, Severity};
use crate::schema::lint::{Context, NotATraceRule, SchemaRule, finding};
use crate::schema::relations::Origin;

pub static META: RuleMeta = RuleMeta {
    id: "unindexed-foreign-key",
    default_severity: Severity::Warning,
    summary: "a foreign key with no index that starts with its columns",
    doc: UnindexedForeignKey::DOC,
    build,
    judges_transactions: false,
};

documented_rule! {
    /// ## What it does
    /// Flags a declared foreign key whose child columns no index serves.
    ///
    /// The policy: the key counts as indexed when a **valid, non-partial**
    /// index (or the primary key) has the key's columns as its **leading**
    /// columns, in any order among themselves. An index with the columns
    /// later on (`(created_at, customer_id)`), a partial index (`… WHERE
    /// active`: it holds only some rows), an expression index, or an index
    /// PostgreSQL marks invalid (a failed `CREATE INDEX CONCURRENTLY`) does
    /// not count.
    ///
    /// ## Why is this bad?
    /// Every delete or key update of a parent row looks up its children: with
    /// no index that is a scan of the child table, holding locks, once per
    /// parent row (PostgreSQL does not create these indexes; InnoDB does).
    /// Joins from the parent to its children scan too.
    ///
    /// ## Example
    /// ```sql
    /// CREATE TABLE orders (id bigint PRIMARY KEY,
    ///                      customer_id bigint REFERENCES customers (id));
    /// -- no index on orders (customer_id)
    /// ```
    ///
    /// ## How to fix
    /// `CREATE INDEX CONCURRENTLY orders_customer_id ON orders (customer_id);`
    /// For a composite key, index its columns together, in the order lookups
    /// use.
    pub struct UnindexedForeignKey {
        severity: Severity,
    }
}

fn build(setup: &RuleSetup<'_>) -> Result<Box<dyn Rule>, toml::de::Error> {
    schema_rule(setup)?;
    Ok(Box::new(NotATraceRule))
}

pub fn schema_rule(setup: &RuleSetup<'_>) -> Result<Box<dyn SchemaRule>, toml::de::Error> {
    let _: NoSettings = setup.settings()?;
    Ok(Box::new(UnindexedForeignKey {
        severity: setup.severity,
    }))
}

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct NoSettings {}

impl SchemaRule for UnindexedForeignKey {
    fn check(&self, cx: &Context<'_>, out: &mut Vec<Finding>) {
        for r in cx.relationships {
            if r.origin != Origin::Declared || r.indexed {
                continue;
            }
            let Some(table) = cx.schema.table(&r.child) else {
                continue;
            };
            let not_counted: Vec<&str> = table
                .indexes
                .iter()
                .filter(|i| {
                    !i.covers(&r.columns)
                        && i.columns.len() >= r.columns.len()
                        && i.columns[..r.columns.len()]
                            .iter()
                            .all(|k| r.columns.iter().any(|c| c.eq_ignore_ascii_case(k)))
                })
                .map(|i| i.name.as_str())
                .collect();
            let mut message = format!(
                "foreign key {} has no index starting with ({})",
                r.describe(cx.schema),
                r.columns.join(", ")
            );
            if !not_counted.is_empty() {
                message.push_str(&format!(
                    "; {} does not count (partial or not valid)",
                    not_counted.join(", ")
                ));
            }
            out.push(finding(
                &META,
                self.severity,
                cx,
                &r.child,
                r.describe(cx.schema),
                message,
                &format!(
                    "CREATE INDEX ON {} ({}) so that deleting a parent does not scan its children",
                    crate::schema::relations::shown(cx.schema, &r.child),
                    r.columns.join(", ")
                ),
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::schema::lint::testing::{fk, index, run, schema, table};

    fn orders(indexes: Vec<crate::schema::model::Index>) -> crate::schema::model::Schema {
        let mut o = table("orders", &["id", "customer_id", "created_at"], &["id"]);
        o.foreign_keys
            .push(fk(&["customer_id"], "customers", &["id"]));
        o.indexes = indexes;
        schema(vec![table("customers", &["id"], &["id"]), o])
    }

    #[test]
    fn fires_without_a_leading_index() {
        let f = run("unindexed-foreign-key", &orders(vec![]), &[]);
        assert_eq!(f.len(), 1);
        assert_eq!(
            f[0].message,
            "foreign key orders(customer_id) → customers(id) has no index starting with \
             (customer_id)"
        );
        let trailing = index("o_created_customer", &["created_at", "customer_id"], false);
        assert_eq!(
            run("unindexed-foreign-key", &orders(vec![trailing]), &[]).len(),
            1
        );
    }

    #[test]
    fn a_partial_index_does_not_count_and_says_so() {
        let partial = index("orders_open_customer", &["customer_id"], true);
        let f = run("unindexed-foreign-key", &orders(vec![partial]), &[]);
        assert_eq!(f.len(), 1);
        assert!(
            f[0].message
                .ends_with("orders_open_customer does not count (partial or not valid)")
        );
    }

    #[test]
    fn quiet_with_a_leading_index_or_primary_key() {
        let leading = index("o_customer_created", &["customer_id", "created_at"], false);
        assert!(run("unindexed-foreign-key", &orders(vec![leading]), &[]).is_empty());
        let mut lines = table("order_lines", &["order_id", "line"], &["order_id", "line"]);
        lines
            .foreign_keys
            .push(fk(&["order_id"], "orders", &["id"]));
        let s = schema(vec![table("orders", &["id"], &["id"]), lines]);
        assert!(run("unindexed-foreign-key", &s, &[]).is_empty());
    }
}
