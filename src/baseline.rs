//! Baselines for CI (issue 8): today's per-step statement and query counts,
//! per-fingerprint counts and findings, written with `--write-baseline FILE`
//! and read back with `--baseline FILE`. The file is JSON with sorted keys, one
//! per line, so that a change to it reads well in a diff.
//!
//! With a baseline, `query-count-regression` flags steps whose queries grew,
//! `missing-step` the steps that did not run, findings the baseline already
//! has are marked known (shown, not failing), and what got better (fewer
//! queries, a finding fixed) is listed so the baseline can be tightened
//! (issue 14: a baseline rewards fixes rather than failing them).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::fingerprint::fingerprint;
use crate::model::Finding;
use crate::report::Report;
use crate::report::table::{plural, shorten};
use crate::rules::thousands;

/// The format version this build writes and reads.
pub const VERSION: u32 = 1;

#[derive(Debug, thiserror::Error)]
pub enum BaselineError {
    #[error("cannot read baseline {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("baseline {path} is not a flowaudit baseline: {message}")]
    Invalid { path: PathBuf, message: String },
}

/// A baseline file.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Baseline {
    pub version: u32,
    /// flow → step → counts.
    pub flows: BTreeMap<String, BTreeMap<String, StepBaseline>>,
    /// The findings present when the baseline was written, sorted.
    pub findings: BTreeSet<KnownFinding>,
    /// The file it was read from, for the command that writes it again.
    #[serde(skip)]
    pub path: Option<PathBuf>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StepBaseline {
    /// Statements, markers excluded (the report's `statements`).
    pub statements: u64,
    /// Queries: statements other than transaction control, session settings
    /// and driver housekeeping (the report's `queries`), which
    /// `query-count-regression` judges. Baselines written before issue 14 lack
    /// it; [`Baseline::parse`] counts it from their fingerprints instead, so
    /// that they keep working without being written again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queries: Option<u64>,
    /// Fingerprint hash (16 hex digits) → runs in the step.
    pub fingerprints: BTreeMap<String, FingerprintBaseline>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FingerprintBaseline {
    pub count: u64,
    /// The normalised statement, for the people reading the diff.
    pub fingerprint: String,
}

/// A finding's identity: what must stay equal across runs for a finding to be
/// "the same one" (messages and counts may change).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KnownFinding {
    pub rule: String,
    pub flow: String,
    pub step: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fingerprint_hash: Option<String>,
}

impl KnownFinding {
    pub fn of(f: &Finding) -> Self {
        Self {
            rule: f.rule.to_owned(),
            flow: f.flow.clone(),
            step: f.step.clone(),
            fingerprint_hash: f.fingerprint_hash.clone(),
        }
    }
}

impl Baseline {
    /// The baseline of a finished audit: its counts and its findings.
    pub fn of(report: &Report) -> Self {
        let mut flows: BTreeMap<String, BTreeMap<String, StepBaseline>> = BTreeMap::new();
        for flow in &report.flows {
            let steps = flows.entry(flow.name.clone()).or_default();
            for step in &flow.steps {
                let fingerprints = step
                    .fingerprints
                    .iter()
                    .map(|(hash, c)| {
                        (
                            hash.clone(),
                            FingerprintBaseline {
                                count: c.count,
                                fingerprint: c.text.clone(),
                            },
                        )
                    })
                    .collect();
                steps.insert(
                    step.name.clone(),
                    StepBaseline {
                        statements: step.statements,
                        queries: Some(step.queries),
                        fingerprints,
                    },
                );
            }
        }
        // Regressions and missing steps are judged against the baseline, never
        // stored in it; findings an older baseline knew are findings of this
        // run too.
        let findings = report
            .findings
            .iter()
            .chain(&report.known)
            .filter(|f| !crate::rules::judges_the_baseline(f.rule))
            .map(KnownFinding::of)
            .collect();
        Self {
            version: VERSION,
            flows,
            findings,
            path: None,
        }
    }

    pub fn to_json(&self) -> String {
        // Plain structs with string keys: serialising cannot fail.
        let mut text = serde_json::to_string_pretty(self).unwrap_or_default();
        text.push('\n');
        text
    }

