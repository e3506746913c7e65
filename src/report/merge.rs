//! `flowaudit merge`: JSON reports of the same flows, written by many machines
//! or CI shards, combined into one [`Report`] (issue 20). Pure: the command in
//! `src/cli/merge.rs` reads the files and renders the result.
//!
//! What merges how:
//!
//! - **Flows and steps** by name. Their order keeps every report's run order
//!   where the reports agree: the orders are merged as a graph (each report
//!   says "this ran before that"), taking at each point, of the names nothing
//!   still waits for, the smallest; where reports disagree (a cycle), the
//!   smallest name left goes next. One report keeps its order.
//! - **Step counts add**: statements, queries, transactions, connections (each
//!   machine's connections are its own); `duration_us` adds the durations the
//!   reports have, and is absent only when none has one. `baseline_statements`
//!   and `baseline_queries` are kept when every report that has the step gives
//!   the same value (the shards ran against one baseline), else dropped.
//! - **Findings** merge by (rule, flow, step, fingerprint hash), or, for a
//!   finding without a fingerprint, (rule, flow, step, message); a report's
//!   second finding with the same key merges with the others' second. Counts
//!   add; the severity is the highest; the message, help and location are
//!   those of the report where the finding counted most (ties: the first in
//!   the canonical order below), because a message's own numbers ("ran 24×
//!   with 4 different values") describe one report's run and only that
//!   report's stay true of it; a note says how many findings this concerns.
//!   Examples: that report's first, then the others', without repeats, at
//!   most [`MAX_EXAMPLES`].
//! - **Allowed** and **known** findings merge the same way (an allowed
//!   finding's reason and file are its chosen report's).
//! - **Sources** are the union, sorted; **notes** and **tighten** lines the
//!   union in order, without repeats; **capture** counts add; the
//!   **summary**'s statements and markers add, and its severities, allowed and
//!   known are counted again from the merged findings.
//!
//! The output does not depend on the order the reports are given in: they
//! are first put in a canonical order (by a 128-bit hash of their JSON
//! text), and everything "first" above means first in that order.

use std::collections::{BTreeMap, BTreeSet};

use super::{AllowedFinding, CaptureStats, FlowReport, Report, StepReport, Summary};
use crate::model::{Finding, Severity};
pub use crate::rules::units::MAX_EXAMPLES;

/// The JSON report version this build reads and writes.
pub const VERSION: u32 = 1;

/// Why a file is not a report that can be merged.
#[derive(Debug, thiserror::Error)]
pub enum MergeError {
    #[error("no report to merge")]
    NoReports,
    #[error("{path}:{line}:{column}: {message}")]
    Invalid {
        path: String,
        line: usize,
        column: usize,
        message: String,
    },
    #[error("{path}: not a flowaudit JSON report (no object with a \"version\")")]
    NotAReport { path: String },
    #[error("{path}: a version {found} report; this flowaudit reads version {VERSION}")]
    Version { path: String, found: u64 },
}

/// Reads one JSON report (`path` names it in errors).
pub fn parse(path: &str, text: &str) -> Result<Report, MergeError> {
    let invalid = |e: serde_json::Error| MergeError::Invalid {
        path: path.to_owned(),
        line: e.line(),
        column: e.column(),
        message: strip_position(&e.to_string()),
    };
    // The version first, so that another version's report is named as such
    // rather than by the first field this build does not read.
    #[derive(serde::Deserialize)]
    struct Head {
        version: Option<serde_json::Value>,
    }
    // serde reads a struct from an array too; a report is an object.
    if !text.trim_start().starts_with('{') {
        return Err(MergeError::NotAReport {
            path: path.to_owned(),
        });
    }
    let head: Head = serde_json::from_str(text).map_err(|e| match e.classify() {
        // Well-formed JSON, but not an object: not a report at all.
        serde_json::error::Category::Data => MergeError::NotAReport {
            path: path.to_owned(),
        },
        _ => invalid(e),
    })?;
    match head.version {
        None => {
            return Err(MergeError::NotAReport {
                path: path.to_owned(),
            });
        }
        Some(v) if v.as_u64() == Some(u64::from(VERSION)) => {}
        Some(v) => {
            return Err(MergeError::Version {
                path: path.to_owned(),
                found: v.as_u64().unwrap_or(0),
            });
        }
    }
    let mut report: Report = serde_json::from_str(text).map_err(invalid)?;
    // The contract's order, whatever wrote the file.
    report
        .findings
        .sort_by(|a, b| a.sort_key().cmp(&b.sort_key()));
    report.known.sort_by(|a, b| a.sort_key().cmp(&b.sort_key()));
    report
        .allowed
        .sort_by(|a, b| a.finding.sort_key().cmp(&b.finding.sort_key()));
    Ok(report)
}

