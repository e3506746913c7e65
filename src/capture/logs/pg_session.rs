//! What PostgreSQL's log messages mean, whichever format carried them: the
//! statements of `log_statement = 'all'` and `log_min_duration_statement = 0`,
//! their durations, bind parameters and errors, per session.
//!
//! The messages (PostgreSQL 15, src/backend/tcop/postgres.c):
//!
//! - `statement: SQL` (simple query, log_statement), later `duration: D ms`;
//! - `duration: D ms  statement: SQL` (log_min_duration_statement alone);
//! - `execute NAME: SQL` or `duration: D ms  execute NAME: SQL` (extended
//!   protocol), followed by `DETAIL:  parameters: $1 = '…', $2 = NULL`;
//! - `duration: D ms  parse NAME: SQL` and `… bind NAME: SQL`: steps of one
//!   execution, not statements of their own;
//! - `EXECUTE q(…)` of a `PREPARE`d statement, followed by
//!   `DETAIL:  prepare: PREPARE q AS SQL`;
//! - `ERROR:  message` followed by `STATEMENT:  SQL` (in csvlog and jsonlog
//!   the statement is a field of the same record).
//!
//! One session's lines of one message are written together, so a DETAIL or
//! STATEMENT belongs to the message just before it in the same session.

use foldhash::HashMap;

use super::{Sink, next_txn};
use crate::model::{Event, SqlError, TxnStatus};

/// One log message, as any of the three formats reads it.
#[derive(Debug, Default)]
pub struct PgRecord<'a> {
    pub ts: Option<&'a str>,
    /// The session: session id or process id, 0 for none.
    pub session: u64,
    /// The session's `application_name`, when the format carries it.
    pub application_name: Option<&'a str>,
    /// `LOG`, `ERROR`, `DETAIL`, `STATEMENT`, …
    pub severity: &'a str,
    pub sqlstate: Option<&'a str>,
    pub message: &'a str,
    /// csvlog / jsonlog only: the DETAIL and the statement of an error.
    pub detail: Option<&'a str>,
    pub statement: Option<&'a str>,
}

#[derive(Debug)]
struct Session {
    /// A statement whose duration, parameters or error may still follow.
    pending: Option<Event>,
    /// The pending statement's duration is known (it came on its own line).
    timed: bool,
    /// A DETAIL that follows belongs to the pending statement.
    detail_applies: bool,
    /// An ERROR with no statement logged before it: the STATEMENT line that
    /// follows is the failed statement.
    error: Option<SqlError>,
    /// The ERROR went to the pending statement: its STATEMENT line repeats it.
    skip_statement: bool,
    txn: TxnStatus,
    application_name: Option<String>,
    /// When the session last logged: the count of messages read then.
    seen: u64,
}

impl Default for Session {
    fn default() -> Self {
        Self {
            pending: None,
            timed: false,
            detail_applies: false,
            error: None,
            skip_statement: false,
            txn: TxnStatus::Idle,
            application_name: None,
            seen: 0,
        }
    }
}

/// Sessions kept before the ones gone quiet are let go.
const MAX_SESSIONS: usize = 1 << 16;

/// The sessions of one log.
///
/// Without log_disconnections no session says it ended, and each leaves its
/// last statement pending (its parameters or error might still follow). When
/// the map reaches its limit, the sessions that have not logged for half the
/// limit's count of messages release their pending statement and, unless in
/// a transaction, are forgotten; a statement still running (the log gives
/// durations on lines of their own, and its has not come) keeps its session.
/// The limit then doubles if the sessions kept still fill half of it. So
/// memory stays bounded by the sessions still live, and the sweeps cost a
/// constant per message (before, each message past the limit swept them all).
#[derive(Debug)]
pub struct PgSessions {
    sessions: HashMap<u64, Session>,
    /// The size that starts the next sweep.
    limit: usize,
    /// The limit to come back to.
    base: usize,
    /// Messages read so far.
    messages: u64,
    /// The log gives durations on lines of their own: a statement logged
    /// without one is still running until its duration comes.
    durations: bool,
    /// A session whose statement is complete but whose DETAIL may follow on
    /// the next line (stderr): released at the next message.
    complete: Option<u64>,
}

impl Default for PgSessions {
    fn default() -> Self {
        Self::with_limit(MAX_SESSIONS)
    }
}

