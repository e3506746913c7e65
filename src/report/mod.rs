//! What an audit found, and its renderings: one file per output format.

pub mod html;
pub mod json;
pub mod junit;
pub mod markdown;
pub mod merge;
pub mod sarif;
pub mod table;
pub mod timeline;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::model::Finding;

/// The result of one audit; `version` is the JSON report's format version.
/// `Deserialize` reads a JSON report back (`flowaudit merge`): the fields
/// the JSON leaves out take their empty values.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Report {
    pub version: u32,
    /// The capture sources the statements came from.
    pub sources: Vec<String>,
    /// Flows and their steps, in the order they first ran.
    pub flows: Vec<FlowReport>,
    /// Sorted by (flow, step, rule, fingerprint).
    pub findings: Vec<Finding>,
    /// Findings that a rule file's `[[allow]]` set aside, with its reason.
    pub allowed: Vec<AllowedFinding>,
    /// Findings the `--baseline` already has: shown, not failing.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub known: Vec<Finding>,
    /// Where the run is better than the `--baseline` (fewer queries, other
    /// queries at the same count, findings fixed): it can be tightened there.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tighten: Vec<String>,
    /// Notes about the run itself (an expired allowance, …).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
    pub summary: Summary,
    /// What the capture source counted of its own work (the proxy's
    /// connections and any statements it could not record).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub capture: Option<CaptureStats>,
    /// The files audited, for formats that point at a location (SARIF).
    #[serde(skip)]
    pub inputs: Vec<String>,
    /// What the HTML report draws of each step; kept only for that format.
    #[serde(skip)]
    pub timeline: Option<timeline::Timeline>,
    /// `compare`'s counts of both runs, for the HTML report's chart.
    #[serde(skip)]
    pub comparison: Option<Comparison>,
}

/// What `compare` measured: each step's fingerprints counted in the small
/// and the large run.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Comparison {
    pub small: String,
    pub large: String,
    pub steps: Vec<ComparedStep>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ComparedStep {
    pub flow: String,
    pub step: String,
    /// (fingerprint hash, text, small count, large count), by the large
    /// count, most first.
    pub fingerprints: Vec<(String, String, u64, u64)>,
}

/// The proxy's own counts: nothing it saw goes unaccounted.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CaptureStats {
    /// Client connections relayed to the server.
    pub connections: u64,
    /// Statements written to the trace and audited.
    pub recorded: u64,
    /// Statements not recorded because the writer fell behind.
    pub dropped: u64,
    /// Messages forwarded that the observer could not decode.
    pub undecoded_frames: u64,
    /// Connections answered with an error by the proxy itself (upstream
    /// unreachable, a direct TLS handshake).
    pub refused: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FlowReport {
    pub name: String,
    pub steps: Vec<StepReport>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StepReport {
    pub name: String,
    /// Every statement attributed to the step, markers excluded.
    pub statements: u64,
    /// Statements that are not transaction control or session settings.
    pub queries: u64,
    /// Total time of its statements; absent when the source gave no durations.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub duration_us: Option<u64>,
    /// Explicit transactions started in the step.
    pub transactions: u64,
    pub connections: u64,
    /// The step's statements in the `--baseline`, when it has the step.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub baseline_statements: Option<u64>,
    /// The step's queries in the `--baseline` (what `query-count-regression`
    /// judges), when it has the step.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub baseline_queries: Option<u64>,
    /// Fingerprint hash (16 hex digits) → its runs: one counter per distinct
    /// fingerprint, for baselines and `compare`; not part of the JSON report.
    #[serde(skip)]
    pub fingerprints: BTreeMap<String, FingerprintCount>,
}

/// How often one fingerprint ran in a step.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FingerprintCount {
    /// The normalised statement.
    pub text: String,
    pub count: u64,
    /// Whether it is a query (not transaction control, a session setting or
    /// driver housekeeping).
    pub query: bool,
    /// Rule ids its statements' `flowaudit_allow` tags named.
    pub allows: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AllowedFinding {
    #[serde(flatten)]
    pub finding: Finding,
    pub reason: String,
    pub file: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Summary {
    pub statements: u64,
    pub markers: u64,
    pub errors: u64,
    pub warnings: u64,
    pub infos: u64,
    pub allowed: u64,
    /// Findings known from the baseline (not counted above).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub known: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// Findings in the order a reader follows the run: by the position of their
/// step among the report's flows and steps (the order they first ran), then
/// rule, fingerprint and message, so that the output stays deterministic.
/// Findings of no step in the report (a flow's budget, data invariants) come
/// last. The table and Markdown reports use it; JSON keeps the contract's
/// (flow, step, rule, fingerprint) order.
pub fn in_run_order<'a>(report: &Report, findings: &'a [Finding]) -> Vec<&'a Finding> {
    let mut order: BTreeMap<(&str, &str), usize> = BTreeMap::new();
    for flow in &report.flows {
        for step in &flow.steps {
            let next = order.len();
            order
                .entry((flow.name.as_str(), step.name.as_str()))
                .or_insert(next);
        }
    }
    let mut shown: Vec<&Finding> = findings.iter().collect();
    shown.sort_by_key(|f| {
        let position = order
            .get(&(f.flow.as_str(), f.step.as_str()))
            .copied()
            .unwrap_or(usize::MAX);
        (position, f.sort_key())
    });
    shown
}

/// Output formats of the auditing commands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Table,
    Json,
    /// SARIF 2.1.0, for code scanning.
    Sarif,
    /// JUnit XML: a testsuite per flow, a testcase per step.
    Junit,
    /// Compact Markdown for a pull-request comment.
    Markdown,
    /// One self-contained HTML file: the summary, each step's timeline and
    /// its findings.
    Html,
}

