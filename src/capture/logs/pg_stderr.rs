//! PostgreSQL's stderr log format (also what `logging_collector` writes to its
//! `.log` files): each message starts with the `log_line_prefix`, then
//! `SEVERITY:  message`; a newline inside the message is followed by a tab
//! (src/backend/utils/error/elog.c, `append_with_tabs`), so a line that starts
//! with a tab continues the message before it.
//!
//! The prefix is read by a byte scan driven by its escapes (PostgreSQL 15,
//! "log_line_prefix" in the server configuration chapter): `%m` `%t` `%n` are
//! times, `%p` the process id, `%c` the session id, `%l` the line number, `%u`
//! `%d` `%a` user, database and application name, `%x` the transaction id,
//! `%e` the SQLSTATE, and `%q` ends the prefix for processes that are not
//! sessions. Other escapes are read and ignored.

use super::lines::limit_text;
use super::pg_session::{PgRecord, PgSessions, Understood, session_key};
use super::{LineParser, Sink};

#[derive(Debug, Clone, PartialEq, Eq)]
enum Tok {
    Lit(String),
    Esc(u8),
    /// `%q`: non-session processes stop the prefix here.
    Q,
}

/// A compiled `log_line_prefix`.
#[derive(Debug, Clone)]
pub struct Prefix {
    toks: Vec<Tok>,
}

/// The prefix fields a line had.
#[derive(Debug, Clone, Copy, Default)]
struct Fields<'a> {
    ts: Option<&'a str>,
    pid: Option<&'a str>,
    session: Option<&'a str>,
    application_name: Option<&'a str>,
    sqlstate: Option<&'a str>,
}

/// A line that starts a message.
#[derive(Debug)]
struct Head<'a> {
    fields: Fields<'a>,
    severity: &'a str,
    sqlstate: Option<&'a str>,
    message: &'a str,
}

impl Prefix {
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut toks = Vec::new();
        let mut lit = String::new();
        let mut chars = text.chars();
        while let Some(c) = chars.next() {
            if c != '%' {
                lit.push(c);
                continue;
            }
            // Padding (`%-10u`, `%5p`) is allowed and ignored: values are trimmed.
            let mut e = chars.next();
            while e.is_some_and(|c| c == '-' || c.is_ascii_digit()) {
                e = chars.next();
            }
            let Some(e) = e else {
                return Err(format!(
                    "--log-line-prefix '{text}' ends with a lone %; write %% for a percent sign"
                ));
            };
            if e == '%' {
                lit.push('%');
                continue;
            }
            if !"audrhbpPtmniecls vxqQLB".contains(e) || e == ' ' {
                return Err(format!(
                    "--log-line-prefix '{text}': %{e} is not a log_line_prefix escape \
                     PostgreSQL knows"
                ));
            }
            if !lit.is_empty() {
                toks.push(Tok::Lit(std::mem::take(&mut lit)));
            }
            toks.push(if e == 'q' { Tok::Q } else { Tok::Esc(e as u8) });
        }
        if !lit.is_empty() {
            toks.push(Tok::Lit(lit));
        }
        Ok(Self { toks })
    }

    /// Whether a line starts a PostgreSQL message under this prefix.
    pub fn recognises(&self, line: &str) -> bool {
        self.head(line).is_some()
    }

    fn head<'a>(&self, line: &'a str) -> Option<Head<'a>> {
        let mut fields = Fields::default();
        let (pos, severity) = self.walk(0, line, 0, &mut fields)?;
        let mut message = &line[pos..];
        let mut sqlstate = fields.sqlstate;
        // log_error_verbosity = verbose: `ERROR:  42P01: relation …`
        if let Some(code) = message.get(..5)
            && message.as_bytes().get(5..7) == Some(b": ")
            && code
                .bytes()
                .all(|b| b.is_ascii_digit() || b.is_ascii_uppercase())
            && code.bytes().any(|b| b.is_ascii_digit())
        {
            sqlstate = Some(code);
            message = &message[7..];
        }
        Some(Head {
            fields,
            severity,
            sqlstate,
            message,
        })
    }

    fn walk<'a>(
        &self,
        from: usize,
        line: &'a str,
        mut pos: usize,
        f: &mut Fields<'a>,
    ) -> Option<(usize, &'a str)> {
        let b = line.as_bytes();
        let mut i = from;
        while i < self.toks.len() {
            match &self.toks[i] {
                Tok::Lit(l) => {
                    if !b[pos..].starts_with(l.as_bytes()) {
                        return None;
                    }
                    pos += l.len();
                }
                Tok::Q => {
                    let saved = *f;
                    if let Some(found) = self.walk(i + 1, line, pos, f) {
                        return Some(found);
                    }
                    *f = saved;
                    return severity(line, pos);
                }
                Tok::Esc(e) => {
                    let next = match self.toks.get(i + 1) {
                        Some(Tok::Lit(l)) => Some(l.as_str()),
                        _ => None,
                    };
                    let end = value_end(*e, line, pos, next)?;
                    let value = trim(&line[pos..end]);
                    match e {
                        b'm' | b't' | b'n' => f.ts = Some(value),
                        b'p' => f.pid = Some(value),
                        b'c' => f.session = Some(value),
                        b'a' => f.application_name = Some(value),
                        b'e' => f.sqlstate = Some(value),
                        _ => {}
                    }
                    pos = end;
                }
            }
            i += 1;
        }
        severity(line, pos)
    }
}

