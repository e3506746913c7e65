//! Server logs as a capture source: PostgreSQL's stderr, csvlog and jsonlog
//! output and the MySQL/MariaDB general query log, read line by line into
//! [`Event`]s for the streaming audit.
//!
//! Each format has its own file; the three PostgreSQL formats share what their
//! messages mean (`statement:`, `duration:`, `execute`, `DETAIL:  parameters:`,
//! `ERROR:` … `STATEMENT:`) in [`pg_session`]. This module opens a file (gzip
//! transparently), detects its format from a sample of its first lines, streams
//! it, and keeps the [`LogSummary`]: lines read, statements found, and each
//! kind of line not understood with its first example and `file:line`. A line
//! not understood never stops the run; a file in none of the formats does.
//!
//! Every reader holds at most [`lines::MAX_LINE`] of one line, and as much of
//! one statement or record made of several lines (issue 15, item 10): a longer
//! one is reported as not understood, and reading goes on after it.

pub mod lines;
pub mod mysql_general;
pub mod mysql_session;
pub mod pg_csv;
pub mod pg_json;
pub mod pg_session;
pub mod pg_stderr;

use std::borrow::Cow;
use std::collections::{BTreeMap, VecDeque};
use std::fmt::Write as _;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

use crate::model::Event;
use crate::redact::Syntax;

pub use mysql_session::MysqlSession;

/// The formats `analyze` reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum LogFormat {
    PgStderr,
    PgCsv,
    PgJson,
    MysqlGeneral,
    /// OpenTelemetry traces in OTLP JSON (the Collector's file exporter),
    /// read by [`crate::capture::otlp::reader`].
    OtlpJson,
    /// flowaudit's own trace (JSON Lines), read by [`crate::trace`].
    Jsonl,
}

impl LogFormat {
    pub const ALL: [LogFormat; 6] = [
        LogFormat::PgStderr,
        LogFormat::PgCsv,
        LogFormat::PgJson,
        LogFormat::MysqlGeneral,
        LogFormat::OtlpJson,
        LogFormat::Jsonl,
    ];

    pub fn name(self) -> &'static str {
        match self {
            LogFormat::PgStderr => "pg-stderr",
            LogFormat::PgCsv => "pg-csv",
            LogFormat::PgJson => "pg-json",
            LogFormat::MysqlGeneral => "mysql-general",
            LogFormat::OtlpJson => "otlp-json",
            LogFormat::Jsonl => "jsonl",
        }
    }
}

impl std::fmt::Display for LogFormat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// How to read the logs.
#[derive(Debug, Clone)]
pub struct LogOptions {
    /// PostgreSQL's `log_line_prefix`, for the stderr format.
    pub log_line_prefix: String,
    /// The most one line, or one statement or record over several lines, may
    /// hold: [`lines::MAX_LINE`] (tests lower it).
    pub max_line: usize,
}

/// Debian's and most distributions' `log_line_prefix`.
pub const DEFAULT_LOG_LINE_PREFIX: &str = "%m [%p] %q%u@%d ";

impl Default for LogOptions {
    fn default() -> Self {
        Self {
            log_line_prefix: DEFAULT_LOG_LINE_PREFIX.to_owned(),
            max_line: lines::MAX_LINE,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum LogError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: not in any format flowaudit reads (tried {tried}); first line: {first:?}")]
    UnknownFormat {
        path: PathBuf,
        tried: String,
        first: String,
    },
    #[error("{0}")]
    Prefix(String),
}

/// One kind of line not understood.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotUnderstood {
    pub count: u64,
    /// The first such line (cut to 120 characters).
    pub example: String,
    /// Its `file:line`.
    pub at: String,
}

/// What reading one log found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogSummary {
    pub path: PathBuf,
    pub format: LogFormat,
    /// Whether the format was detected (`--input auto`) rather than given.
    pub detected: bool,
    pub lines: u64,
    pub statements: u64,
    /// Kind → count, first example and where.
    pub not_understood: BTreeMap<Cow<'static, str>, NotUnderstood>,
    /// Remarks about the log as a whole (a prefix without a connection id, …).
    pub remarks: Vec<String>,
}

