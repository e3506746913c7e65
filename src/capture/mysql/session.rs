//! The observer of one MySQL connection after its handshake: it reads the
//! client's commands and the server's answers (copies of them) and builds
//! one event per statement the server ran.
//!
//! MySQL answers commands in the order they were sent, so the observer
//! keeps a queue of what it waits answers for and reads each answer with
//! the state its command calls for:
//!
//! - COM_QUERY: one result per statement (OK, ERR, a result set, or a
//!   `LOAD DATA LOCAL INFILE` request), `SERVER_MORE_RESULTS_EXISTS` on
//!   every result but the last. A multi-statement text is recorded as its
//!   statements, each with its own rows; an ERR ends the text (the rest did
//!   not run). A stored procedure's several results are one statement.
//! - COM_STMT_PREPARE: the statement's id and its number of parameters,
//!   then their definitions and the columns'. Not a statement itself, unless
//!   it fails (the application's statement failed then).
//! - COM_STMT_EXECUTE: the prepared text with its parameters decoded
//!   (`values`), answered like a query; with a cursor, the rows come with
//!   COM_STMT_FETCH and the statement is recorded when the cursor ends.
//! - COM_INIT_DB is recorded as the `USE` it stands for; PING, RESET,
//!   STATISTICS and the like are awaited, not recorded; COM_CHANGE_USER's
//!   authentication exchange is relayed and never read.
//!
//! The transaction status comes from the server's status flags
//! (`SERVER_STATUS_IN_TRANS`) in the OK and EOF packets, exact where the
//! general log has to infer it. A statement is labelled with the status it
//! ran in, as the PostgreSQL proxy labels its statements: `open` inside a
//! transaction, including the statement that opened one implicitly
//! (autocommit off) and the COMMIT or ROLLBACK that ends one; `idle`
//! outside one, including BEGIN (which commits an open transaction first)
//! and statements that commit implicitly before they run (DDL).

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use foldhash::HashMap;

use super::messages::{self, Reader, capability, command, status};
use super::packet::Packet;
use super::values::{self, ParamType};
use crate::capture::proxy::{Check, FaultHook, Race, Recorded, StepChecks, Waits};
use crate::model::{SqlError, TxnStatus};

/// The trace's `source` for what this proxy records: the transaction rules
/// read it as MySQL/InnoDB.
pub const SOURCE: &str = "mysql-proxy";

/// Bytes kept of one parameter's long data (COM_STMT_SEND_LONG_DATA): as
/// much as its text keeps.
const MAX_LONG_DATA: usize = crate::capture::proxy::MAX_VALUE_TEXT;

/// Prepared statements a connection keeps at most: a client that never
/// closes its statements stops at the server's own limit
/// (max_prepared_stmt_count, 16,382 by default) long before this.
const MAX_PREPARED: usize = 65_536;

/// A statement prepared on the connection.
#[derive(Debug)]
struct Prepared {
    sql: Arc<str>,
    params: usize,
    /// The parameter types of the latest execute that sent them.
    types: Vec<ParamType>,
    /// Long data sent for the next execute, by parameter.
    long: HashMap<u16, Vec<u8>>,
}

/// A statement waiting for (the rest of) its answer.
#[derive(Debug)]
struct Running {
    sql: Arc<str>,
    params: Option<Arc<Vec<Option<String>>>>,
    sent: Instant,
    /// The transaction status before it ran, when it had to be taken early
    /// (a cursor's); otherwise the status when its answer begins, which is
    /// after every earlier answer (the server answers in order).
    before: Option<TxnStatus>,
    /// Rows returned so far (result sets) or affected (OK).
    rows: u64,
}

/// What the server's next packets answer.
#[derive(Debug)]
enum Pending {
    /// Statements of a COM_QUERY, or one COM_STMT_EXECUTE, the first one
    /// running; the rest are the text's next statements.
    Statements {
        running: Running,
        next: VecDeque<Arc<str>>,
        /// The execute asked for a cursor on this prepared statement.
        cursor: Option<u32>,
        reading: Reading,
        /// An execute of the statement being prepared, decoded once the
        /// prepare is answered.
        deferred: Option<Box<Deferred>>,
    },
    /// A COM_STMT_PREPARE of this text.
    Prepare {
        sql: Arc<str>,
        sent: Instant,
        reading: Reading,
    },
    /// A COM_STMT_FETCH of a statement's cursor.
    Fetch { id: u32 },
    /// A command answered by one OK or ERR (or EOF); recorded when it
    /// stands for a statement (COM_INIT_DB).
    Simple { record: Option<Running> },
    /// COM_CHANGE_USER: an authentication exchange, ending in OK or ERR.
    ChangeUser,
    /// COM_STATISTICS: one text packet.
    Statistics,
    /// COM_FIELD_LIST: column definitions up to an EOF.
    FieldList,
}

/// An execute sent before its statement's prepare was answered (MariaDB's
/// execute-direct, id 0xFFFFFFFF): its payload, kept to decode then.
#[derive(Debug)]
struct Deferred {
    code: u8,
    flags: u8,
    body: Vec<u8>,
    truncated: bool,
}

/// Payload bytes of an execute-direct kept until its prepare is answered.
const MAX_DEFERRED: usize = 64 * 1024;

/// Where the observer is in an answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reading {
    /// The first packet of a result.
    Start,
    /// Column definitions still to come.
    Columns(u64),
    /// The EOF after the column definitions.
    ColumnsEof,
    /// Rows, up to an EOF (or the OK in its place) or an ERR.
    Rows,
    /// A `LOAD DATA LOCAL INFILE` request was answered with the file; its
    /// result follows.
    Infile,
    /// A prepare's parameter and column definitions still to come, each
    /// followed by an EOF unless the client deprecated it.
    Definitions {
        params: u64,
        columns: u64,
    },
    DefinitionsEof {
        columns: u64,
    },
}

/// A cursor opened by an execute, whose rows come by fetches.
#[derive(Debug)]
struct Cursor {
    running: Running,
}

/// Counts the observer keeps for the report.
#[derive(Debug, Default, Clone, Copy)]
pub struct Counts {
    /// Packets the observer could not read (they were relayed all the same).
    pub undecoded: u64,
}