    pub fn parse(path: &Path, text: &str) -> Result<Self, BaselineError> {
        let invalid = |message: String| BaselineError::Invalid {
            path: path.to_owned(),
            message,
        };
        let mut b: Baseline = serde_json::from_str(text).map_err(|e| invalid(e.to_string()))?;
        if b.version != VERSION {
            return Err(invalid(format!(
                "version {} (this flowaudit reads version {VERSION}); write it again with \
                 --write-baseline",
                b.version
            )));
        }
        // Version 1 files from before issue 14 have no `queries`: the same
        // version, one key more, so count them from the fingerprints rather
        // than make every project write its baseline again.
        for step in b.flows.values_mut().flat_map(BTreeMap::values_mut) {
            if step.queries.is_none() {
                step.queries = Some(
                    step.fingerprints
                        .values()
                        .filter(|f| f.is_query())
                        .map(|f| f.count)
                        .sum(),
                );
            }
        }
        Ok(b)
    }

    pub fn load(path: &Path) -> Result<Self, BaselineError> {
        let text = std::fs::read_to_string(path).map_err(|source| BaselineError::Io {
            path: path.to_owned(),
            source,
        })?;
        let mut b = Self::parse(path, &text)?;
        b.path = Some(path.to_owned());
        Ok(b)
    }

    pub fn step(&self, flow: &str, step: &str) -> Option<&StepBaseline> {
        self.flows.get(flow).and_then(|steps| steps.get(step))
    }

    pub fn knows(&self, f: &Finding) -> bool {
        self.findings.contains(&KnownFinding::of(f))
    }

    /// The steps that got better than the baseline or changed without
    /// failing: fewer queries, or as many with other fingerprints (a fix that
    /// swapped the N+1 for a JOIN in a step that also gained a lookup). Each
    /// line lists the queries added and removed; writing the baseline again
    /// records them. Steps whose queries rose are `query-count-regression`'s.
    pub fn improvements(&self, report: &Report) -> Vec<String> {
        let mut lines = Vec::new();
        for flow in &report.flows {
            for step in &flow.steps {
                let Some(base) = self.step(&flow.name, &step.name) else {
                    continue;
                };
                let before = base.queries();
                if step.queries > before {
                    continue;
                }
                let now = step
                    .fingerprints
                    .iter()
                    .filter(|(_, c)| c.query)
                    .map(|(hash, c)| (hash.clone(), c.text.as_str(), c.count));
                let changes = changes(base, now);
                let mut line = format!("{} › {}: ", flow.name, step.name);
                if step.queries < before {
                    line.push_str(&format!(
                        "{}, the baseline has {} (−{})",
                        plural(step.queries, "query", "queries"),
                        thousands(before),
                        thousands(before - step.queries)
                    ));
                } else if !changes.is_empty() {
                    line.push_str(&format!(
                        "{}, as the baseline, by other statements",
                        plural(step.queries, "query", "queries")
                    ));
                } else {
                    continue;
                }
                if !changes.is_empty() {
                    line.push_str(": ");
                    line.push_str(&changes);
                }
                lines.push(line);
            }
        }
        lines
    }

    /// The findings of the baseline that this run no longer has, in the
    /// steps it ran (a step that did not run is `missing-step`'s), each as
    /// `rule · flow › step (fingerprint)`.
    pub fn fixed(&self, report: &Report) -> Vec<String> {
        // The steps that ran, looked up once per known finding rather than
        // searched for each.
        let ran: BTreeSet<(&str, &str)> = report
            .flows
            .iter()
            .flat_map(|f| f.steps.iter().map(|s| (f.name.as_str(), s.name.as_str())))
            .collect();
        let ran = |flow: &str, step: &str| ran.contains(&(flow, step));
        let now: BTreeSet<KnownFinding> = report
            .findings
            .iter()
            .chain(&report.known)
            .chain(report.allowed.iter().map(|a| &a.finding))
            .map(KnownFinding::of)
            .collect();
        self.findings
            .iter()
            .filter(|k| ran(&k.flow, &k.step) && !now.contains(k))
            .map(|k| {
                let text = k.fingerprint_hash.as_ref().and_then(|h| {
                    let step = self.step(&k.flow, &k.step)?;
                    Some(step.fingerprints.get(h)?.fingerprint.clone())
                });
                let mut line = format!("fixed: {} · {} › {}", k.rule, k.flow, k.step);
                if let Some(text) = text {
                    line.push_str(&format!(" ({text})"));
                }
                line
            })
            .collect()
    }
}

/// How much of a fingerprint's text a change shows.
const CHANGE_TEXT: usize = 120;

