//! PostgreSQL's csvlog (`log_destination = 'csvlog'`): one CSV record per
//! message, fields quoted with `"` and a quote doubled inside; a quoted field
//! may hold newlines, so a record can span lines. The columns (PostgreSQL 15,
//! "Using CSV-Format Log Output"): log_time, user_name, database_name,
//! process_id, connection_from, session_id, session_line_num, command_tag,
//! session_start_time, virtual_transaction_id, transaction_id, error_severity,
//! sql_state_code, message, detail, hint, internal_query, internal_query_pos,
//! context, query, query_pos, location, application_name, backend_type,
//! leader_pid, query_id.

use std::borrow::Cow;

use super::lines::limit_text;
use super::pg_session::{PgRecord, PgSessions, Understood, session_key};
use super::{LineParser, Sink};

const LOG_TIME: usize = 0;
const PROCESS_ID: usize = 3;
const SESSION_ID: usize = 5;
const SEVERITY: usize = 11;
const SQL_STATE: usize = 12;
const MESSAGE: usize = 13;
const DETAIL: usize = 14;
const QUERY: usize = 19;
const APPLICATION_NAME: usize = 22;
/// PostgreSQL 12 writes 23 columns, 13 writes 24, 14 and later 26; a few more
/// are allowed for versions to come. More than that, and the record has run
/// into the next ones: a quote was left open.
const MIN_COLUMNS: usize = 23;
const MAX_COLUMNS: usize = 40;

/// Whether a line is the start of a csvlog record.
pub fn recognises(line: &str) -> bool {
    let b = line.as_bytes();
    b.len() > 30
        && b[..4].iter().all(u8::is_ascii_digit)
        && b[4] == b'-'
        && b[10] == b' '
        && line.find(',').is_some_and(|i| i < 40)
        && [
            ",LOG,",
            ",ERROR,",
            ",FATAL,",
            ",WARNING,",
            ",NOTICE,",
            ",INFO,",
            ",PANIC,",
        ]
        .iter()
        .any(|s| line.contains(s))
}

/// Whether a line can start a record: it opens with the log time,
/// `YYYY-MM-DD HH:MM:SS.mmm TZ`, and its first comma follows soon after.
/// A record always does; other lines are the continuation of a quoted field
/// or not csvlog at all.
pub fn starts_record(line: &str) -> bool {
    let b = line.as_bytes();
    let digits = |from: usize, to: usize| b[from..to].iter().all(u8::is_ascii_digit);
    b.len() > 20
        && digits(0, 4)
        && b[4] == b'-'
        && digits(5, 7)
        && b[7] == b'-'
        && digits(8, 10)
        && b[10] == b' '
        && digits(11, 13)
        && b[13] == b':'
        && digits(14, 16)
        && b[16] == b':'
        && digits(17, 19)
        && b[19..].iter().take(40).any(|&c| c == b',')
}

/// Splits one CSV record into its fields, unquoting them.
fn fields(record: &str) -> Vec<String> {
    let mut out = Vec::with_capacity(26);
    let mut cur = String::new();
    let mut chars = record.chars().peekable();
    let mut quoted = false;
    while let Some(c) = chars.next() {
        match c {
            '"' if quoted => {
                if chars.peek() == Some(&'"') {
                    cur.push('"');
                    chars.next();
                } else {
                    quoted = false;
                }
            }
            '"' => quoted = true,
            ',' if !quoted => out.push(std::mem::take(&mut cur)),
            c => cur.push(c),
        }
    }
    out.push(cur);
    out
}

/// Why a record being read is given up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum GiveUp {
    /// It ended (no quote open) but is not a csvlog record.
    Malformed,
    /// It ran past the last column: a quote was left open.
    TooManyFields,
    /// It grew past the limit.
    TooLong,
    /// The log ended inside it.
    AtEnd,
    /// One of its lines was over the limit and not read.
    LongLine,
}

/// Lines to read again after a record was given up: from the first line after
/// its start that starts a record, to the line that gave it up.
#[derive(Debug)]
struct Again {
    text: String,
    /// Where the next line starts in `text`.
    pos: usize,
    /// That line's number.
    number: u64,
}

