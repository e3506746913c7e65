//! The JSON Lines trace: one executed statement a line (DESIGN.md, "The trace
//! file"). Reading streams line by line so that a trace of millions of
//! statements never has to fit in memory; a malformed line is an error that
//! names `file:line`, never skipped. A line is held up to
//! [`lines::MAX_LINE`] and no further (issue 15, item 10), and a field whose
//! value means nothing (`"ts": "not a time"`, a negative duration) is an error
//! that names its key (issue 15, item 16).

use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};

use crate::capture::logs::lines;
use crate::model::Event;
use crate::redact::ParamsMode;

#[derive(Debug, thiserror::Error)]
pub enum TraceError {
    #[error("{path}:{line}: {reason}")]
    Malformed {
        path: PathBuf,
        line: u64,
        reason: String,
    },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Streams the events of one trace. Blank lines are allowed (a trailing newline
/// is common); anything else that is not one JSON object with a string `sql` is
/// an error.
#[derive(Debug)]
pub struct TraceReader<R> {
    input: R,
    path: PathBuf,
    line: u64,
    buf: Vec<u8>,
    max_line: usize,
}

impl TraceReader<std::io::BufReader<std::fs::File>> {
    pub fn open(path: &Path) -> Result<Self, TraceError> {
        let file = std::fs::File::open(path).map_err(|source| TraceError::Io {
            path: path.to_owned(),
            source,
        })?;
        Ok(Self::new(
            std::io::BufReader::with_capacity(1 << 16, file),
            path,
        ))
    }
}

impl<R: BufRead> TraceReader<R> {
    pub fn new(input: R, path: &Path) -> Self {
        Self {
            input,
            path: path.to_owned(),
            line: 0,
            buf: Vec::new(),
            max_line: lines::MAX_LINE,
        }
    }

    /// Refuses lines longer than `max` bytes (tests lower the limit).
    pub fn with_max_line(mut self, max: usize) -> Self {
        self.max_line = max;
        self
    }

    /// The line of the event last read (1-based).
    pub fn line(&self) -> u64 {
        self.line
    }

    fn malformed(&self, reason: String) -> TraceError {
        TraceError::Malformed {
            path: self.path.clone(),
            line: self.line,
            reason,
        }
    }
}

impl<R: BufRead> Iterator for TraceReader<R> {
    type Item = Result<Event, TraceError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            self.line += 1;
            let end = match lines::read_line(&mut self.input, &mut self.buf, self.max_line) {
                Ok(Some(end)) => end,
                Ok(None) => return None,
                Err(source) => {
                    return Some(Err(TraceError::Io {
                        path: self.path.clone(),
                        source,
                    }));
                }
            };
            if end.cut {
                return Some(Err(self.malformed(format!(
                    "line longer than {}, the most one trace line may hold",
                    lines::limit_text(self.max_line)
                ))));
            }
            let Ok(text) = std::str::from_utf8(&self.buf) else {
                return Some(Err(self.malformed("not valid UTF-8".into())));
            };
            let text = text.trim();
            if text.is_empty() {
                continue;
            }
            return Some(match serde_json::from_str::<Event>(text) {
                Ok(event) => match event
                    .ts
                    .as_deref()
                    .map(chrono::DateTime::parse_from_rfc3339)
                {
                    Some(Err(_)) => Err(self.malformed(wrong_value(
                        "ts",
                        &serde_json::Value::from(event.ts.unwrap_or_default()),
                        None,
                    ))),
                    _ => Ok(event),
                },
                Err(e) => Err(self.malformed(reason(text, &e))),
            });
        }
    }
}

/// Why serde refused a line, for the user: the key whose value is wrong when
/// one is (each key is read again alone, on this error path only), else
/// serde's cause with its column.
fn reason(text: &str, e: &serde_json::Error) -> String {
    let message = e.to_string();
    if message.contains("missing field `sql`") {
        return "a trace line needs a string field \"sql\"".to_owned();
    }
    match serde_json::from_str::<serde_json::Value>(text) {
        Ok(serde_json::Value::Object(map)) => {
            for (key, value) in &map {
                let mut alone = serde_json::Map::new();
                alone.insert("sql".to_owned(), serde_json::Value::from(""));
                alone.insert(key.clone(), value.clone());
                if let Err(e) = serde_json::from_value::<Event>(alone.into()) {
                    return wrong_value(key, value, Some(&e));
                }
            }
        }
        Ok(_) => return "a trace line is one JSON object".to_owned(),
        Err(_) => {}
    }
    // The line is the file's, not serde's "line 1": keep the column.
    let cause = match message.rsplit_once(" at line ") {
        Some((cause, _)) => format!("{cause} (column {})", e.column()),
        None => message,
    };
    format!("not a trace event: {cause}")
}