/// `str::trim`, without its Unicode scan for the common value that starts
/// and ends with a visible ASCII character (nothing to trim).
fn trim(value: &str) -> &str {
    match (value.as_bytes().first(), value.as_bytes().last()) {
        (Some(a), Some(z)) if a.is_ascii_graphic() && z.is_ascii_graphic() => value,
        _ => value.trim(),
    }
}

/// Reads `SEVERITY:  ` at `pos`: returns where the message starts.
fn severity(line: &str, pos: usize) -> Option<(usize, &str)> {
    let b = &line.as_bytes()[pos..];
    let n = b
        .iter()
        .take(10)
        .take_while(|c| c.is_ascii_uppercase() || c.is_ascii_digit())
        .count();
    if n < 3 || !b[n..].starts_with(b":  ") {
        return None;
    }
    Some((pos + n + 3, &line[pos..pos + n]))
}

/// How many bytes at the start of `rest` are `ok` (generic, so that the
/// test is inlined: it runs on every byte of a prefix).
fn span(rest: &[u8], ok: impl Fn(u8) -> bool) -> usize {
    rest.iter().take_while(|&&c| ok(c)).count()
}

/// Where the value of escape `e` that starts at `pos` ends.
fn value_end(e: u8, line: &str, pos: usize, next: Option<&str>) -> Option<usize> {
    let b = line.as_bytes();
    let rest = &b[pos..];
    let zone = |at: usize| -> Option<usize> {
        // The zone after a time: `UTC`, `CET`, `+02`, `America/New_York`.
        if rest.get(at) != Some(&b' ') {
            return None;
        }
        let n = rest[at + 1..]
            .iter()
            .take_while(|c| c.is_ascii_alphanumeric() || b"+-:/_".contains(c))
            .count();
        Some(pos + at + 1 + n)
    };
    let date = |len: usize| {
        rest.len() > len
            && rest[4] == b'-'
            && rest[7] == b'-'
            && rest[10] == b' '
            && rest[13] == b':'
            && rest[16] == b':'
            && rest[..4].iter().all(u8::is_ascii_digit)
    };
    match e {
        b'm' => (date(23) && rest[19] == b'.').then(|| zone(23)).flatten(),
        b't' | b's' => date(19).then(|| zone(19)).flatten(),
        b'n' => Some(pos + span(rest, |c| c.is_ascii_digit() || c == b'.')).filter(|&e| e > pos),
        b'p' | b'l' | b'x' | b'P' => Some(pos + span(rest, |c| c.is_ascii_digit())),
        b'c' => Some(pos + span(rest, |c| c.is_ascii_hexdigit() || c == b'.')),
        b'v' => Some(pos + span(rest, |c| c.is_ascii_digit() || c == b'/')),
        b'e' => (rest.len() >= 5
            && rest[..5]
                .iter()
                .all(|c| c.is_ascii_digit() || c.is_ascii_uppercase()))
        .then_some(pos + 5),
        _ => match next {
            Some(lit) => super::find(&line[pos..], lit).map(|k| pos + k),
            None => Some(pos + span(rest, |c| c != b' ')),
        },
    }
}

