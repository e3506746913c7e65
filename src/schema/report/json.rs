//! The JSON rendering: the reviewed tables, the relationships, the findings
//! and a summary; `version` is the format's version.

use serde::Serialize;

use super::{Summary, summary};
use crate::model::Finding;
use crate::report::AllowedFinding;
use crate::schema::SchemaReview;
use crate::schema::model::{Dialect, Table};
use crate::schema::relations::Relationship;

#[derive(Serialize)]
struct Document<'a> {
    version: u32,
    database: &'a str,
    dialect: Dialect,
    tables: Vec<&'a Table>,
    relationships: &'a [Relationship],
    findings: &'a [Finding],
    allowed: &'a [AllowedFinding],
    #[serde(skip_serializing_if = "<[String]>::is_empty")]
    notes: &'a [String],
    summary: Summary,
}

pub fn render(review: &SchemaReview) -> String {
    let doc = Document {
        version: 1,
        database: &review.database,
        dialect: review.schema.dialect,
        tables: review
            .schema
            .tables
            .iter()
            .filter(|t| review.reviewed.contains(&t.qualified()))
            .collect(),
        relationships: &review.relationships,
        findings: &review.findings,
        allowed: &review.allowed,
        notes: &review.notes,
        summary: summary(review),
    };
    let mut text =
        serde_json::to_string_pretty(&doc).unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"));
    text.push('\n');
    text
}