/// Renders a report in the chosen format; `fail_on` decides which findings
/// are failures in JUnit (`None`: none are).
pub fn render(
    report: &Report,
    format: Format,
    width: usize,
    fail_on: Option<crate::model::Severity>,
) -> String {
    match format {
        Format::Table => table::render(report, width),
        Format::Json => json::render(report),
        Format::Sarif => sarif::render(report),
        Format::Junit => junit::render(report, fail_on),
        Format::Markdown => markdown::render(report),
        Format::Html => html::render(report),
    }
}

/// A duration as reports show it: `0.4 ms`, `12.3 ms`, `1.25 s`.
pub fn duration(us: u64) -> String {
    if us < 1_000_000 {
        format!("{:.1} ms", us as f64 / 1000.0)
    } else {
        format!("{:.2} s", us as f64 / 1_000_000.0)
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn durations() {
        assert_eq!(super::duration(0), "0.0 ms");
        assert_eq!(super::duration(1_234), "1.2 ms");
        assert_eq!(super::duration(999_949), "999.9 ms");
        assert_eq!(super::duration(1_250_000), "1.25 s");
    }

    /// Issue 14: the table and Markdown reports list findings in the order
    /// the steps ran, not by name; JSON keeps the contract's order.
    #[test]
    fn table_and_markdown_list_findings_in_run_order() {
        let config = crate::rules::RuleConfig::builtin().expect("defaults");
        let ev = |sql: &str| crate::model::Event {
            sql: sql.into(),
            conn: Some(1),
            ..crate::model::Event::default()
        };
        let report = crate::audit::audit_events(
            &config,
            [
                "SET flowaudit.step = 'zeta'",
                "select 1",
                "select 1",
                "SET flowaudit.step = 'alpha'",
                "select 2",
                "select 2",
            ]
            .map(ev),
        )
        .expect("audit");
        let steps = |text: &str| -> Vec<&str> {
            ["› zeta", "› alpha"]
                .into_iter()
                .filter_map(|s| text.find(s).map(|at| (at, s)))
                .collect::<std::collections::BTreeMap<_, _>>()
                .into_values()
                .collect()
        };
        assert_eq!(
            steps(&super::table::render(&report, 100)),
            ["› zeta", "› alpha"]
        );
        assert_eq!(
            steps(&super::markdown::render(&report)),
            ["› zeta", "› alpha"]
        );
        let json: Vec<&str> = report.findings.iter().map(|f| f.step.as_str()).collect();
        assert_eq!(json, ["alpha", "zeta"]);
    }
}
