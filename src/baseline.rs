//! Baselines for CI (issue 8): today's per-step statement counts, per-fingerprint
//! counts and findings, written with `--write-baseline FILE` and read back with
//! `--baseline FILE`. The file is JSON with sorted keys, one per line, so that
//! a change to it reads well in a diff.
//!
//! With a baseline, `query-count-regression` flags counts that grew, findings
//! the baseline already has are marked known (shown, not failing), and counts
//! that dropped are listed so the baseline can be tightened.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::model::Finding;
use crate::report::Report;

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
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StepBaseline {
    /// Statements, markers excluded (the report's `statements`).
    pub statements: u64,
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
                        fingerprints,
                    },
                );
            }
        }
        // Regressions are judged against the baseline, never stored in it;
        // findings an older baseline knew are findings of this run too.
        let findings = report
            .findings
            .iter()
            .chain(&report.known)
            .filter(|f| f.rule != crate::rules::QUERY_COUNT_REGRESSION)
            .map(KnownFinding::of)
            .collect();
        Self {
            version: VERSION,
            flows,
            findings,
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
        let b: Baseline = serde_json::from_str(text).map_err(|e| invalid(e.to_string()))?;
        if b.version != VERSION {
            return Err(invalid(format!(
                "version {} (this flowaudit reads version {VERSION}); write it again with \
                 --write-baseline",
                b.version
            )));
        }
        Ok(b)
    }

    pub fn load(path: &Path) -> Result<Self, BaselineError> {
        let text = std::fs::read_to_string(path).map_err(|source| BaselineError::Io {
            path: path.to_owned(),
            source,
        })?;
        Self::parse(path, &text)
    }

    pub fn step(&self, flow: &str, step: &str) -> Option<&StepBaseline> {
        self.flows.get(flow).and_then(|steps| steps.get(step))
    }

    pub fn knows(&self, f: &Finding) -> bool {
        self.findings.contains(&KnownFinding::of(f))
    }

    /// Where the run needed fewer statements than the baseline records: the
    /// baseline can be tightened there (write it again).
    pub fn drops(&self, report: &Report) -> Vec<String> {
        let mut notes = Vec::new();
        for flow in &report.flows {
            for step in &flow.steps {
                let Some(base) = self.step(&flow.name, &step.name) else {
                    continue;
                };
                if step.statements < base.statements {
                    notes.push(format!(
                        "{} › {}: {} statements, the baseline allows {}",
                        flow.name, step.name, step.statements, base.statements
                    ));
                }
                for (hash, b) in &base.fingerprints {
                    let now = step.fingerprints.get(hash).map_or(0, |c| c.count);
                    if now < b.count {
                        notes.push(format!(
                            "{} › {}: {} ran {now}×, the baseline allows {} ({hash})",
                            flow.name, step.name, b.fingerprint, b.count
                        ));
                    }
                }
            }
        }
        notes
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
}
