//! ER diagrams of a review, one module per format: the reviewed tables (and
//! the parents they refer to) with their key columns; declared relationships
//! drawn solid, implied ones dashed. The SVG one is laid out here too
//! ([`layout`]), for the HTML report.

pub mod dot;
pub mod layout;
pub mod mermaid;
pub mod svg;

use super::SchemaReview;
use super::model::Table;
use super::relations::Relationship;

/// The tables a diagram shows, in name order: the reviewed ones and every
/// parent they refer to.
pub fn tables(review: &SchemaReview) -> Vec<&Table> {
    review
        .schema
        .tables
        .iter()
        .filter(|t| {
            let q = t.qualified();
            review.reviewed.contains(&q) || review.relationships.iter().any(|r| r.parent == q)
        })
        .collect()
}

/// A table's key columns, in table order: (name, type, markers such as
/// `PK`, `FK`, `UK`).
pub fn key_columns<'a>(
    table: &'a Table,
    relationships: &[Relationship],
) -> Vec<(&'a str, &'a str, Vec<&'static str>)> {
    let q = table.qualified();
    let mut out = Vec::new();
    for c in &table.columns {
        let has = |cols: &[String]| cols.iter().any(|k| k.eq_ignore_ascii_case(&c.name));
        let mut marks = Vec::new();
        if has(&table.primary_key) {
            marks.push("PK");
        }
        if relationships
            .iter()
            .any(|r| r.child == q && has(&r.columns))
        {
            marks.push("FK");
        }
        if table.uniques.iter().any(|u| has(u)) && !has(&table.primary_key) {
            marks.push("UK");
        }
        let referenced = relationships
            .iter()
            .any(|r| r.parent == q && has(&r.parent_columns));
        if !marks.is_empty() || referenced {
            out.push((c.name.as_str(), c.data_type.as_str(), marks));
        }
    }
    out
}