impl LogSummary {
    fn new(path: &Path, format: LogFormat, detected: bool) -> Self {
        Self {
            path: path.to_owned(),
            format,
            detected,
            lines: 0,
            statements: 0,
            not_understood: BTreeMap::new(),
            remarks: Vec::new(),
        }
    }

    pub fn not_understood_lines(&self) -> u64 {
        self.not_understood.values().map(|n| n.count).sum()
    }

    /// The report notes that describe this log: the format and how it was
    /// chosen, the counts, then one note per kind of line not understood.
    pub fn notes(&self) -> Vec<String> {
        let how = if self.detected {
            "detected"
        } else {
            "given with --input"
        };
        let mut first = format!(
            "{}: read as {} ({how}): {}, {}, {} not understood",
            self.path.display(),
            self.format,
            crate::rules::plural(self.lines, "line", "lines"),
            crate::rules::plural(self.statements, "statement", "statements"),
            self.not_understood_lines()
        );
        for r in &self.remarks {
            let _ = write!(first, "; {r}");
        }
        if self.statements == 0 {
            let setting = match self.format {
                LogFormat::MysqlGeneral => "general_log = ON",
                _ => "log_min_duration_statement = 0 or log_statement = 'all'",
            };
            let _ = write!(
                first,
                "; no statement was logged: the server logs them with {setting} (README, \"Server logs\")"
            );
        }
        let mut notes = vec![first];
        for (kind, n) in &self.not_understood {
            notes.push(format!(
                "{}: {} not understood ({kind}), first at {}: {}",
                self.path.display(),
                crate::rules::plural(n.count, "line", "lines"),
                n.at,
                n.example
            ));
        }
        notes
    }
}

/// What a format's parser writes to: events ready for the audit, and the
/// summary's counts.
#[derive(Debug)]
pub struct Sink {
    pub events: VecDeque<Event>,
    /// Connections the log saw end, each with the number of events emitted
    /// before its end: (events, connection).
    closed: VecDeque<(u64, u64)>,
    emitted: u64,
    pub summary: LogSummary,
    display: String,
}

impl Sink {
    fn new(summary: LogSummary) -> Self {
        Self {
            events: VecDeque::new(),
            closed: VecDeque::new(),
            emitted: 0,
            display: summary.path.display().to_string(),
            summary,
        }
    }

    /// A statement found.
    pub fn emit(&mut self, event: Event) {
        self.summary.statements += 1;
        self.emitted += 1;
        self.events.push_back(event);
    }

    /// Connection `conn` ended (a disconnection, a Quit): every event of it
    /// has been emitted. The audit then drops what it kept for it.
    pub fn closed(&mut self, conn: u64) {
        self.closed.push_back((self.emitted, conn));
    }

    /// A line not understood, of a kind; the first of each kind is kept.
    pub fn not_understood(&mut self, kind: impl Into<Cow<'static, str>>, line: u64, text: &str) {
        let entry = self
            .summary
            .not_understood
            .entry(kind.into())
            .or_insert_with(|| NotUnderstood {
                count: 0,
                example: cut(
                    &crate::redact::sql(text, Syntax::of_log(self.summary.format)),
                    120,
                ),
                at: format!("{}:{line}", self.display),
            });
        entry.count += 1;
    }

    pub fn remark(&mut self, text: String) {
        if !self.summary.remarks.contains(&text) {
            self.summary.remarks.push(text);
        }
    }
}