/// serde_json ends its messages with " at line L column C"; the error puts
/// the position first, as `file:line:col`.
fn strip_position(message: &str) -> String {
    match message.rfind(" at line ") {
        Some(at) => message[..at].to_owned(),
        None => message.to_owned(),
    }
}

/// Merges reports (see the module documentation). One report comes back as
/// it was read.
pub fn merge(reports: Vec<Report>) -> Result<Report, MergeError> {
    if reports.is_empty() {
        return Err(MergeError::NoReports);
    }
    // The canonical order: by a hash of each report's JSON text (kept
    // instead of the text, which is as large as the report).
    let mut keyed: Vec<(u128, Report)> = reports
        .into_iter()
        .map(|r| {
            (
                xxhash_rust::xxh3::xxh3_128(super::json::render(&r).as_bytes()),
                r,
            )
        })
        .collect();
    keyed.sort_by_key(|k| k.0);
    let reports: Vec<Report> = keyed.into_iter().map(|(_, r)| r).collect();

    let flows = merge_flows(&reports);
    let (findings, merged_findings) = merge_findings(reports.iter().map(|r| r.findings.as_slice()));
    let (known, merged_known) = merge_findings(reports.iter().map(|r| r.known.as_slice()));
    let (allowed, merged_allowed) = merge_allowed(&reports);

    let mut notes = union_in_order(reports.iter().map(|r| r.notes.as_slice()));
    let merged = merged_findings + merged_known + merged_allowed;
    if reports.len() > 1 {
        notes.push(format!(
            "merged from {} reports{}",
            reports.len(),
            match merged {
                0 => String::new(),
                n => format!(
                    ": {} found in more than one; {} counts add up, and {} message and \
                     location are those of the report where it counted most",
                    crate::rules::plural(n, "finding was", "findings were"),
                    if n == 1 { "its" } else { "their" },
                    if n == 1 { "its" } else { "each one's" },
                ),
            }
        ));
    }

    let count = |s: Severity| findings.iter().filter(|f| f.severity == s).count() as u64;
    let summary = Summary {
        statements: reports.iter().map(|r| r.summary.statements).sum(),
        markers: reports.iter().map(|r| r.summary.markers).sum(),
        errors: count(Severity::Error),
        warnings: count(Severity::Warning),
        infos: count(Severity::Info),
        allowed: allowed.len() as u64,
        known: known.len() as u64,
    };
    let capture = reports.iter().filter_map(|r| r.capture.as_ref()).fold(
        None,
        |acc: Option<CaptureStats>, c| {
            let mut sum = acc.unwrap_or_default();
            sum.connections += c.connections;
            sum.recorded += c.recorded;
            sum.dropped += c.dropped;
            sum.undecoded_frames += c.undecoded_frames;
            sum.refused += c.refused;
            Some(sum)
        },
    );
    let sources: BTreeSet<&String> = reports.iter().flat_map(|r| &r.sources).collect();

    Ok(Report {
        version: VERSION,
        sources: sources.into_iter().cloned().collect(),
        flows,
        findings,
        allowed,
        known,
        tighten: union_in_order(reports.iter().map(|r| r.tighten.as_slice())),
        notes,
        summary,
        capture,
        inputs: Vec::new(),
        timeline: None,
        comparison: None,
    })
}

