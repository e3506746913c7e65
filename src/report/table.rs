//! The table report for terminals: a summary per flow with one row per step,
//! then the findings grouped by step, all fitting the given width (80 columns
//! is the floor it is designed for).

use std::fmt::Write;

use comfy_table::{CellAlignment, ColumnConstraint, ContentArrangement, Table, Width, presets};

use super::{Report, duration};
use crate::model::{Finding, Severity};
use crate::rules::thousands;

const INDENT: &str = "        ";

/// Rules whose examples are a step's writes, each labelled with its unit
/// (`[autocommit]`, `[transaction 2]`, `[failed]`): one alone does not show
/// the split, so the table lists them all.
const EVERY_EXAMPLE: &[&str] = &["non-atomic-write", "partial-write-on-failure"];

pub fn render(report: &Report, width: usize) -> String {
    let width = width.max(60);
    let mut out = String::new();
    let s = &report.summary;
    let steps: usize = report.flows.iter().map(|f| f.steps.len()).sum();
    let sources = if report.sources.is_empty() {
        "none".to_owned()
    } else {
        report.sources.join(", ")
    };
    if s.statements == 0 {
        let _ = writeln!(
            out,
            "flowaudit · no statements were captured · source: {sources}\n\n\
             Nothing to audit: check that the application ran and that its statements reached \
             the capture (the trace file, the proxy's port, the server's log settings)."
        );
        // What was read (a server log's format and counts) says where to look.
        for note in &report.notes {
            out.push('\n');
            wrap_into(&mut out, &format!("note: {note}"), width, " ", "   ");
        }
        return out;
    }
    let _ = writeln!(
        out,
        "flowaudit · {} · {} · {} · source: {sources}",
        plural(s.statements, "statement", "statements"),
        plural(report.flows.len() as u64, "flow", "flows"),
        plural(steps as u64, "step", "steps"),
    );

    for flow in &report.flows {
        let _ = writeln!(out, "\n flow {}", flow.name);
        let mut table = Table::new();
        table
            .load_style(presets::UTF8_FULL_CONDENSED)
            .set_content_arrangement(ContentArrangement::Dynamic)
            .set_width(u16::try_from(width - 1).unwrap_or(u16::MAX))
            .set_header([
                "step",
                "statements",
                "queries",
                "time",
                "txns",
                "conns",
                "findings",
            ]);
        for step in &flow.steps {
            let mine: Vec<&Finding> = report
                .findings
                .iter()
                .filter(|f| f.flow == flow.name && f.step == step.name)
                .collect();
            table.add_row([
                step.name.clone(),
                thousands(step.statements),
                thousands(step.queries),
                step.duration_us.map_or_else(|| "–".to_owned(), duration),
                thousands(step.transactions),
                thousands(step.connections),
                severity_counts(&mine),
            ]);
        }
        // Step names stay whole unless they are long; when the table is too
        // wide, the findings column wraps between its counts instead.
        let longest_step = flow.steps.iter().map(|s| s.name.chars().count()).max();
        let last = 6;
        for (i, column) in table.column_iter_mut().enumerate() {
            if i > 0 {
                column.set_cell_alignment(CellAlignment::Right);
            }
            if i == last {
                column.set_delimiter(',');
            }
            column.set_constraint(match i {
                0 if longest_step.is_some_and(|n| n <= 24) => ColumnConstraint::ContentWidth,
                0 => ColumnConstraint::LowerBoundary(Width::Fixed(8)),
                i if i == last => ColumnConstraint::LowerBoundary(Width::Fixed(8)),
                _ => ColumnConstraint::ContentWidth,
            });
        }
        debug_assert_eq!(table.column_count(), last + 1);
        for line in table.to_string().lines() {
            let _ = writeln!(out, " {line}");
        }
    }

    let shown = super::in_run_order(report, &report.findings);
    for f in shown {
        out.push('\n');
        write_finding(&mut out, f, width);
    }

    if !report.allowed.is_empty() {
        let _ = writeln!(out, "\n allowed by rule files:");
        for a in &report.allowed {
            let line = format!(
                "{} · {} › {} — {} ({})",
                a.finding.rule, a.finding.flow, a.finding.step, a.reason, a.file
            );
            wrap_into(&mut out, &line, width, " ", "   ");
        }
    }

    if !report.known.is_empty() {
        let _ = writeln!(out, "\n known from the baseline (not failing):");
        for f in super::in_run_order(report, &report.known) {
            let line = format!("{} · {} › {} — {}", f.rule, f.flow, f.step, f.message);
            wrap_into(&mut out, &line, width, " ", "   ");
        }
    }
    if !report.tighten.is_empty() {
        let _ = writeln!(
            out,
            "\n better than the baseline; tighten it with --write-baseline:"
        );
        for note in &report.tighten {
            wrap_into(&mut out, note, width, " ", "   ");
        }
    }
    write_notes(&mut out, &report.notes, width);
    write_summary(&mut out, s.errors, s.warnings, s.infos, s.allowed, s.known);
    out
}