/// The observer of one connection.
#[derive(Debug)]
pub struct Session {
    conn: u64,
    out: Vec<Recorded>,
    application_name: Option<Arc<str>>,
    instance: Option<u64>,
    /// Capabilities both sides agreed on.
    capabilities: u32,
    statements: HashMap<u32, Prepared>,
    /// The id of the statement prepared last: an execute of id 0xFFFFFFFF
    /// (MariaDB) runs it.
    last_prepared: Option<u32>,
    cursors: HashMap<u32, Cursor>,
    queue: VecDeque<Pending>,
    /// The latest status flags the server sent.
    status: u16,
    /// The client is sending a file (`LOAD DATA LOCAL INFILE`).
    infile: bool,
    /// The client is authenticating again (COM_CHANGE_USER).
    reauthenticating: bool,
    /// The client said goodbye (COM_QUIT).
    quit: bool,
    last_done: Option<Instant>,
    opened: Instant,
    wall: SystemTime,
    now: Instant,
    connect_us: Option<u64>,
    first_event: bool,
    pub counts: Counts,
    fault: Option<FaultHook>,
    checks: Option<StepChecks>,
    due: Vec<(String, String)>,
    race: Option<Race>,
    race_waits: Waits,
}

impl Session {
    /// A connection through its handshake: the capabilities agreed on, the
    /// status flags of the server's last OK, the time spent connecting.
    pub fn new(conn: u64, capabilities: u32, status: u16, opened: Instant) -> Self {
        Session {
            conn,
            out: Vec::new(),
            application_name: None,
            instance: None,
            capabilities,
            statements: HashMap::default(),
            last_prepared: None,
            cursors: HashMap::default(),
            queue: VecDeque::new(),
            status,
            infile: false,
            reauthenticating: false,
            quit: false,
            last_done: None,
            opened,
            wall: SystemTime::now() - opened.elapsed(),
            now: opened,
            connect_us: Some(micros(opened.elapsed())),
            first_event: true,
            counts: Counts::default(),
            fault: None,
            checks: None,
            due: Vec::new(),
            race: None,
            race_waits: Waits::default(),
        }
    }

    pub fn with_application_name(mut self, name: Option<String>) -> Self {
        self.application_name = name.map(Arc::from);
        self
    }

    pub fn with_instance(mut self, instance: Option<u64>) -> Self {
        self.instance = instance;
        self
    }

    pub fn with_fault(mut self, hook: Option<FaultHook>) -> Self {
        self.fault = hook;
        self
    }

    pub fn with_checks(mut self, checks: Option<StepChecks>) -> Self {
        self.checks = checks;
        self
    }

    pub fn with_race(mut self, race: Option<Race>) -> Self {
        self.race = race;
        self
    }

    /// Whether statements may have to wait before they go on.
    pub fn has_checks(&self) -> bool {
        self.checks.is_some() || self.race.is_some()
    }

    /// Whether the client sent COM_QUIT: a client that closes without it
    /// was killed or lost.
    pub fn quit(&self) -> bool {
        self.quit
    }

    /// The client is sending a file: its packets are data, not commands.
    pub fn in_infile(&self) -> bool {
        self.infile
    }

    /// A chunk of bytes was read at `at`.
    pub fn begin_chunk(&mut self, at: Instant) {
        self.now = at;
    }