/// The message being read: its first line's fields, then continuation lines.
#[derive(Debug, Default)]
struct Current {
    line: u64,
    ts: String,
    has_ts: bool,
    session: u64,
    application_name: String,
    has_application_name: bool,
    severity: String,
    sqlstate: String,
    has_sqlstate: bool,
    message: String,
    /// The message grew past the limit, or one of its lines was over it: it
    /// was reported, and the lines that continue it are skipped.
    given_up: bool,
}

/// The stderr format's reader.
#[derive(Debug)]
pub struct PgStderr {
    prefix: Prefix,
    sessions: PgSessions,
    current: Option<Current>,
    spare: Current,
    /// The most a message over several lines may hold.
    max: usize,
}

impl PgStderr {
    pub fn new(prefix: Prefix, max: usize) -> Self {
        Self {
            prefix,
            sessions: PgSessions::new(),
            current: None,
            spare: Current::default(),
            max,
        }
    }

    fn dispatch(&mut self, sink: &mut Sink) {
        let Some(c) = self.current.take() else {
            return;
        };
        if c.given_up {
            self.spare = c;
            return;
        }
        let record = PgRecord {
            ts: c.has_ts.then_some(c.ts.as_str()),
            session: c.session,
            application_name: c
                .has_application_name
                .then_some(c.application_name.as_str()),
            severity: &c.severity,
            sqlstate: c.has_sqlstate.then_some(c.sqlstate.as_str()),
            message: &c.message,
            detail: None,
            statement: None,
        };
        if self.sessions.record(&record, sink) == Understood::UnknownSeverity {
            let text = format!("{}:  {}", c.severity, c.message);
            sink.not_understood("unknown severity", c.line, &text);
        }
        self.spare = c;
    }
}

/// Gives up a message over the limit: reported at its first line, with its
/// start as the example; its text is dropped.
fn give_up(c: &mut Current, max: usize, sink: &mut Sink) {
    let kind = format!("message longer than {}", limit_text(max));
    sink.not_understood(kind, c.line, &c.message);
    c.given_up = true;
    c.message = String::new();
}

impl LineParser for PgStderr {
    fn line(&mut self, line: &str, number: u64, sink: &mut Sink) {
        if let Some(more) = line.strip_prefix('\t')
            && let Some(c) = self.current.as_mut()
        {
            if c.given_up {
                // Skipped with the message it continues.
            } else if c.message.len() + 1 + more.len() > self.max {
                give_up(c, self.max, sink);
            } else {
                c.message.push('\n');
                c.message.push_str(more);
            }
            return;
        }
        let Some(head) = self.prefix.head(line) else {
            if !line.trim().is_empty() {
                sink.not_understood("no log_line_prefix match", number, line);
            }
            return;
        };
        self.dispatch(sink);
        let mut c = std::mem::take(&mut self.spare);
        c.line = number;
        let f = head.fields;
        c.ts.clear();
        c.has_ts = f.ts.is_some();
        c.ts.push_str(f.ts.unwrap_or_default());
        c.session = match (f.session, f.pid) {
            (Some(s), _) if !s.is_empty() => session_key(s),
            (_, Some(p)) => p.parse().unwrap_or(0),
            _ => 0,
        };
        c.application_name.clear();
        c.has_application_name = f.application_name.is_some();
        c.application_name
            .push_str(f.application_name.unwrap_or_default());
        c.severity.clear();
        c.severity.push_str(head.severity);
        c.sqlstate.clear();
        c.has_sqlstate = head.sqlstate.is_some();
        c.sqlstate.push_str(head.sqlstate.unwrap_or_default());
        c.message.clear();
        c.message.push_str(head.message);
        c.given_up = false;
        self.current = Some(c);
    }

    fn cut_line(&mut self, head: &str, number: u64, sink: &mut Sink) {
        if head.starts_with('\t')
            && let Some(c) = self.current.as_mut()
        {
            // A line of the message was not read: the message is not either.
            if !c.given_up {
                give_up(c, self.max, sink);
            }
            return;
        }
        if self.prefix.head(head).is_some() {
            // A message whose first line is over the limit (the reader reported
            // it): the lines that continue it go with it.
            self.dispatch(sink);
            let mut c = std::mem::take(&mut self.spare);
            c.line = number;
            c.message.clear();
            c.given_up = true;
            self.current = Some(c);
        }
    }