/// The kind of record a message is, for the summary.
#[derive(Debug, PartialEq, Eq)]
pub enum Understood {
    Yes,
    /// A severity PostgreSQL does not write.
    UnknownSeverity,
}

impl PgSessions {
    pub fn new() -> Self {
        Self::with_limit(MAX_SESSIONS)
    }

    /// With a smaller limit (tests).
    pub fn with_limit(limit: usize) -> Self {
        Self {
            sessions: HashMap::default(),
            limit,
            base: limit,
            messages: 0,
            durations: false,
            complete: None,
        }
    }

    /// Lets go of the sessions gone quiet (see [`PgSessions`]).
    fn sweep(&mut self, sink: &mut Sink) {
        let quiet = self.messages.saturating_sub(self.base as u64 / 2);
        let durations = self.durations;
        let mut gone: Vec<(u64, u64)> = self
            .sessions
            .iter()
            // A statement still running keeps its session, however long.
            .filter(|(_, s)| s.seen <= quiet && !(durations && s.pending.is_some() && !s.timed))
            .map(|(&id, s)| (s.seen, id))
            .collect();
        // In the order they went quiet, so that the output is deterministic.
        gone.sort_unstable();
        for (_, id) in gone {
            self.release(id, sink);
            if self
                .sessions
                .get(&id)
                .is_some_and(|s| s.txn == TxnStatus::Idle)
            {
                self.sessions.remove(&id);
            }
        }
        self.limit = self.base.max(2 * self.sessions.len());
    }

    fn release(&mut self, id: u64, sink: &mut Sink) {
        if let Some(s) = self.sessions.get_mut(&id)
            && let Some(e) = s.pending.take()
        {
            sink.emit(e);
        }
    }

    pub fn record(&mut self, r: &PgRecord<'_>, sink: &mut Sink) -> Understood {
        self.messages += 1;
        let understood = self.message(r, sink);
        if let Some(s) = self.sessions.get_mut(&r.session) {
            s.seen = self.messages;
        }
        if self.sessions.len() >= self.limit {
            self.sweep(sink);
        }
        understood
    }

    fn message(&mut self, r: &PgRecord<'_>, sink: &mut Sink) -> Understood {
        match r.severity {
            "DETAIL" => {
                if let Some(s) = self.sessions.get_mut(&r.session)
                    && s.detail_applies
                    && let Some(e) = s.pending.as_mut()
                {
                    apply_detail(e, r.message);
                }
                return Understood::Yes;
            }
            "STATEMENT" => {
                let s = self.sessions.entry(r.session).or_default();
                if s.skip_statement {
                    s.skip_statement = false;
                } else if let Some(error) = s.error.take() {
                    let e = new_event(r, r.message, s, Some(error));
                    sink.emit(e);
                }
                return Understood::Yes;
            }
            "HINT" | "CONTEXT" | "QUERY" | "LOCATION" => return Understood::Yes,
            _ => {}
        }
        if let Some(id) = self.complete.take() {
            self.release(id, sink);
        }
        let known = matches!(
            r.severity,
            "LOG"
                | "ERROR"
                | "FATAL"
                | "PANIC"
                | "WARNING"
                | "NOTICE"
                | "INFO"
                | "DEBUG"
                | "DEBUG1"
                | "DEBUG2"
                | "DEBUG3"
                | "DEBUG4"
                | "DEBUG5"
        );
        if !known {
            return Understood::UnknownSeverity;
        }
        match r.severity {
            "LOG" => self.log(r, sink),
            "ERROR" | "FATAL" | "PANIC" => self.error(r, sink),
            _ => {}
        }
        Understood::Yes
    }

