//! The HTML report (issue 18): one self-contained file. Its style and
//! script are inlined, it loads nothing, and it reads from `file://`. The
//! summary and the findings are plain HTML, readable without the script.
//! Each step's timeline is inline SVG ([`timeline`]), and `compare`'s chart
//! is too ([`chart`]). The script only adds the links: a click on a finding
//! highlights its statements, and keys move between findings.

pub mod chart;
pub mod timeline;

use std::fmt::Write;

use super::timeline as timeline_data;
use super::{Report, in_run_order};
use crate::model::{Finding, Severity};

const STYLE: &str = include_str!("page.css");
const SCRIPT: &str = include_str!("page.js");

/// A whole page: `title`, then `body` (already HTML), with the report's
/// style and script inlined.
pub fn page(title: &str, body: &str) -> String {
    let mut out = String::with_capacity(body.len() + STYLE.len() + SCRIPT.len() + 512);
    out.push_str("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n");
    out.push_str("<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n");
    // Nothing may be fetched: the policy makes a stray reference an error
    // in the console, which CI's browser check fails on.
    out.push_str(
        "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; \
         style-src 'unsafe-inline'; script-src 'unsafe-inline'; img-src data:\">\n",
    );
    let _ = writeln!(out, "<title>{}</title>", esc(title));
    let _ = writeln!(out, "<style>\n{STYLE}</style>\n</head>\n<body>");
    out.push_str("<a class=\"skip\" href=\"#findings-index\">Skip to the findings</a>\n");
    out.push_str(body);
    let _ = writeln!(
        out,
        "<footer>Written by flowaudit {}. Keys: <kbd>j</kbd> / <kbd>k</kbd> next and previous \
         finding, <kbd>Enter</kbd> shows its statements, <kbd>Esc</kbd> clears.</footer>",
        env!("CARGO_PKG_VERSION")
    );
    let _ = writeln!(out, "<script>\n{SCRIPT}</script>\n</body>\n</html>");
    out
}

/// Text for HTML and SVG (XML), in content and in quoted attributes;
/// control characters XML does not allow are dropped.
pub fn esc(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            '\n' | '\t' | '\r' => out.push(c),
            c if c.is_control() => {}
            c => out.push(c),
        }
    }
    out
}

/// A severity as a badge: its symbol and its name, so that it does not
/// depend on colour.
pub fn badge(severity: Severity) -> String {
    let symbol = match severity {
        Severity::Error => "✖",
        Severity::Warning => "▲",
        Severity::Info => "ℹ",
    };
    format!(
        "<span class=\"badge {s}\"><span aria-hidden=\"true\">{symbol}</span> {s}</span>",
        s = severity.as_str()
    )
}

/// `n thing` / `n things`, with thousands separated.
fn count(n: u64, one: &str, many: &str) -> String {
    format!(
        "{} {}",
        crate::rules::thousands(n),
        if n == 1 { one } else { many }
    )
}