/// Flows and their steps, counts added, in the merged order of the reports'.
fn merge_flows(reports: &[Report]) -> Vec<FlowReport> {
    let flow_order = merge_orders(
        reports
            .iter()
            .map(|r| r.flows.iter().map(|f| f.name.as_str()).collect()),
    );
    // flow → step → the step's reports, in report order; flow → each
    // report's order of its steps. One pass over the reports: no flow is
    // searched for once per flow.
    let mut steps: BTreeMap<&str, BTreeMap<&str, Vec<&StepReport>>> = BTreeMap::new();
    let mut step_orders: BTreeMap<&str, Vec<Vec<&str>>> = BTreeMap::new();
    for flow in reports.iter().flat_map(|r| &r.flows) {
        let by_step = steps.entry(flow.name.as_str()).or_default();
        for step in &flow.steps {
            by_step.entry(step.name.as_str()).or_default().push(step);
        }
        step_orders
            .entry(flow.name.as_str())
            .or_default()
            .push(flow.steps.iter().map(|s| s.name.as_str()).collect());
    }
    flow_order
        .into_iter()
        .map(|flow| {
            let orders = step_orders.remove(flow.as_str()).unwrap_or_default();
            let by_step = steps.get(flow.as_str());
            let steps = merge_orders(orders.into_iter())
                .into_iter()
                .map(|name| {
                    let parts = by_step
                        .and_then(|s| s.get(name.as_str()))
                        .map_or(&[][..], Vec::as_slice);
                    merge_step(name, parts)
                })
                .collect();
            FlowReport { name: flow, steps }
        })
        .collect()
}

fn merge_step(name: String, parts: &[&StepReport]) -> StepReport {
    let sum = |f: fn(&StepReport) -> u64| parts.iter().map(|s| f(s)).sum::<u64>();
    let same = |f: fn(&StepReport) -> Option<u64>| {
        let first = parts.first().and_then(|s| f(s));
        parts
            .iter()
            .all(|s| f(s) == first)
            .then_some(first)
            .flatten()
    };
    let durations: Vec<u64> = parts.iter().filter_map(|s| s.duration_us).collect();
    StepReport {
        name,
        statements: sum(|s| s.statements),
        queries: sum(|s| s.queries),
        duration_us: (!durations.is_empty()).then(|| durations.iter().sum()),
        transactions: sum(|s| s.transactions),
        connections: sum(|s| s.connections),
        baseline_statements: same(|s| s.baseline_statements),
        baseline_queries: same(|s| s.baseline_queries),
        fingerprints: BTreeMap::new(),
    }
}

/// One order that keeps each given order where they agree: the names as a
/// graph of "ran right before", taken smallest-name-first among those with
/// nothing left before them; a cycle is broken at its smallest name.
/// Deterministic and independent of the order of `orders`.
fn merge_orders<'a>(orders: impl Iterator<Item = Vec<&'a str>>) -> Vec<String> {
    let mut after: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    let mut before: BTreeMap<&str, usize> = BTreeMap::new();
    for order in orders {
        for name in &order {
            before.entry(name).or_insert(0);
            after.entry(name).or_default();
        }
        for pair in order.windows(2) {
            if pair[0] != pair[1] && after.entry(pair[0]).or_default().insert(pair[1]) {
                *before.entry(pair[1]).or_insert(0) += 1;
            }
        }
    }
    let mut ready: BTreeSet<&str> = before
        .iter()
        .filter(|(_, n)| **n == 0)
        .map(|(name, _)| *name)
        .collect();
    let mut out = Vec::with_capacity(before.len());
    while !before.is_empty() {
        let next = match ready.pop_first() {
            Some(name) => name,
            // Only cycles are left: the reports disagree; break at the smallest.
            None => *before.keys().next().unwrap_or(&""),
        };
        if before.remove(next).is_none() {
            continue;
        }
        ready.remove(next);
        out.push(next.to_owned());
        for succ in after.get(next).into_iter().flatten() {
            if let Some(n) = before.get_mut(succ) {
                *n = n.saturating_sub(1);
                if *n == 0 {
                    ready.insert(succ);
                }
            }
        }
    }
    out
}