    fn finish(&mut self, sink: &mut Sink) {
        self.dispatch(sink);
        self.sessions.finish(sink);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(prefix: &str, line: &str) -> Option<(String, String, String)> {
        let p = Prefix::parse(prefix).expect("valid prefix");
        p.head(line).map(|h| {
            (
                h.fields.pid.unwrap_or_default().to_owned(),
                h.severity.to_owned(),
                h.message.to_owned(),
            )
        })
    }

    #[test]
    fn default_prefix_session_and_background_lines() {
        let p = "%m [%p] %q%u@%d ";
        assert_eq!(
            head(
                p,
                "2026-11-25 14:54:35.877 UTC [12240] postgres@shop LOG:  statement: select 1"
            ),
            Some(("12240".into(), "LOG".into(), "statement: select 1".into()))
        );
        assert_eq!(
            head(
                p,
                "2026-11-25 14:54:33.058 UTC [12103] LOG:  starting PostgreSQL 15"
            ),
            Some((
                "12103".into(),
                "LOG".into(),
                "starting PostgreSQL 15".into()
            ))
        );
        // A message with an @ in it does not fool %q.
        assert_eq!(
            head(p, "2026-11-25 14:54:33.058 UTC [7] LOG:  mail a@b now"),
            Some(("7".into(), "LOG".into(), "mail a@b now".into()))
        );
        assert_eq!(head(p, "not a log line"), None);
        assert_eq!(head(p, "\tcontinued"), None);
    }

    #[test]
    fn other_prefixes_and_verbose_sqlstate() {
        let p = Prefix::parse("%t [%p-%l] %q user=%u,db=%d,app=%a,e=%e ").expect("valid");
        let h = p
            .head("2026-11-25 14:54:35 CET [55-3]  user=u,db=d,app=my app,e=42P01 ERROR:  42P01: boom")
            .expect("matches");
        assert_eq!(h.fields.application_name, Some("my app"));
        assert_eq!(h.fields.ts, Some("2026-11-25 14:54:35 CET"));
        assert_eq!(h.sqlstate, Some("42P01"));
        assert_eq!(h.message, "boom");
        let p = Prefix::parse("%c %x ").expect("valid");
        let h = p
            .head("6b06f6ab.2fd0 0 LOG:  statement: x")
            .expect("matches");
        assert_eq!(h.fields.session, Some("6b06f6ab.2fd0"));
        assert!(Prefix::parse("%z").is_err());
        assert!(Prefix::parse("50%").is_err());
        assert!(Prefix::parse("%% %-10u ").is_ok());
    }
}

#[cfg(test)]
mod reading {
    use crate::capture::logs::{LogFormat, LogOptions, read_str};
    use crate::model::TxnStatus;

    const P: &str = "2026-11-25 14:54:35.877 UTC";

    fn read(lines: &[&str]) -> Vec<crate::model::Event> {
        let text: String = lines.iter().map(|l| format!("{l}\n")).collect();
        read_str(&text, LogFormat::PgStderr, &LogOptions::default())
            .expect("reads")
            .0
    }

    #[test]
    fn log_statement_alone_extended_protocol_and_transaction_status() {
        let events = read(&[
            &format!("{P} [7] u@d LOG:  statement: BEGIN"),
            &format!("{P} [7] u@d LOG:  execute S_1: select $1"),
            &format!("{P} [7] u@d DETAIL:  parameters: $1 = 'a'"),
            &format!("{P} [8] u@d LOG:  statement: select 2"),
            &format!("{P} [7] u@d LOG:  statement: insert into t values (1)"),
            &format!("{P} [7] u@d ERROR:  23505: duplicate key"),
            &format!("{P} [7] u@d STATEMENT:  insert into t values (1)"),
            &format!("{P} [7] u@d LOG:  statement: COMMIT"),
            &format!("{P} [7] u@d LOG:  disconnection: session time: 0:00:00.010"),
        ]);
        let got: Vec<_> = events
            .iter()
            .map(|e| {
                (
                    e.sql.as_str(),
                    e.conn,
                    e.txn,
                    e.error.as_ref().map(|x| x.code.as_str()),
                )
            })
            .collect();
        assert_eq!(
            got,
            vec![
                ("BEGIN", Some(7), Some(TxnStatus::Idle), None),
                ("select $1", Some(7), Some(TxnStatus::Open), None),
                (
                    "insert into t values (1)",
                    Some(7),
                    Some(TxnStatus::Open),
                    Some("23505")
                ),
                ("COMMIT", Some(7), Some(TxnStatus::Failed), None),
                ("select 2", Some(8), Some(TxnStatus::Idle), None),
            ]
        );
        assert_eq!(events[1].params, Some(vec![Some("a".into())]));
        assert_eq!(events[0].ts.as_deref(), Some("2026-11-25T14:54:35.877Z"));
    }