pub fn render(report: &Report) -> String {
    let mut body = String::new();
    let s = &report.summary;
    let title = format!(
        "flowaudit: {}, {}, {}",
        count(s.errors, "error", "errors"),
        count(s.warnings, "warning", "warnings"),
        count(s.infos, "info", "infos")
    );
    let _ = writeln!(
        body,
        "<header><h1>flowaudit report</h1><p class=\"verdict\">{}</p></header>",
        esc(&title["flowaudit: ".len()..])
    );
    body.push_str("<main>\n");
    summary(&mut body, report);
    let shown = in_run_order(report, &report.findings);
    // A finding's number is its place in `report.findings`: the timeline's
    // statements name the findings about them by it.
    let numbers: std::collections::HashMap<*const Finding, usize> = report
        .findings
        .iter()
        .enumerate()
        .map(|(i, f)| (std::ptr::from_ref(f), i))
        .collect();
    let number = |f: &Finding| numbers.get(&std::ptr::from_ref(f)).copied().unwrap_or(0);
    findings_index(&mut body, report, &shown, &number);
    if let Some(comparison) = &report.comparison {
        chart::section(&mut body, comparison, &report.findings);
    }
    let steps: usize = report.flows.iter().map(|f| f.steps.len()).sum();
    if report
        .timeline
        .as_ref()
        .is_some_and(|t| !t.steps.is_empty())
    {
        body.push_str(
            "<aside class=\"key\"><h2>Reading the timelines</h2>\n<p>Each step's \
            statements are bars on a time axis, one lane per connection; hover over one for its \
            SQL, bind values, rows and duration. A finding's button marks its statements.</p>\n",
        );
        body.push_str(timeline::LEGEND);
        if steps > super::timeline::STEPS_DRAWN {
            let _ = writeln!(
                body,
                "<p>The run has {} steps: the first {} are drawn, the others counted only.</p>",
                crate::rules::thousands(steps as u64),
                crate::rules::thousands(super::timeline::STEPS_DRAWN as u64)
            );
        }
        body.push_str("</aside>\n");
    }
    let timelines: std::collections::HashMap<(&str, &str), &timeline_data::StepTimeline> = report
        .timeline
        .iter()
        .flat_map(|t| &t.steps)
        .map(|t| ((t.key.flow.as_str(), t.key.step.as_str()), t))
        .collect();
    // Each step's findings in run order, grouped once.
    let mut by_step: std::collections::HashMap<(&str, &str), Vec<(usize, &Finding)>> =
        std::collections::HashMap::new();
    for f in &shown {
        by_step
            .entry((f.flow.as_str(), f.step.as_str()))
            .or_default()
            .push((number(f), *f));
    }
    let mut step_no = 0;
    for flow in &report.flows {
        let _ = writeln!(
            body,
            "<section class=\"flow\" aria-labelledby=\"flow-{step_no}\">\n<h2 id=\"flow-{step_no}\">\
             Flow <q>{}</q></h2>",
            esc(&flow.name)
        );
        for step in &flow.steps {
            let of_step = by_step
                .remove(&(flow.name.as_str(), step.name.as_str()))
                .unwrap_or_default();
            let _ = writeln!(
                body,
                "<section class=\"step\" id=\"step-{step_no}\" aria-labelledby=\"step-{step_no}-h\">\n\
                 <h3 id=\"step-{step_no}-h\">{} <span class=\"sep\">›</span> {}</h3>",
                esc(&flow.name),
                esc(&step.name)
            );
            let mut counts = vec![
                count(step.statements, "statement", "statements"),
                count(step.queries, "query", "queries"),
                count(step.transactions, "transaction", "transactions"),
                count(step.connections, "connection", "connections"),
            ];
            if let Some(us) = step.duration_us {
                counts.push(super::duration(us));
            }
            if let Some(b) = step.baseline_queries {
                counts.push(format!("baseline {}", count(b, "query", "queries")));
            }
            let _ = writeln!(body, "<p class=\"counts\">{}</p>", counts.join(" · "));
            let marked = match timelines.get(&(flow.name.as_str(), step.name.as_str())) {
                Some(t) => timeline::figure(&mut body, t, &of_step, step_no),
                None => Default::default(),
            };
            if of_step.is_empty() {
                body.push_str("<p class=\"clean\">No findings in this step.</p>\n");
            } else {
                body.push_str("<ol class=\"findings\">\n");
                // A button only where the timeline has something to show.
                let figure = format!("timeline-{step_no}");
                for (n, f) in &of_step {
                    let drawn = marked.contains(n).then_some(figure.as_str());
                    finding(&mut body, *n, f, drawn);
                }
                body.push_str("</ol>\n");
            }
            body.push_str("</section>\n");
            step_no += 1;
        }
        body.push_str("</section>\n");
    }
    // What no step took: findings about the run as a whole.
    let mut elsewhere: Vec<(usize, &Finding)> = by_step.into_values().flatten().collect();
    elsewhere.sort_by_key(|(n, _)| *n);
    if !elsewhere.is_empty() {
        body.push_str(
            "<section class=\"flow\" aria-labelledby=\"other-h\">\n<h2 id=\"other-h\">Findings \
             about the run as a whole</h2>\n<ol class=\"findings\">\n",
        );
        for (n, f) in elsewhere {
            finding(&mut body, n, f, None);
        }
        body.push_str("</ol>\n</section>\n");
    }
    set_aside(&mut body, report);
    rules_section(&mut body, &report.findings);
    body.push_str("</main>\n");
    page(&title, &body)
}

