//! Schema rules: checks over a reviewed schema rather than over a trace's
//! statements. Each lives in its own file under `src/rules/` beside the trace
//! rules, with its documentation and [`RuleMeta`] in the same registry (so
//! `rules list`, `rules explain` and rule files know it), and a
//! [`SchemaRule`] built from the same settings.

use super::model::Schema;
use super::orphans::Check;
use super::relations::{Relationship, shown};
use crate::model::{Finding, Severity};
use crate::rules::{Rule, RuleMeta, RuleSetup, Statement};

/// Builds a schema rule from its settings.
pub type Build = fn(&RuleSetup<'_>) -> Result<Box<dyn SchemaRule>, toml::de::Error>;

/// Every schema rule, one line each: its catalogue entry and its builder.
pub static SCHEMA_RULES: &[(&RuleMeta, Build)] = &[
    (
        &crate::rules::missing_primary_key::META,
        crate::rules::missing_primary_key::schema_rule,
    ),
    (
        &crate::rules::unindexed_foreign_key::META,
        crate::rules::unindexed_foreign_key::schema_rule,
    ),
    (
        &crate::rules::foreign_key_type_mismatch::META,
        crate::rules::foreign_key_type_mismatch::schema_rule,
    ),
    (
        &crate::rules::missing_foreign_key::META,
        crate::rules::missing_foreign_key::schema_rule,
    ),
    (
        &crate::rules::orphan_rows::META,
        crate::rules::orphan_rows::schema_rule,
    ),
];

/// What a schema rule looks at.
#[derive(Debug, Clone, Copy)]
pub struct Context<'a> {
    pub schema: &'a Schema,
    /// Declared and implied relationships, limited to the tables under review.
    pub relationships: &'a [Relationship],
    /// The tables under review (qualified names); the rest of the schema is
    /// there to resolve parents.
    pub tables: &'a [String],
    /// The orphan search's outcome per relationship (by index).
    pub orphans: &'a [Check],
}

impl Context<'_> {
    pub fn reviewed(&self, qualified: &str) -> bool {
        self.tables.iter().any(|t| t == qualified)
    }
}

/// A check over a schema.
pub trait SchemaRule: std::fmt::Debug {
    fn check(&self, cx: &Context<'_>, out: &mut Vec<Finding>);
}

/// A schema rule has nothing to do in a trace: it stands in the audit's rule
/// list so that its settings are validated with the others.
#[derive(Debug)]
pub struct NotATraceRule;

impl Rule for NotATraceRule {
    fn observe(&mut self, _: &Statement<'_>) {}
    fn finish(&mut self, _: &mut Vec<Finding>) {}
}

/// The flow every schema finding belongs to; its step is the table.
pub const SCHEMA_FLOW: &str = "schema";

/// A finding about `table` (qualified), keyed for allow-lists by `subject`.
pub fn finding(
    meta: &RuleMeta,
    severity: Severity,
    cx: &Context<'_>,
    table: &str,
    subject: String,
    message: String,
    help: &str,
) -> Finding {
    Finding {
        location: None,
        driver: None,
        rule: meta.id,
        severity,
        flow: SCHEMA_FLOW.to_owned(),
        step: shown(cx.schema, table),
        message,
        // The subject's xxh3-64, as statements' fingerprints are hashed, so
        // that baselines tell apart two findings of one rule on one table.
        fingerprint_hash: Some(format!(
            "{:016x}",
            xxhash_rust::xxh3::xxh3_64(subject.as_bytes())
        )),
        fingerprint: Some(subject),
        count: 1,
        examples: Vec::new(),
        help: help.to_owned(),
    }
}

#[cfg(test)]
pub mod testing {
    //! Hand-built schemas for the schema rules' tests.
    use super::{Context, SCHEMA_RULES};
    use crate::model::Finding;
    use crate::rules::{RuleConfig, RuleSetup};
    use crate::schema::model::{Column, Dialect, ForeignKey, Index, Schema, Table};
    use crate::schema::orphans::Check;
    use crate::schema::relations::relationships;

    /// A table from `name type [null]` column specs and its primary key.
    pub fn table(name: &str, columns: &[&str], pk: &[&str]) -> Table {
        Table {
            schema: "public".into(),
            name: name.into(),
            columns: columns
                .iter()
                .map(|spec| {
                    let mut words = spec.split_whitespace();
                    Column {
                        name: words.next().unwrap_or_default().into(),
                        data_type: words.next().unwrap_or("integer").into(),
                        nullable: words.next() == Some("null"),
                    }
                })
                .collect(),
            primary_key: pk.iter().map(|c| (*c).to_owned()).collect(),
            uniques: vec![],
            foreign_keys: vec![],
            indexes: vec![],
            rows: Some(10),
            engine: None,
        }
    }

    pub fn fk(columns: &[&str], parent: &str, parent_columns: &[&str]) -> ForeignKey {
        ForeignKey {
            name: format!("{}_fkey", columns.join("_")),
            columns: columns.iter().map(|c| (*c).to_owned()).collect(),
            ref_schema: "public".into(),
            ref_table: parent.into(),
            ref_columns: parent_columns.iter().map(|c| (*c).to_owned()).collect(),
            on_delete: "NO ACTION".into(),
            on_update: "NO ACTION".into(),
            enforcement: crate::schema::model::Enforcement::Enforced,
        }
    }

    pub fn index(name: &str, columns: &[&str], partial: bool) -> Index {
        Index {
            name: name.into(),
            columns: columns.iter().map(|c| (*c).to_owned()).collect(),
            unique: false,
            partial,
            expression: false,
            valid: true,
        }
    }

    pub fn schema(tables: Vec<Table>) -> Schema {
        Schema {
            dialect: Dialect::Postgres,
            tables,
        }
    }

    /// Runs one schema rule over `schema` with the default settings.
    pub fn run(id: &str, schema: &Schema, orphans: &[Check]) -> Vec<Finding> {
        let config = RuleConfig::builtin().expect("defaults");
        let entry = &config.rules[id];
        let (_, build) = SCHEMA_RULES
            .iter()
            .find(|(m, _)| m.id == id)
            .expect("a schema rule");
        let rule = build(&RuleSetup {
            severity: entry.severity,
            settings: entry.settings.clone(),
            budgets: &[],
            baseline: None,
        })
        .expect("builds");
        let relationships = relationships(schema, &[]);
        let tables: Vec<String> = schema.tables.iter().map(|t| t.qualified()).collect();
        let cx = Context {
            schema,
            relationships: &relationships,
            tables: &tables,
            orphans,
        };
        let mut out = Vec::new();
        rule.check(&cx, &mut out);
        out
    }
}