/// The notes of a report, one paragraph each.
pub(crate) fn write_notes(out: &mut String, notes: &[String], width: usize) {
    for note in notes {
        out.push('\n');
        wrap_into(out, &format!("note: {note}"), width, " ", "   ");
    }
}

/// The closing line: findings by severity, then the allowed and known ones
/// when there are any.
pub(crate) fn write_summary(
    out: &mut String,
    errors: u64,
    warnings: u64,
    infos: u64,
    allowed: u64,
    known: u64,
) {
    let mut line = format!(
        "{} · {} · {}",
        plural(errors, "error", "errors"),
        plural(warnings, "warning", "warnings"),
        plural(infos, "info", "infos"),
    );
    if allowed > 0 {
        line.push_str(&format!(" · {allowed} allowed"));
    }
    if known > 0 {
        line.push_str(&format!(" · {known} known"));
    }
    let _ = writeln!(out, "\n{line}");
}

fn write_finding(out: &mut String, f: &Finding, width: usize) {
    let label = match f.severity {
        Severity::Error => " error  ",
        Severity::Warning => " warn   ",
        Severity::Info => " info   ",
    };
    let _ = writeln!(out, "{label}{} · {} › {}", f.rule, f.flow, f.step);
    if let Some(at) = f.location.as_ref().and_then(|l| l.short()) {
        wrap_into(out, &format!("at {at}"), width, INDENT, INDENT);
    }
    if let Some(fp) = &f.fingerprint {
        wrap_into(
            out,
            &shorten(fp, 3 * (width - INDENT.len())),
            width,
            INDENT,
            INDENT,
        );
    }
    wrap_into(out, &f.message, width, INDENT, INDENT);
    if EVERY_EXAMPLE.contains(&f.rule) {
        // Each write with its unit, as JSON and JUnit list them (issue 14).
        for e in &f.examples {
            wrap_into(
                out,
                &shorten(e, 2 * (width - INDENT.len())),
                width,
                INDENT,
                "          ",
            );
        }
    } else {
        for e in f.examples.iter().take(1) {
            wrap_into(
                out,
                &format!("e.g. {}", shorten(e, 2 * (width - INDENT.len()))),
                width,
                INDENT,
                "             ",
            );
        }
    }
    wrap_into(
        out,
        &format!("fix: {}", f.help),
        width,
        INDENT,
        "             ",
    );
}

pub(crate) fn wrap_into(out: &mut String, text: &str, width: usize, first: &str, rest: &str) {
    let options = textwrap::Options::new(width)
        .initial_indent(first)
        .subsequent_indent(rest)
        .break_words(true);
    for line in textwrap::wrap(text, options) {
        let _ = writeln!(out, "{}", line.trim_end());
    }
}

pub(crate) fn shorten(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        text.to_owned()
    } else {
        text.chars().take(max.saturating_sub(1)).collect::<String>() + "…"
    }
}

fn severity_counts(findings: &[&Finding]) -> String {
    let count = |s: Severity| findings.iter().filter(|f| f.severity == s).count() as u64;
    let parts: Vec<String> = [
        (count(Severity::Error), "error", "errors"),
        (count(Severity::Warning), "warn", "warns"),
        (count(Severity::Info), "info", "infos"),
    ]
    .into_iter()
    .filter(|(n, _, _)| *n > 0)
    .map(|(n, one, many)| plural(n, one, many))
    .collect();
    if parts.is_empty() {
        "–".to_owned()
    } else {
        parts.join(", ")
    }
}

pub(crate) use crate::rules::plural;