/// What makes two reports' findings the same finding.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Key {
    rule: &'static str,
    flow: String,
    step: String,
    /// The fingerprint hash, or without one the fingerprint and message.
    id: (Option<String>, Option<String>, String),
    /// Its place among the report's findings of the same key.
    nth: usize,
}

fn key_of(f: &Finding, seen: &mut BTreeMap<Key, usize>) -> Key {
    let id = match &f.fingerprint_hash {
        Some(hash) => (Some(hash.clone()), None, String::new()),
        None => (None, f.fingerprint.clone(), f.message.clone()),
    };
    let mut key = Key {
        rule: f.rule,
        flow: f.flow.clone(),
        step: f.step.clone(),
        id,
        nth: 0,
    };
    let n = seen.entry(key.clone()).or_insert(0);
    key.nth = *n;
    *n += 1;
    key
}

/// Groups the findings of each report by key (reports in the canonical
/// order); returns the groups and how many had more than one report.
fn group<T>(
    reports: impl Iterator<Item = impl Iterator<Item = T>>,
    finding: impl Fn(&T) -> &Finding,
) -> (BTreeMap<Key, Vec<T>>, u64) {
    let mut groups: BTreeMap<Key, Vec<T>> = BTreeMap::new();
    for items in reports {
        let mut seen = BTreeMap::new();
        for item in items {
            let key = key_of(finding(&item), &mut seen);
            groups.entry(key).or_default().push(item);
        }
    }
    let several = groups.values().filter(|g| g.len() > 1).count() as u64;
    (groups, several)
}

/// Merges one key's findings (at least one, in report order); returns the
/// index of the part whose message it kept.
fn merge_one(parts: &[&Finding]) -> (Finding, usize) {
    // The first of the largest counts: max_by_key would take the last.
    let chosen =
        parts.iter().enumerate().fold(
            0,
            |best, (i, f)| if f.count > parts[best].count { i } else { best },
        );
    let mut out = parts[chosen].clone();
    out.count = parts.iter().map(|f| f.count).sum();
    out.severity = parts
        .iter()
        .map(|f| f.severity)
        .max()
        .unwrap_or(out.severity);
    // The chosen report's examples as they are (one report re-renders
    // unchanged), then the others' that it lacks.
    out.examples.truncate(MAX_EXAMPLES);
    let others = (0..parts.len()).filter(|&i| i != chosen);
    for example in others.flat_map(|i| &parts[i].examples) {
        if out.examples.len() >= MAX_EXAMPLES {
            break;
        }
        if !out.examples.contains(example) {
            out.examples.push(example.clone());
        }
    }
    (out, chosen)
}

fn merge_findings<'a>(reports: impl Iterator<Item = &'a [Finding]>) -> (Vec<Finding>, u64) {
    let (groups, several) = group(reports.map(|r| r.iter()), |f: &&Finding| f);
    let mut out: Vec<Finding> = groups
        .into_values()
        .map(|parts| merge_one(&parts).0)
        .collect();
    out.sort_by(|a, b| a.sort_key().cmp(&b.sort_key()));
    (out, several)
}

fn merge_allowed(reports: &[Report]) -> (Vec<AllowedFinding>, u64) {
    let (groups, several) = group(reports.iter().map(|r| r.allowed.iter()), |a| &a.finding);
    let mut out: Vec<AllowedFinding> = groups
        .into_values()
        .map(|parts| {
            let findings: Vec<&Finding> = parts.iter().map(|a| &a.finding).collect();
            let (finding, chosen) = merge_one(&findings);
            AllowedFinding {
                finding,
                reason: parts[chosen].reason.clone(),
                file: parts[chosen].file.clone(),
            }
        })
        .collect();
    out.sort_by(|a, b| a.finding.sort_key().cmp(&b.finding.sort_key()));
    (out, several)
}