    /// The statements completed since the last call.
    pub fn take(&mut self) -> std::vec::Drain<'_, Recorded> {
        self.out.drain(..)
    }

    /// The checks due before the statements just observed go on: the step
    /// checks of the steps they ended, then what the race holds them for.
    pub fn due_checks(&mut self) -> Vec<Check> {
        let due = std::mem::take(&mut self.due);
        let mut checks: Vec<Check> = match &self.checks {
            Some(checks) => due
                .into_iter()
                .map(|(flow, step)| checks.check(flow, step))
                .collect(),
            None => Vec::new(),
        };
        checks.append(&mut self.race_waits.0);
        checks
    }

    /// Tells the step checks and the race about a statement about to be sent.
    fn step_check(&mut self, sql: &str, params: &[Option<String>]) {
        if let Some(checks) = &self.checks {
            let ended = checks.see(
                self.conn,
                self.instance,
                sql,
                self.application_name.as_deref(),
            );
            self.due.extend(ended);
        }
        if let Some(race) = &self.race {
            let waits = race.statement(
                self.conn,
                self.instance,
                self.application_name.as_deref(),
                sql,
                params,
            );
            self.race_waits.0.extend(waits);
        }
    }

    /// With fault injection: what to send in place of a whole command packet
    /// (header included) the client sent, when a statement of it is the one
    /// that must fail. A COM_QUERY runs its statements before the chosen one,
    /// then the failing one; a COM_STMT_EXECUTE becomes a COM_QUERY of the
    /// failing statement. Either way the server answers with the ERR the
    /// client then reads, in the place of the statement's answer.
    pub fn replacement(&mut self, packet: &[u8]) -> Option<Vec<u8>> {
        if self.fault.is_none() || self.infile || self.reauthenticating || packet.len() < 5 {
            return None;
        }
        let payload = &packet[4..];
        let failing = match payload[0] {
            command::QUERY => {
                let text = messages::text(&payload[1..]);
                let statements = statements(&text, self.multi_statements());
                statements.iter().enumerate().find_map(|(i, statement)| {
                    self.fault_for(statement).map(|failing| {
                        let mut text = statements[..i].join(";\n");
                        if i > 0 {
                            text.push_str(";\n");
                        }
                        text.push_str(&failing);
                        text
                    })
                })
            }
            command::STMT_EXECUTE => {
                let id = Reader::new(&payload[1..]).u32()?;
                let id = self.statement_id(id)?;
                let sql = self.statements.get(&id)?.sql.clone();
                self.fault_for(&sql)
            }
            _ => None,
        }?;
        let mut query = vec![command::QUERY];
        query.extend_from_slice(failing.as_bytes());
        Some(super::packet::encode(packet[3], &query))
    }

    fn fault_for(&self, sql: &str) -> Option<String> {
        let hook = self.fault.as_ref()?;
        let mut decide = hook
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        decide(self.conn, sql, self.application_name.as_deref())
    }

    fn multi_statements(&self) -> bool {
        self.capabilities & (1 << 16) != 0
    }

    fn deprecate_eof(&self) -> bool {
        self.capabilities & capability::DEPRECATE_EOF != 0
    }

    fn statement_id(&self, id: u32) -> Option<u32> {
        if id == u32::MAX {
            self.last_prepared
        } else {
            Some(id)
        }
    }

    fn txn(&self) -> TxnStatus {
        if self.status & status::IN_TRANS != 0 {
            TxnStatus::Open
        } else {
            TxnStatus::Idle
        }
    }

    fn running(&self, sql: Arc<str>, params: Option<Arc<Vec<Option<String>>>>) -> Running {
        Running {
            sql,
            params,
            sent: self.now,
            before: None,
            rows: 0,
        }
    }

    /// A whole packet from the client.
    pub fn client_packet(&mut self, packet: Packet<'_>) {
        if self.infile {
            // The file's blocks, then an empty packet that ends it.
            if packet.len == 0 {
                self.infile = false;
            }
            return;
        }
        if self.reauthenticating || packet.seq != 0 {
            // Authentication data (COM_CHANGE_USER), never read.
            return;
        }
        let Some((&code, body)) = packet.payload.split_first() else {
            self.counts.undecoded += 1;
            return;
        };
        match code {
            command::QUERY => {
                let mut text = messages::text(body).into_owned();
                if packet.truncated {
                    crate::capture::proxy::mark_cut(
                        &mut text,
                        Some(packet.len - packet.payload.len()),
                    );
                }
                let mut next: VecDeque<Arc<str>> = statements(&text, self.multi_statements())
                    .into_iter()
                    .map(Arc::from)
                    .collect();
                if next.is_empty() {
                    next.push_back(Arc::from(text.trim()));
                }
                for sql in &next {
                    self.step_check(sql, &[]);
                }
                let first = next.pop_front().unwrap_or_else(|| Arc::from(""));
                let running = self.running(first, None);
                self.queue.push_back(Pending::Statements {
                    running,
                    next,
                    cursor: None,
                    reading: Reading::Start,
                    deferred: None,
                });
            }
            command::STMT_PREPARE => {
                let sql: Arc<str> = Arc::from(messages::text(body).trim());
                self.queue.push_back(Pending::Prepare {
                    sql,
                    sent: self.now,
                    reading: Reading::Start,
                });
            }
            command::STMT_EXECUTE | command::STMT_BULK_EXECUTE => {
                self.execute(code, body, packet.truncated);
            }
            command::STMT_SEND_LONG_DATA => {
                let mut r = Reader::new(body);
                if let (Some(id), Some(param)) = (r.u32(), r.u16())
                    && let Some(id) = self.statement_id(id)
                    && let Some(statement) = self.statements.get_mut(&id)
                {
                    let kept = statement.long.entry(param).or_default();
                    let room = MAX_LONG_DATA.saturating_sub(kept.len());
                    let data = r.rest();
                    kept.extend_from_slice(&data[..room.min(data.len())]);
                } else {
                    self.counts.undecoded += 1;
                }
            }
            command::STMT_CLOSE => {
                if let Some(id) = Reader::new(body).u32() {
                    self.end_cursor(id, None);
                    self.statements.remove(&id);
                }
            }
            command::STMT_RESET => {
                if let Some(id) = Reader::new(body).u32() {
                    self.end_cursor(id, None);
                    if let Some(statement) = self.statements.get_mut(&id) {
                        statement.long.clear();
                    }
                }
                self.queue.push_back(Pending::Simple { record: None });
            }
            command::STMT_FETCH => match Reader::new(body).u32() {
                Some(id) => self.queue.push_back(Pending::Fetch { id }),
                None => self.counts.undecoded += 1,
            },
            command::INIT_DB => {
                let db = messages::text(body);
                let sql: Arc<str> = Arc::from(format!("USE `{}`", db.replace('`', "``")));
                self.step_check(&sql, &[]);
                let running = self.running(sql, None);
                self.queue.push_back(Pending::Simple {
                    record: Some(running),
                });
            }
            command::QUIT => self.quit = true,
            command::CHANGE_USER => {
                self.reauthenticating = true;
                self.queue.push_back(Pending::ChangeUser);
            }
            command::STATISTICS => self.queue.push_back(Pending::Statistics),
            command::FIELD_LIST => self.queue.push_back(Pending::FieldList),
            command::RESET_CONNECTION => {
                // The server forgets the session's statements and cursors.
                self.reset();
                self.queue.push_back(Pending::Simple { record: None });
            }
            command::PING | command::SET_OPTION => {
                self.queue.push_back(Pending::Simple { record: None });
            }
            _ => {
                // Other commands (COM_PROCESS_KILL, COM_DEBUG, …) are
                // answered by one OK, ERR or EOF.
                self.queue.push_back(Pending::Simple { record: None });
            }
        }
    }

    /// A COM_STMT_EXECUTE (or MariaDB's bulk execute) of a prepared statement.
    fn execute(&mut self, code: u8, body: &[u8], truncated: bool) {
        let mut r = Reader::new(body);
        let (Some(id), Some(flags)) = (r.u32(), r.u8()) else {
            self.counts.undecoded += 1;
            return;
        };
        if id == u32::MAX
            && let Some(sql) = self.queue.iter().rev().find_map(|p| match p {
                Pending::Prepare { sql, .. } => Some(sql.clone()),
                _ => None,
            })
        {
            // MariaDB's execute-direct: the prepare went in the same write
            // and this runs "the statement just prepared", whose id,
            // parameters and types come with the prepare's answer, which
            // the server sends before this one's.
            self.step_check(&sql, &[]);
            let keep = body.len().min(MAX_DEFERRED);
            let deferred = Deferred {
                code,
                flags,
                body: body[..keep].to_vec(),
                truncated: truncated || keep < body.len(),
            };
            let running = self.running(sql, None);
            self.queue.push_back(Pending::Statements {
                running,
                next: VecDeque::new(),
                cursor: None,
                reading: Reading::Start,
                deferred: Some(Box::new(deferred)),
            });
            return;
        }
        let Some(id) = self.statement_id(id) else {
            self.counts.undecoded += 1;
            self.queue.push_back(Pending::Simple { record: None });
            return;
        };
        let Some(sql) = self.statements.get(&id).map(|s| s.sql.clone()) else {
            // Prepared before the observer saw it (cannot happen on a
            // connection observed from its start): answered, not recorded.
            self.counts.undecoded += 1;
            self.queue.push_back(Pending::Simple { record: None });
            return;
        };
        let params = self.decode(code, id, body, truncated);
        self.step_check(&sql, &params);
        let cursor = (code == command::STMT_EXECUTE && flags != 0).then_some(id);
        if cursor.is_some() {
            self.end_cursor(id, None);
        }
        let running = self.running(sql, (!params.is_empty()).then(|| Arc::new(params)));
        self.queue.push_back(Pending::Statements {
            running,
            next: VecDeque::new(),
            cursor,
            reading: Reading::Start,
            deferred: None,
        });
    }

    /// The parameters of an execute of statement `id` (`body`: the payload
    /// after the command byte); none for a bulk execute.
    fn decode(&mut self, code: u8, id: u32, body: &[u8], truncated: bool) -> Vec<Option<String>> {
        let Some(statement) = self.statements.get_mut(&id) else {
            return Vec::new();
        };
        if code != command::STMT_EXECUTE {
            return Vec::new();
        }
        // After the id, the flags (1 byte) and the iteration count (4).
        let rest = body.get(9..).unwrap_or_default();
        let long = std::mem::take(&mut statement.long);
        let params = values::params(
            rest,
            statement.params,
            &mut statement.types,
            &long,
            truncated,
        );
        if params.is_none() && statement.params > 0 {
            self.counts.undecoded += 1;
        }
        params.unwrap_or_default()
    }

    /// The answer to an execute-direct begins: its prepare has been
    /// answered, so its statement is known now.
    fn resolve(&mut self, d: Deferred) {
        let id = self.last_prepared;
        let params = match id {
            Some(id) => self.decode(d.code, id, &d.body, d.truncated),
            None => Vec::new(),
        };
        let opened = id.filter(|_| d.code == command::STMT_EXECUTE && d.flags != 0);
        if let Some(Pending::Statements {
            running, cursor, ..
        }) = self.queue.front_mut()
        {
            running.params = (!params.is_empty()).then(|| Arc::new(params));
            *cursor = opened;
        }
    }

    /// A whole packet from the server.
    pub fn server_packet(&mut self, packet: Packet<'_>) {
        if let Some(Pending::Statements { deferred, .. }) = self.queue.front_mut()
            && let Some(d) = deferred.take()
        {
            self.resolve(*d);
        }
        let Some(pending) = self.queue.front_mut() else {
            // Unasked: the server's own message before it closes the
            // connection (an ERR saying it was killed), or bytes of a
            // command the observer did not follow.
            return;
        };
        let p = packet.payload;
        let first = p.first().copied();
        if first == Some(0xff) && p.get(1..3) == Some(&[0xff, 0xff]) {
            // MariaDB's progress report (error number 0xFFFF, for clients
            // that set CLIENT_PROGRESS): the statement is still running.
            return;
        }
        let deprecate_eof = self.capabilities & capability::DEPRECATE_EOF != 0;
        match pending {
            Pending::Statements {
                reading, running, ..
            } => match *reading {
                Reading::Start | Reading::Infile => match first {
                    Some(0x00) => match messages::ok(p) {
                        Some(ok) => {
                            running.rows += ok.affected;
                            self.result_ended(ok.status, None);
                        }
                        None => self.undecoded_answer(),
                    },
                    Some(0xff) => self.failed(p),
                    Some(0xfb) if *reading == Reading::Start => {
                        *reading = Reading::Infile;
                        self.infile = true;
                    }
                    Some(_) => match Reader::new(p).lenenc() {
                        Some(columns) if columns > 0 => {
                            *reading = Reading::Columns(columns);
                        }
                        _ => self.undecoded_answer(),
                    },
                    None => self.undecoded_answer(),
                },
                Reading::Columns(left) => {
                    *reading = match (left - 1, deprecate_eof) {
                        (0, false) => Reading::ColumnsEof,
                        (0, true) => Reading::Rows,
                        (n, _) => Reading::Columns(n),
                    };
                }
                Reading::ColumnsEof => {
                    let flags = messages::eof_status(p, packet.len, false).unwrap_or(self.status);
                    if flags & status::CURSOR_EXISTS != 0 {
                        self.cursor_opened();
                        self.status = flags;
                    } else {
                        *reading = Reading::Rows;
                    }
                }
                Reading::Rows => {
                    if first == Some(0xff) {
                        self.failed(p);
                    } else if messages::is_eof(p, packet.len) {
                        let flags = messages::eof_status(p, packet.len, deprecate_eof)
                            .unwrap_or(self.status);
                        if flags & status::CURSOR_EXISTS != 0 && running.rows == 0 {
                            self.cursor_opened();
                            self.status = flags;
                        } else {
                            self.result_ended(flags, None);
                        }
                    } else {
                        running.rows += 1;
                    }
                }
                Reading::Definitions { .. } | Reading::DefinitionsEof { .. } => {
                    self.undecoded_answer();
                }
            },
            Pending::Prepare {
                reading, sql, sent, ..
            } => match *reading {
                Reading::Start => match first {
                    Some(0x00) => {
                        let mut r = Reader::new(&p[1..]);
                        match (r.u32(), r.u16(), r.u16()) {
                            (Some(id), Some(columns), Some(params)) => {
                                if self.statements.len() < MAX_PREPARED {
                                    self.statements.insert(
                                        id,
                                        Prepared {
                                            sql: sql.clone(),
                                            params: usize::from(params),
                                            types: Vec::new(),
                                            long: HashMap::default(),
                                        },
                                    );
                                }
                                self.last_prepared = Some(id);
                                let columns = u64::from(columns);
                                *reading = Reading::Definitions {
                                    params: u64::from(params),
                                    columns,
                                };
                                self.definitions_advance(false);
                            }
                            _ => self.undecoded_answer(),
                        }
                    }
                    Some(0xff) => {
                        // The statement failed to prepare: it is the
                        // application's statement, and it failed.
                        let running = Running {
                            sql: sql.clone(),
                            params: None,
                            sent: *sent,
                            before: None,
                            rows: 0,
                        };
                        let error = messages::err(p);
                        self.queue.pop_front();
                        // An execute-direct behind it runs nothing prepared.
                        self.last_prepared = None;
                        self.finish(running, None, error);
                    }
                    _ => self.undecoded_answer(),
                },
                _ => self.definitions_advance(true),
            },
            Pending::Fetch { id } => {
                let id = *id;
                if first == Some(0xff) {
                    self.queue.pop_front();
                    let error = messages::err(p);
                    self.end_cursor(id, error);
                } else if messages::is_eof(p, packet.len) {
                    let flags =
                        messages::eof_status(p, packet.len, deprecate_eof).unwrap_or(self.status);
                    self.status = flags;
                    self.queue.pop_front();
                    if flags & status::LAST_ROW_SENT != 0 {
                        self.end_cursor(id, None);
                    }
                } else if let Some(cursor) = self.cursors.get_mut(&id) {
                    cursor.running.rows += 1;
                }
            }
            Pending::Simple { record } => {
                let record = record.take();
                self.queue.pop_front();
                match first {
                    Some(0xff) => {
                        if let Some(running) = record {
                            self.finish(running, None, messages::err(p));
                        }
                    }
                    _ => {
                        let ok = (first == Some(0x00)).then(|| messages::ok(p)).flatten();
                        if let Some(running) = record {
                            self.finish(running, ok.map(|o| o.status), None);
                        }
                        if let Some(ok) = ok {
                            self.status = ok.status;
                        }
                    }
                }
            }
            Pending::ChangeUser => {
                // Anything else is the authentication exchange going on.
                if let Some(0x00 | 0xff) = first {
                    self.queue.pop_front();
                    self.reauthenticating = false;
                    if first == Some(0x00) {
                        // A new session: its statements, cursors and
                        // transaction are gone.
                        self.reset();
                        if let Some(ok) = messages::ok(p) {
                            self.status = ok.status;
                        }
                    }
                }
            }
            Pending::Statistics => {
                self.queue.pop_front();
            }
            Pending::FieldList => {
                if first == Some(0xff) || messages::is_eof(p, packet.len) {
                    self.queue.pop_front();
                }
            }
        }
        if let Some(race) = &self.race
            && matches!(first, Some(0x00 | 0xff | 0xfe))
        {
            race.answered(self.conn);
        }
    }

    /// Moves a prepare's answer on by one definition (`consumed`: a packet
    /// was read), popping it when the last definition and EOF are through.
    fn definitions_advance(&mut self, consumed: bool) {
        let deprecate_eof = self.deprecate_eof();
        let Some(Pending::Prepare { reading, .. }) = self.queue.front_mut() else {
            return;
        };
        let mut state = *reading;
        if consumed {
            state = match state {
                Reading::Definitions { params, columns } if params > 0 => {
                    if params == 1 && !deprecate_eof {
                        Reading::DefinitionsEof { columns }
                    } else {
                        Reading::Definitions {
                            params: params - 1,
                            columns,
                        }
                    }
                }
                Reading::Definitions { params, columns } => {
                    if columns == 1 && !deprecate_eof {
                        Reading::DefinitionsEof { columns: 0 }
                    } else {
                        Reading::Definitions {
                            params,
                            columns: columns - 1,
                        }
                    }
                }
                Reading::DefinitionsEof { columns } => Reading::Definitions { params: 0, columns },
                other => other,
            };
        }
        if state
            == (Reading::Definitions {
                params: 0,
                columns: 0,
            })
        {
            self.queue.pop_front();
        } else {
            *reading = state;
        }
    }

    /// A result of the running statement ended with status `flags`: the
    /// statement is done unless more results of it follow (a stored
    /// procedure's); the text's next statement runs next.
    fn result_ended(&mut self, flags: u16, error: Option<messages::Err>) {
        let more = flags & status::MORE_RESULTS_EXISTS != 0;
        let Some(Pending::Statements {
            running,
            next,
            reading,
            ..
        }) = self.queue.front_mut()
        else {
            return;
        };
        *reading = Reading::Start;
        self.infile = false;
        if more && next.is_empty() {
            // A procedure's next result: the same statement goes on.
            self.status = flags;
            return;
        }
        let following = if more { next.pop_front() } else { None };
        let done = match following {
            Some(sql) => {
                let following = Running {
                    sql,
                    params: None,
                    sent: self.now,
                    before: None,
                    rows: 0,
                };
                std::mem::replace(running, following)
            }
            None => {
                let Some(Pending::Statements { running, .. }) = self.queue.pop_front() else {
                    return;
                };
                running
            }
        };
        self.finish(done, Some(flags), error);
        self.status = flags;
    }

    /// An ERR in place of the running statement's (next) result: it failed,
    /// and the rest of its text did not run.
    fn failed(&mut self, payload: &[u8]) {
        self.infile = false;
        let Some(Pending::Statements { running, .. }) = self.queue.pop_front() else {
            return;
        };
        self.finish(running, None, messages::err(payload));
    }

    /// An execute's metadata ended with a cursor open: the statement is
    /// recorded when the cursor ends, with the rows fetched.
    fn cursor_opened(&mut self) {
        if let Some(Pending::Statements {
            mut running,
            cursor: Some(id),
            ..
        }) = self.queue.pop_front()
        {
            running.before = Some(self.txn());
            self.cursors.insert(id, Cursor { running });
        }
    }

    fn end_cursor(&mut self, id: u32, error: Option<messages::Err>) {
        if let Some(cursor) = self.cursors.remove(&id) {
            let status = self.status;
            self.finish(cursor.running, Some(status), error);
        }
    }

    fn undecoded_answer(&mut self) {
        self.counts.undecoded += 1;
        self.infile = false;
        if let Some(Pending::Statements { running, .. }) = self.queue.pop_front() {
            let status = self.status;
            self.finish(running, Some(status), None);
        }
    }

    /// COM_RESET_CONNECTION or COM_CHANGE_USER: the session starts over.
    fn reset(&mut self) {
        let open: Vec<u32> = self.cursors.keys().copied().collect();
        for id in open {
            self.end_cursor(id, None);
        }
        self.statements.clear();
        self.last_prepared = None;
    }

    /// Records a statement that completed now, with the status flags after
    /// it (when the server sent them) or its error.
    fn finish(&mut self, running: Running, after: Option<u16>, error: Option<messages::Err>) {
        let done = self.now;
        let start = match self.last_done {
            Some(prev) if prev > running.sent => prev,
            _ => running.sent,
        };
        self.last_done = Some(done);
        let before = running.before.unwrap_or_else(|| self.txn());
        let txn = match (txn_control(&running.sql), after) {
            (Some(Control::Begin), _) => TxnStatus::Idle,
            (Some(Control::End), _) | (None, None) => before,
            (None, Some(flags)) => {
                if flags & status::IN_TRANS != 0 {
                    TxnStatus::Open
                } else {
                    TxnStatus::Idle
                }
            }
        };
        let rows = if error.is_some() {
            None
        } else {
            Some(running.rows)
        };
        let connect_us = if self.first_event {
            self.first_event = false;
            self.connect_us
        } else {
            None
        };
        let wall = self.wall + start.saturating_duration_since(self.opened);
        self.out.push(Recorded {
            sql: running.sql,
            params: running.params,
            started: wall,
            duration_us: micros(done.saturating_duration_since(start)),
            conn: self.conn,
            txn,
            rows,
            error: error.map(|e| SqlError {
                code: e.sqlstate,
                message: format!("{} (MySQL error {})", e.message, e.code),
            }),
            application_name: self.application_name.clone(),
            connect_us,
            cut_by_stop: false,
            instance: self.instance,
            source: SOURCE,
        });
    }

    /// The connection closed: statements sent and not answered are recorded
    /// as failed (SQLSTATE 08S01, MySQL's "communication link failure"), so
    /// that none is lost; `by_stop` when the proxy's stop closed it.
    pub fn close(&mut self, done: Instant, by_stop: bool) {
        if let Some(race) = &self.race {
            race.closed(self.conn);
        }
        self.now = done;
        let message = if by_stop {
            "the proxy stopped before the statement completed"
        } else {
            "the connection closed before the statement completed"
        };
        let lost = || messages::Err {
            code: 2013,
            sqlstate: "08S01".into(),
            message: message.into(),
        };
        let pending = std::mem::take(&mut self.queue);
        for request in pending {
            let running = match request {
                Pending::Statements { running, .. } => Some(running),
                Pending::Simple { record } => record,
                _ => None,
            };
            if let Some(running) = running {
                self.finish(running, None, Some(lost()));
                if let Some(event) = self.out.last_mut() {
                    event.cut_by_stop = by_stop;
                }
            }
        }
        let open: Vec<u32> = self.cursors.keys().copied().collect();
        for id in open {
            self.end_cursor(id, None);
        }
    }
}

