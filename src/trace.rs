//! The JSON Lines trace: one executed statement a line (DESIGN.md, "The trace
//! file"). Reading streams line by line so that a trace of millions of
//! statements never has to fit in memory; a malformed line is an error that
//! names `file:line`, never skipped.

use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};

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
    buf: String,
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
            buf: String::new(),
        }
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
            self.buf.clear();
            self.line += 1;
            match self.input.read_line(&mut self.buf) {
                Ok(0) => return None,
                Ok(_) => {}
                Err(source) => {
                    let err = if source.kind() == std::io::ErrorKind::InvalidData {
                        self.malformed("not valid UTF-8".into())
                    } else {
                        TraceError::Io {
                            path: self.path.clone(),
                            source,
                        }
                    };
                    return Some(Err(err));
                }
            }
            let text = self.buf.trim();
            if text.is_empty() {
                continue;
            }
            return Some(serde_json::from_str::<Event>(text).map_err(|e| {
                let text = e.to_string();
                let reason = if text.contains("missing field `sql`") {
                    "a trace line needs a string field \"sql\"".to_owned()
                } else {
                    // The line is the file's, not serde's "line 1": keep the column.
                    let cause = match text.rsplit_once(" at line ") {
                        Some((cause, _)) => format!("{cause} (column {})", e.column()),
                        None => text,
                    };
                    format!("not a trace event: {cause}")
                };
                self.malformed(reason)
            }));
        }
    }
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
            cut_by_stop: true,
            params_dropped: true,
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
        assert!(msg.contains("unknown variant `maybe`"), "{msg}");
    }
}
