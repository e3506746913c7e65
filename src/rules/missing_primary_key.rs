//! `missing-primary-key`: a table without a primary key (a schema rule).

use super::{Rule, RuleMeta, RuleSetup, documented_rule};
use crate::model::{Finding, Severity};
use crate::schema::lint::{Context, NotATraceRule, SchemaRule, finding};

pub static META: RuleMeta = RuleMeta {
    id: "missing-primary-key",
    default_severity: Severity::Warning,
    summary: "a table without a primary key",
    doc: MissingPrimaryKey::DOC,
    build,
    judges_transactions: false,
};

documented_rule! {
    /// ## What it does
    /// Flags every reviewed table that has no primary key (`flowaudit schema`,
    /// or `analyze --database` for the tables a trace touched). A unique
    /// constraint does not stand in for one.
    ///
    /// ## Why is this bad?
    /// Without a key, nothing stops duplicate rows, no other table can refer to
    /// a row with a foreign key, replication (MySQL row-based, PostgreSQL
    /// logical) cannot identify the row an update or delete touched, and ORMs
    /// cannot load or save a single row.
    ///
    /// ## Example
    /// ```sql
    /// CREATE TABLE audit_log (at timestamptz, message text);
    /// ```
    ///
    /// ## How to fix
    /// Add one: `ALTER TABLE audit_log ADD COLUMN id bigint GENERATED ALWAYS AS
    /// IDENTITY PRIMARY KEY;`, or promote the natural key the rows already have.
    pub struct MissingPrimaryKey {
        severity: Severity,
    }
}

fn build(setup: &RuleSetup<'_>) -> Result<Box<dyn Rule>, toml::de::Error> {
    schema_rule(setup)?;
    Ok(Box::new(NotATraceRule))
}

pub fn schema_rule(setup: &RuleSetup<'_>) -> Result<Box<dyn SchemaRule>, toml::de::Error> {
    let _: NoSettings = setup.settings()?;
    Ok(Box::new(MissingPrimaryKey {
        severity: setup.severity,
    }))
}

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct NoSettings {}

impl SchemaRule for MissingPrimaryKey {
    fn check(&self, cx: &Context<'_>, out: &mut Vec<Finding>) {
        for table in &cx.schema.tables {
            if !table.primary_key.is_empty() || !cx.reviewed(&table.qualified()) {
                continue;
            }
            let shown = cx.schema.shown(&table.schema, &table.name);
            out.push(finding(
                &META,
                self.severity,
                cx,
                &table.qualified(),
                shown.clone(),
                format!("table {shown} has no primary key"),
                "add a primary key: an identity column, or the natural key its rows already have",
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::schema::lint::testing::{run, schema, table};

    #[test]
    fn fires_only_for_tables_without_a_key() {
        let s = schema(vec![
            table("audit_log", &["at timestamptz", "message text"], &[]),
            table("users", &["id"], &["id"]),
        ]);
        let f = run("missing-primary-key", &s, &[]);
        assert_eq!(f.len(), 1, "{f:#?}");
        assert_eq!(f[0].step, "audit_log");
        assert_eq!(f[0].message, "table audit_log has no primary key");
    }
}