    fn log(&mut self, r: &PgRecord<'_>, sink: &mut Sink) {
        let msg = r.message;
        let (duration_us, rest) = match msg.strip_prefix("duration: ") {
            Some(d) => {
                let (num, rest) = super::split_once(d, " ms").unwrap_or((d, ""));
                (parse_ms(num), rest.trim_start_matches(' '))
            }
            None => (None, msg),
        };
        if duration_us.is_some() && rest.is_empty() {
            // The duration of the statement logged before it.
            self.durations = true;
            if let Some(s) = self.sessions.get_mut(&r.session)
                && let Some(e) = s.pending.as_mut()
                && !s.timed
            {
                e.duration_us = duration_us;
                s.timed = true;
                s.detail_applies = false;
                self.release(r.session, sink);
            }
            return;
        }
        let statement = if let Some(sql) = rest.strip_prefix("statement: ") {
            Some(sql)
        } else if let Some(named) = rest.strip_prefix("execute ") {
            // `execute NAME: SQL`; `execute fetch from NAME/PORTAL: SQL` is a
            // later part of a portal already executed (a row limit that ended
            // in PortalSuspended, as asyncpg's cursors and fetchrow send): the
            // same statement, which the proxy records once too (issue 13,
            // defect 1).
            if named.starts_with("fetch from ") {
                None
            } else {
                super::split_once(named, ": ").map(|(_, sql)| sql)
            }
        } else {
            None
        };
        let Some(sql) = statement else {
            let s = self.sessions.entry(r.session).or_default();
            s.detail_applies = false;
            if rest.starts_with("parse ")
                || rest.starts_with("bind ")
                || rest.starts_with("execute ")
            {
                return;
            }
            if let Some(auth) = msg.strip_prefix("connection authorized: ")
                && let Some(app) = auth
                    .split(' ')
                    .find_map(|w| w.strip_prefix("application_name="))
            {
                s.application_name = Some(app.to_owned());
            } else if msg.starts_with("disconnection: ") {
                self.release(r.session, sink);
                self.sessions.remove(&r.session);
                sink.closed(r.session);
            }
            return;
        };
        self.release(r.session, sink);
        let s = self.sessions.entry(r.session).or_default();
        let mut e = new_event(r, sql, s, None);
        e.duration_us = duration_us;
        s.pending = Some(e);
        s.timed = duration_us.is_some();
        s.detail_applies = true;
        s.error = None;
        s.skip_statement = false;
        if s.timed {
            self.complete = Some(r.session);
        }
    }

    fn error(&mut self, r: &PgRecord<'_>, sink: &mut Sink) {
        let s = self.sessions.entry(r.session).or_default();
        s.detail_applies = false;
        if s.txn == TxnStatus::Open {
            s.txn = TxnStatus::Failed;
        }
        let error = SqlError {
            code: r.sqlstate.unwrap_or_default().to_owned(),
            message: r.message.to_owned(),
        };
        // csvlog and jsonlog name the failed statement: with log_statement
        // = 'ddl' or 'mod' the one pending may be an earlier one.
        let same = match (&s.pending, r.statement) {
            (Some(p), Some(q)) => p.sql == q,
            (Some(_), None) => true,
            (None, _) => false,
        };
        if same && !s.timed {
            // log_statement logged it; now it failed.
            if let Some(e) = s.pending.as_mut() {
                e.error = Some(error);
            }
            s.skip_statement = r.statement.is_none();
            self.release(r.session, sink);
        } else if let Some(sql) = r.statement {
            self.release(r.session, sink);
            let s = self.sessions.entry(r.session).or_default();
            // The failed statement started in the transaction as it was before.
            let e = new_event(r, sql, s, Some(error));
            sink.emit(e);
        } else {
            s.error = Some(error);
        }
    }

    /// The end of the log: every statement still pending is released, in
    /// session order.
    pub fn finish(&mut self, sink: &mut Sink) {
        let mut ids: Vec<u64> = self.sessions.keys().copied().collect();
        ids.sort_unstable();
        if let Some(id) = self.complete.take() {
            self.release(id, sink);
        }
        for id in ids {
            self.release(id, sink);
        }
    }
}

/// A statement of a session; the session's transaction status moves on.
fn new_event(r: &PgRecord<'_>, sql: &str, s: &mut Session, error: Option<SqlError>) -> Event {
    if let Some(app) = r.application_name.filter(|a| !a.is_empty())
        && s.application_name.as_deref() != Some(app)
    {
        s.application_name = Some(app.to_owned());
    }
    let before = if error.is_some() && s.txn == TxnStatus::Failed {
        // An error record moved the status already; the statement started before.
        TxnStatus::Open
    } else {
        s.txn
    };
    let after = next_txn(sql, before);
    s.txn = if error.is_some() && after == TxnStatus::Open {
        TxnStatus::Failed
    } else {
        after
    };
    Event {
        sql: sql.to_owned(),
        ts: r.ts.map(rfc3339),
        conn: Some(r.session),
        txn: Some(before),
        error,
        source: Some("pg-log".to_owned()),
        application_name: s.application_name.clone(),
        ..Event::default()
    }
}

