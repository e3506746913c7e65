//! The MySQL and MariaDB general query log (`general_log = ON`): one entry per
//! command a connection sent, `[time]\t<id> <Command>\t<argument>`. MariaDB
//! writes the time (`YYMMDD HH:MM:SS`) only when it changed and two tabs
//! otherwise; MySQL 8 writes an RFC 3339 time on every entry. A statement's
//! newlines are written as they are, so a line that is not an entry continues
//! the argument before it.
//!
//! Statements are `Query` and `Execute` entries (an `Execute` carries the
//! statement with its values in place). An SQL-level `EXECUTE s USING …` is
//! logged as a `Query` and then as the `Execute` it ran: only the latter
//! counts. `Prepare` is not a statement of its own. The log has no durations,
//! row counts or errors.
//!
//! The log has no transaction status either: each session's is followed from
//! its statements ([`MysqlSession`]), autocommit setting included.

use foldhash::HashMap;

use super::lines::limit_text;
use super::{LineParser, MysqlSession, Sink, after_comments, first_word};
use crate::model::Event;

/// Commands the general log writes (sql/sql_parse.cc, `command_name`).
const COMMANDS: &[&str] = &[
    "Query",
    "Execute",
    "Prepare",
    "Connect",
    "Quit",
    "Close stmt",
    "Reset stmt",
    "Init DB",
    "Field List",
    "Ping",
    "Change user",
    "Fetch",
    "Long Data",
    "Statistics",
    "Processlist",
    "Kill",
    "Refresh",
    "Shutdown",
    "Set option",
    "Debug",
    "Daemon",
    "Binlog Dump",
    "Binlog Dump GTID",
    "Register Slave",
    "Table Dump",
    "Connect Out",
    "Create DB",
    "Drop DB",
    "Time",
    "Delayed insert",
    "Error",
    "Reset Connection",
    "Bulk_execute",
    "Slave_worker",
    "Slave_IO",
    "Slave_SQL",
    "Com_multi",
];

/// One entry: its time (if the line had one), connection, command, argument.
#[derive(Debug, PartialEq, Eq)]
struct Entry<'a> {
    time: Option<&'a str>,
    id: u64,
    command: &'a str,
    argument: &'a str,
}

fn entry(line: &str) -> Option<Entry<'_>> {
    let (time, rest) = match line.find('\t') {
        Some(0) => (None, line),
        Some(i) => (Some(line[..i].trim()), &line[i..]),
        None => return None,
    };
    if let Some(t) = time
        && !looks_like_time(t)
    {
        return None;
    }
    let rest = rest.trim_start_matches(['\t', ' ']);
    let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
    if digits == 0 || rest.as_bytes().get(digits) != Some(&b' ') {
        return None;
    }
    let id = rest[..digits].parse().ok()?;
    let rest = &rest[digits + 1..];
    let (command, argument) = rest.split_once('\t').unwrap_or((rest, ""));
    let command = command.trim_end();
    COMMANDS.contains(&command).then_some(Entry {
        time,
        id,
        command,
        argument,
    })
}

/// `261125 14:58:26`, `261125  9:05:01` (MariaDB) or `2026-11-25T14:58:26.123456Z` (MySQL 8).
fn looks_like_time(t: &str) -> bool {
    let b = t.as_bytes();
    (b.len() >= 14 && b[..6].iter().all(u8::is_ascii_digit) && b[6] == b' ')
        || (b.len() >= 20 && b[..4].iter().all(u8::is_ascii_digit) && b[10] == b'T')
}

fn header(line: &str) -> bool {
    line.contains(", Version: ") && line.ends_with("started with:")
        || line.starts_with("Tcp port: ")
        || line.starts_with("Time") && line.contains("Id Command") && line.contains("Argument")
}

/// Whether a line belongs to a general query log.
pub fn recognises(line: &str) -> bool {
    header(line) || entry(line).is_some()
}

/// The general log's reader.
#[derive(Debug, Default)]
pub struct MysqlGeneral {
    /// The most a statement over several lines may hold.
    max: usize,
    /// The line the current statement started on.
    current_line: u64,
    /// Per connection: its transaction status and autocommit setting.
    conns: HashMap<u64, MysqlSession>,
    /// The statement being read (its argument may continue on later lines).
    current: Option<Event>,
    /// The current statement is an SQL-level EXECUTE: dropped if an Execute
    /// entry of its connection follows.
    current_is_execute: bool,
    /// The latest entry is not a statement (a `Prepare` of several lines, as
    /// mysql2 sends), or a statement over the limit, reported and dropped:
    /// the lines that continue its argument are part of it.
    continuing_other: bool,
    /// The latest time, MySQL 8's form only (MariaDB's is local time without a zone).
    ts: Option<String>,
}

impl MysqlGeneral {
    pub fn new(max: usize) -> Self {
        Self {
            max,
            ..Self::default()
        }
    }