/// `key "duration_us" is -5: expected microseconds, an integer ≥ 0`.
fn wrong_value(key: &str, value: &serde_json::Value, e: Option<&serde_json::Error>) -> String {
    let expected = match key {
        "sql" | "flow" | "step" | "source" | "application_name" => "a string",
        "ts" => "an RFC 3339 time, a string such as \"2026-01-02T03:04:05.123Z\"",
        "conn" => "a connection id, an integer ≥ 0",
        "instance" => "an application instance, an integer ≥ 1",
        "rows" => "a row count, an integer ≥ 0",
        "duration_us" | "connect_us" => "microseconds, an integer ≥ 0",
        "txn" => "\"idle\", \"open\" or \"failed\"",
        "params" => "an array of strings, numbers, booleans or nulls",
        "error" => "an object {\"code\": \"SQLSTATE\", \"message\": \"…\"}",
        "cut_by_stop" | "params_dropped" => "true or false",
        _ => "another value",
    };
    let shown = value.to_string();
    let shown = match shown.char_indices().nth(60) {
        Some((i, _)) => format!("{}…", &shown[..i]),
        None => shown,
    };
    let mut out = format!("key \"{key}\" is {shown}: expected {expected}");
    // Inside an array or an object, serde says which element is wrong.
    if let Some(e) = e.filter(|_| matches!(key, "params" | "error")) {
        out.push_str(&format!(" ({e})"));
    }
    out
}

/// Writes events as JSON Lines, passwords hidden and bind values as
/// `--params` asks ([`crate::redact::event`]): every trace flowaudit writes
/// goes through here.
#[derive(Debug)]
pub struct TraceWriter<W: Write> {
    out: W,
    params: ParamsMode,
}

impl<W: Write> TraceWriter<W> {
    pub fn new(out: W) -> Self {
        Self {
            out,
            params: ParamsMode::Keep,
        }
    }

    /// Writes bind values as `params` says.
    pub fn with_params(mut self, params: ParamsMode) -> Self {
        self.params = params;
        self
    }

    pub fn write(&mut self, event: &Event) -> std::io::Result<()> {
        let event = crate::redact::event_ref(event, self.params);
        serde_json::to_writer(&mut self.out, &*event)?;
        self.out.write_all(b"\n")
    }

    pub fn flush(&mut self) -> std::io::Result<()> {
        self.out.flush()
    }