/// Transaction control, as far as labelling needs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Control {
    /// BEGIN, START TRANSACTION: runs outside the transaction it opens.
    Begin,
    /// COMMIT, ROLLBACK (not to a savepoint): runs inside the one it ends.
    End,
}

fn txn_control(sql: &str) -> Option<Control> {
    let rest = skip_comments(sql);
    let word_end = rest
        .find(|c: char| !c.is_ascii_alphabetic())
        .unwrap_or(rest.len());
    let word = &rest[..word_end];
    if word.eq_ignore_ascii_case("begin") {
        // `BEGIN NOT ATOMIC` is a compound statement, not a transaction.
        let after = skip_comments(&rest[word_end..]);
        return (!after
            .get(..3)
            .is_some_and(|w| w.eq_ignore_ascii_case("not")))
        .then_some(Control::Begin);
    }
    if word.eq_ignore_ascii_case("start") {
        let after = skip_comments(&rest[word_end..]);
        return after
            .get(..11)
            .is_some_and(|w| w.eq_ignore_ascii_case("transaction"))
            .then_some(Control::Begin);
    }
    if word.eq_ignore_ascii_case("commit") {
        return Some(Control::End);
    }
    if word.eq_ignore_ascii_case("rollback") {
        let mut after = skip_comments(&rest[word_end..]);
        if after
            .get(..4)
            .is_some_and(|w| w.eq_ignore_ascii_case("work"))
        {
            after = skip_comments(&after[4..]);
        }
        let to = after.get(..2).is_some_and(|w| w.eq_ignore_ascii_case("to"));
        return (!to).then_some(Control::End);
    }
    None
}