/// `2026-11-25 14:54:35.877 UTC` → `2026-11-25T14:54:35.877Z`; other zones keep
/// their name after the time.
pub fn rfc3339(ts: &str) -> String {
    let (datetime, zone) = match ts.get(..10).zip(ts.get(11..)) {
        Some((date, rest)) => (date, rest),
        None => return ts.to_owned(),
    };
    let (time, zone) = zone.split_once(' ').unwrap_or((zone, ""));
    // Built by hand rather than with format!, which costs several times
    // more on a statement's hot path.
    let mut out = String::with_capacity(datetime.len() + time.len() + zone.len() + 2);
    out.push_str(datetime);
    out.push('T');
    out.push_str(time);
    match zone {
        "UTC" | "GMT" | "" => out.push('Z'),
        z if z.starts_with(['+', '-']) => out.push_str(z),
        z => {
            out.push(' ');
            out.push_str(z);
        }
    }
    out
}

/// A connection id for a session id `6b06f6ab.2fd0` (start time and process
/// id in hex): 40 bits, the low 22 of the process id under the low 18 of the
/// start time, so that a process id used again later is another connection.
pub fn session_key(session: &str) -> u64 {
    let (start, pid) = session.split_once('.').unwrap_or(("0", session));
    let start = u64::from_str_radix(start, 16).unwrap_or(0);
    let pid = u64::from_str_radix(pid, 16).unwrap_or(0);
    ((start & 0x3_ffff) << 22) | (pid & 0x3f_ffff)
}

/// `0.123` (milliseconds) → 123 µs.
fn parse_ms(text: &str) -> Option<u64> {
    let (int, frac) = text.split_once('.').unwrap_or((text, ""));
    let ms: u64 = int.parse().ok()?;
    let mut us = ms * 1000;
    let mut scale = 100;
    for b in frac.bytes().take(3) {
        if !b.is_ascii_digit() {
            return None;
        }
        us += u64::from(b - b'0') * scale;
        scale /= 10;
    }
    Some(us)
}

fn apply_detail(e: &mut Event, detail: &str) {
    if let Some(list) = detail.strip_prefix("parameters: ") {
        e.params = Some(parse_parameters(list));
    } else if let Some(prepare) = detail.strip_prefix("prepare: ") {
        resolve_execute(e, prepare);
    }
}

/// `$1 = '31', $2 = NULL, $3 = 'it''s'` → the values in order.
pub fn parse_parameters(list: &str) -> Vec<Option<String>> {
    let mut out = Vec::new();
    let b = list.as_bytes();
    let mut i = 0;
    while i < b.len() {
        // `$N = `
        let Some(eq) = super::find(&list[i..], " = ") else {
            break;
        };
        i += eq + 3;
        if list[i..].starts_with("NULL") {
            out.push(None);
            i += 4;
        } else if b.get(i) == Some(&b'\'') {
            let mut value = String::new();
            i += 1;
            let mut start = i;
            while i < b.len() {
                if b[i] == b'\'' {
                    value.push_str(&list[start..i]);
                    if b.get(i + 1) == Some(&b'\'') {
                        value.push('\'');
                        i += 2;
                        start = i;
                        continue;
                    }
                    i += 1;
                    break;
                }
                i += 1;
            }
            if i >= b.len() && b.last() != Some(&b'\'') {
                value.push_str(&list[start.min(b.len())..]);
            }
            out.push(Some(value));
        } else {
            // Unquoted (not written by PostgreSQL, but cheap to accept).
            let end = super::find(&list[i..], ", $").map_or(b.len(), |k| i + k);
            out.push(Some(list[i..end].to_owned()));
            i = end;
        }
        // `, ` before the next
        while i < b.len() && (b[i] == b',' || b[i] == b' ') {
            i += 1;
        }
    }
    out
}

