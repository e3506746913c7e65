//! PostgreSQL's jsonlog (`log_destination = 'jsonlog'`, PostgreSQL 15 and
//! later): one JSON object a line; keys as in "Using JSON-Format Log Output":
//! `timestamp`, `pid`, `session_id`, `error_severity`, `state_code`,
//! `message`, `detail`, `statement`, `application_name`, …; absent when empty.

use serde::Deserialize;

use super::pg_session::{PgRecord, PgSessions, Understood, session_key};
use super::{LineParser, Sink};

/// Whether a line is a jsonlog record.
pub fn recognises(line: &str) -> bool {
    let t = line.trim_start();
    t.starts_with('{') && t.contains("\"error_severity\"") && t.contains("\"message\"")
}

#[derive(Debug, Deserialize)]
struct Line<'a> {
    #[serde(borrow, default)]
    timestamp: Option<std::borrow::Cow<'a, str>>,
    #[serde(default)]
    pid: Option<u64>,
    #[serde(borrow, default)]
    session_id: Option<std::borrow::Cow<'a, str>>,
    #[serde(borrow)]
    error_severity: std::borrow::Cow<'a, str>,
    #[serde(borrow, default)]
    state_code: Option<std::borrow::Cow<'a, str>>,
    #[serde(borrow, default)]
    message: std::borrow::Cow<'a, str>,
    #[serde(borrow, default)]
    detail: Option<std::borrow::Cow<'a, str>>,
    #[serde(borrow, default)]
    statement: Option<std::borrow::Cow<'a, str>>,
    #[serde(borrow, default)]
    application_name: Option<std::borrow::Cow<'a, str>>,
}

/// The jsonlog reader.
#[derive(Debug, Default)]
pub struct PgJson {
    sessions: PgSessions,
}

impl PgJson {
    pub fn new() -> Self {
        Self::default()
    }
}

impl LineParser for PgJson {
    fn line(&mut self, line: &str, number: u64, sink: &mut Sink) {
        if line.trim().is_empty() {
            return;
        }
        let Ok(l) = serde_json::from_str::<Line<'_>>(line) else {
            sink.not_understood("not a jsonlog record", number, line);
            return;
        };
        let session = match l.session_id.as_deref() {
            Some(s) if !s.is_empty() => session_key(s),
            _ => l.pid.unwrap_or(0),
        };
        let r = PgRecord {
            ts: l.timestamp.as_deref(),
            session,
            application_name: l.application_name.as_deref(),
            severity: &l.error_severity,
            sqlstate: l.state_code.as_deref(),
            message: &l.message,
            detail: l.detail.as_deref(),
            statement: l.statement.as_deref(),
        };
        if self.sessions.record(&r, sink) == Understood::UnknownSeverity {
            sink.not_understood("unknown severity", number, line);
            return;
        }
        if let Some(detail) = r.detail {
            let d = PgRecord {
                severity: "DETAIL",
                message: detail,
                ..r
            };
            self.sessions.record(&d, sink);
        }
    }

    fn finish(&mut self, sink: &mut Sink) {
        self.sessions.finish(sink);
    }
}