fn summary(body: &mut String, report: &Report) {
    let s = &report.summary;
    let steps: usize = report.flows.iter().map(|f| f.steps.len()).sum();
    let queries: u64 = report
        .flows
        .iter()
        .flat_map(|f| &f.steps)
        .map(|s| s.queries)
        .sum();
    let timed: Vec<u64> = report
        .flows
        .iter()
        .flat_map(|f| &f.steps)
        .filter_map(|s| s.duration_us)
        .collect();
    body.push_str("<section id=\"summary\" aria-labelledby=\"summary-h\">\n<h2 id=\"summary-h\">Summary</h2>\n<dl class=\"summary\">\n");
    let mut row = |term: &str, value: String| {
        let _ = writeln!(body, "<div><dt>{term}</dt><dd>{value}</dd></div>");
    };
    row("Flows", crate::rules::thousands(report.flows.len() as u64));
    row("Steps", crate::rules::thousands(steps as u64));
    row("Statements", crate::rules::thousands(s.statements));
    row("Queries", crate::rules::thousands(queries));
    if !timed.is_empty() {
        row("Time in SQL", super::duration(timed.iter().sum()));
    }
    row(
        "Findings",
        format!(
            "{} {} {} {}",
            severity_count(Severity::Error, s.errors),
            severity_count(Severity::Warning, s.warnings),
            severity_count(Severity::Info, s.infos),
            [(s.known, "known"), (s.allowed, "allowed")]
                .iter()
                .filter(|(n, _)| *n > 0)
                .map(|(n, what)| format!("<span class=\"aside\">{n} {what}</span>"))
                .collect::<Vec<_>>()
                .join(" ")
        ),
    );
    row(
        "Captured by",
        if report.sources.is_empty() {
            "nothing".to_owned()
        } else {
            report
                .sources
                .iter()
                .map(|s| format!("<code>{}</code>", esc(s)))
                .collect::<Vec<_>>()
                .join(", ")
        },
    );
    if let Some(c) = &report.capture {
        row(
            "Capture",
            esc(&format!(
                "{} relayed, {} recorded, {} dropped, {} undecoded, {} refused",
                count(c.connections, "connection", "connections"),
                crate::rules::thousands(c.recorded),
                crate::rules::thousands(c.dropped),
                crate::rules::thousands(c.undecoded_frames),
                crate::rules::thousands(c.refused),
            )),
        );
    }
    body.push_str("</dl>\n");
    if !report.notes.is_empty() || !report.tighten.is_empty() {
        body.push_str("<h3>Notes</h3>\n<ul class=\"notes\">\n");
        for note in report.notes.iter().chain(&report.tighten) {
            let _ = writeln!(body, "<li>{}</li>", esc(note));
        }
        body.push_str("</ul>\n");
    }
    if s.statements == 0 {
        body.push_str("<p class=\"clean\">No statements were captured.</p>\n");
    }
    body.push_str("</section>\n");
}

fn severity_count(severity: Severity, n: u64) -> String {
    format!(
        "<span class=\"count {}\">{} {}</span>",
        severity.as_str(),
        n,
        match (severity, n) {
            (Severity::Error, 1) => "error",
            (Severity::Error, _) => "errors",
            (Severity::Warning, 1) => "warning",
            (Severity::Warning, _) => "warnings",
            (Severity::Info, _) => "info",
        }
    )
}

/// Every finding in run order, each a link to its place in its step.
fn findings_index(
    body: &mut String,
    report: &Report,
    shown: &[&Finding],
    number: &dyn Fn(&Finding) -> usize,
) {
    body.push_str(
        "<section id=\"findings-index\" aria-labelledby=\"findings-h\">\n<h2 id=\"findings-h\">\
         Findings</h2>\n",
    );
    if shown.is_empty() {
        body.push_str("<p class=\"clean\">No findings.</p>\n</section>\n");
        return;
    }
    body.push_str("<table class=\"index\">\n<thead><tr><th scope=\"col\">Severity</th><th scope=\"col\">Rule</th><th scope=\"col\">Flow › step</th><th scope=\"col\">Count</th><th scope=\"col\">Message</th></tr></thead>\n<tbody>\n");
    for f in shown {
        let _ = writeln!(
            body,
            "<tr><td>{}</td><td><code>{}</code></td><td><a href=\"#finding-{}\">{} › {}</a></td>\
             <td class=\"num\">{}</td><td>{}</td></tr>",
            badge(f.severity),
            esc(f.rule),
            number(f),
            esc(&f.flow),
            esc(&f.step),
            crate::rules::thousands(f.count),
            esc(&f.message)
        );
    }
    body.push_str("</tbody>\n</table>\n");
    let _ = report;
    body.push_str("</section>\n");
}

