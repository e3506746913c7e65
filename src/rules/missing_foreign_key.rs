//! `missing-foreign-key`: a column that refers to a table without a
//! constraint (a schema rule).

use super::{Rule, RuleMeta, RuleSetup, documented_rule};
use crate::model::{Finding, Severity};
use crate::schema::lint::{Context, NotATraceRule, SchemaRule, finding};
use crate::schema::relations::Origin;

pub static META: RuleMeta = RuleMeta {
    id: "missing-foreign-key",
    default_severity: Severity::Warning,
    summary: "a column that refers to a table without a constraint",
    doc: MissingForeignKey::DOC,
    build,
    judges_transactions: false,
};

documented_rule! {
    /// ## What it does
    /// Flags relationships the schema implies but does not declare:
    ///
    /// * a column named after another table — `customer_id`, `customerId` or
    ///   `CustomerID` → `customer` or `customers` (also `category_id` →
    ///   `categories`, `box_id` → `boxes`) — whose table has a one-column
    ///   primary key, when no foreign key covers the column;
    /// * with `analyze --database` or `schema --trace FILE`, two columns the
    ///   trace's statements join on (`JOIN customers c ON c.id =
    ///   o.customer_id`), the one that is a key being the parent.
    ///
    /// ## Why is this bad?
    /// Nothing stops a child row from pointing at a parent that does not
    /// exist, or a parent from being deleted under its children; such rows
    /// vanish from inner joins and break the code that expects their parent.
    /// `orphan-rows` counts those that exist already.
    ///
    /// ## Example
    /// ```sql
    /// CREATE TABLE orders (id bigint PRIMARY KEY, customer_id bigint NOT NULL);
    /// -- no REFERENCES customers (id)
    /// ```
    ///
    /// ## How to fix
    /// Delete or repair the orphans, then declare the key (in PostgreSQL, add
    /// it `NOT VALID` and `VALIDATE CONSTRAINT` it later to avoid a long lock):
    /// `ALTER TABLE orders ADD FOREIGN KEY (customer_id) REFERENCES customers (id);`
    /// When the name is a coincidence, allow it in a rule file (`[[allow]] rule =
    /// "missing-foreign-key"`, `fingerprint` a regex of `table(column) → parent(id)`).
    pub struct MissingForeignKey {
        severity: Severity,
    }
}

fn build(setup: &RuleSetup<'_>) -> Result<Box<dyn Rule>, toml::de::Error> {
    schema_rule(setup)?;
    Ok(Box::new(NotATraceRule))
}

pub fn schema_rule(setup: &RuleSetup<'_>) -> Result<Box<dyn SchemaRule>, toml::de::Error> {
    let _: NoSettings = setup.settings()?;
    Ok(Box::new(MissingForeignKey {
        severity: setup.severity,
    }))
}

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct NoSettings {}

impl SchemaRule for MissingForeignKey {
    fn check(&self, cx: &Context<'_>, out: &mut Vec<Finding>) {
        for r in cx.relationships {
            let why = match r.origin {
                Origin::Declared => continue,
                Origin::Naming => "its name refers to",
                Origin::Trace => "the trace joins it to",
            };
            out.push(finding(
                &META,
                self.severity,
                cx,
                &r.child,
                r.describe(cx.schema),
                format!(
                    "{}: no foreign key, though {why} {}",
                    r.describe(cx.schema)
                        .split(" → ")
                        .next()
                        .unwrap_or_default(),
                    r.describe(cx.schema)
                        .split(" → ")
                        .nth(1)
                        .unwrap_or_default(),
                ),
                &format!(
                    "ALTER TABLE {} ADD FOREIGN KEY ({}) REFERENCES {} ({}), once no orphan \
                     rows remain",
                    crate::schema::relations::shown(cx.schema, &r.child),
                    r.columns.join(", "),
                    crate::schema::relations::shown(cx.schema, &r.parent),
                    r.parent_columns.join(", ")
                ),
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::schema::lint::testing::{fk, run, schema, table};

    #[test]
    fn fires_for_a_named_column_without_a_constraint() {
        let s = schema(vec![
            table("customers", &["id"], &["id"]),
            table("orders", &["id", "customerId"], &["id"]),
        ]);
        let f = run("missing-foreign-key", &s, &[]);
        assert_eq!(f.len(), 1);
        assert_eq!(
            f[0].message,
            "orders(customerId): no foreign key, though its name refers to customers(id)"
        );
        assert_eq!(
            f[0].fingerprint.as_deref(),
            Some("orders(customerId) → customers(id)")
        );
    }

    #[test]
    fn quiet_when_declared_or_nothing_matches() {
        let mut o = table("orders", &["id", "customer_id", "coupon_id"], &["id"]);
        o.foreign_keys
            .push(fk(&["customer_id"], "customers", &["id"]));
        let s = schema(vec![table("customers", &["id"], &["id"]), o]);
        assert!(run("missing-foreign-key", &s, &[]).is_empty());
    }
}