/// The csvlog reader.
///
/// A quoted field may hold newlines, so a record is read line by line until
/// no quote is open. A quote left open by a damaged line would swallow every
/// record after it (issue 15, item 11). So a record over several lines is
/// given up when a line inside it is a whole record of its own (starts with
/// a log time, balances its quotes, has the log's columns), when it runs past
/// the last column or ends with other columns than the records on one line,
/// when it grows past the limit, or when the log ends inside it: it is
/// reported with its `file:line`, and reading starts again at the first line
/// after its start that starts a record. A statement whose string literal
/// holds whole csvlog lines would be taken for damage; nothing else in a
/// quoted field looks like a record of the log's columns.
#[derive(Debug)]
pub struct PgCsv {
    sessions: PgSessions,
    /// The record being read: its lines so far, joined by newlines; empty
    /// between records (a record's first line is never empty).
    record: String,
    first_line: u64,
    /// A quoted field is open at the end of the record so far.
    quoted: bool,
    /// Its fields so far: the commas outside quotes, plus one.
    fields: usize,
    /// The columns of the latest record on one line (0 before the first):
    /// a server writes the same number in every record.
    columns: usize,
    /// The most a record may hold.
    max: usize,
}

impl PgCsv {
    pub fn new(max: usize) -> Self {
        Self {
            sessions: PgSessions::default(),
            record: String::new(),
            first_line: 0,
            quoted: false,
            fields: 0,
            columns: 0,
            max,
        }
    }

    /// Reads one line; returns the lines to read again when it made the
    /// record being read give up.
    fn push(&mut self, line: &str, number: u64, sink: &mut Sink) -> Option<Again> {
        if self.record.is_empty() {
            if line.is_empty() {
                return None;
            }
            if !starts_record(line) {
                sink.not_understood("not a csvlog record", number, line);
                return None;
            }
            self.first_line = number;
            self.quoted = false;
            self.fields = 1;
        } else if self.record.len() + 1 + line.len() > self.max {
            return self.give_up(GiveUp::TooLong, Some((line, number)), sink);
        } else if starts_record(line) && self.whole_record(line) {
            // A whole record of its own inside a quoted field: the field was
            // left open by damage, and this record is the log going on.
            return self.give_up(GiveUp::TooManyFields, Some((line, number)), sink);
        } else {
            self.record.push('\n');
        }
        self.record.push_str(line);
        scan(line, &mut self.quoted, &mut self.fields);
        if self.fields > MAX_COLUMNS {
            return self.give_up(GiveUp::TooManyFields, None, sink);
        }
        if self.quoted {
            return None;
        }
        if number == self.first_line {
            if self.fields < MIN_COLUMNS {
                return self.give_up(GiveUp::Malformed, None, sink);
            }
            self.columns = self.fields;
        } else if self.fields != self.columns && self.columns != 0
            || !(MIN_COLUMNS..=MAX_COLUMNS).contains(&self.fields)
        {
            // Over several lines, and not the columns of the records around
            // it: a quote was left open and another closed it further on.
            return self.give_up(GiveUp::Malformed, None, sink);
        }
        dispatch(&mut self.sessions, &self.record, self.first_line, sink);
        self.record.clear();
        None
    }

    /// Whether a line is a record on its own: quotes balanced, and the
    /// columns of the log's records.
    fn whole_record(&self, line: &str) -> bool {
        let (mut quoted, mut fields) = (false, 1);
        scan(line, &mut quoted, &mut fields);
        !quoted
            && if self.columns == 0 {
                (MIN_COLUMNS..=MAX_COLUMNS).contains(&fields)
            } else {
                fields == self.columns
            }
    }

