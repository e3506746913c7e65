//! The data every stage shares: an executed statement ([`Event`]), where it came
//! from, and what the rules say about it ([`Finding`]). No I/O lives here.

use serde::{Deserialize, Serialize};

/// Transaction status of the session when a statement started, as a Postgres
/// ReadyForQuery reports it (protocol 3.0, section 55.7: `I`, `T`, `E`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TxnStatus {
    Idle,
    Open,
    Failed,
}

/// A statement that failed: its SQLSTATE and the server's message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SqlError {
    #[serde(default)]
    pub code: String,
    #[serde(default)]
    pub message: String,
}

/// One executed statement. Every capture source produces this type, so no rule
/// knows where its events came from. Only `sql` is required; see DESIGN.md
/// "The trace file" for the meaning of each field.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    pub sql: String,
    /// Bind values in text form, in order; `None` inside the list is SQL NULL.
    /// Numbers and booleans written by hand are read as their text.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "params_as_text"
    )]
    pub params: Option<Vec<Option<String>>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ts: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conn: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub flow: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub txn: Option<TxnStatus>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rows: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_us: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<SqlError>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// The session's `application_name`, when the source knew it; the fourth
    /// rule of attribution.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub application_name: Option<String>,
    /// On a connection's first statement: how long opening the connection took
    /// (TCP connect, authentication, session start), when the source saw it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connect_us: Option<u64>,
    /// Which instance of the application sent it, when several run at once
    /// (`flowaudit run --race STEP --race-instances N`: 1 to N, as its
    /// `FLOWAUDIT_INSTANCE`). Markers are scoped by it: a connection that
    /// never set its own step follows the latest marker of its instance,
    /// not of the whole run (issue 19).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance: Option<u64>,
    /// The statement was still running when the proxy was stopped, and the
    /// stop cut it off (recorded with SQLSTATE 08006): its duration is the
    /// time up to the stop, and its connection and transaction ended with
    /// the proxy, not by the application (issue 13, defect 11).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub cut_by_stop: bool,
    /// The statement had bind values and `--params drop` removed them: the
    /// rules take its values as unknown, never equal to another's (issue 15).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub params_dropped: bool,
    /// The source cannot see where this statement's transaction began or
    /// ended: the OpenTelemetry instrumentations of Python's DB-API drivers
    /// record no span for the BEGIN the driver sends itself, nor for
    /// `commit()`. A statement there may be in a transaction or in
    /// autocommit, so the rules that judge transactions leave it alone
    /// ([`crate::rules::RuleMeta::judges_transactions`]) and the report
    /// says how many they left.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub txn_unknown: bool,
    /// In memory only, never written: a keyed hash of the passwords
    /// [`crate::redact`] hid from `sql` (0: none), so that the rules that
    /// compare values still tell two passwords apart.
    #[serde(skip)]
    pub hidden_values: u64,
}

/// Reads `params`: an array of strings (or nulls), taking numbers and booleans
/// as their text form, since hand-written traces often have them.
fn params_as_text<'de, D>(d: D) -> Result<Option<Vec<Option<String>>>, D::Error>
where
    D: serde::Deserializer<'de>,
{
    let raw: Option<Vec<serde_json::Value>> = Option::deserialize(d)?;
    let Some(raw) = raw else { return Ok(None) };
    raw.into_iter()
        .enumerate()
        .map(|(i, v)| match v {
            serde_json::Value::Null => Ok(None),
            serde_json::Value::String(s) => Ok(Some(s)),
            serde_json::Value::Number(n) => Ok(Some(n.to_string())),
            serde_json::Value::Bool(b) => Ok(Some(b.to_string())),
            other => Err(serde::de::Error::custom(format!(
                "params[{i}] is {other}: bind values are strings, numbers, booleans or null"
            ))),
        })
        .collect::<Result<Vec<_>, _>>()
        .map(Some)
}

/// How serious a finding is. Ordered so that `Error > Warning > Info`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Info,
    Warning,
    Error,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Warning => "warning",
            Severity::Error => "error",
        }
    }
}