    #[test]
    fn durations_pair_with_their_statement_and_parse_bind_are_not_statements() {
        let events = read(&[
            &format!("{P} [7] u@d LOG:  statement: select 1"),
            &format!("{P} [8] u@d LOG:  duration: 0.010 ms  parse <unnamed>: select $1"),
            &format!("{P} [8] u@d LOG:  duration: 0.020 ms  bind <unnamed>: select $1"),
            &format!("{P} [8] u@d DETAIL:  parameters: $1 = '5'"),
            &format!("{P} [8] u@d LOG:  duration: 0.030 ms  execute <unnamed>: select $1"),
            &format!("{P} [8] u@d DETAIL:  parameters: $1 = '6'"),
            &format!("{P} [7] u@d LOG:  duration: 1.500 ms"),
            &format!("{P} [9] LOG:  checkpoint complete"),
        ]);
        let got: Vec<_> = events
            .iter()
            .map(|e| (e.sql.as_str(), e.duration_us, e.params.clone()))
            .collect();
        assert_eq!(
            got,
            vec![
                ("select $1", Some(30), Some(vec![Some("6".into())])),
                ("select 1", Some(1500), None),
            ]
        );
    }

    /// issue 13, defect 1: a portal fetched in parts (asyncpg's cursor, a row
    /// limit) is one statement, whose later parts the log shows as
    /// `execute fetch from`; the statements between them stay their own.
    #[test]
    fn a_portal_fetched_in_parts_is_one_statement() {
        let events = read(&[
            &format!("{P} [7] u@d LOG:  statement: BEGIN;"),
            &format!("{P} [7] u@d LOG:  execute s_3/p_4: SELECT id FROM products ORDER BY id"),
            &format!("{P} [7] u@d LOG:  duration: 0.058 ms"),
            &format!(
                "{P} [7] u@d LOG:  execute s_5: SELECT stock FROM inventory WHERE product_id = $1"
            ),
            &format!("{P} [7] u@d DETAIL:  parameters: $1 = '1'"),
            &format!("{P} [7] u@d LOG:  duration: 0.030 ms"),
            &format!(
                "{P} [7] u@d LOG:  execute fetch from s_3/p_4: SELECT id FROM products ORDER BY id"
            ),
            &format!("{P} [7] u@d LOG:  duration: 0.020 ms"),
            &format!(
                "{P} [7] u@d LOG:  duration: 0.040 ms  execute fetch from s_3/p_4: SELECT id FROM products ORDER BY id"
            ),
            &format!(
                "{P} [7] u@d LOG:  execute s_5: SELECT stock FROM inventory WHERE product_id = $1"
            ),
            &format!("{P} [7] u@d DETAIL:  parameters: $1 = '2'"),
            &format!("{P} [7] u@d LOG:  duration: 0.030 ms"),
        ]);
        let got: Vec<_> = events
            .iter()
            .map(|e| (e.sql.as_str(), e.params.clone()))
            .collect();
        assert_eq!(
            got,
            vec![
                ("BEGIN;", None),
                ("SELECT id FROM products ORDER BY id", None),
                (
                    "SELECT stock FROM inventory WHERE product_id = $1",
                    Some(vec![Some("1".into())])
                ),
                (
                    "SELECT stock FROM inventory WHERE product_id = $1",
                    Some(vec![Some("2".into())])
                ),
            ]
        );
    }
}