    /// Reports the record being read, and returns what to read again: the
    /// lines after its start from the first that starts a record, then
    /// `extra` (the line that made it give up, not part of it yet).
    fn give_up(
        &mut self,
        why: GiveUp,
        extra: Option<(&str, u64)>,
        sink: &mut Sink,
    ) -> Option<Again> {
        let record = std::mem::take(&mut self.record);
        let mut again = None;
        let mut number = self.first_line;
        let mut pos = record.find('\n').map(|i| i + 1);
        while let Some(at) = pos {
            number += 1;
            let rest = &record[at..];
            let end = rest.find('\n');
            if starts_record(&rest[..end.unwrap_or(rest.len())]) {
                again = Some((at, number));
                break;
            }
            pos = end.map(|i| at + i + 1);
        }
        let kind: Cow<'static, str> = match why {
            GiveUp::LongLine => format!(
                "csvlog record with a line longer than {}",
                limit_text(self.max)
            )
            .into(),
            GiveUp::TooManyFields => "csvlog record with an unbalanced quote".into(),
            _ if again.is_some() => "csvlog record with an unbalanced quote".into(),
            GiveUp::Malformed => "not a csvlog record".into(),
            GiveUp::TooLong => format!("csvlog record longer than {}", limit_text(self.max)).into(),
            GiveUp::AtEnd => "unterminated csvlog record".into(),
        };
        sink.not_understood(kind, self.first_line, &record);
        let mut text = match again {
            Some((at, n)) => {
                number = n;
                record[at..].to_owned()
            }
            None => String::new(),
        };
        if let Some((line, n)) = extra {
            if text.is_empty() {
                number = n;
            } else {
                text.push('\n');
            }
            text.push_str(line);
        }
        (again.is_some() || extra.is_some()).then_some(Again {
            text,
            pos: 0,
            number,
        })
    }

    /// Reads lines again after a record was given up. A record given up
    /// while they are read puts its own lines to read again before the rest;
    /// each give-up drops at least its first line, so this ends.
    fn read_again(&mut self, again: Again, sink: &mut Sink) {
        let mut stack = vec![again];
        while let Some(top) = stack.last_mut() {
            if top.pos > top.text.len() {
                stack.pop();
                continue;
            }
            let rest = &top.text[top.pos..];
            let (line, next) = match rest.find('\n') {
                Some(i) => (&rest[..i], top.pos + i + 1),
                None => (rest, top.text.len() + 1),
            };
            let number = top.number;
            top.pos = next;
            top.number += 1;
            if let Some(more) = self.push(line, number, sink) {
                stack.push(more);
            }
        }
    }
}

/// Follows the quotes and counts the fields of one more line of a record.
fn scan(line: &str, quoted: &mut bool, fields: &mut usize) {
    let b = line.as_bytes();
    for i in memchr::memchr2_iter(b'"', b',', b) {
        if b[i] == b'"' {
            *quoted = !*quoted;
        } else if !*quoted {
            *fields += 1;
        }
    }
}

/// One whole record: its statement, duration, error or DETAIL to the sessions.
fn dispatch(sessions: &mut PgSessions, record: &str, first_line: u64, sink: &mut Sink) {
    let f = fields(record);
    if f.len() < MIN_COLUMNS {
        sink.not_understood("not a csvlog record", first_line, record);
        return;
    }
    let opt = |i: usize| Some(f[i].as_str()).filter(|s| !s.is_empty());
    let session = match opt(SESSION_ID) {
        Some(s) => session_key(s),
        None => f[PROCESS_ID].parse().unwrap_or(0),
    };
    let r = PgRecord {
        ts: opt(LOG_TIME),
        session,
        application_name: opt(APPLICATION_NAME),
        severity: &f[SEVERITY],
        sqlstate: opt(SQL_STATE),
        message: &f[MESSAGE],
        detail: opt(DETAIL),
        statement: opt(QUERY),
    };
    if sessions.record(&r, sink) == Understood::UnknownSeverity {
        sink.not_understood("unknown severity", first_line, record);
        return;
    }
    if let Some(detail) = r.detail {
        let d = PgRecord {
            severity: "DETAIL",
            message: detail,
            ..r
        };
        sessions.record(&d, sink);
    }
}

impl LineParser for PgCsv {
    fn line(&mut self, line: &str, number: u64, sink: &mut Sink) {
        if let Some(again) = self.push(line, number, sink) {
            self.read_again(again, sink);
        }
    }

    fn cut_line(&mut self, _head: &str, _number: u64, sink: &mut Sink) {
        // The record loses a line: where its quotes stand is unknown.
        if !self.record.is_empty()
            && let Some(again) = self.give_up(GiveUp::LongLine, None, sink)
        {
            self.read_again(again, sink);
        }
    }