/// An `EXECUTE q(1, 'x')` whose DETAIL gave `PREPARE q(int, text) AS SQL`
/// becomes SQL with parameters 1 and x, so that its runs fingerprint as the
/// statement they ran. The EXECUTE's sqlcommenter comment, if any, is kept.
pub(crate) fn resolve_execute(e: &mut Event, prepare: &str) {
    let lower = prepare.to_ascii_lowercase();
    let Some(body_at) = find_as(&lower) else {
        return;
    };
    let body = prepare[body_at..].trim().trim_end_matches(';').trim_end();
    let args = execute_args(&e.sql);
    let tags = crate::attribute::parse_tags(&e.sql);
    let mut sql = body.to_owned();
    if !tags.pairs.is_empty() {
        let stripped = crate::attribute::strip_tags(&e.sql);
        if let Some(comment) = e
            .sql
            .trim()
            .trim_end_matches(';')
            .trim_end()
            .strip_prefix(stripped)
        {
            sql.push(' ');
            sql.push_str(comment.trim());
        } else if let Some(comment) = e.sql.trim().strip_suffix(stripped) {
            sql = format!("{} {sql}", comment.trim());
        }
    }
    e.sql = sql;
    e.params = Some(args);
}

/// Where the body of `PREPARE name [(types)] AS body` starts.
fn find_as(lower: &str) -> Option<usize> {
    let mut depth = 0i32;
    let b = lower.as_bytes();
    for i in 0..b.len() {
        match b[i] {
            b'(' => depth += 1,
            b')' => depth -= 1,
            b'a' if depth == 0
                && i > 0
                && b[i - 1].is_ascii_whitespace()
                && lower[i..].starts_with("as")
                && b.get(i + 2).is_some_and(|c| c.is_ascii_whitespace()) =>
            {
                return Some(i + 3);
            }
            _ => {}
        }
    }
    None
}

