//! Mermaid `erDiagram`: an entity per table with its key columns; a
//! declared relationship is an identifying (solid, `--`) line, an implied one
//! a non-identifying (dashed, `..`) line, labelled with the child's columns.

use std::fmt::Write;

use super::{key_columns, tables};
use crate::schema::SchemaReview;
use crate::schema::relations::{Origin, shown};

pub fn render(review: &SchemaReview) -> String {
    let schema = &review.schema;
    let mut out = String::from("erDiagram\n");
    let shown_tables = tables(review);
    for t in &shown_tables {
        let _ = writeln!(out, "    {} {{", entity(&schema.shown(&t.schema, &t.name)));
        for (name, data_type, marks) in key_columns(t, &review.relationships) {
            let _ = writeln!(
                out,
                "        {} {} {}",
                word(data_type),
                word(name),
                marks.join(", ")
            );
        }
        out.push_str("    }\n");
    }
    for r in &review.relationships {
        if !shown_tables.iter().any(|t| t.qualified() == r.parent) {
            continue;
        }
        let parent_end = if r.nullable { "|o" } else { "||" };
        let line = if r.origin == Origin::Declared {
            "--"
        } else {
            ".."
        };
        let mut label = r.columns.join(", ");
        match r.origin {
            Origin::Declared => {}
            Origin::Naming => label.push_str(" (implied)"),
            Origin::Trace => label.push_str(" (implied by trace)"),
        }
        let _ = writeln!(
            out,
            "    {} {parent_end}{line}o{{ {} : \"{}\"",
            entity(&shown(schema, &r.parent)),
            entity(&shown(schema, &r.child)),
            label.replace('"', "'")
        );
    }
    out
}

/// An entity name Mermaid accepts: letters, digits, `_` and `-`.
fn entity(name: &str) -> String {
    word(name)
}

/// A type or attribute name as one Mermaid word (`character varying(20)` →
/// `character_varying_20`).
fn word(text: &str) -> String {
    let mut w: String = text
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect();
    while w.ends_with('_') {
        w.pop();
    }
    if w.is_empty() || w.starts_with(|c: char| c.is_ascii_digit() || c == '-') {
        w.insert(0, '_');
    }
    w
}

#[cfg(test)]
mod tests {
    #[test]
    fn words_are_mermaid_safe() {
        assert_eq!(super::word("character varying(20)"), "character_varying_20");
        assert_eq!(super::word("public.orders"), "public_orders");
        assert_eq!(super::word("int(11) unsigned"), "int_11__unsigned");
        assert_eq!(super::word(""), "_");
    }
}
