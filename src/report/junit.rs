//! JUnit XML for CI test reports (GitLab, Jenkins): a `<testsuite>` per flow,
//! a `<testcase>` per step, a `<failure>` per finding at or above `--fail-on`.
//! Findings below it, and those known from the baseline, go to the step's
//! `<system-out>`. Checked against `tests/schemas/junit.xsd` in `.ci/run`.

use std::fmt::Write;

use super::Report;
use crate::model::{Finding, Severity};

pub fn render(report: &Report, fail_on: Option<Severity>) -> String {
    let fails = |f: &Finding| fail_on.is_some_and(|l| f.severity >= l);
    let mut out = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    let steps: usize = report.flows.iter().map(|f| f.steps.len()).sum();
    let failures = report.findings.iter().filter(|f| fails(f)).count();
    let _ = writeln!(
        out,
        "<testsuites name=\"flowaudit\" tests=\"{steps}\" failures=\"{failures}\" errors=\"0\">"
    );
    for flow in &report.flows {
        let mine = |step: &str| -> Vec<&Finding> {
            report
                .findings
                .iter()
                .filter(|f| f.flow == flow.name && f.step == step)
                .collect()
        };
        let failed: usize = flow
            .steps
            .iter()
            .map(|s| mine(&s.name).into_iter().filter(|f| fails(f)).count())
            .sum();
        let time: u64 = flow.steps.iter().filter_map(|s| s.duration_us).sum();
        let _ = writeln!(
            out,
            "  <testsuite name=\"{}\" tests=\"{}\" failures=\"{failed}\" errors=\"0\" \
             skipped=\"0\" time=\"{}\">",
            attr(&flow.name),
            flow.steps.len(),
            seconds(time)
        );
        for step in &flow.steps {
            let _ = write!(
                out,
                "    <testcase name=\"{}\" classname=\"{}\" time=\"{}\"",
                attr(&step.name),
                attr(&flow.name),
                seconds(step.duration_us.unwrap_or(0))
            );
            let failing: Vec<&Finding> =
                mine(&step.name).into_iter().filter(|f| fails(f)).collect();
            let mut other: Vec<String> = mine(&step.name)
                .into_iter()
                .filter(|f| !fails(f))
                .map(|f| format!("{} {}: {}", f.severity, f.rule, f.message))
                .collect();
            other.extend(
                report
                    .known
                    .iter()
                    .filter(|f| f.flow == flow.name && f.step == step.name)
                    .map(|f| format!("known {}: {}", f.rule, f.message)),
            );
            if failing.is_empty() && other.is_empty() {
                out.push_str("/>\n");
                continue;
            }
            out.push_str(">\n");
            for f in failing {
                let mut body = f.message.clone();
                if let Some(fp) = &f.fingerprint {
                    let _ = write!(body, "\n{fp}");
                }
                for e in &f.examples {
                    let _ = write!(body, "\ne.g. {e}");
                }
                let _ = write!(body, "\nfix: {}", f.help);
                let _ = writeln!(
                    out,
                    "      <failure message=\"{}\" type=\"{}\">{}</failure>",
                    attr(&format!("{} {}: {}", f.severity, f.rule, f.message)),
                    attr(f.rule),
                    text(&body)
                );
            }
            if !other.is_empty() {
                let _ = writeln!(
                    out,
                    "      <system-out>{}</system-out>",
                    text(&other.join("\n"))
                );
            }
            out.push_str("    </testcase>\n");
        }
        out.push_str("  </testsuite>\n");
    }
    out.push_str("</testsuites>\n");
    out
}

fn seconds(us: u64) -> String {
    format!("{}.{:06}", us / 1_000_000, us % 1_000_000)
}

/// Escapes text content; characters XML 1.0 cannot carry at all become U+FFFD.
fn text(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '\t' | '\n' | '\r' => out.push(c),
            c if (c as u32) < 0x20 || c == '\u{FFFE}' || c == '\u{FFFF}' => out.push('\u{FFFD}'),
            c => out.push(c),
        }
    }
    out
}

/// Escapes an attribute value (double-quoted), keeping line breaks as such.
fn attr(s: &str) -> String {
    text(s)
        .replace('"', "&quot;")
        .replace('\n', "&#10;")
        .replace('\r', "&#13;")
        .replace('\t', "&#9;")
}

#[cfg(test)]
mod tests {
    #[test]
    fn escapes() {
        assert_eq!(
            super::attr("a<\"b\"&\n\u{1}"),
            "a&lt;&quot;b&quot;&amp;&#10;\u{FFFD}"
        );
        assert_eq!(super::text("x > y"), "x &gt; y");
        assert_eq!(super::seconds(1_234_567), "1.234567");
    }
}