/// One finding: its message, the statement it is about, examples, the fix
/// and the rule's documentation; a button that shows its statements.
///
/// `figure` is the id of the drawing that shows its statements (a step's
/// timeline, the ER diagram); without one, it has no button.
pub fn finding(body: &mut String, n: usize, f: &Finding, figure: Option<&str>) {
    let _ = writeln!(
        body,
        "<li class=\"finding {sev}\" id=\"finding-{n}\" data-finding=\"{n}\"{figure}>",
        sev = f.severity.as_str(),
        figure = figure.map_or_else(String::new, |id| format!(" data-figure=\"{}\"", esc(id))),
    );
    let _ = writeln!(
        body,
        "<h4>{} <code>{}</code> <span class=\"count\">×{}</span></h4>",
        badge(f.severity),
        esc(f.rule),
        crate::rules::thousands(f.count)
    );
    let _ = writeln!(body, "<p class=\"message\">{}</p>", esc(&f.message));
    if figure.is_some() {
        let _ = writeln!(
            body,
            "<button type=\"button\" class=\"show\" data-finding=\"{n}\" aria-pressed=\"false\">\
             Show its statements in the timeline</button>"
        );
    }
    if let Some(text) = &f.fingerprint {
        let _ = writeln!(
            body,
            "<p class=\"fingerprint\">Statement: <code>{}</code></p>",
            esc(text)
        );
    }
    if let Some(at) = f.location.as_ref().and_then(|l| l.short()) {
        let _ = writeln!(
            body,
            "<p class=\"location\">At <code>{}</code></p>",
            esc(&at)
        );
    }
    if !f.examples.is_empty() {
        body.push_str("<details class=\"examples\" open><summary>Examples</summary>\n<ul>\n");
        for e in &f.examples {
            let _ = writeln!(body, "<li><code>{}</code></li>", esc(e));
        }
        body.push_str("</ul>\n</details>\n");
    }
    let _ = writeln!(
        body,
        "<p class=\"fix\"><strong>Fix:</strong> {}</p>",
        esc(&f.help)
    );
    if crate::rules::REGISTRY.iter().any(|m| m.id == f.rule) {
        let _ = writeln!(
            body,
            "<p class=\"about\"><a href=\"#rule-{id}\">About <code>{id}</code></a></p>",
            id = esc(f.rule)
        );
    }
    body.push_str("</li>\n");
}

/// The documentation of the rules `findings` name (`flowaudit rules
/// explain`), once each, where their findings link.
pub fn rules_section<'a>(body: &mut String, findings: impl IntoIterator<Item = &'a Finding>) {
    let ids: std::collections::BTreeSet<&str> = findings.into_iter().map(|f| f.rule).collect();
    let metas: Vec<_> = crate::rules::REGISTRY
        .iter()
        .filter(|m| ids.contains(m.id))
        .collect();
    if metas.is_empty() {
        return;
    }
    body.push_str(
        "<section id=\"rules\" aria-labelledby=\"rules-h\">\n<h2 id=\"rules-h\">The rules \
         that found them</h2>\n",
    );
    for m in metas {
        let _ = writeln!(
            body,
            "<details class=\"doc\" id=\"rule-{id}\"><summary><code>{id}</code>: {} \
             (<code>flowaudit rules explain {id}</code>)</summary>\n<pre>{}</pre>\n</details>",
            esc(m.summary),
            esc(m.documentation().trim_end()),
            id = esc(m.id),
        );
    }
    body.push_str("</section>\n");
}

/// A finding a rule file allowed, with the file and its reason; `flow`:
/// whether to name its flow (a schema finding's is always `schema`).
pub fn allowed(body: &mut String, a: &super::AllowedFinding, flow: bool) {
    let _ = writeln!(
        body,
        "<li>{} <code>{}</code> {}{}: {} <em>allowed by {}: {}</em></li>",
        badge(a.finding.severity),
        esc(a.finding.rule),
        if flow {
            format!("{} › ", esc(&a.finding.flow))
        } else {
            String::new()
        },
        esc(&a.finding.step),
        esc(&a.finding.message),
        esc(&a.file),
        esc(&a.reason)
    );
}

/// Findings set aside: allowed by a rule file, or known from the baseline.
fn set_aside(body: &mut String, report: &Report) {
    if report.allowed.is_empty() && report.known.is_empty() {
        return;
    }
    body.push_str(
        "<section aria-labelledby=\"aside-h\">\n<h2 id=\"aside-h\">Set aside</h2>\n<ul class=\"aside\">\n",
    );
    for a in &report.allowed {
        allowed(body, a, true);
    }
    for f in &report.known {
        let _ = writeln!(
            body,
            "<li>{} <code>{}</code> {} › {}: {} <em>known from the baseline</em></li>",
            badge(f.severity),
            esc(f.rule),
            esc(&f.flow),
            esc(&f.step),
            esc(&f.message)
        );
    }
    body.push_str("</ul>\n</section>\n");
}

#[cfg(test)]
mod tests;