/// Lines of every report, in order, each once.
fn union_in_order<'a>(lists: impl Iterator<Item = &'a [String]>) -> Vec<String> {
    let mut seen = BTreeSet::new();
    let mut out = Vec::new();
    for line in lists.flatten() {
        if seen.insert(line.as_str()) {
            out.push(line.clone());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Location;

    fn finding(rule: &'static str, hash: Option<&str>, count: u64, message: &str) -> Finding {
        Finding {
            rule,
            severity: Severity::Warning,
            flow: "shop".into(),
            step: "browse".into(),
            message: message.into(),
            fingerprint: hash.map(|_| "select ?".into()),
            fingerprint_hash: hash.map(Into::into),
            count,
            examples: vec![format!("example of {message}")],
            help: "fix it".into(),
            location: Some(Location {
                input: Some(format!("{message}.jsonl")),
                ..Location::default()
            }),
            driver: None,
        }
    }

    fn step(name: &str, statements: u64, duration_us: Option<u64>) -> StepReport {
        StepReport {
            name: name.into(),
            statements,
            queries: statements,
            duration_us,
            transactions: 1,
            connections: 1,
            baseline_statements: Some(10),
            baseline_queries: None,
            fingerprints: BTreeMap::new(),
        }
    }

    fn report(steps: Vec<StepReport>, findings: Vec<Finding>) -> Report {
        let statements = steps.iter().map(|s| s.statements).sum();
        Report {
            version: VERSION,
            sources: vec!["proxy".into()],
            flows: vec![FlowReport {
                name: "shop".into(),
                steps,
            }],
            findings,
            allowed: Vec::new(),
            known: Vec::new(),
            tighten: Vec::new(),
            notes: vec!["a note".into()],
            summary: Summary {
                statements,
                markers: 1,
                errors: 0,
                warnings: 0,
                infos: 0,
                allowed: 0,
                known: 0,
            },
            capture: None,
            inputs: Vec::new(),
            timeline: None,
            comparison: None,
        }
    }

    #[test]
    fn findings_of_one_key_add_up_and_keep_the_largest_part_s_message() {
        let mut a = finding("n-plus-one", Some("00aa"), 3, "ran 3×");
        a.examples = (0..8).map(|i| format!("a{i}")).collect();
        let mut b = finding("n-plus-one", Some("00aa"), 5, "ran 5×");
        b.severity = Severity::Error;
        b.examples = vec!["b0".into(), "a1".into(), "b1".into(), "b2".into()];
        let merged = merge(vec![
            report(vec![step("browse", 4, None)], vec![a]),
            report(vec![step("browse", 6, Some(7))], vec![b]),
        ])
        .expect("merges");
        assert_eq!(merged.findings.len(), 1);
        let f = &merged.findings[0];
        assert_eq!(f.count, 8);
        assert_eq!(f.severity, Severity::Error);
        assert_eq!(f.message, "ran 5×");
        assert_eq!(
            f.location.as_ref().and_then(|l| l.input.as_deref()),
            Some("ran 5×.jsonl")
        );
        // b's first, then a's it lacks, ten at most.
        assert_eq!(
            f.examples,
            ["b0", "a1", "b1", "b2", "a0", "a2", "a3", "a4", "a5", "a6"]
        );
        let s = &merged.flows[0].steps[0];
        assert_eq!(
            (s.statements, s.duration_us, s.connections),
            (10, Some(7), 2)
        );
        assert_eq!(s.baseline_statements, Some(10));
        assert_eq!(merged.summary.statements, 10);
        assert_eq!(merged.summary.markers, 2);
        assert_eq!(merged.summary.errors, 1);
        assert_eq!(merged.notes[0], "a note");
        assert_eq!(merged.notes.len(), 2, "{:?}", merged.notes);
        assert!(merged.notes[1].contains("1 finding was found in more than one"));
    }

    #[test]
    fn findings_without_a_fingerprint_merge_by_message() {
        let merged = merge(vec![
            report(
                vec![],
                vec![finding("non-atomic-write", None, 2, "2 writes")],
            ),
            report(
                vec![],
                vec![
                    finding("non-atomic-write", None, 2, "2 writes"),
                    finding("non-atomic-write", None, 3, "3 writes"),
                ],
            ),
        ])
        .expect("merges");
        let got: Vec<(&str, u64)> = merged
            .findings
            .iter()
            .map(|f| (f.message.as_str(), f.count))
            .collect();
        assert_eq!(got, [("2 writes", 4), ("3 writes", 3)]);
    }

    #[test]
    fn a_report_s_repeated_key_merges_with_the_other_s_repeat() {
        let twice = || {
            vec![
                finding("slow-query", Some("00bb"), 1, "took 120 ms"),
                finding("slow-query", Some("00bb"), 1, "took 150 ms"),
            ]
        };
        let merged = merge(vec![report(vec![], twice()), report(vec![], twice())]).expect("merges");
        let counts: Vec<u64> = merged.findings.iter().map(|f| f.count).collect();
        assert_eq!(counts, [2, 2]);
    }

    #[test]
    fn baselines_stay_when_equal_and_durations_when_any_has_one() {
        let mut other = step("browse", 1, None);
        other.baseline_statements = Some(11);
        other.baseline_queries = None;
        let merged = merge(vec![
            report(vec![step("browse", 1, None)], vec![]),
            report(vec![other], vec![]),
        ])
        .expect("merges");
        let s = &merged.flows[0].steps[0];
        assert_eq!(s.baseline_statements, None);
        assert_eq!(s.duration_us, None);
    }

    #[test]
    fn sources_notes_and_capture_are_unions_and_sums() {
        let mut a = report(vec![], vec![]);
        a.sources = vec!["pg-log".into(), "proxy".into()];
        a.capture = Some(CaptureStats {
            connections: 2,
            recorded: 10,
            dropped: 1,
            undecoded_frames: 0,
            refused: 0,
        });
        let mut b = report(vec![], vec![]);
        b.sources = vec!["mysql-proxy".into()];
        b.notes = vec!["a note".into(), "another".into()];
        let merged = merge(vec![a, b]).expect("merges");
        assert_eq!(merged.sources, ["mysql-proxy", "pg-log", "proxy"]);
        assert_eq!(merged.notes[..2], ["a note", "another"]);
        assert_eq!(merged.notes[2], "merged from 2 reports");
        let c = merged.capture.expect("one report had capture stats");
        assert_eq!((c.connections, c.recorded, c.dropped), (2, 10, 1));
    }

    #[test]
    fn orders_merge_where_they_agree_and_break_cycles_at_the_smallest_name() {
        let merged = |orders: &[&[&str]]| merge_orders(orders.iter().map(|o| o.to_vec()));
        assert_eq!(
            merged(&[&["register", "browse", "pay"], &["browse", "cart", "pay"]]),
            ["register", "browse", "cart", "pay"]
        );
        assert_eq!(merged(&[&["b", "a"]]), ["b", "a"]);
        // z waits for nothing; x and y contradict each other.
        assert_eq!(merged(&[&["y", "x"], &["x", "y"], &["z"]]), ["z", "x", "y"]);
        assert_eq!(
            merged(&[&["b", "a"], &["a", "b"]]),
            merged(&[&["a", "b"], &["b", "a"]])
        );
    }

    #[test]
    fn parse_names_what_is_wrong_and_where() {
        let err = |text: &str| parse("r.json", text).expect_err("refused").to_string();
        assert_eq!(
            err("{\"version\": 2, \"flows\": []}"),
            "r.json: a version 2 report; this flowaudit reads version 1"
        );
        assert_eq!(
            err("[1]"),
            "r.json: not a flowaudit JSON report (no object with a \"version\")"
        );
        assert_eq!(
            err("{\"version\": 1,\n  \"flows\": ["),
            "r.json:2:12: EOF while parsing a list"
        );
        let mut text = super::super::json::render(&report(
            vec![],
            vec![finding("slow-query", Some("00cc"), 1, "slow")],
        ));
        text = text.replace("\"slow-query\"", "\"slowest-query\"");
        let e = err(&text);
        assert!(
            e.starts_with("r.json:") && e.contains("unknown rule id \"slowest-query\""),
            "{e}"
        );
        assert!(matches!(merge(Vec::new()), Err(MergeError::NoReports)));
    }
}