    /// The statement being read is over the limit: reported at its first
    /// line, dropped, and the lines that continue it are skipped.
    fn give_up(&mut self, sink: &mut Sink) {
        if let Some(cur) = self.current.take() {
            let kind = format!("statement longer than {}", limit_text(self.max));
            sink.not_understood(kind, self.current_line, &cur.sql);
        }
        self.current_is_execute = false;
        self.continuing_other = true;
    }

    /// A new entry ends the one before: released, unless an `Execute` of the
    /// same connection replaces its SQL-level `EXECUTE`.
    fn next_entry(&mut self, e: &Entry<'_>, sink: &mut Sink) {
        if let Some(t) = e.time {
            self.ts = (t.len() >= 20).then(|| t.to_owned());
        }
        let replaces = e.command == "Execute"
            && self.current_is_execute
            && self.current.as_ref().and_then(|c| c.conn) == Some(e.id);
        if replaces {
            self.current = None;
        }
        self.release(sink);
        self.current_is_execute = false;
        self.continuing_other = !matches!(e.command, "Query" | "Execute");
    }

    fn release(&mut self, sink: &mut Sink) {
        if let Some(mut e) = self.current.take() {
            if after_comments(&e.sql)
                .trim_end_matches(';')
                .trim()
                .is_empty()
            {
                // Comments alone (the mysql client sends them with --comments):
                // the server ran nothing.
                return;
            }
            let session = self.conns.entry(e.conn.unwrap_or(0)).or_default();
            e.txn = Some(session.statement(&e.sql));
            sink.emit(e);
        }
    }
}

impl LineParser for MysqlGeneral {
    fn line(&mut self, line: &str, number: u64, sink: &mut Sink) {
        let Some(e) = entry(line) else {
            if let Some(cur) = self.current.as_mut() {
                if cur.sql.len() + 1 + line.len() > self.max {
                    self.give_up(sink);
                } else {
                    cur.sql.push('\n');
                    cur.sql.push_str(line);
                }
            } else if self.continuing_other {
            } else if !header(line) && !line.trim().is_empty() {
                sink.not_understood("not a general log entry", number, line);
            }
            return;
        };
        self.next_entry(&e, sink);
        match e.command {
            "Query" | "Execute" => {
                self.current_line = number;
                self.current_is_execute =
                    e.command == "Query" && first_word(e.argument) == "execute";
                self.current = Some(Event {
                    sql: e.argument.to_owned(),
                    ts: self.ts.clone(),
                    conn: Some(e.id),
                    source: Some("mysql-log".to_owned()),
                    ..Event::default()
                });
            }
            // A new session starts with the server's defaults (autocommit on,
            // no transaction); a reset or a change of user rolls back.
            "Quit" | "Connect" | "Change user" | "Reset Connection" => {
                self.conns.remove(&e.id);
                if e.command == "Quit" {
                    sink.closed(e.id);
                }
            }
            _ => {}
        }
    }

    fn cut_line(&mut self, head: &str, _number: u64, sink: &mut Sink) {
        match entry(head) {
            // An entry over the limit (the reader reported it): the lines
            // that continue its argument go with it.
            Some(e) => {
                self.next_entry(&e, sink);
                self.continuing_other = true;
            }
            // A line of the current statement was not read.
            None if self.current.is_some() => self.give_up(sink),
            None => {}
        }
    }

    fn finish(&mut self, sink: &mut Sink) {
        self.release(sink);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_with_and_without_time() {
        assert_eq!(
            entry("261125 14:58:26\t    17 Quit\t"),
            Some(Entry {
                time: Some("261125 14:58:26"),
                id: 17,
                command: "Quit",
                argument: ""
            })
        );
        let e = entry("\t\t    18 Query\tselect 'a").expect("entry");
        assert_eq!((e.id, e.command, e.argument), (18, "Query", "select 'a"));
        let e = entry("2026-11-25T14:58:26.123456Z\t   12 Close stmt\t").expect("entry");
        assert_eq!(e.command, "Close stmt");
        assert_eq!(entry("b'"), None);
        assert_eq!(entry("\t\t    18 Bogus\tx"), None);
        assert!(recognises("Time\t\t    Id Command\tArgument"));
    }

    /// A statement prepared over several lines (mysql2's `execute()`) is not a
    /// statement, and the lines of its text are not lines the reader failed
    /// to understand; its Execute, over as many lines, is the statement.
    #[test]
    fn a_prepare_over_several_lines_is_read_whole() {
        let log = "\t\t   332 Prepare\tSELECT ci.product_id\n    FROM cart_items ci\n   WHERE ci.cart_id = ?\n\
                   \t\t   332 Execute\tSELECT ci.product_id\n    FROM cart_items ci\n   WHERE ci.cart_id = 1\n";
        let (events, summary) = super::super::read_str(
            log,
            super::super::LogFormat::MysqlGeneral,
            &Default::default(),
        )
        .expect("reads");
        assert_eq!(summary.not_understood_lines(), 0, "{summary:?}");
        let sql: Vec<&str> = events.iter().map(|e| e.sql.as_str()).collect();
        assert_eq!(
            sql,
            ["SELECT ci.product_id\n    FROM cart_items ci\n   WHERE ci.cart_id = 1"]
        );
    }
}
