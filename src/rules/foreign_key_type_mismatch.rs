//! `foreign-key-type-mismatch`: referring and referred columns of different
//! types (a schema rule).

use super::{Rule, RuleMeta, RuleSetup, documented_rule};
use crate::model::{Finding, Severity};
use crate::schema::lint::{Context, NotATraceRule, SchemaRule, finding};
use crate::schema::model::Dialect;
use crate::schema::relations::Origin;

pub static META: RuleMeta = RuleMeta {
    id: "foreign-key-type-mismatch",
    default_severity: Severity::Error,
    summary: "referring and referred columns of different types",
    doc: ForeignKeyTypeMismatch::DOC,
    build,
    judges_transactions: false,
};

documented_rule! {
    /// ## What it does
    /// Compares the type of every child column of a relationship (declared or
    /// implied) with the parent column it refers to, as the catalogue spells
    /// them (`integer` vs `bigint`, `varchar(20)` vs `varchar(40)`, `int(11)`
    /// vs `int(11) unsigned`), and flags those that differ. SQLite columns are
    /// compared by type affinity (INTEGER, TEXT, REAL, NUMERIC, BLOB), since
    /// that is all SQLite keeps.
    ///
    /// ## Why is this bad?
    /// A child column narrower than its parent overflows once the parent's
    /// keys outgrow it (an `integer` referring to a `bigint` id), a shorter
    /// `varchar` truncates or rejects valid keys, and joins across different
    /// types need casts that keep indexes from being used. In SQLite a `TEXT`
    /// child keeps what it is given as text (`'01'`, `'1 '`), which no
    /// `INTEGER` parent key equals.
    ///
    /// ## Example
    /// ```sql
    /// CREATE TABLE customers (id bigint PRIMARY KEY);
    /// CREATE TABLE orders (id bigint PRIMARY KEY,
    ///                      customer_id integer REFERENCES customers (id));
    /// ```
    ///
    /// ## How to fix
    /// Give the child column the parent's type:
    /// `ALTER TABLE orders ALTER COLUMN customer_id TYPE bigint;`
    pub struct ForeignKeyTypeMismatch {
        severity: Severity,
    }
}

fn build(setup: &RuleSetup<'_>) -> Result<Box<dyn Rule>, toml::de::Error> {
    schema_rule(setup)?;
    Ok(Box::new(NotATraceRule))
}

pub fn schema_rule(setup: &RuleSetup<'_>) -> Result<Box<dyn SchemaRule>, toml::de::Error> {
    let _: NoSettings = setup.settings()?;
    Ok(Box::new(ForeignKeyTypeMismatch {
        severity: setup.severity,
    }))
}

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct NoSettings {}

/// The type as compared: lowercase, single spaces; SQLite's affinity.
fn comparable(dialect: Dialect, data_type: &str) -> String {
    let t = data_type
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .to_lowercase();
    if dialect != Dialect::Sqlite {
        return t;
    }
    // SQLite's rules, in order (https://sqlite.org/datatype3.html, 3.1).
    let affinity = if t.contains("int") {
        "INTEGER"
    } else if t.contains("char") || t.contains("clob") || t.contains("text") {
        "TEXT"
    } else if t.contains("blob") || t.is_empty() {
        "BLOB"
    } else if t.contains("real") || t.contains("floa") || t.contains("doub") {
        "REAL"
    } else {
        "NUMERIC"
    };
    affinity.to_owned()
}

impl SchemaRule for ForeignKeyTypeMismatch {
    fn check(&self, cx: &Context<'_>, out: &mut Vec<Finding>) {
        let d = cx.schema.dialect;
        for r in cx.relationships {
            let (Some(child), Some(parent)) =
                (cx.schema.table(&r.child), cx.schema.table(&r.parent))
            else {
                continue;
            };
            let mut differing = Vec::new();
            for (c, p) in r.columns.iter().zip(&r.parent_columns) {
                let (Some(cc), Some(pc)) = (child.column(c), parent.column(p)) else {
                    continue;
                };
                if comparable(d, &cc.data_type) != comparable(d, &pc.data_type) {
                    differing.push(format!("{c} is {}, {p} is {}", cc.data_type, pc.data_type));
                }
            }
            if differing.is_empty() {
                continue;
            }
            let kind = if r.origin == Origin::Declared {
                "foreign key"
            } else {
                "implied relationship"
            };
            out.push(finding(
                &META,
                self.severity,
                cx,
                &r.child,
                r.describe(cx.schema),
                format!("{kind} {}: {}", r.describe(cx.schema), differing.join("; ")),
                "give the child column the parent column's type",
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::comparable;
    use crate::schema::lint::testing::{fk, run, schema, table};
    use crate::schema::model::Dialect;

    #[test]
    fn fires_when_types_differ() {
        let mut o = table("orders", &["id bigint", "customer_id integer"], &["id"]);
        o.foreign_keys
            .push(fk(&["customer_id"], "customers", &["id"]));
        let s = schema(vec![table("customers", &["id bigint"], &["id"]), o]);
        let f = run("foreign-key-type-mismatch", &s, &[]);
        assert_eq!(f.len(), 1);
        assert_eq!(
            f[0].message,
            "foreign key orders(customer_id) → customers(id): customer_id is integer, id is bigint"
        );
    }

    #[test]
    fn implied_relationships_are_compared_too_and_equal_types_pass() {
        let s = schema(vec![
            table("customers", &["id bigint"], &["id"]),
            table("orders", &["id bigint", "customer_id bigint"], &["id"]),
            table("notes", &["id bigint", "customer_id text"], &["id"]),
        ]);
        let f = run("foreign-key-type-mismatch", &s, &[]);
        assert_eq!(f.len(), 1, "{f:#?}");
        assert!(
            f[0].message
                .starts_with("implied relationship notes(customer_id)")
        );
    }

    #[test]
    fn sqlite_compares_affinity() {
        assert_eq!(
            comparable(Dialect::Sqlite, "INT"),
            comparable(Dialect::Sqlite, "INTEGER")
        );
        assert_ne!(
            comparable(Dialect::Sqlite, "TEXT"),
            comparable(Dialect::Sqlite, "INTEGER")
        );
        assert_ne!(
            comparable(Dialect::Postgres, "int4"),
            comparable(Dialect::Postgres, "int8")
        );
    }
}
