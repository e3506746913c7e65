//! SARIF 2.1.0 for code scanning (OASIS SARIF v2.1.0, section 3). Every rule
//! of the catalogue is described with its documentation as help text; each
//! finding is a result whose `partialFingerprints` come from the stable
//! fingerprint hash (section 3.27.17), so code scanning tracks a finding
//! across runs. Validated with `sarif-multitool validate` in `.ci/run`.

use serde::Serialize;
use xxhash_rust::xxh3::Xxh3;

use super::Report;
use crate::model::{Finding, Severity};
use crate::rules::REGISTRY;

const SCHEMA: &str = "https://json.schemastore.org/sarif-2.1.0.json";

/// The key of our partial fingerprint; bump the version if what it hashes changes.
pub const FINGERPRINT_KEY: &str = "flowauditFinding/v1";

#[derive(Serialize)]
struct Log {
    #[serde(rename = "$schema")]
    schema: &'static str,
    version: &'static str,
    runs: Vec<Run>,
}

#[derive(Serialize)]
struct Run {
    tool: Tool,
    results: Vec<SarifResult>,
}

#[derive(Serialize)]
struct Tool {
    driver: Driver,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Driver {
    name: &'static str,
    version: &'static str,
    rules: Vec<Descriptor>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Descriptor {
    id: &'static str,
    name: String,
    short_description: Text,
    full_description: Text,
    help: Help,
    default_configuration: Configuration,
}

#[derive(Serialize)]
struct Text {
    text: String,
}

#[derive(Serialize)]
struct Help {
    text: String,
    markdown: String,
}

#[derive(Serialize)]
struct Configuration {
    level: &'static str,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct SarifResult {
    rule_id: &'static str,
    rule_index: usize,
    level: &'static str,
    message: Text,
    locations: Vec<Location>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    related_locations: Vec<Location>,
    partial_fingerprints: std::collections::BTreeMap<&'static str, String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    baseline_state: Option<&'static str>,
    properties: Properties,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Location {
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    physical_location: Option<PhysicalLocation>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    logical_locations: Vec<LogicalLocation>,
    #[serde(skip_serializing_if = "Option::is_none")]
    message: Option<Text>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct PhysicalLocation {
    artifact_location: ArtifactLocation,
    /// Absent when the line is not known: no made-up line 1.
    #[serde(skip_serializing_if = "Option::is_none")]
    region: Option<Region>,
}

impl PhysicalLocation {
    fn new(path: &str, line: Option<u64>) -> Self {
        PhysicalLocation {
            artifact_location: ArtifactLocation { uri: uri(path) },
            region: line
                .filter(|l| *l > 0)
                .map(|start_line| Region { start_line }),
        }
    }
}

#[derive(Serialize)]
struct ArtifactLocation {
    uri: String,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Region {
    start_line: u64,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct LogicalLocation {
    name: String,
    fully_qualified_name: String,
    kind: &'static str,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Properties {
    flow: String,
    step: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    fingerprint: Option<String>,
    count: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    framework: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    db_driver: Option<String>,
}

pub fn render(report: &Report) -> String {
    // A finding the statements do not place points at the (first) input,
    // without a line; with no input file at all (a live capture), nowhere.
    let input = report.inputs.first().map(String::as_str);
    let with_baseline = !report.known.is_empty()
        || report
            .flows
            .iter()
            .flat_map(|f| &f.steps)
            .any(|s| s.baseline_statements.is_some());
    let mut results: Vec<SarifResult> = report
        .findings
        .iter()
        .map(|f| result(f, input, with_baseline.then_some("new")))
        .collect();
    results.extend(
        report
            .known
            .iter()
            .map(|f| result(f, input, Some("unchanged"))),
    );
    let rules = REGISTRY
        .iter()
        .map(|m| {
            let doc = m.documentation();
            Descriptor {
                id: m.id,
                name: pascal(m.id),
                short_description: Text {
                    text: m.summary.to_owned(),
                },
                full_description: Text {
                    text: m.summary.to_owned(),
                },
                help: Help {
                    text: doc.clone(),
                    markdown: doc,
                },
                default_configuration: Configuration {
                    level: level(m.default_severity),
                },
            }
        })
        .collect();
    let log = Log {
        schema: SCHEMA,
        version: "2.1.0",
        runs: vec![Run {
            tool: Tool {
                driver: Driver {
                    name: "flowaudit",
                    version: env!("CARGO_PKG_VERSION"),
                    rules,
                },
            },
            results,
        }],
    };
    // Plain structs with string keys: serialising cannot fail.
    let mut text = serde_json::to_string_pretty(&log).unwrap_or_default();
    text.push('\n');
    text
}

fn result(f: &Finding, input: Option<&str>, baseline_state: Option<&'static str>) -> SarifResult {
    let rule_index = REGISTRY.iter().position(|m| m.id == f.rule).unwrap_or(0);
    let mut message = f.message.clone();
    if let Some(fp) = &f.fingerprint {
        message = format!("{message}: {fp}");
    }
    let none = crate::model::Location::default();
    let at = f.location.as_ref().unwrap_or(&none);
    // Where the statement was read, when a line there is known.
    let read_at = at
        .input
        .as_deref()
        .map(|path| PhysicalLocation::new(path, at.input_line));
    // The code the statement's tags name (section 3.29); else where it was
    // read; else the input file as a whole.
    let (physical, related) = match (&at.file, read_at) {
        (Some(file), read_at) => (Some(PhysicalLocation::new(file, at.line)), read_at),
        (None, Some(read_at)) => (Some(read_at), None),
        (None, None) => (input.map(|path| PhysicalLocation::new(path, None)), None),
    };
    // Logical locations (section 3.33): the handler and route the tags name,
    // then the flow and step the statement was attributed to.
    let mut logical = Vec::new();
    if let Some(action) = &at.action {
        logical.push(LogicalLocation {
            name: action
                .rsplit_once('#')
                .map_or(action.as_str(), |(_, a)| a)
                .to_owned(),
            fully_qualified_name: action.clone(),
            kind: "function",
        });
    }
    if let Some(route) = &at.route {
        logical.push(LogicalLocation {
            name: route.clone(),
            fully_qualified_name: route.clone(),
            kind: "resource",
        });
    }
    logical.push(LogicalLocation {
        name: f.step.clone(),
        fully_qualified_name: format!("{}/{}", f.flow, f.step),
        kind: "function",
    });
    SarifResult {
        rule_id: f.rule,
        rule_index,
        level: level(f.severity),
        message: Text {
            text: format!("{} › {}: {message}. Fix: {}", f.flow, f.step, f.help),
        },
        locations: vec![Location {
            id: None,
            physical_location: physical,
            logical_locations: logical,
            message: None,
        }],
        related_locations: related
            .map(|p| Location {
                id: Some(1),
                physical_location: Some(p),
                logical_locations: Vec::new(),
                message: Some(Text {
                    text: "the first example statement, where it was read".to_owned(),
                }),
            })
            .into_iter()
            .collect(),
        partial_fingerprints: [(FINGERPRINT_KEY, identity(f))].into(),
        baseline_state,
        properties: Properties {
            flow: f.flow.clone(),
            step: f.step.clone(),
            fingerprint: f.fingerprint.clone(),
            count: f.count,
            framework: at.framework.clone(),
            db_driver: at.db_driver.clone(),
        },
    }
}

/// A finding's identity across runs: rule, flow, step and the stable
/// fingerprint hash (never the message, whose counts change), as xxh3-64 hex.
pub fn identity(f: &Finding) -> String {
    let mut h = Xxh3::new();
    for part in [
        f.rule,
        &f.flow,
        &f.step,
        f.fingerprint_hash.as_deref().unwrap_or(""),
    ] {
        h.update(&(part.len() as u64).to_le_bytes());
        h.update(part.as_bytes());
    }
    format!("{:016x}", h.digest())
}

fn level(s: Severity) -> &'static str {
    match s {
        Severity::Error => "error",
        Severity::Warning => "warning",
        Severity::Info => "note",
    }
}

/// `n-plus-one` → `NPlusOne`, the rule's `name` (section 3.49.7).
fn pascal(id: &str) -> String {
    id.split('-')
        .map(|w| {
            let mut c = w.chars();
            c.next()
                .map(|f| f.to_ascii_uppercase().to_string() + c.as_str())
                .unwrap_or_default()
        })
        .collect()
}

/// A path as a URI reference: relative paths stay relative (to the checkout,
/// as code scanning expects); absolute ones become `file://` URIs.
fn uri(path: &str) -> String {
    let encoded: String = path
        .chars()
        .map(|c| match c {
            ' ' => "%20".to_owned(),
            '%' => "%25".to_owned(),
            '#' => "%23".to_owned(),
            '?' => "%3F".to_owned(),
            '\\' => "/".to_owned(),
            c => c.to_string(),
        })
        .collect();
    if encoded.starts_with('/') {
        format!("file://{encoded}")
    } else {
        encoded
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn names_and_uris() {
        assert_eq!(super::pascal("n-plus-one"), "NPlusOne");
        assert_eq!(super::uri("/tmp/a b.jsonl"), "file:///tmp/a%20b.jsonl");
        assert_eq!(super::uri("traces/x.jsonl"), "traces/x.jsonl");
    }
}