/// Read from its name alone, with an error that lists the names (a derived
/// enum's says "unit variant" of `severity = 3`).
impl<'de> Deserialize<'de> for Severity {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Name;
        impl serde::de::Visitor<'_> for Name {
            type Value = Severity;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("one of \"error\", \"warning\", \"info\"")
            }
            fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<Severity, E> {
                match text {
                    "error" => Ok(Severity::Error),
                    "warning" => Ok(Severity::Warning),
                    "info" => Ok(Severity::Info),
                    _ => Err(E::invalid_value(serde::de::Unexpected::Str(text), &self)),
                }
            }
        }
        d.deserialize_str(Name)
    }
}

impl std::fmt::Display for Severity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Flow and step a statement belongs to.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct StepKey {
    pub flow: String,
    pub step: String,
}

/// The name used when nothing attributes a statement.
pub const UNATTRIBUTED: &str = "(unattributed)";

/// A rule's id, one of the registry's own strings. (An alias, so that
/// serde's derive does not take the field for one borrowed from the input.)
pub type RuleId = &'static str;

/// What a rule reports. Findings are sorted by (flow, step, rule, fingerprint)
/// before anyone sees them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Finding {
    /// A [`crate::rules::REGISTRY`] id; reading a report back refuses any other.
    #[serde(deserialize_with = "crate::rules::registered_id")]
    pub rule: RuleId,
    pub severity: Severity,
    pub flow: String,
    pub step: String,
    pub message: String,
    /// The normalised statement the finding is about, when there is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fingerprint: Option<String>,
    /// Stable hash of `fingerprint` (xxh3-64, hex), for baselines.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fingerprint_hash: Option<String>,
    pub count: u64,
    pub examples: Vec<String>,
    pub help: String,
    /// Where the finding points: the code its first example came from, as
    /// far as that statement's tags tell, and where it was read. Filled in
    /// by the audit after the rules finish; absent when nothing is known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub location: Option<Location>,
    /// Fingerprint hash of the statement that drove the one it is about (an
    /// N+1's source query), for the HTML report's timeline; not part of the
    /// JSON report.
    #[serde(skip)]
    pub driver: Option<String>,
}

/// Where an event was read: which of the audit's inputs, and its line there
/// when the reader knows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Origin {
    pub input: usize,
    pub line: Option<u64>,
}

/// Where a statement came from (issue 14): the code its sqlcommenter (or
/// Rails `query_log_tags`) tags name, and the trace or log it was read from.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Location {
    /// The source file the tags name (`file`, or `source_location`'s path).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
    /// Its line (`line`, or `source_location`'s line).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub line: Option<u64>,
    /// `controller#action` (or either alone) from the tags.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub action: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub route: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub framework: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub db_driver: Option<String>,
    /// The trace or log file the statement was read from.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub input: Option<String>,
    /// Its line in that file, when the reader knows it (a JSON Lines
    /// trace does; the server-log readers and the live proxy do not).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub input_line: Option<u64>,
}

impl Location {
    /// The code the tags name, for one line of a report: `file:line`, the
    /// action and the route, as far as they are known.
    pub fn code(&self) -> Option<String> {
        let mut parts = Vec::new();
        if let Some(file) = &self.file {
            parts.push(match self.line {
                Some(line) => format!("{file}:{line}"),
                None => file.clone(),
            });
        }
        let logical: Vec<&str> = [&self.action, &self.route]
            .into_iter()
            .flatten()
            .map(String::as_str)
            .collect();
        if !logical.is_empty() {
            let logical = logical.join(" ");
            parts.push(if parts.is_empty() {
                logical
            } else {
                format!("({logical})")
            });
        }
        (!parts.is_empty()).then(|| parts.join(" "))
    }

    /// What a report shows after "at": the code when the tags name it, and
    /// the input file and line the statement was read from unless the tags
    /// name a file.
    pub fn short(&self) -> Option<String> {
        let read_at = self.input.as_ref().map(|input| match self.input_line {
            Some(line) => format!("{input}:{line}"),
            None => input.clone(),
        });
        match (self.code(), read_at) {
            (Some(code), Some(read_at)) if self.file.is_none() => {
                Some(format!("{code} ({read_at})"))
            }
            (Some(code), _) => Some(code),
            (None, read_at) => read_at,
        }
    }
}

impl Finding {
    /// The order every report uses.
    pub fn sort_key(&self) -> (&str, &str, &str, &str, &str) {
        (
            &self.flow,
            &self.step,
            self.rule,
            self.fingerprint.as_deref().unwrap_or(""),
            &self.message,
        )
    }
}