    fn finish(&mut self, sink: &mut Sink) {
        while !self.record.is_empty() {
            if let Some(again) = self.give_up(GiveUp::AtEnd, None, sink) {
                self.read_again(again, sink);
            }
        }
        self.sessions.finish(sink);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoted_fields_with_commas_quotes_and_newlines() {
        assert_eq!(
            fields("a,\"b,c\",\"say \"\"hi\"\"\",,\"x\ny\""),
            ["a", "b,c", "say \"hi\"", "", "x\ny"]
        );
    }

    #[test]
    fn recognises_records_not_other_lines() {
        assert!(recognises(
            "2026-11-25 14:54:35.877 UTC,\"postgres\",\"postgres\",12240,\"[local]\",6b06f6ab.2fd0,1,\"idle\",2026-11-25 14:54:35 UTC,3/2,0,LOG,00000,\"statement: select 1\",,,,,,,,,\"psql\",\"client backend\",,0"
        ));
        assert!(!recognises(
            "2026-11-25 14:54:35.877 UTC [1] LOG:  statement: a,LOG,b"
        ));
    }

    fn read(text: &str) -> (Vec<String>, crate::capture::logs::LogSummary) {
        let (events, summary) = crate::capture::logs::read_str(
            text,
            crate::capture::logs::LogFormat::PgCsv,
            &crate::capture::logs::LogOptions::default(),
        )
        .expect("reads");
        (events.into_iter().map(|e| e.sql).collect(), summary)
    }

    fn statement(n: u32, sql: &str) -> String {
        format!(
            "2026-11-25 14:54:35.877 UTC,\"u\",\"d\",7,\"[local]\",6b06f6ab.7,{n},\"idle\",\
             2026-11-25 14:54:35 UTC,3/2,0,LOG,00000,\"statement: {sql}\",,,,,,,,,\"app\",\
             \"client backend\",,0\n"
        )
    }

    /// Issue 15, item 11: a quote left open costs its record, reported at
    /// its line; the records after it are read.
    #[test]
    fn an_unbalanced_quote_costs_its_record_alone() {
        let records: Vec<String> = (1..=5)
            .map(|n| statement(n, &format!("select {n}")))
            .collect();
        for damaged in 1..=5 {
            let mut text = String::new();
            for (i, r) in records.iter().enumerate() {
                if i + 1 == damaged {
                    text.push_str(&r.replacen("select", "sel\"ect", 1));
                } else {
                    text.push_str(r);
                }
            }
            let (sql, summary) = read(&text);
            let expected: Vec<String> = (1..=5)
                .filter(|&n| n != damaged)
                .map(|n| format!("select {n}"))
                .collect();
            assert_eq!(sql, expected, "{summary:?}");
            let kind = if damaged == 5 {
                "unterminated csvlog record"
            } else {
                "csvlog record with an unbalanced quote"
            };
            let n = &summary.not_understood[kind];
            assert_eq!(
                (n.count, n.at.as_str()),
                (1, &*format!("test.log:{damaged}"))
            );
        }
    }

    /// A quoted field over several lines, one of them starting like a
    /// record, is one record.
    #[test]
    fn a_field_over_lines_that_look_like_records_is_one_record() {
        let sql = "select '\n2026-11-25 14:54:35.877 UTC,a,b\n2026-11-25 14:54:35.877 UTC,\"\"x\"\",LOG,'";
        let text = statement(1, sql) + &statement(2, "select 2");
        let (got, summary) = read(&text);
        assert_eq!(got, [sql.replace("\"\"", "\""), "select 2".into()]);
        assert_eq!(summary.not_understood_lines(), 0, "{summary:?}");
    }

    #[test]
    fn an_error_names_its_statement_even_when_another_is_pending() {
        let rec = |n: u32, sev: &str, code: &str, msg: &str, query: &str| {
            format!(
                "2026-11-25 14:54:35.877 UTC,\"u\",\"d\",7,\"[local]\",6b06f6ab.7,{n},\"idle\",\
                 2026-11-25 14:54:35 UTC,3/2,0,{sev},{code},\"{msg}\",,,,,,{query},,,\"app\",\
                 \"client backend\",,0\n"
            )
        };
        let text = rec(1, "LOG", "00000", "statement: insert into t values (1)", "")
            + &rec(2, "ERROR", "42601", "syntax error", "\"selec 2\"");
        let (events, summary) = crate::capture::logs::read_str(
            &text,
            crate::capture::logs::LogFormat::PgCsv,
            &crate::capture::logs::LogOptions::default(),
        )
        .expect("reads");
        assert_eq!(summary.not_understood_lines(), 0, "{summary:?}");
        let got: Vec<_> = events
            .iter()
            .map(|e| (e.sql.as_str(), e.error.as_ref().map(|x| x.code.as_str())))
            .collect();
        assert_eq!(
            got,
            vec![
                ("insert into t values (1)", None),
                ("selec 2", Some("42601"))
            ]
        );
        assert_eq!(events[1].application_name.as_deref(), Some("app"));
    }
}
