//! Renderings of a schema review, one module per format (the ER diagrams
//! are in [`super::diagram`]).

pub mod html;
pub mod json;
pub mod markdown;
pub mod table;

use serde::Serialize;

use super::SchemaReview;
use super::relations::Relationship;
use crate::model::Severity;

/// Output formats of `flowaudit schema`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum SchemaFormat {
    /// The relationships, then the findings, for terminals.
    Table,
    Json,
    /// Markdown for a pull-request comment or a review document.
    Markdown,
    /// A Mermaid erDiagram.
    Mermaid,
    /// A Graphviz digraph (`dot -Tsvg`).
    Dot,
    /// One self-contained HTML page: the ER diagram as SVG with the findings
    /// marked on their tables, the relationships and the findings.
    Html,
}

pub fn render(review: &SchemaReview, format: SchemaFormat, width: usize) -> String {
    match format {
        SchemaFormat::Table => table::render(review, width),
        SchemaFormat::Json => json::render(review),
        SchemaFormat::Markdown => markdown::render(review),
        SchemaFormat::Mermaid => super::diagram::mermaid::render(review),
        SchemaFormat::Dot => super::diagram::dot::render(review),
        SchemaFormat::Html => html::render(review),
    }
}

/// The relationships table's column headers.
pub const HEADER: [&str; 5] = [
    "child → parent",
    "on del / upd",
    "indexed",
    "null",
    "enforced",
];

/// Counts for the summary line.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    pub tables: u64,
    pub relationships: u64,
    pub implied: u64,
    pub errors: u64,
    pub warnings: u64,
    pub infos: u64,
    pub allowed: u64,
}

pub fn summary(review: &SchemaReview) -> Summary {
    let count = |s: Severity| review.findings.iter().filter(|f| f.severity == s).count() as u64;
    Summary {
        tables: review.reviewed.len() as u64,
        relationships: review.relationships.len() as u64,
        implied: review
            .relationships
            .iter()
            .filter(|r| r.enforcement.is_none())
            .count() as u64,
        errors: count(Severity::Error),
        warnings: count(Severity::Warning),
        infos: count(Severity::Info),
        allowed: review.allowed.len() as u64,
    }
}

/// The cells of a relationship's row: child columns → parent columns,
/// actions, indexed, nullable, enforced.
pub fn row(review: &SchemaReview, r: &Relationship) -> [String; 5] {
    use super::relations::{Origin, shown};
    let s = &review.schema;
    let yes_no = |b: bool| if b { "yes" } else { "no" }.to_owned();
    // NO ACTION, the default, shows as a dash so that the others stand out.
    let action = |a: &str| match a {
        "NO ACTION" | "" => "–".to_owned(),
        other => other.to_lowercase(),
    };
    let actions = match (&r.on_delete, &r.on_update) {
        (Some(d), Some(u)) => format!("{} / {}", action(d), action(u)),
        _ => String::new(),
    };
    let enforced = match (r.origin, r.enforcement) {
        (_, Some(e)) => e.as_str().to_owned(),
        (Origin::Trace, None) => "implied (trace)".to_owned(),
        _ => "implied".to_owned(),
    };
    [
        format!(
            "{}({}) → {}({})",
            shown(s, &r.child),
            r.columns.join(", "),
            shown(s, &r.parent),
            r.parent_columns.join(", ")
        ),
        actions,
        yes_no(r.indexed),
        yes_no(r.nullable),
        enforced,
    ]
}