/// Where `needle` first occurs in `hay`, as `str::find` says. The readers
/// look for short separators (`@`, `: `, ` = `) once or more per line, where
/// the standard library's substring search spends more setting up than
/// searching; `memchr` on the first byte is what they need.
pub fn find(hay: &str, needle: &str) -> Option<usize> {
    let h = hay.as_bytes();
    let Some((&first, rest)) = needle.as_bytes().split_first() else {
        return Some(0);
    };
    let mut from = 0;
    while let Some(i) = memchr::memchr(first, &h[from..]) {
        let at = from + i;
        // `first` begins a character (a str's first byte does), so `at` is
        // a character boundary of `hay`.
        if h[at + 1..].starts_with(rest) {
            return Some(at);
        }
        from = at + 1;
    }
    None
}

/// [`find`] as `str::split_once` with a string pattern.
pub fn split_once<'a>(hay: &'a str, needle: &str) -> Option<(&'a str, &'a str)> {
    find(hay, needle).map(|at| (&hay[..at], &hay[at + needle.len()..]))
}

/// A line's text: borrowed when it is valid UTF-8, which a log's lines all
/// but always are (the check is much cheaper than the lossy conversion's).
fn text(line: &[u8]) -> Cow<'_, str> {
    match std::str::from_utf8(line) {
        Ok(text) => Cow::Borrowed(text),
        Err(_) => String::from_utf8_lossy(line),
    }
}

fn cut(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((i, _)) => format!("{}…", &text[..i]),
        None => text.to_owned(),
    }
}

/// A format's reader: fed whole lines (without their line ending), in order.
pub trait LineParser {
    fn line(&mut self, line: &str, number: u64, sink: &mut Sink);
    /// A line over the limit, which the reader reported and skipped: `head` is
    /// its start. A statement it continued, or that it starts, is not read.
    fn cut_line(&mut self, head: &str, number: u64, sink: &mut Sink) {
        let _ = (head, number, sink);
    }
    /// The end of the input: release what is still pending.
    fn finish(&mut self, sink: &mut Sink);
}

/// Opens a file for reading, through gzip when it starts with gzip's magic
/// bytes. `wrap` may wrap the raw file (a progress bar counting its bytes).
pub fn open(
    path: &Path,
    wrap: impl FnOnce(std::fs::File) -> Box<dyn Read>,
) -> Result<Box<dyn BufRead>, LogError> {
    let io = |source| LogError::Io {
        path: path.to_owned(),
        source,
    };
    let mut file = std::fs::File::open(path).map_err(io)?;
    let mut magic = [0u8; 2];
    let gz = matches!(read_up_to(&mut file, &mut magic), Ok(2)) && magic == [0x1f, 0x8b];
    std::io::Seek::rewind(&mut file).map_err(io)?;
    let raw = wrap(file);
    Ok(if gz {
        Box::new(BufReader::with_capacity(
            1 << 16,
            flate2::read::MultiGzDecoder::new(raw),
        ))
    } else {
        // Large reads: fewer system calls, and fewer lines that cross the
        // buffer's end (those are copied; the others are read in place).
        Box::new(BufReader::with_capacity(1 << 18, raw))
    })
}

fn read_up_to(r: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..])? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
}

/// How many lines of the start of a file detection looks at.
const SAMPLE_LINES: usize = 200;
/// How much of each of them: the formats show at the start of a line.
const SAMPLE_LINE_BYTES: usize = 16 << 10;
/// Detection stops after this much of the sample is held, or after this much
/// of the file is read (a file of a few enormous lines).
const SAMPLE_HELD: usize = 1 << 20;
const SAMPLE_READ: u64 = 64 << 20;