/// `sql` after leading whitespace and comments (`/* */`, `-- `, `#`).
fn skip_comments(sql: &str) -> &str {
    let mut rest = sql;
    loop {
        rest = rest.trim_start();
        if let Some(after) = rest.strip_prefix("/*") {
            match after.find("*/") {
                Some(end) => rest = &after[end + 2..],
                None => return "",
            }
        } else if rest.starts_with("-- ") || rest.starts_with('#') {
            match rest.find('\n') {
                Some(end) => rest = &rest[end + 1..],
                None => return "",
            }
        } else {
            return rest;
        }
    }
}

/// The statements of a COM_QUERY text, split at the semicolons MySQL's
/// parser ends statements at (outside quotes, backquotes and comments),
/// when the client may send several (CLIENT_MULTI_STATEMENTS); otherwise
/// the text is one statement. Empty ones are dropped.
pub fn statements(text: &str, multi: bool) -> Vec<&str> {
    if !multi || !text.contains(';') {
        let t = text.trim();
        return if t.is_empty() { Vec::new() } else { vec![t] };
    }
    let bytes = text.as_bytes();
    let mut out = Vec::new();
    let mut start = 0;
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            q @ (b'\'' | b'"' | b'`') => {
                i += 1;
                while i < bytes.len() {
                    if bytes[i] == b'\\' && q != b'`' {
                        i += 2;
                        continue;
                    }
                    if bytes[i] == q {
                        if bytes.get(i + 1) == Some(&q) {
                            i += 2;
                            continue;
                        }
                        break;
                    }
                    i += 1;
                }
                i += 1;
            }
            b'#' => {
                while i < bytes.len() && bytes[i] != b'\n' {
                    i += 1;
                }
            }
            b'-' if bytes.get(i + 1) == Some(&b'-')
                && bytes.get(i + 2).is_none_or(|c| c.is_ascii_whitespace()) =>
            {
                while i < bytes.len() && bytes[i] != b'\n' {
                    i += 1;
                }
            }
            b'/' if bytes.get(i + 1) == Some(&b'*') => {
                i += 2;
                while i + 1 < bytes.len() && !(bytes[i] == b'*' && bytes[i + 1] == b'/') {
                    i += 1;
                }
                i += 2;
            }
            b';' => {
                let s = text[start..i].trim();
                if !skip_comments(s).is_empty() {
                    out.push(s);
                }
                start = i + 1;
                i += 1;
            }
            _ => i += 1,
        }
    }
    let tail = text.get(start..).unwrap_or("").trim();
    if !skip_comments(tail).is_empty() {
        out.push(tail);
    }
    out
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::capture::mysql::packet::{PacketDecoder, encode};
    use proptest::prelude::*;

    const CAPS: u32 = capability::PROTOCOL_41 | (1 << 16) | (1 << 17);

    fn feed_client(s: &mut Session, seq: u8, payload: &[u8]) {
        let mut d = PacketDecoder::new(|_| usize::MAX);
        d.feed(&encode(seq, payload), |p| s.client_packet(p));
    }

    fn feed_server(s: &mut Session, payloads: &[Vec<u8>]) {
        let mut d = PacketDecoder::new(|_| usize::MAX);
        for (i, p) in payloads.iter().enumerate() {
            d.feed(&encode(i as u8 + 1, p), |p| s.server_packet(p));
        }
    }

    fn ok(affected: u8, status: u16) -> Vec<u8> {
        let mut p = vec![0, affected, 0];
        p.extend_from_slice(&status.to_le_bytes());
        p.extend_from_slice(&[0, 0]);
        p
    }

    fn eof(status: u16) -> Vec<u8> {
        let mut p = vec![0xfe, 0, 0];
        p.extend_from_slice(&status.to_le_bytes());
        p
    }

    fn query(text: &str) -> Vec<u8> {
        let mut p = vec![command::QUERY];
        p.extend_from_slice(text.as_bytes());
        p
    }

    #[test]
    fn a_result_set_counts_its_rows_and_the_status_labels_the_transaction() {
        let mut s = Session::new(1, CAPS, status::AUTOCOMMIT, Instant::now());
        feed_client(&mut s, 0, &query("SET autocommit=0"));
        feed_server(&mut s, &[ok(0, 0)]);
        feed_client(&mut s, 0, &query("select id from t"));
        feed_server(
            &mut s,
            &[
                vec![1],
                b"column".to_vec(),
                eof(status::IN_TRANS),
                b"\x011".to_vec(),
                b"\x012".to_vec(),
                eof(status::IN_TRANS),
            ],
        );
        feed_client(&mut s, 0, &query("COMMIT"));
        feed_server(&mut s, &[ok(0, 0)]);
        feed_client(&mut s, 0, &query("BEGIN"));
        feed_server(&mut s, &[ok(0, status::IN_TRANS)]);
        let got: Vec<_> = s
            .take()
            .map(|r| (r.sql.to_string(), r.txn, r.rows))
            .collect();
        assert_eq!(
            got,
            vec![
                ("SET autocommit=0".into(), TxnStatus::Idle, Some(0)),
                ("select id from t".into(), TxnStatus::Open, Some(2)),
                ("COMMIT".into(), TxnStatus::Open, Some(0)),
                ("BEGIN".into(), TxnStatus::Idle, Some(0)),
            ]
        );
    }

    #[test]
    fn multi_statements_are_recorded_one_by_one_and_an_error_ends_them() {
        let mut s = Session::new(1, CAPS, status::AUTOCOMMIT, Instant::now());
        feed_client(
            &mut s,
            0,
            &query("insert into t values (1); insert into t values (1); select 1"),
        );
        feed_server(
            &mut s,
            &[
                ok(1, status::AUTOCOMMIT | status::MORE_RESULTS_EXISTS),
                b"\xff\x26\x04#23000Duplicate entry '1'".to_vec(),
            ],
        );
        let got: Vec<_> = s
            .take()
            .map(|r| (r.sql.to_string(), r.rows, r.error.map(|e| e.code)))
            .collect();
        assert_eq!(
            got,
            vec![
                ("insert into t values (1)".into(), Some(1), None),
                (
                    "insert into t values (1)".into(),
                    None,
                    Some("23000".into())
                ),
            ]
        );
    }

    #[test]
    fn prepared_statements_carry_their_parameters() {
        let mut s = Session::new(1, CAPS, status::AUTOCOMMIT, Instant::now());
        let mut prepare = vec![command::STMT_PREPARE];
        prepare.extend_from_slice(b"select * from t where id = ?");
        feed_client(&mut s, 0, &prepare);
        let mut answer = vec![0];
        answer.extend_from_slice(&5u32.to_le_bytes());
        answer.extend_from_slice(&1u16.to_le_bytes()); // columns
        answer.extend_from_slice(&1u16.to_le_bytes()); // params
        answer.extend_from_slice(&[0, 0, 0]);
        feed_server(
            &mut s,
            &[answer, b"param".to_vec(), eof(2), b"col".to_vec(), eof(2)],
        );
        assert!(s.queue.is_empty(), "{:?}", s.queue);
        let mut execute = vec![command::STMT_EXECUTE];
        execute.extend_from_slice(&5u32.to_le_bytes());
        execute.extend_from_slice(&[0, 1, 0, 0, 0]);
        execute.extend_from_slice(&[0, 1, 0x08, 0]);
        execute.extend_from_slice(&42i64.to_le_bytes());
        feed_client(&mut s, 0, &execute);
        feed_server(
            &mut s,
            &[vec![1], b"col".to_vec(), eof(2), vec![0, 0, 1], eof(2)],
        );
        let got: Vec<_> = s
            .take()
            .map(|r| (r.sql.to_string(), r.params.map(|p| p.to_vec()), r.rows))
            .collect();
        assert_eq!(
            got,
            vec![(
                "select * from t where id = ?".into(),
                Some(vec![Some("42".into())]),
                Some(1)
            )]
        );
    }

    #[test]
    fn an_execute_direct_runs_the_statement_its_prepare_names() {
        let mut s = Session::new(1, CAPS, status::AUTOCOMMIT, Instant::now());
        let prepare_answer = |id: u32| {
            let mut answer = vec![0];
            answer.extend_from_slice(&id.to_le_bytes());
            answer.extend_from_slice(&1u16.to_le_bytes()); // columns
            answer.extend_from_slice(&1u16.to_le_bytes()); // params
            answer.extend_from_slice(&[0, 0, 0]);
            vec![answer, b"param".to_vec(), eof(2), b"col".to_vec(), eof(2)]
        };
        let direct = |sql: &str, value: i64| {
            let mut bytes = Vec::new();
            let mut prepare = vec![command::STMT_PREPARE];
            prepare.extend_from_slice(sql.as_bytes());
            bytes.extend(encode(0, &prepare));
            let mut execute = vec![command::STMT_EXECUTE];
            execute.extend_from_slice(&u32::MAX.to_le_bytes());
            execute.extend_from_slice(&[0, 1, 0, 0, 0, 0, 1, 0x08, 0]);
            execute.extend_from_slice(&value.to_le_bytes());
            bytes.extend(encode(0, &execute));
            bytes
        };
        let result = vec![vec![1], b"col".to_vec(), eof(2), vec![0, 0, 1], eof(2)];
        let mut up = PacketDecoder::new(|_| usize::MAX);
        // Two statements, each prepared and run in one write; the first
        // again with the other still prepared.
        for (sql, id, value) in [
            ("select ? + 1", 1, 1),
            ("select concat(?, 'b')", 2, 7),
            ("select ? + 1", 3, 5),
        ] {
            up.feed(&direct(sql, value), |p| s.client_packet(p));
            let mut answers = prepare_answer(id);
            answers.extend(result.clone());
            feed_server(&mut s, &answers);
        }
        let got: Vec<_> = s
            .take()
            .map(|r| (r.sql.to_string(), r.params.map(|p| p.to_vec()), r.rows))
            .collect();
        let one = |v: &str| Some(vec![Some(v.to_owned())]);
        assert_eq!(
            got,
            vec![
                ("select ? + 1".into(), one("1"), Some(1)),
                ("select concat(?, 'b')".into(), one("7"), Some(1)),
                ("select ? + 1".into(), one("5"), Some(1)),
            ]
        );
        assert_eq!(s.counts.undecoded, 0);
    }

    #[test]
    fn progress_reports_are_not_errors() {
        let mut s = Session::new(1, CAPS, status::AUTOCOMMIT, Instant::now());
        feed_client(&mut s, 0, &query("LOAD DATA LOCAL INFILE 'x' INTO TABLE t"));
        feed_server(&mut s, &[vec![0xfb, b'x']]);
        assert!(s.in_infile());
        let mut d = PacketDecoder::new(|_| usize::MAX);
        d.feed(&encode(2, b"1,a\n"), |p| s.client_packet(p));
        d.feed(&encode(3, b""), |p| s.client_packet(p));
        assert!(!s.in_infile());
        feed_server(
            &mut s,
            &[
                b"\xff\xff\xff\x01\x02\x02\x00\x00\x00\x0fEnd bulk insert".to_vec(),
                ok(3, status::AUTOCOMMIT),
            ],
        );
        let got: Vec<_> = s.take().map(|r| (r.rows, r.error.is_none())).collect();
        assert_eq!(got, vec![(Some(3), true)]);
    }

    #[test]
    fn a_statement_cut_off_by_the_close_is_recorded_failed() {
        let mut s = Session::new(1, CAPS, status::AUTOCOMMIT, Instant::now());
        feed_client(&mut s, 0, &query("select sleep(5)"));
        s.close(Instant::now(), false);
        let got: Vec<_> = s.take().map(|r| r.error.map(|e| e.code)).collect();
        assert_eq!(got, vec![Some("08S01".into())]);
    }

    #[test]
    fn statements_split_where_mysql_does() {
        assert_eq!(
            statements(
                "select ';' ; select `a;b` -- x;\n; # y;\n select 'it''s;\\';'",
                true
            ),
            vec![
                "select ';'",
                "select `a;b` -- x;",
                "# y;\n select 'it''s;\\';'"
            ]
        );
        assert_eq!(
            statements("select 1; select 2", false),
            vec!["select 1; select 2"]
        );
        assert_eq!(txn_control("/* x */ BEGIN"), Some(Control::Begin));
        assert_eq!(
            txn_control("start transaction read only"),
            Some(Control::Begin)
        );
        assert_eq!(txn_control("ROLLBACK TO SAVEPOINT a"), None);
        assert_eq!(txn_control("rollback"), Some(Control::End));
        assert_eq!(txn_control("BEGIN NOT ATOMIC SELECT 1; END"), None);
    }

    proptest! {
        #[test]
        fn any_packets_never_panic_the_observer(
            client in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..40), 0..8),
            server in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..40), 0..16),
        ) {
            let mut s = Session::new(1, CAPS | capability::DEPRECATE_EOF, 2, Instant::now());
            for (c, chunk) in client.iter().enumerate() {
                feed_client(&mut s, 0, chunk);
                feed_server(&mut s, &server[c.min(server.len())..]);
            }
            s.close(Instant::now(), true);
            let _ = s.take().count();
        }
    }
}