/// The arguments of `EXECUTE q(1, 'x', NULL)`: quoted strings unquoted, NULL
/// as None, anything else as written.
fn execute_args(sql: &str) -> Vec<Option<String>> {
    let bare = crate::attribute::strip_tags(sql);
    let Some(open) = bare.find('(') else {
        return Vec::new();
    };
    let inner = bare[open + 1..].trim_end().trim_end_matches(';').trim_end();
    let inner = inner.strip_suffix(')').unwrap_or(inner);
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    let mut was_quoted = false;
    let mut depth = 0;
    let mut chars = inner.chars().peekable();
    let push = |cur: &mut String, was_quoted: &mut bool, out: &mut Vec<Option<String>>| {
        let text = std::mem::take(cur);
        let t = text.trim();
        if !*was_quoted && t.eq_ignore_ascii_case("null") {
            out.push(None);
        } else if *was_quoted {
            out.push(Some(text));
        } else {
            out.push(Some(t.to_owned()));
        }
        *was_quoted = false;
    };
    while let Some(c) = chars.next() {
        match c {
            '\'' if quoted => {
                if chars.peek() == Some(&'\'') {
                    cur.push('\'');
                    chars.next();
                } else {
                    quoted = false;
                }
            }
            '\'' => {
                quoted = true;
                was_quoted = true;
                cur.clear();
            }
            '(' if !quoted => {
                depth += 1;
                cur.push(c);
            }
            ')' if !quoted => {
                depth -= 1;
                cur.push(c);
            }
            ',' if !quoted && depth == 0 => push(&mut cur, &mut was_quoted, &mut out),
            c if quoted || !was_quoted => cur.push(c),
            _ => {}
        }
    }
    if !cur.trim().is_empty() || was_quoted {
        push(&mut cur, &mut was_quoted, &mut out);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Sessions that end without a `disconnection:` line (no
    /// log_disconnections) each leave their last statement pending: the map
    /// of sessions stays bounded, and every statement is still emitted once.
    /// Before, the sessions with a statement pending were never forgotten, and
    /// each record past the limit swept them all: a log of 200,000 one-statement
    /// sessions took 287 s and 277 MB.
    #[test]
    fn sessions_that_never_say_goodbye_stay_bounded() {
        let path = std::path::Path::new("f.log");
        let mut sink = Sink::new(super::super::LogSummary::new(
            path,
            super::super::LogFormat::PgStderr,
            false,
        ));
        let mut sessions = PgSessions::with_limit(64);
        // A long transaction on session 1, open throughout: never forgotten.
        let begin = PgRecord {
            session: 1,
            severity: "LOG",
            message: "statement: BEGIN",
            ..PgRecord::default()
        };
        sessions.record(&begin, &mut sink);
        let mut most = 0;
        for n in 0..10_000u64 {
            let message = format!("statement: select {n}");
            let r = PgRecord {
                session: 100 + n,
                severity: "LOG",
                message: &message,
                ..PgRecord::default()
            };
            sessions.record(&r, &mut sink);
            most = most.max(sessions.sessions.len());
        }
        let insert = PgRecord {
            message: "statement: insert into t values (1)",
            ..begin
        };
        sessions.record(&insert, &mut sink);
        sessions.finish(&mut sink);
        assert!(most <= 128, "{most} sessions held");
        assert_eq!(sink.events.len(), 10_002);
        let last = sink.events.iter().find(|e| e.sql.starts_with("insert"));
        assert_eq!(last.and_then(|e| e.txn), Some(TxnStatus::Open));
        let mut sql: Vec<&str> = sink.events.iter().map(|e| e.sql.as_str()).collect();
        sql.sort_unstable();
        sql.dedup();
        assert_eq!(sql.len(), 10_002);
    }

    /// With durations on lines of their own, a statement that runs while
    /// thousands of sessions come and go still gets its duration.
    #[test]
    fn a_long_statement_keeps_its_session_through_the_sweeps() {
        let mut sink = Sink::new(super::super::LogSummary::new(
            std::path::Path::new("f.log"),
            super::super::LogFormat::PgStderr,
            false,
        ));
        let mut sessions = PgSessions::with_limit(64);
        let log = |sessions: &mut PgSessions, sink: &mut Sink, session: u64, message: &str| {
            let r = PgRecord {
                session,
                severity: "LOG",
                message,
                ..PgRecord::default()
            };
            sessions.record(&r, sink);
        };
        log(
            &mut sessions,
            &mut sink,
            1,
            "statement: select pg_sleep(600)",
        );
        let mut most = 0;
        for n in 0..5_000u64 {
            log(
                &mut sessions,
                &mut sink,
                100 + n,
                &format!("statement: select {n}"),
            );
            log(&mut sessions, &mut sink, 100 + n, "duration: 0.100 ms");
            most = most.max(sessions.sessions.len());
        }
        log(&mut sessions, &mut sink, 1, "duration: 600000.000 ms");
        sessions.finish(&mut sink);
        assert!(most <= 128, "{most} sessions held");
        assert_eq!(sink.events.len(), 5_001);
        let sleep = sink.events.iter().find(|e| e.sql.contains("pg_sleep"));
        assert_eq!(sleep.and_then(|e| e.duration_us), Some(600_000_000));
    }

    #[test]
    fn parameters_quoted_null_and_doubled_quotes() {
        assert_eq!(
            parse_parameters("$1 = '31', $2 = NULL, $3 = 'it''s, ok'"),
            vec![Some("31".into()), None, Some("it's, ok".into())]
        );
        assert_eq!(parse_parameters("$1 = ''"), vec![Some(String::new())]);
    }

    #[test]
    fn milliseconds_to_microseconds() {
        assert_eq!(parse_ms("0.277"), Some(277));
        assert_eq!(parse_ms("12"), Some(12_000));
        assert_eq!(parse_ms("1.5"), Some(1_500));
        assert_eq!(parse_ms("x"), None);
    }

    #[test]
    fn timestamps() {
        assert_eq!(
            rfc3339("2026-11-25 14:54:35.877 UTC"),
            "2026-11-25T14:54:35.877Z"
        );
        assert_eq!(rfc3339("2026-11-25 14:54:35 +02"), "2026-11-25T14:54:35+02");
    }

    #[test]
    fn execute_of_a_prepared_statement_becomes_its_body() {
        let mut e = Event {
            sql: "EXECUTE q(1, 'x,y', NULL, 'it''s') /*step='s'*/;".into(),
            ..Event::default()
        };
        resolve_execute(&mut e, "PREPARE q(int, text) AS select $1::int, $2::text;");
        assert_eq!(e.sql, "select $1::int, $2::text /*step='s'*/");
        assert_eq!(
            e.params,
            Some(vec![
                Some("1".into()),
                Some("x,y".into()),
                None,
                Some("it's".into())
            ])
        );
    }
}
