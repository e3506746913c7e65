//! The Markdown rendering: a relationships table and the findings.

use std::fmt::Write;

use crate::rules::plural;

use super::{row, summary};
use crate::report::markdown::{inline, item};
use crate::schema::SchemaReview;

pub fn render(review: &SchemaReview) -> String {
    let s = summary(review);
    let mut out = String::new();
    let _ = writeln!(
        out,
        "### flowaudit schema: {}, {}, {}{}\n",
        plural(s.errors, "error", "errors"),
        plural(s.warnings, "warning", "warnings"),
        plural(s.infos, "info", "infos"),
        if s.allowed > 0 {
            format!(", {} allowed", s.allowed)
        } else {
            String::new()
        }
    );
    let _ = writeln!(
        out,
        "`{}` ({}): {}, {} ({} implied)\n",
        review.database.replace('`', "'"),
        review.schema.dialect.as_str(),
        plural(s.tables, "table", "tables"),
        plural(s.relationships, "relationship", "relationships"),
        s.implied
    );
    if !review.relationships.is_empty() {
        let _ = writeln!(out, "| {} |", super::HEADER.join(" | "));
        out.push_str("|---|---|---|---|---|\n");
        for r in &review.relationships {
            let cells = row(review, r).map(|c| inline(&c));
            let _ = writeln!(out, "| {} |", cells.join(" | "));
        }
    }
    if !review.findings.is_empty() {
        out.push_str("\n#### Findings\n\n");
        for f in &review.findings {
            item(&mut out, f);
            for e in &f.examples {
                let _ = writeln!(out, "  - `{}`", e.replace('`', "'"));
            }
        }
    }
    if !review.allowed.is_empty() {
        out.push_str("\n#### Allowed by rule files\n\n");
        for a in &review.allowed {
            let _ = writeln!(
                out,
                "- **{}** · {}: {} ({})",
                a.finding.rule,
                inline(&a.finding.step),
                inline(&a.reason),
                inline(&a.file)
            );
        }
    }
    for note in &review.notes {
        let _ = writeln!(out, "\n> note: {}", inline(note));
    }
    out
}