/// The queries a step added and removed against its baseline, by fingerprint
/// with their counts, the largest first: `+1× select … = any(?); −8× select
/// inventory.stock …`. `now` is the step's queries as (hash, text, runs);
/// the baseline's statements that are not queries are left out.
pub fn changes<'a>(
    base: &StepBaseline,
    now: impl IntoIterator<Item = (String, &'a str, u64)>,
) -> String {
    let mut added: Vec<(u64, String)> = Vec::new();
    let mut removed: Vec<(u64, String)> = Vec::new();
    let mut seen = BTreeSet::new();
    for (hash, text, count) in now {
        let before = base.fingerprints.get(&hash).map_or(0, |b| b.count);
        if count > before {
            added.push((count - before, text.to_owned()));
        } else if count < before {
            removed.push((before - count, text.to_owned()));
        }
        seen.insert(hash);
    }
    for (hash, b) in &base.fingerprints {
        if !seen.contains(hash) && b.is_query() {
            removed.push((b.count, b.fingerprint.clone()));
        }
    }
    // Largest first, then by text: deterministic.
    let order = |a: &(u64, String), b: &(u64, String)| b.0.cmp(&a.0).then_with(|| a.1.cmp(&b.1));
    added.sort_by(order);
    removed.sort_by(order);
    let shown = |sign: char, (n, text): (u64, String)| {
        format!("{sign}{}× {}", thousands(n), shorten(&text, CHANGE_TEXT))
    };
    added
        .into_iter()
        .map(|c| shown('+', c))
        .chain(removed.into_iter().map(|c| shown('−', c)))
        .collect::<Vec<_>>()
        .join("; ")
}

impl StepBaseline {
    /// The step's queries (see [`StepBaseline::queries`]'s field).
    pub fn queries(&self) -> u64 {
        self.queries.unwrap_or(self.statements)
    }
}

impl FingerprintBaseline {
    /// Whether the statement is a query: its kind, from its normalised text
    /// (normalising a fingerprint again keeps its leading keywords).
    pub fn is_query(&self) -> bool {
        !fingerprint(&self.fingerprint).kind.is_bookkeeping()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_other_versions_and_unknown_keys() {
        let p = Path::new("b.json");
        let e = Baseline::parse(p, r#"{"version": 2, "flows": {}, "findings": []}"#)
            .expect_err("version 2");
        assert!(e.to_string().contains("b.json"), "{e}");
        assert!(e.to_string().contains("version 2"), "{e}");
        let e = Baseline::parse(p, r#"{"version": 1, "flows": {}, "findings": [], "x": 1}"#)
            .expect_err("unknown key");
        assert!(e.to_string().contains("unknown field `x`"), "{e}");
        let e = Baseline::parse(p, "not json").expect_err("not json");
        assert!(e.to_string().contains("line 1"), "{e}");
    }

    #[test]
    fn round_trips_through_json() {
        let mut b = Baseline {
            version: VERSION,
            ..Baseline::default()
        };
        b.flows.entry("shop".into()).or_default().insert(
            "browse".into(),
            StepBaseline {
                statements: 3,
                queries: Some(2),
                fingerprints: [(
                    "00000000000000ff".to_owned(),
                    FingerprintBaseline {
                        count: 2,
                        fingerprint: "select ?".into(),
                    },
                )]
                .into(),
            },
        );
        b.findings.insert(KnownFinding {
            rule: "n-plus-one".into(),
            flow: "shop".into(),
            step: "browse".into(),
            fingerprint_hash: Some("00000000000000ff".into()),
        });
        let text = b.to_json();
        assert_eq!(Baseline::parse(Path::new("b"), &text).expect("valid"), b);
    }

    #[test]
    fn counts_queries_of_a_baseline_written_without_them() {
        let text = r#"{"version": 1, "findings": [], "flows": {"shop": {"pay": {
            "statements": 6,
            "fingerprints": {
                "01": {"count": 1, "fingerprint": "begin"},
                "02": {"count": 2, "fingerprint": "insert into orders (id) values (?)"},
                "03": {"count": 1, "fingerprint": "savepoint sp1"},
                "04": {"count": 1, "fingerprint": "set search_path = ?"},
                "05": {"count": 1, "fingerprint": "commit"},
                "06": {"count": 1, "fingerprint": "deallocate all"}
            }}}}}"#;
        let b = Baseline::parse(Path::new("old.json"), text).expect("a version 1 file");
        assert_eq!(b.step("shop", "pay").map(StepBaseline::queries), Some(2));
    }
}
