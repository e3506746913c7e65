//! The OpenTelemetry Collector file exporter's output read as a capture
//! source: one `ExportTraceServiceRequest` in OTLP JSON a line (gzip is
//! undone by [`crate::capture::logs::open`]), its spans fed to an
//! [`Assembler`] and its statements handed out with the line each span was
//! read at. A line that is not a request is an error naming `file:line`; a
//! last line without a line end that does not parse is a file still being
//! written, and is counted in the notes instead.

use std::io::BufRead;
use std::path::{Path, PathBuf};

use super::json::ExportTraceServiceRequest;
use super::{Assembler, Options};
use crate::capture::logs::lines;
use crate::model::Event;

#[derive(Debug, thiserror::Error)]
pub enum OtlpError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}:{line}: not an OTLP JSON request (ExportTraceServiceRequest): {message}")]
    Malformed {
        path: String,
        line: u64,
        message: String,
    },
    #[error("{path}:{line}: line longer than {limit}")]
    TooLong {
        path: String,
        line: u64,
        limit: String,
    },
}

/// Streams the statements of an OTLP JSON file.
pub struct OtlpReader {
    input: Box<dyn BufRead>,
    path: PathBuf,
    assembler: Assembler,
    buf: Vec<u8>,
    line: u64,
    max_line: usize,
    done: bool,
    truncated_last_line: bool,
    /// Connections ended with their traces, not yet taken.
    ended: Vec<u64>,
}

impl std::fmt::Debug for OtlpReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OtlpReader")
            .field("path", &self.path)
            .field("line", &self.line)
            .finish_non_exhaustive()
    }
}

impl OtlpReader {
    pub fn new(input: Box<dyn BufRead>, path: &Path, options: Options) -> Self {
        Self {
            input,
            path: path.to_owned(),
            assembler: Assembler::new(options),
            buf: Vec::with_capacity(1 << 16),
            line: 0,
            max_line: lines::MAX_LINE,
            done: false,
            truncated_last_line: false,
            ended: Vec::new(),
        }
    }

    /// What was read, for the report's notes (complete once the reader has
    /// ended).
    pub fn notes(&self, detected: bool) -> Vec<String> {
        let s = self.assembler.stats();
        let path = self.path.display();
        let mut notes = vec![format!(
            "{path}: read as otlp-json{}: {} lines, {} spans, {} database spans, {} statements",
            if detected { " (detected)" } else { "" },
            self.line,
            s.spans,
            s.database_spans,
            s.statements
        )];
        if s.without_text > 0 {
            notes.push(format!(
                "{path}: {} database spans without db.query.text or db.statement (not audited)",
                s.without_text
            ));
        }
        if s.late_spans > 0 {
            notes.push(format!(
                "{path}: {} spans arrived after their trace had been handed out (more than {} \
                 traces found their root in between): audited without the spans around them",
                s.late_spans,
                self.assembler.max_rooted_traces()
            ));
        }
        if s.cursor_fetches_folded > 0 {
            notes.push(format!(
                "{path}: {} asyncpg cursor fetches counted with the statement whose portal they \
                 went on reading",
                s.cursor_fetches_folded
            ));
        }
        if s.traces_unclosed > 0 {
            notes.push(format!(
                "{path}: {} traces whose root span never arrived, attributed by the spans that did",
                s.traces_unclosed
            ));
        }
        if s.traces_evicted > 0 {
            notes.push(format!(
                "{path}: {} traces handed out before their root span arrived, more than {} being \
                 open at once",
                s.traces_evicted,
                self.assembler.max_open_traces()
            ));
        }
        if self.truncated_last_line {
            notes.push(format!(
                "{path}:{}: truncated last line, no line end (not read)",
                self.line
            ));
        }
        notes
    }

    /// A connection that ended with its trace, once every statement of it
    /// has been handed out: the audit can forget it
    /// ([`crate::audit::Audit::connection_closed`]), so that what it keeps
    /// is bounded by the requests still open, not by the whole file.
    pub fn take_closed(&mut self) -> Option<u64> {
        if self.assembler.has_ready() {
            return None;
        }
        if self.ended.is_empty() {
            self.assembler.take_ended(&mut self.ended);
        }
        self.ended.pop()
    }

    fn read_more(&mut self) -> Result<(), OtlpError> {
        let end =
            lines::read_line(&mut self.input, &mut self.buf, self.max_line).map_err(|source| {
                OtlpError::Io {
                    path: self.path.clone(),
                    source,
                }
            })?;
        let Some(end) = end else {
            self.done = true;
            self.assembler.finish();
            return Ok(());
        };
        self.line += 1;
        if end.cut {
            return Err(OtlpError::TooLong {
                path: self.path.display().to_string(),
                line: self.line,
                limit: lines::limit_text(self.max_line),
            });
        }
        if self.buf.iter().all(u8::is_ascii_whitespace) {
            return Ok(());
        }
        match serde_json::from_slice::<ExportTraceServiceRequest>(&self.buf) {
            Ok(request) => {
                for resource_spans in request.resource_spans {
                    self.assembler.push(resource_spans, Some(self.line));
                }
                Ok(())
            }
            Err(_) if !end.newline => {
                self.truncated_last_line = true;
                Ok(())
            }
            Err(e) => Err(OtlpError::Malformed {
                path: self.path.display().to_string(),
                line: self.line,
                message: e.to_string(),
            }),
        }
    }
}

impl Iterator for OtlpReader {
    /// A statement and the line its span was read at.
    type Item = Result<(Event, u64), OtlpError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if let Some((event, line)) = self.assembler.pop() {
                return Some(Ok((event, line.unwrap_or(0))));
            }
            if self.done {
                return None;
            }
            if let Err(e) = self.read_more() {
                self.done = true;
                return Some(Err(e));
            }
        }
    }
}

/// Does this line look like the start of an OTLP JSON file?
pub fn recognises(line: &str) -> bool {
    let t = line.trim_start();
    t.starts_with('{') && (t.contains("\"resourceSpans\"") || t.contains("\"resource_spans\""))
}
