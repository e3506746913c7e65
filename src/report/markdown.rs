//! The Markdown report, compact enough for a pull-request comment: per step
//! its statements (against a `--baseline`: its queries and their change), then
//! the findings.

use std::fmt::Write;

use super::Report;
use crate::model::{Finding, Severity};

pub fn render(report: &Report) -> String {
    let mut out = String::new();
    let s = &report.summary;
    let _ = writeln!(
        out,
        "### flowaudit: {}, {}, {}{}{}\n",
        plural(s.errors, "error"),
        plural(s.warnings, "warning"),
        plural(s.infos, "info"),
        if s.known > 0 {
            format!(", {} known", s.known)
        } else {
            String::new()
        },
        if s.allowed > 0 {
            format!(", {} allowed", s.allowed)
        } else {
            String::new()
        },
    );
    if s.statements == 0 {
        out.push_str("No statements were captured.\n");
        return out;
    }
    let with_baseline = report
        .flows
        .iter()
        .flat_map(|f| &f.steps)
        .any(|s| s.baseline_queries.is_some());
    if with_baseline {
        // Against a baseline the queries, which it judges (issue 14).
        out.push_str("| flow | step | queries | vs baseline | findings |\n");
        out.push_str("|---|---|---:|---:|---:|\n");
    } else {
        out.push_str("| flow | step | statements | findings |\n");
        out.push_str("|---|---|---:|---:|\n");
    }
    for flow in &report.flows {
        for step in &flow.steps {
            let n = report
                .findings
                .iter()
                .filter(|f| f.flow == flow.name && f.step == step.name)
                .count();
            let count = if with_baseline {
                step.queries
            } else {
                step.statements
            };
            let _ = write!(
                out,
                "| {} | {} | {} |",
                cell(&flow.name),
                cell(&step.name),
                count
            );
            if with_baseline {
                let change = match step.baseline_queries {
                    None => "new".to_owned(),
                    Some(b) if b == count => "±0".to_owned(),
                    Some(b) if count > b => format!("+{}", count - b),
                    Some(b) => format!("−{}", b - count),
                };
                let _ = write!(out, " {change} |");
            }
            let _ = writeln!(
                out,
                " {} |",
                if n == 0 {
                    "–".to_owned()
                } else {
                    n.to_string()
                }
            );
        }
    }
    if !report.findings.is_empty() {
        out.push_str("\n#### Findings\n\n");
        for f in super::in_run_order(report, &report.findings) {
            item(&mut out, f);
        }
    }
    if !report.known.is_empty() {
        let _ = writeln!(
            out,
            "\n<details><summary>{} known from the baseline (not failing)</summary>\n",
            report.known.len()
        );
        for f in super::in_run_order(report, &report.known) {
            item(&mut out, f);
        }
        out.push_str("\n</details>\n");
    }
    if !report.tighten.is_empty() {
        out.push_str("\n#### Better than the baseline\n\nTighten it with `--write-baseline`:\n\n");
        for note in &report.tighten {
            let _ = writeln!(out, "- {}", inline(note));
        }
    }
    for note in &report.notes {
        let _ = writeln!(out, "\n> note: {}", inline(note));
    }
    out
}

pub(crate) fn item(out: &mut String, f: &Finding) {
    let icon = match f.severity {
        Severity::Error => "🔴 error",
        Severity::Warning => "🟠 warning",
        Severity::Info => "🔵 info",
    };
    let _ = writeln!(
        out,
        "- {icon} **{}** · {} › {}: {}",
        f.rule,
        inline(&f.flow),
        inline(&f.step),
        inline(&f.message)
    );
    if let Some(at) = f.location.as_ref().and_then(|l| l.short()) {
        let _ = writeln!(out, "  at {}", inline(&at));
    }
    if let Some(fp) = &f.fingerprint {
        let _ = writeln!(out, "  `{}`", fp.replace('`', "'"));
    }
}

/// Text on one line, with the characters Markdown would act on escaped.
pub(crate) fn inline(text: &str) -> String {
    let mut out = String::new();
    for c in text.chars() {
        match c {
            '\n' | '\r' => out.push(' '),
            '\\' | '`' | '*' | '_' | '[' | ']' | '<' | '>' | '|' | '#' => {
                out.push('\\');
                out.push(c);
            }
            _ => out.push(c),
        }
    }
    out
}

fn plural(n: u64, word: &str) -> String {
    format!("{n} {word}{}", if n == 1 { "" } else { "s" })
}

/// A table cell: inline text, never breaking the row.
fn cell(text: &str) -> String {
    inline(text)
}

#[cfg(test)]
mod tests {
    #[test]
    fn escapes_markdown() {
        assert_eq!(super::inline("a|b_c\nd"), "a\\|b\\_c d");
    }
}