/// Detects a file's format from its first lines: each format scores the lines
/// it recognises as its own, and the best score wins (a tie goes to the
/// earlier format in [`LogFormat::ALL`]). No line recognised is an error that
/// names the formats tried. The sample is bounded in lines, in bytes held and
/// in bytes read, so that a file without newlines costs little to look at.
pub fn detect(path: &Path, options: &LogOptions) -> Result<LogFormat, LogError> {
    let mut input = open(path, |f| Box::new(f))?.take(SAMPLE_READ);
    let mut lines = Vec::new();
    let mut buf = Vec::new();
    let mut held = 0;
    while lines.len() < SAMPLE_LINES && held < SAMPLE_HELD {
        let end = lines::read_line(&mut input, &mut buf, SAMPLE_LINE_BYTES).map_err(|source| {
            LogError::Io {
                path: path.to_owned(),
                source,
            }
        })?;
        if end.is_none() {
            break;
        }
        held += buf.len();
        lines.push(String::from_utf8_lossy(&buf).into_owned());
    }
    let prefix = pg_stderr::Prefix::parse(&options.log_line_prefix).map_err(LogError::Prefix)?;
    let mut best = (0usize, LogFormat::Jsonl);
    for format in LogFormat::ALL {
        let score = lines
            .iter()
            .filter(|l| match format {
                LogFormat::PgStderr => prefix.recognises(l),
                LogFormat::PgCsv => pg_csv::recognises(l),
                LogFormat::PgJson => pg_json::recognises(l),
                LogFormat::MysqlGeneral => mysql_general::recognises(l),
                LogFormat::OtlpJson => crate::capture::otlp::reader::recognises(l),
                LogFormat::Jsonl => looks_like_trace(l),
            })
            .count();
        if score > best.0 {
            best = (score, format);
        }
    }
    if best.0 > 0 {
        return Ok(best.1);
    }
    if lines.iter().all(|l| l.trim().is_empty()) {
        // An empty file is an empty trace: nothing to audit, nothing wrong.
        return Ok(LogFormat::Jsonl);
    }
    Err(LogError::UnknownFormat {
        path: path.to_owned(),
        tried: format!(
            "pg-stderr with --log-line-prefix '{}', pg-csv, pg-json, mysql-general, otlp-json, \
             jsonl",
            options.log_line_prefix
        ),
        first: cut(
            &crate::redact::sql(
                lines
                    .iter()
                    .find(|l| !l.trim().is_empty())
                    .map_or("", |l| l),
                Syntax::Either,
            ),
            120,
        ),
    })
}

fn looks_like_trace(line: &str) -> bool {
    let t = line.trim_start();
    t.starts_with('{') && t.contains("\"sql\"")
}

/// How much of a line over the limit its reader is shown.
const CUT_HEAD: usize = 4 << 10;

/// Streams the events of one server log.
pub struct LogReader {
    input: Box<dyn BufRead>,
    parser: Box<dyn LineParser>,
    sink: Sink,
    buf: Vec<u8>,
    line: u64,
    done: bool,
    path: PathBuf,
    max_line: usize,
    /// Events handed out so far.
    returned: u64,
}

impl std::fmt::Debug for LogReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogReader")
            .field("path", &self.path)
            .field("line", &self.line)
            .finish_non_exhaustive()
    }
}

impl LogReader {
    /// A reader for a server log in `format` (not [`LogFormat::Jsonl`],
    /// which [`crate::trace::TraceReader`] reads, nor [`LogFormat::OtlpJson`],
    /// which [`crate::capture::otlp::reader::OtlpReader`] reads).
    pub fn new(
        input: Box<dyn BufRead>,
        path: &Path,
        format: LogFormat,
        detected: bool,
        options: &LogOptions,
    ) -> Result<Self, LogError> {
        let parser: Box<dyn LineParser> = match format {
            LogFormat::PgStderr => Box::new(pg_stderr::PgStderr::new(
                pg_stderr::Prefix::parse(&options.log_line_prefix).map_err(LogError::Prefix)?,
                options.max_line,
            )),
            LogFormat::PgCsv => Box::new(pg_csv::PgCsv::new(options.max_line)),
            LogFormat::PgJson => Box::new(pg_json::PgJson::new()),
            LogFormat::MysqlGeneral => Box::new(mysql_general::MysqlGeneral::new(options.max_line)),
            LogFormat::Jsonl => unreachable!("traces are read by trace::TraceReader"),
            LogFormat::OtlpJson => unreachable!("OTLP JSON is read by otlp::reader::OtlpReader"),
        };
        let mut sink = Sink::new(LogSummary::new(path, format, detected));
        if format == LogFormat::PgStderr
            && !options.log_line_prefix.contains("%p")
            && !options.log_line_prefix.contains("%c")
        {
            sink.remark(
                "the log_line_prefix has neither %p nor %c, so all statements count as one \
                 connection"
                    .to_owned(),
            );
        }
        Ok(Self {
            input,
            parser,
            sink,
            buf: Vec::with_capacity(1 << 12),
            line: 0,
            done: false,
            path: path.to_owned(),
            max_line: options.max_line,
            returned: 0,
        })
    }

