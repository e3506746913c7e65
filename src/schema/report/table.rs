//! The table rendering for terminals: the relationships (child columns →
//! parent columns, actions, indexed, nullable, enforced), then the findings
//! by table, then notes and the summary line.

use std::fmt::Write;

use comfy_table::{ColumnConstraint, ContentArrangement, Table, presets};

use super::{HEADER, row, summary};
use crate::model::{Finding, Severity};
use crate::report::table::{plural, shorten, wrap_into, write_notes, write_summary};
use crate::schema::SchemaReview;

const INDENT: &str = "        ";

pub fn render(review: &SchemaReview, width: usize) -> String {
    let width = width.max(60);
    let s = summary(review);
    let mut out = String::new();
    let _ = writeln!(
        out,
        "flowaudit schema · {} ({})",
        review.database,
        review.schema.dialect.as_str(),
    );
    let _ = writeln!(
        out,
        "{} · {}, {} implied",
        plural(s.tables, "table", "tables"),
        plural(s.relationships, "relationship", "relationships"),
        s.implied
    );
    if review.relationships.is_empty() {
        out.push_str("\n no relationships: no foreign keys, and no column names another table\n");
    } else {
        let mut table = Table::new();
        table
            .load_style(presets::UTF8_FULL_CONDENSED)
            .set_content_arrangement(ContentArrangement::Dynamic)
            .set_width(u16::try_from(width - 1).unwrap_or(u16::MAX))
            .set_header(HEADER);
        for r in &review.relationships {
            table.add_row(row(review, r));
        }
        // The relationship wraps (after its arrow) when the table is too
        // wide; the short columns stay whole.
        for (i, column) in table.column_iter_mut().enumerate() {
            if i > 0 {
                column.set_constraint(ColumnConstraint::ContentWidth);
            }
        }
        out.push('\n');
        for line in table.to_string().lines() {
            let _ = writeln!(out, " {line}");
        }
    }
    for f in &review.findings {
        out.push('\n');
        write_finding(&mut out, f, width);
    }
    if !review.allowed.is_empty() {
        let _ = writeln!(out, "\n allowed by rule files:");
        for a in &review.allowed {
            let line = format!(
                "{} · {} — {} ({})",
                a.finding.rule,
                a.finding.fingerprint.as_deref().unwrap_or(&a.finding.step),
                a.reason,
                a.file
            );
            wrap_into(&mut out, &line, width, " ", "   ");
        }
    }
    write_notes(&mut out, &review.notes, width);
    write_summary(&mut out, s.errors, s.warnings, s.infos, s.allowed, 0);
    out
}

fn write_finding(out: &mut String, f: &Finding, width: usize) {
    let label = match f.severity {
        Severity::Error => " error  ",
        Severity::Warning => " warn   ",
        Severity::Info => " info   ",
    };
    let _ = writeln!(out, "{label}{} · {}", f.rule, f.step);
    wrap_into(out, &f.message, width, INDENT, INDENT);
    for (i, e) in f.examples.iter().enumerate() {
        let lead = if i == 0 { "rows: " } else { "      " };
        wrap_into(
            out,
            &format!("{lead}{}", shorten(e, width - INDENT.len() - lead.len())),
            width,
            INDENT,
            "              ",
        );
    }
    wrap_into(
        out,
        &format!("fix: {}", f.help),
        width,
        INDENT,
        "             ",
    );
}
