//! PostgreSQL's csvlog (`log_destination = 'csvlog'`): one CSV record per
//! message, fields quoted with `"` and a quote doubled inside; a quoted field
//! may hold newlines, so a record can span lines. The columns (PostgreSQL 15,
//! "Using CSV-Format Log Output"): log_time, user_name, database_name,
//! process_id, connection_from, session_id, session_line_num, command_tag,
//! session_start_time, virtual_transaction_id, transaction_id, error_severity,
//! sql_state_code, message, detail, hint, internal_query, internal_query_pos,
//! context, query, query_pos, location, application_name, backend_type,
//! leader_pid, query_id.

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
/// A record longer than this is given up (statements are rarely over 1 MB).
const MAX_RECORD: usize = 16 << 20;
/// PostgreSQL 13 and later write at least this many columns.
const MIN_COLUMNS: usize = 23;

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

/// The csvlog reader.
#[derive(Debug, Default)]
pub struct PgCsv {
    sessions: PgSessions,
    record: String,
    first_line: u64,
    quotes: usize,
}

impl PgCsv {
    pub fn new() -> Self {
        Self::default()
    }

    fn dispatch(&mut self, sink: &mut Sink) {
        let record = std::mem::take(&mut self.record);
        self.quotes = 0;
        let f = fields(&record);
        if f.len() < MIN_COLUMNS {
            sink.not_understood("not a csvlog record", self.first_line, &record);
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
        if self.sessions.record(&r, sink) == Understood::UnknownSeverity {
            sink.not_understood("unknown severity", self.first_line, &record);
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
}

impl LineParser for PgCsv {
    fn line(&mut self, line: &str, number: u64, sink: &mut Sink) {
        if self.record.is_empty() {
            if line.is_empty() {
                return;
            }
            self.first_line = number;
        } else {
            self.record.push('\n');
        }
        self.record.push_str(line);
        self.quotes += line.bytes().filter(|&b| b == b'"').count();
        // An even count of quotes: no quoted field is left open.
        if self.quotes.is_multiple_of(2) {
            self.dispatch(sink);
        } else if self.record.len() > MAX_RECORD {
            // A quote left open by a damaged line would swallow the rest of the log.
            let record = std::mem::take(&mut self.record);
            self.quotes = 0;
            sink.not_understood("csvlog record over 16 MB", self.first_line, &record);
        }
    }

    fn finish(&mut self, sink: &mut Sink) {
        if !self.record.is_empty() {
            let record = std::mem::take(&mut self.record);
            sink.not_understood("unterminated csvlog record", self.first_line, &record);
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