    /// A connection that ended before the events handed out so far went
    /// on, if any: its statements have all been handed out.
    pub fn take_closed(&mut self) -> Option<u64> {
        match self.sink.closed.front() {
            Some(&(before, conn)) if before <= self.returned => {
                self.sink.closed.pop_front();
                Some(conn)
            }
            _ => None,
        }
    }

    /// The summary so far (complete once the iterator has ended).
    pub fn summary(&self) -> &LogSummary {
        &self.sink.summary
    }

    fn read_more(&mut self) -> Result<(), LogError> {
        // A line whole in the input's buffer is read where it lies; one that
        // crosses the buffer's end, or an error, takes the general path.
        if let Ok(chunk) = self.input.fill_buf()
            && let Some(len) = memchr::memchr(b'\n', chunk)
            && len <= self.max_line
        {
            let line = match chunk[..len].split_last() {
                Some((b'\r', before)) => before,
                _ => &chunk[..len],
            };
            self.line += 1;
            self.sink.summary.lines += 1;
            self.parser.line(&text(line), self.line, &mut self.sink);
            self.input.consume(len + 1);
            return Ok(());
        }
        let end =
            lines::read_line(&mut self.input, &mut self.buf, self.max_line).map_err(|source| {
                LogError::Io {
                    path: self.path.clone(),
                    source,
                }
            })?;
        let Some(end) = end else {
            self.done = true;
            self.parser.finish(&mut self.sink);
            return Ok(());
        };
        self.line += 1;
        self.sink.summary.lines += 1;
        if end.cut {
            // Its start is enough to say what it was.
            let head = &self.buf[..self.buf.len().min(CUT_HEAD)];
            let head = String::from_utf8_lossy(head);
            let kind = format!("line longer than {}", lines::limit_text(self.max_line));
            self.sink.not_understood(kind, self.line, &head);
            self.parser.cut_line(&head, self.line, &mut self.sink);
            return Ok(());
        }
        let text = text(&self.buf);
        if end.newline {
            self.parser.line(&text, self.line, &mut self.sink);
        } else if !text.trim().is_empty() {
            // A server still writing, or a file cut short: the last line may be
            // half a statement, so it is counted, not read.
            self.sink
                .not_understood("truncated last line, no line end", self.line, &text);
        }
        Ok(())
    }
}