    pub fn into_inner(self) -> W {
        self.out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{SqlError, TxnStatus};

    fn read(text: &str) -> Vec<Result<Event, TraceError>> {
        TraceReader::new(text.as_bytes(), Path::new("t.jsonl")).collect()
    }

    #[test]
    fn round_trips_every_field() {
        let event = Event {
            sql: "select * from users where id = $1".into(),
            params: Some(vec![Some("7".into()), None]),
            ts: Some("2026-01-02T03:04:05.000006Z".into()),
            conn: Some(3),
            flow: Some("checkout".into()),
            step: Some("browse".into()),
            txn: Some(TxnStatus::Open),
            rows: Some(1),
            duration_us: Some(250),
            error: Some(SqlError {
                code: "23505".into(),
                message: "duplicate key".into(),
            }),
            source: Some("proxy".into()),
            application_name: Some("shop".into()),
            connect_us: Some(2100),
            instance: Some(2),
            cut_by_stop: true,
            params_dropped: true,
            txn_unknown: true,
            // In memory only: never written, so 0 comes back.
            hidden_values: 0,
        };
        let mut w = TraceWriter::new(Vec::new());
        w.write(&event).expect("write to a Vec");
        let text = String::from_utf8(w.into_inner()).expect("utf-8");
        assert_eq!(text.lines().count(), 1);
        let back: Vec<_> = read(&text).into_iter().map(|r| r.expect("valid")).collect();
        assert_eq!(back, vec![event]);
    }

    #[test]
    fn only_sql_is_required_and_unknown_fields_are_ignored() {
        let events = read("{\"sql\":\"select 1\",\"custom\":{\"a\":1}}\n\n");
        assert_eq!(events.len(), 1);
        let e = events.into_iter().next().expect("one").expect("valid");
        assert_eq!(e.sql, "select 1");
        assert_eq!(e.params, None);
    }

    #[test]
    fn malformed_line_names_file_and_line() {
        let events = read("{\"sql\":\"select 1\"}\n{\"sql\": 1}\n");
        let err = events[1].as_ref().expect_err("second line is malformed");
        let msg = err.to_string();
        assert!(msg.starts_with("t.jsonl:2: "), "{msg}");

        let events = read("{\"sql\":\"select 1\"}\n\n{\"params\": []}\n");
        let msg = events[1].as_ref().expect_err("missing sql").to_string();
        assert_eq!(msg, "t.jsonl:3: a trace line needs a string field \"sql\"");

        let events = read("{\"sql\":\"select 1\"");
        assert!(events[0].is_err());
    }

    #[test]
    fn invalid_txn_value_is_an_error() {
        let events = read("{\"sql\":\"select 1\",\"txn\":\"maybe\"}\n");
        let msg = events[0].as_ref().expect_err("bad txn").to_string();
        assert_eq!(
            msg,
            "t.jsonl:1: key \"txn\" is \"maybe\": expected \"idle\", \"open\" or \"failed\""
        );
    }

    /// Issue 15, item 16: values that mean nothing name their key.
    #[test]
    fn values_that_mean_nothing_name_their_key() {
        let cases = [
            (
                r#""ts": "not a time""#,
                r#"key "ts" is "not a time": expected an RFC 3339 time"#,
            ),
            (
                r#""ts": "2026-02-30T10:00:00Z""#,
                r#"key "ts" is "2026-02-30T10:00:00Z""#,
            ),
            (
                r#""duration_us": -5"#,
                r#"key "duration_us" is -5: expected microseconds, an integer ≥ 0"#,
            ),
            (r#""rows": 1e3"#, r#"key "rows" is 1000.0"#),
            (r#""sql": null"#, r#"key "sql" is null: expected a string"#),
            (
                r#""params": ["a", {"b": 1}]"#,
                r#"key "params" is ["a",{"b":1}]: expected an array of strings, numbers, booleans or nulls (params[1] is {"b":1}"#,
            ),
            (
                r#""error": {"code": "x", "sqlstate": 1}"#,
                r#"key "error" is {"code":"x","sqlstate":1}: expected an object"#,
            ),
        ];
        for (field, expected) in cases {
            let line = if field.starts_with("\"sql\"") {
                format!("{{{field}}}\n")
            } else {
                format!("{{\"sql\": \"select 1\", {field}}}\n")
            };
            let events = read(&format!("{{\"sql\": \"select 0\"}}\n{line}"));
            let msg = events[1].as_ref().expect_err(field).to_string();
            assert!(msg.starts_with(&format!("t.jsonl:2: {expected}")), "{msg}");
        }
        // Times as the proxy and people write them are fine.
        for ts in ["2026-11-25T10:00:00.001994Z", "2026-11-25T10:00:00+01:00"] {
            let events = read(&format!("{{\"sql\": \"select 1\", \"ts\": \"{ts}\"}}\n"));
            assert!(events[0].is_ok(), "{ts}: {:?}", events[0]);
        }
        let events = read("[1, 2]\n");
        let msg = events[0].as_ref().expect_err("an array").to_string();
        assert_eq!(msg, "t.jsonl:1: a trace line is one JSON object");
    }

    #[test]
    fn a_line_over_the_limit_is_an_error_and_the_next_is_read() {
        let text = format!(
            "{{\"sql\": \"select '{}'\"}}\n{{\"sql\": \"select 2\"}}\n",
            "x".repeat(100)
        );
        let events: Vec<_> = TraceReader::new(text.as_bytes(), Path::new("t.jsonl"))
            .with_max_line(64)
            .collect();
        let msg = events[0].as_ref().expect_err("too long").to_string();
        assert_eq!(
            msg,
            "t.jsonl:1: line longer than 64 bytes, the most one trace line may hold"
        );
        assert_eq!(events[1].as_ref().expect("read").sql, "select 2");
    }
}