impl Iterator for LogReader {
    type Item = Result<Event, LogError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if let Some(e) = self.sink.events.pop_front() {
                self.returned += 1;
                return Some(Ok(e));
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

/// Reads a whole log held in memory (tests).
pub fn read_str(
    text: &str,
    format: LogFormat,
    options: &LogOptions,
) -> Result<(Vec<Event>, LogSummary), LogError> {
    let input: Box<dyn BufRead> = Box::new(std::io::Cursor::new(text.as_bytes().to_vec()));
    let mut reader = LogReader::new(input, Path::new("test.log"), format, false, options)?;
    let events = reader.by_ref().collect::<Result<Vec<_>, _>>()?;
    Ok((events, reader.summary().clone()))
}

/// The first word of a statement, comments and blanks skipped, in lower case
/// (ASCII): `begin`, `commit`, … (for deriving the transaction status).
pub fn first_word(sql: &str) -> String {
    after_comments(sql)
        .bytes()
        .take_while(|b| b.is_ascii_alphabetic())
        .map(|b| b.to_ascii_lowercase() as char)
        .collect()
}

/// The statement from its first token on: leading blanks and comments skipped.
pub fn after_comments(sql: &str) -> &str {
    let mut s = sql.trim_start();
    loop {
        if let Some(rest) = s.strip_prefix("/*") {
            s = rest.find("*/").map_or("", |i| &rest[i + 2..]).trim_start();
        } else if let Some(rest) = s.strip_prefix("--") {
            s = rest.find('\n').map_or("", |i| &rest[i + 1..]).trim_start();
        } else {
            break;
        }
    }
    s
}

/// Transaction status after a statement, from its first words.
pub fn next_txn(sql: &str, before: crate::model::TxnStatus) -> crate::model::TxnStatus {
    use crate::model::TxnStatus;
    // The first word compared in place: this runs once per statement, and
    // most statements are not transaction control.
    let rest = after_comments(sql).as_bytes();
    let word = &rest[..rest.iter().take_while(|b| b.is_ascii_alphabetic()).count()];
    let is = |w: &str| word.eq_ignore_ascii_case(w.as_bytes());
    if is("begin") || is("start") {
        TxnStatus::Open
    } else if is("commit") || is("end") || is("abort") {
        TxnStatus::Idle
    } else if is("rollback") {
        let lower = sql.to_ascii_lowercase();
        let mut words = lower
            .split(|c: char| !c.is_ascii_alphanumeric() && c != '_')
            .filter(|w| !w.is_empty());
        words.next();
        match (words.next(), words.next()) {
            (Some("to"), _) | (Some("work" | "transaction"), Some("to")) => {
                // ROLLBACK TO SAVEPOINT leaves the transaction open and usable.
                if before == TxnStatus::Failed {
                    TxnStatus::Open
                } else {
                    before
                }
            }
            _ => TxnStatus::Idle,
        }
    } else {
        before
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::TxnStatus;

    #[test]
    fn first_words_and_transaction_status() {
        assert_eq!(first_word("  /* x */ -- y\n BEGIN;"), "begin");
        assert_eq!(next_txn("BEGIN", TxnStatus::Idle), TxnStatus::Open);
        assert_eq!(next_txn("select 1", TxnStatus::Open), TxnStatus::Open);
        assert_eq!(next_txn("commit", TxnStatus::Failed), TxnStatus::Idle);
        assert_eq!(
            next_txn("rollback to savepoint a", TxnStatus::Failed),
            TxnStatus::Open
        );
        assert_eq!(next_txn("ROLLBACK", TxnStatus::Failed), TxnStatus::Idle);
    }

    #[test]
    fn find_agrees_with_str_find() {
        for hay in [
            "",
            "a",
            "a@b",
            "x = 1, $2 = 'é = '",
            "éé: : x",
            "  ms ms",
            "aab",
        ] {
            for needle in ["", "@", " = ", ": ", ", $", " ms", "ab", "é", "zz"] {
                assert_eq!(find(hay, needle), hay.find(needle), "{hay:?} {needle:?}");
                assert_eq!(
                    split_once(hay, needle),
                    hay.split_once(needle),
                    "{hay:?} {needle:?}"
                );
            }
        }
    }

    #[test]
    fn summary_notes_name_format_counts_and_first_examples() {
        let mut sink = Sink::new(LogSummary::new(
            Path::new("pg.log"),
            LogFormat::PgStderr,
            true,
        ));
        sink.summary.lines = 3;
        sink.summary.statements = 1;
        sink.not_understood("no log_line_prefix match", 2, "garbage");
        sink.not_understood("no log_line_prefix match", 3, "more");
        let notes = sink.summary.notes();
        assert_eq!(
            notes,
            [
                "pg.log: read as pg-stderr (detected): 3 lines, 1 statement, 2 not understood",
                "pg.log: 2 lines not understood (no log_line_prefix match), first at pg.log:2: \
                 garbage"
            ]
        );
    }
}
