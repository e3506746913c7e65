//! What one client connection did, rebuilt from copies of its messages.
//!
//! The server answers requests in the order it received them, so the observer
//! keeps a queue of outstanding requests and matches each answer to the head
//! of it. Two cases break naive observers and are handled here:
//!
//! - pipelining: a client sends several Parse/Bind/Execute batches before any
//!   answer arrives, reusing the unnamed statement and portal; so every request
//!   is resolved to its SQL and bind values when it is *sent*;
//! - errors in the extended protocol: the server skips every message up to the
//!   next Sync, so an ErrorResponse drops the queue up to that Sync, and a
//!   Sync not yet sent makes the observer skip the client's messages until it is.
//!
//! The transaction status comes from each ReadyForQuery (`I`, `T`, `E`), and
//! between two of them from the command tags (BEGIN, COMMIT, ROLLBACK) and
//! errors, so that statements of one pipelined batch or one multi-statement
//! Query get the status they started in.

use foldhash::{HashMap, HashMapExt};
use std::borrow::Cow;
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use super::frame::Frame;
use super::messages as msg;
use super::race::{Race, Waits};
use super::recorder::Recorded;
use super::steps::{Check, StepChecks};
use super::values::{self, mark_cut};
use crate::model::{Event, SqlError, TxnStatus};

/// A statement the client prepared (`Parse`).
#[derive(Debug, Clone)]
struct Prepared {
    sql: Arc<str>,
    types: Vec<u32>,
}

/// A portal the client bound (`Bind`): the statement with its values.
#[derive(Debug, Clone)]
struct Portal {
    /// Which Bind made it (from 1; 0: unknown): a portal name bound again
    /// is another portal.
    id: u64,
    sql: Arc<str>,
    params: Arc<Vec<Option<String>>>,
}

/// When a request was sent: when the chunk that carried it was read.
#[derive(Debug, Clone, Copy)]
struct Sent {
    at: Instant,
    /// `at` is already when the statement started (a suspended portal's
    /// later part): the statements completed meanwhile do not move it.
    started: bool,
}

/// A request whose answer has not arrived yet.
#[derive(Debug)]
enum Pending {
    /// A simple Query: its statements still to complete.
    Query {
        statements: VecDeque<String>,
        sent: Sent,
        /// The text was longer than the observer keeps: statements after
        /// the cut are not known.
        cut: bool,
        /// Binds seen before it (see [`Pending::Sync`]).
        bound: u64,
    },
    Parse {
        sql: Arc<str>,
        sent: Sent,
    },
    Bind {
        /// The portal's name: binding it again drops a portal suspended
        /// under that name.
        name: String,
        portal: Portal,
        sent: Sent,
    },
    /// Describe of a statement (its ParameterDescription gives the types) or
    /// of a portal (`None`).
    Describe(Option<String>),
    Execute {
        portal_name: String,
        portal: Portal,
        sent: Sent,
        rows: u64,
        /// When it continues a suspended portal: the status its first
        /// Execute started in.
        txn: Option<TxnStatus>,
    },
    /// Close of a portal (`Some`, its name) or of a statement.
    Close(Option<String>),
    /// Sync, with the number of Binds seen before it: when it ends the
    /// transaction, the portals of those Binds are gone.
    Sync {
        bound: u64,
    },
    /// A Parse or Bind the proxy added (fault injection): its answer is
    /// kept from the client. Queued in the order the server gets it, so
    /// that the answers to the client's own messages sent in the same
    /// batch (psycopg 3: Parse, Bind, Describe, Execute) still go to them.
    Injected,
}

/// A portal fetched in parts (Execute with a row limit, answered by
/// PortalSuspended): the statement is one event, from its first Execute to
/// its CommandComplete, or, when the client never reads it to the end, to
/// the moment the server drops the portal: at Close, at a Bind that reuses
/// its name, at the end of its transaction (a Sync outside a transaction
/// block ends the implicit one). asyncpg's `fetchrow` and `fetchval` are
/// such statements: an Execute with a row limit of 1, then Sync (issue 13).
#[derive(Debug)]
struct Suspended {
    portal: Portal,
    sent: Sent,
    rows: u64,
    /// The transaction status its first Execute started in.
    txn: TxnStatus,
    /// When its latest part was answered.
    last: Instant,
}

/// Statements kept back behind a suspended portal at most (see
/// [`Session::release`]).
const HOLD_MAX: usize = 4096;

/// Fault injection: called for every statement about to be sent to the
/// server, in order, with the connection's id and `application_name`; returns the SQL
/// to run in its place when the statement must fail instead of running.
#[derive(Clone)]
pub struct FaultHook(pub Arc<Mutex<FaultFn>>);

pub type FaultFn = dyn FnMut(u64, &str, Option<&str>) -> Option<String> + Send;

impl std::fmt::Debug for FaultHook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("FaultHook")
    }
}

/// Counts the observer keeps for the report.
#[derive(Debug, Default, Clone, Copy)]
pub struct SessionCounts {
    pub undecoded: u64,
    /// Statements not recorded because messages of theirs were lost (see
    /// [`Session::gap`]).
    pub dropped: u64,
}

/// The observer of one connection.
#[derive(Debug)]
pub struct Session {
    conn: u64,
    /// Statements observed and not yet taken (see [`Session::take`]).
    out: Vec<Recorded>,
    /// Statements completed while a portal that started before them is
    /// suspended, kept back until it ends (see [`Session::release`]).
    held: Vec<Recorded>,
    /// Messages of this connection were lost: statements of prepared
    /// statements the observer never saw are not recorded.
    gapped: bool,
    application_name: Option<Arc<str>>,
    prepared: HashMap<String, Prepared>,
    /// SQL-level `PREPARE name AS …` texts by name, so that `EXECUTE name(…)`
    /// is recorded as the statement it ran, with its arguments as parameters
    /// (as the server logs show it).
    sql_prepared: HashMap<String, String>,
    portals: HashMap<String, Portal>,
    suspended: HashMap<String, Suspended>,
    /// Bind messages seen, numbering the portals.
    bound: u64,
    queue: VecDeque<Pending>,
    /// The server is skipping the client's messages up to the next Sync.
    discarding: bool,
    txn: TxnStatus,
    /// When the previous statement completed: a pipelined statement starts
    /// then, not when it was sent.
    last_done: Option<Instant>,
    /// Connection start, until the first ReadyForQuery sets `connect_us`.
    opened: Instant,
    /// The same moment on the wall clock: event times are `wall` plus the
    /// monotonic time since `opened`.
    wall: SystemTime,
    /// When the chunk being observed was read.
    now: Instant,
    connect_us: Option<u64>,
    /// The connection's first statement carries the time spent connecting.
    first_event: bool,
    pub counts: SessionCounts,
    /// With fault injection, the hook that picks the statement to fail.
    fault: Option<FaultHook>,
    /// With step checks (invariants): the checks of the steps that the
    /// client's latest statements ended, to await before they go on.
    checks: Option<StepChecks>,
    due: Vec<(String, String)>,
    injected: u32,
    /// The application instance the connection belongs to, when known
    /// (`run --race-instances N`: the listener it came through).
    instance: Option<u64>,
    /// Race mode: the scheduler, and what the client's latest statements
    /// must wait for before they go on.
    race: Option<Race>,
    race_waits: Waits,
}

impl Session {
    pub fn new(conn: u64, application_name: Option<String>, opened: Instant) -> Self {
        Session {
            conn,
            out: Vec::new(),
            held: Vec::new(),
            gapped: false,
            application_name: application_name.map(Arc::from),
            prepared: HashMap::new(),
            sql_prepared: HashMap::new(),
            portals: HashMap::new(),
            suspended: HashMap::new(),
            bound: 0,
            queue: VecDeque::new(),
            discarding: false,
            txn: TxnStatus::Idle,
            last_done: None,
            opened,
            wall: SystemTime::now() - opened.elapsed(),
            now: opened,
            connect_us: None,
            first_event: true,
            counts: SessionCounts::default(),
            fault: None,
            checks: None,
            due: Vec::new(),
            injected: 0,
            instance: None,
            race: None,
            race_waits: Waits::default(),
        }
    }

    /// A chunk of bytes was read at `at`: its messages happened then. One
    /// clock reading serves every message of the chunk.
    pub fn begin_chunk(&mut self, at: Instant) {
        self.now = at;
    }

    /// The statements observed since the last call, in the order they
    /// completed.
    pub fn take(&mut self) -> std::vec::Drain<'_, Recorded> {
        self.out.drain(..)
    }

    /// Messages of this connection were lost (the writer fell behind): the
    /// requests waiting for answers can no longer be matched, so they are
    /// counted as dropped and forgotten; observing goes on from the next
    /// message.
    pub fn gap(&mut self) {
        let lost = std::mem::take(&mut self.queue);
        self.counts.dropped += lost
            .iter()
            .filter(|p| matches!(p, Pending::Query { .. } | Pending::Execute { .. }))
            .count() as u64;
        // Their ends (a Close, a Sync, a COMMIT) may be what was lost.
        self.counts.dropped += self.suspended.len() as u64;
        self.suspended.clear();
        self.release();
        self.discarding = false;
        self.gapped = true;
    }

    fn sent(&self) -> Sent {
        Sent {
            at: self.now,
            started: false,
        }
    }

    pub fn with_fault(mut self, hook: Option<FaultHook>) -> Self {
        self.fault = hook;
        self
    }

    pub fn with_checks(mut self, checks: Option<StepChecks>) -> Self {
        self.checks = checks;
        self
    }

    /// The application instance the connection belongs to (its events
    /// carry it).
    pub fn with_instance(mut self, instance: Option<u64>) -> Self {
        self.instance = instance;
        self
    }

    /// Race mode: statements go to the race's scheduler before they are sent.
    pub fn with_race(mut self, race: Option<Race>) -> Self {
        self.race = race;
        self
    }

    /// Whether statements may have to wait before they go on (step checks,
    /// race mode): see [`Self::due_checks`].
    pub fn has_checks(&self) -> bool {
        self.checks.is_some() || self.race.is_some()
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

    /// Asks the fault hook about one statement.
    fn fault_for(&self, sql: &str) -> Option<String> {
        let hook = self.fault.as_ref()?;
        let mut decide = hook
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        decide(self.conn, sql, self.application_name.as_deref())
    }

    /// With fault injection: observes a whole client message and appends to
    /// `out` what goes to the server: the message itself, or, for the
    /// statement chosen to fail, a replacement that fails in the server. A
    /// Query runs its statements before the chosen one, then the replacement;
    /// an Execute becomes Parse, Bind and Execute of the replacement, whose
    /// ParseComplete and BindComplete the client never sees.
    ///
    /// A message not kept whole (COPY data, or longer than the observer
    /// keeps) has gone on in pieces already: it is only observed, and a
    /// statement longer than that is never the one that fails.
    pub fn client_frame_rewriting(&mut self, frame: Frame<'_>, out: &mut Vec<u8>) {
        if frame.truncated {
            self.client_frame(frame);
            return;
        }
        let replaced = if self.discarding {
            None
        } else {
            match frame.tag {
                b'Q' => msg::query(frame.body).and_then(|sql| {
                    let statements = super::split::statements(&sql);
                    statements.iter().enumerate().find_map(|(i, statement)| {
                        self.fault_for(statement).map(|failing| {
                            let mut text = statements[..i].join(";\n");
                            if i > 0 {
                                text.push_str(";\n");
                            }
                            text.push_str(&failing);
                            text.push('\0');
                            encode(b'Q', text.as_bytes())
                        })
                    })
                }),
                b'E' => msg::execute(frame.body).and_then(|name| {
                    let sql = self.portals.get(&*name).map(|p| p.sql.clone())?;
                    let failing = self.fault_for(&sql)?;
                    self.injected += 1;
                    let statement = format!("flowaudit_fault_{}", self.injected);
                    let mut parse = format!("{statement}\0{failing}\0").into_bytes();
                    parse.extend_from_slice(&0i16.to_be_bytes());
                    let mut bind = format!("{statement}\0{statement}\0").into_bytes();
                    bind.extend_from_slice(&[0, 0, 0, 0, 0, 0]);
                    let mut execute = format!("{statement}\0").into_bytes();
                    execute.extend_from_slice(&0i32.to_be_bytes());
                    let mut bytes = encode(b'P', &parse);
                    bytes.extend(encode(b'B', &bind));
                    bytes.extend(encode(b'E', &execute));
                    self.queue.push_back(Pending::Injected);
                    self.queue.push_back(Pending::Injected);
                    Some(bytes)
                }),
                _ => None,
            }
        };
        match replaced {
            Some(bytes) => out.extend_from_slice(&bytes),
            None => {
                out.push(frame.tag);
                out.extend_from_slice(&(frame.body.len() as i32 + 4).to_be_bytes());
                out.extend_from_slice(frame.body);
            }
        }
        self.client_frame(frame);
    }

    /// With fault injection: observes a whole server message and appends it
    /// to `out`, unless it answers a message the proxy added.
    /// Rows, COPY data and messages longer than the observer keeps have gone
    /// on in pieces already: they are only observed.
    pub fn server_frame_forwarding(&mut self, frame: Frame<'_>, out: &mut Vec<u8>) {
        if frame.truncated {
            self.server_frame(frame);
            return;
        }
        if matches!(frame.tag, b'1' | b'2') && matches!(self.queue.front(), Some(Pending::Injected))
        {
            self.queue.pop_front();
            return;
        }
        out.push(frame.tag);
        out.extend_from_slice(&(frame.body.len() as i32 + 4).to_be_bytes());
        out.extend_from_slice(frame.body);
        self.server_frame(frame);
    }

    /// A whole message from the client.
    pub fn client_frame(&mut self, frame: Frame<'_>) {
        // Of a Query, Parse or Bind longer than the observer keeps, its start
        // is read (issue 13, defect 2): what is kept of its text or values is
        // marked `…[truncated N bytes]`, N the bytes not observed.
        let cut = frame
            .truncated
            .then(|| frame.len.saturating_sub(frame.body.len()));
        if frame.truncated && !matches!(frame.tag, b'Q' | b'P' | b'B' | b'd' | b'p') {
            self.counts.undecoded += 1;
            return;
        }
        if self.discarding && frame.tag != b'S' {
            // The server ignores it too; Terminate and COPY data make no answer.
            return;
        }
        let body = frame.body;
        let decoded = match frame.tag {
            b'Q' => match cut {
                None => msg::query(body),
                Some(_) => Some(Cow::Owned(msg::query_prefix(body))),
            }
            .map(|sql| {
                let mut statements: VecDeque<String> = super::split::statements(&sql)
                    .into_iter()
                    .map(str::to_owned)
                    .collect();
                if let Some(missing) = cut {
                    // The last statement is the one the cut runs through;
                    // the text's NUL is among the bytes not observed.
                    if statements.is_empty() {
                        statements.push_back(String::new());
                    }
                    if let Some(last) = statements.back_mut() {
                        mark_cut(last, Some(missing.saturating_sub(1)));
                    }
                }
                if self.has_checks() {
                    for statement in &statements {
                        self.step_check(statement, &[]);
                    }
                }
                self.queue.push_back(Pending::Query {
                    statements,
                    sent: self.sent(),
                    cut: cut.is_some(),
                    bound: self.bound,
                });
            }),
            b'P' => match cut {
                None => msg::parse(body),
                Some(_) => msg::parse_prefix(body),
            }
            .map(|mut p| {
                if let Some(missing) = cut {
                    // N also counts the NUL and parameter types after the SQL.
                    mark_cut(&mut p.sql, Some(missing));
                }
                let sql: Arc<str> = Arc::from(p.sql);
                self.prepared.insert(
                    p.statement,
                    Prepared {
                        sql: sql.clone(),
                        types: p.param_types,
                    },
                );
                self.queue.push_back(Pending::Parse {
                    sql,
                    sent: self.sent(),
                });
            }),
            b'B' => match cut {
                None => msg::bind(body),
                Some(_) => msg::bind_prefix(body),
            }
            .map(|b| {
                let (sql, types) = match self.prepared.get(&*b.statement) {
                    Some(p) => (p.sql.clone(), p.types.as_slice()),
                    None => (Arc::from(""), &[][..]),
                };
                let cut_value = b
                    .cut
                    .and_then(|c| c.missing)
                    .map(|missing| (b.values.len().saturating_sub(1), missing));
                // The text kept of the statement's values (issue 15, item 6).
                let mut room = values::MAX_PARAMS_TEXT;
                let mut params: Vec<Option<String>> = b
                    .values
                    .iter()
                    .enumerate()
                    .map(|(i, v)| {
                        v.map(|v| {
                            let oid = types.get(i).copied().unwrap_or(0);
                            let limit = room.min(values::MAX_VALUE_TEXT);
                            let (rendered, missing) = match cut_value {
                                Some((at, missing)) if at == i => {
                                    (values::render_prefix(oid, b.binary(i), v, limit), missing)
                                }
                                _ => (values::render(oid, b.binary(i), v, limit), 0),
                            };
                            room = room.saturating_sub(rendered.text.len());
                            rendered.marked(missing)
                        })
                    })
                    .collect();
                if let Some(c) = b.cut {
                    // Values after the cut: not observed at all.
                    params.extend((0..c.unseen).map(|_| {
                        let mut unseen = String::new();
                        mark_cut(&mut unseen, None);
                        Some(unseen)
                    }));
                }
                self.bound += 1;
                let portal = Portal {
                    id: self.bound,
                    sql,
                    params: Arc::new(params),
                };
                let name = b.portal.into_owned();
                self.portals.insert(name.clone(), portal.clone());
                self.queue.push_back(Pending::Bind {
                    name,
                    portal,
                    sent: self.sent(),
                });
            }),
            b'D' => msg::target(body).map(|(kind, name)| {
                self.queue
                    .push_back(Pending::Describe((kind == b'S').then(|| name.into_owned())));
            }),
            b'E' => msg::execute(body).map(|name| {
                let portal = self.portals.get(&*name).cloned().unwrap_or(Portal {
                    id: 0,
                    sql: Arc::from(""),
                    params: Arc::default(),
                });
                if self.has_checks() {
                    self.step_check(&portal.sql, &portal.params);
                }
                let (sent, rows, txn) = match self.suspended.get(&*name) {
                    Some(s) if s.portal.id == portal.id => (s.sent, s.rows, Some(s.txn)),
                    _ => (self.sent(), 0, None),
                };
                if txn.is_some() {
                    self.suspended.remove(&*name);
                }
                self.queue.push_back(Pending::Execute {
                    portal_name: name.into_owned(),
                    portal,
                    sent,
                    rows,
                    txn,
                });
            }),
            b'C' => msg::target(body).map(|(kind, name)| {
                let portal = match kind {
                    b'S' => {
                        self.prepared.remove(&*name);
                        shrink(&mut self.prepared);
                        None
                    }
                    _ => {
                        self.portals.remove(&*name);
                        shrink(&mut self.portals);
                        Some(name.into_owned())
                    }
                };
                self.queue.push_back(Pending::Close(portal));
            }),
            b'S' => {
                self.discarding = false;
                self.queue.push_back(Pending::Sync { bound: self.bound });
                Some(())
            }
            // Flush, Terminate, COPY data/done/fail, and the authentication
            // answers (password, SASL), which the observer never reads.
            b'H' | b'X' | b'd' | b'c' | b'f' | b'p' => Some(()),
            _ => None,
        };
        if decoded.is_none() {
            self.counts.undecoded += 1;
        }
    }

    /// A whole message from the server.
    pub fn server_frame(&mut self, frame: Frame<'_>) {
        if let Some(race) = &self.race
            && matches!(frame.tag, b'C' | b'E' | b'Z')
        {
            // A statement completed, failed, or the server is ready: it no
            // longer waits at the database (a lock wait shows by the lack).
            race.answered(self.conn);
        }
        if frame.truncated && !matches!(frame.tag, b'D' | b'd' | b'R' | b'K') {
            self.counts.undecoded += 1;
            return;
        }
        let body = frame.body;
        let ok = match frame.tag {
            b'1' | b'2' | b'3' => {
                // A Bind over a portal's name, or its Close, drops the portal.
                if let Some(Pending::Bind { name, .. } | Pending::Close(Some(name))) =
                    self.queue.pop_front()
                {
                    self.end_suspended(&name);
                }
                true
            }
            b't' => match (msg::parameter_description(body), self.queue.front()) {
                (Some(types), Some(Pending::Describe(Some(name)))) => {
                    if let Some(p) = self.prepared.get_mut(name) {
                        p.types = types;
                    }
                    true
                }
                (Some(_), _) => true,
                (None, _) => false,
            },
            b'T' | b'n' => {
                if matches!(self.queue.front(), Some(Pending::Describe(_))) {
                    self.queue.pop_front();
                }
                true
            }
            b'D' => {
                if let Some(Pending::Execute { rows, .. }) = self.queue.front_mut() {
                    *rows += 1;
                }
                true
            }
            b's' => {
                if let Some(Pending::Execute {
                    portal_name,
                    portal,
                    sent,
                    rows,
                    txn,
                }) = self.queue.pop_front()
                {
                    self.suspend(portal_name, portal, sent, rows, txn);
                }
                true
            }
            b'C' => match msg::command_complete(body) {
                Some(tag) => {
                    self.complete(Some(&tag), None);
                    true
                }
                None => false,
            },
            b'I' => {
                // EmptyQueryResponse: nothing ran.
                match self.queue.front_mut() {
                    Some(Pending::Execute { .. }) => {
                        self.queue.pop_front();
                    }
                    Some(Pending::Query { statements, .. }) => {
                        statements.pop_front();
                    }
                    _ => {}
                }
                true
            }
            b'E' => match msg::error_fields(body) {
                Some(fields) => {
                    self.fail(fields);
                    true
                }
                None => false,
            },
            b'Z' => match msg::ready_for_query(body) {
                Some(status) => {
                    self.ready(status);
                    true
                }
                None => false,
            },
            b'S' => match msg::parameter_status(body) {
                Some((name, value)) => {
                    if name == "application_name" {
                        self.application_name = (!value.is_empty()).then(|| Arc::from(value));
                    }
                    true
                }
                None => false,
            },
            // Authentication, BackendKeyData, notices, NOTIFY, COPY responses
            // and data, NegotiateProtocolVersion: forwarded, nothing to record.
            b'R' | b'K' | b'N' | b'A' | b'G' | b'H' | b'W' | b'd' | b'c' | b'v' => true,
            _ => false,
        };
        if !ok {
            self.counts.undecoded += 1;
        }
    }

    /// CommandComplete (or an error, `tag` None): the statement at the head ended.
    fn complete(&mut self, tag: Option<&str>, error: Option<msg::ErrorFields>) {
        let done = self.now;
        if !self.suspended.is_empty() && tag.is_some_and(|t| self.head_ends_transaction(t)) {
            // Its portals go with it, before it.
            self.end_all_suspended();
        }
        let event = match self.queue.front_mut() {
            Some(Pending::Query {
                statements,
                sent,
                cut,
                ..
            }) => {
                let sent = *sent;
                let Some(sql) = statements.pop_front() else {
                    if *cut {
                        // A statement in the part of the text not observed:
                        // counted, as it cannot be recorded.
                        self.counts.undecoded += 1;
                    }
                    return;
                };
                if error.is_some() {
                    // The rest of the Query does not run.
                    statements.clear();
                }
                let failed = error.is_some();
                let mut event = self.event(Arc::from(sql), None, sent, done, tag, None, error);
                if !failed {
                    self.follow_sql_prepare(&mut event);
                    self.follow_deallocate(&event.sql);
                }
                Some(event)
            }
            Some(Pending::Execute { .. }) => match self.queue.pop_front() {
                Some(Pending::Execute {
                    portal_name,
                    portal,
                    mut sent,
                    mut rows,
                    mut txn,
                }) => {
                    // Its earlier parts, when they were answered after this
                    // part was sent (pipelined).
                    if let Some(earlier) = self.take_suspended(&portal_name, portal.id) {
                        sent = earlier.sent;
                        rows += earlier.rows;
                        txn = Some(earlier.txn);
                    }
                    if error.is_none() {
                        self.follow_deallocate(&portal.sql);
                    }
                    let mut event = self.event(
                        portal.sql,
                        Some(portal.params),
                        sent,
                        done,
                        tag,
                        Some(rows),
                        error,
                    );
                    if let Some(txn) = txn {
                        // A portal read to its end in parts: its tag counts
                        // the last part's rows only.
                        event.txn = txn;
                        if tag.is_some_and(|t| t.starts_with("SELECT")) {
                            event.rows = Some(rows);
                        }
                    }
                    Some(event)
                }
                _ => None,
            },
            Some(Pending::Parse { .. } | Pending::Bind { .. }) if error.is_some() => {
                match self.queue.pop_front() {
                    Some(Pending::Parse { sql, sent }) => {
                        Some(self.event(sql, None, sent, done, None, None, error))
                    }
                    Some(Pending::Bind { portal, sent, .. }) => Some(self.event(
                        portal.sql,
                        Some(portal.params),
                        sent,
                        done,
                        None,
                        None,
                        error,
                    )),
                    _ => None,
                }
            }
            _ => None,
        };
        if let Some(event) = event {
            self.last_done = Some(done);
            self.emit(event);
        }
    }

    /// Hands a statement on, unless it is one of a prepared statement the
    /// observer lost after a gap: it is counted instead of recorded blank.
    fn emit(&mut self, recorded: Recorded) {
        if self.suspended.is_empty() && self.held.is_empty() {
            if self.gapped && recorded.sql.is_empty() {
                self.counts.dropped += 1;
            } else {
                self.out.push(recorded);
            }
            return;
        }
        self.hold(recorded);
        self.release();
    }

    /// Keeps a statement back while a portal that started before it is
    /// suspended (see [`Session::release`]).
    fn hold(&mut self, recorded: Recorded) {
        if self.gapped && recorded.sql.is_empty() {
            self.counts.dropped += 1;
        } else {
            self.held.push(recorded);
        }
    }

    /// Hands on the statements kept back, in the order they started, once no
    /// portal is suspended. A cursor is recorded when it ends, with all its
    /// rows, but the statements run while it was open (one per row it gave,
    /// in an N+1 loop) come after it, as in the server's log: the rules see
    /// a query's rows before the statements they fed. Past [`HOLD_MAX`]
    /// statements they go on unordered rather than pile up.
    fn release(&mut self) {
        if self.held.is_empty() || (!self.suspended.is_empty() && self.held.len() < HOLD_MAX) {
            return;
        }
        // Stable: statements that started together stay in completion order.
        self.held.sort_by_key(|r| r.started);
        self.out.append(&mut self.held);
    }

    /// Keeps `PREPARE`d texts and resolves `EXECUTE`s of them.
    fn follow_sql_prepare(&mut self, recorded: &mut Recorded) {
        let bare = crate::attribute::strip_tags(&recorded.sql).trim_start();
        let word = |kw: &str| {
            bare.get(..kw.len())
                .is_some_and(|head| head.eq_ignore_ascii_case(kw))
                && bare
                    .as_bytes()
                    .get(kw.len())
                    .is_some_and(u8::is_ascii_whitespace)
        };
        let name_after =
            |kw: usize| -> String { identifier(bare.get(kw..).unwrap_or("").trim_start()) };
        if word("prepare") {
            let name = name_after(7);
            self.sql_prepared.insert(name, bare.to_owned());
        } else if word("execute") {
            let name = name_after(7);
            if let Some(prepare) = self.sql_prepared.get(&name) {
                let mut event = Event {
                    sql: String::from(&*recorded.sql),
                    ..Event::default()
                };
                crate::capture::logs::pg_session::resolve_execute(&mut event, prepare);
                recorded.sql = Arc::from(event.sql);
                recorded.params = event.params.map(Arc::new);
            }
        }
    }

    /// Forgets the prepared statements (and with DISCARD ALL, the portals)
    /// that a successful `DEALLOCATE` or `DISCARD ALL` dropped in the
    /// server, whether prepared with PREPARE or with Parse (they share one
    /// namespace): a pool that resets its connections with DISCARD ALL
    /// must not grow the observer's maps (issue 15, item 9).
    fn follow_deallocate(&mut self, sql: &str) {
        let bare = crate::attribute::strip_tags(sql).trim_start();
        if !bare
            .as_bytes()
            .first()
            .is_some_and(|b| b.eq_ignore_ascii_case(&b'd'))
        {
            return;
        }
        let mut words = bare
            .split(|c: char| c.is_whitespace() || c == ';')
            .filter(|w| !w.is_empty());
        let first = words.next().unwrap_or("");
        let everything = if first.eq_ignore_ascii_case("discard") {
            if !words.next().is_some_and(|w| w.eq_ignore_ascii_case("all")) {
                return;
            }
            self.portals.clear();
            shrink(&mut self.portals);
            true
        } else if first.eq_ignore_ascii_case("deallocate") {
            let rest = bare[first.len()..].trim_start();
            let rest = match rest.get(..7) {
                Some(kw)
                    if kw.eq_ignore_ascii_case("prepare")
                        && rest[7..].starts_with(char::is_whitespace) =>
                {
                    rest[7..].trim_start()
                }
                _ => rest,
            };
            let name = identifier(rest);
            if name == "all" && !rest.starts_with('"') {
                true
            } else {
                self.sql_prepared.remove(&name);
                self.prepared.remove(&name);
                false
            }
        } else {
            return;
        };
        if everything {
            self.sql_prepared.clear();
            self.prepared.clear();
        }
        shrink(&mut self.sql_prepared);
        shrink(&mut self.prepared);
    }

    /// ErrorResponse: the request at the head failed; in the extended protocol
    /// the server then skips everything up to the next Sync.
    fn fail(&mut self, fields: msg::ErrorFields) {
        let extended = !matches!(self.queue.front(), Some(Pending::Query { .. }) | None);
        self.complete(None, Some(fields));
        if self.txn == TxnStatus::Open {
            self.txn = TxnStatus::Failed;
        }
        if extended {
            while let Some(front) = self.queue.front() {
                if matches!(front, Pending::Sync { .. }) {
                    return;
                }
                self.queue.pop_front();
            }
            // The client has not sent its Sync yet: skip until it does.
            self.discarding = true;
        }
    }

    fn ready(&mut self, status: u8) {
        // The answer to a Query or a Sync: anything still queued before it got
        // no answer and is dropped, which also recovers from a misread.
        let mut answered = None;
        while let Some(front) = self.queue.pop_front() {
            if let Pending::Sync { bound } | Pending::Query { bound, .. } = front {
                answered = Some(bound);
                break;
            }
        }
        self.txn = match status {
            b'T' => TxnStatus::Open,
            b'E' => TxnStatus::Failed,
            _ => TxnStatus::Idle,
        };
        if let Some(bound) = answered.filter(|_| self.txn == TxnStatus::Idle) {
            // Outside a transaction block the server has dropped every
            // portal bound before this Sync: forget them, so that a client
            // binding a new portal name each time does not grow the map.
            if !self.portals.is_empty() {
                self.portals.retain(|_, p| p.id > bound);
                shrink(&mut self.portals);
            }
        }
        if self.txn != TxnStatus::Open {
            // The transaction ended (or failed, and no portal of it can run
            // again): its suspended portals are dropped.
            self.end_all_suspended();
        }
        if self.connect_us.is_none() {
            self.connect_us = Some(micros(self.now.saturating_duration_since(self.opened)));
        }
    }

    /// Whether the statement at the head, completing with `tag`, ended the
    /// transaction (and with it its portals): `ROLLBACK TO` has the tag of a
    /// `ROLLBACK` and ends nothing.
    fn head_ends_transaction(&self, tag: &str) -> bool {
        match tag {
            "COMMIT" | "PREPARE TRANSACTION" => true,
            "ROLLBACK" => {
                let sql = match self.queue.front() {
                    Some(Pending::Query { statements, .. }) => {
                        statements.front().map(String::as_str)
                    }
                    Some(Pending::Execute { portal, .. }) => Some(&*portal.sql),
                    _ => None,
                };
                sql.is_none_or(|sql| {
                    crate::attribute::TxnOp::of(&crate::fingerprint::fingerprint(sql))
                        != Some(crate::attribute::TxnOp::Savepoint)
                })
            }
            _ => false,
        }
    }

    /// When a statement sent at `sent` started: a pipelined statement starts
    /// when the one before it completed.
    fn start_of(&self, sent: Sent) -> Instant {
        match self.last_done {
            Some(prev) if !sent.started && prev > sent.at => prev,
            _ => sent.at,
        }
    }

    /// PortalSuspended: the part of a portal just fetched joins its earlier
    /// parts, and the statement stays open until the portal completes or is
    /// dropped.
    fn suspend(
        &mut self,
        name: String,
        portal: Portal,
        sent: Sent,
        rows: u64,
        txn: Option<TxnStatus>,
    ) {
        let started = Sent {
            at: self.start_of(sent),
            started: true,
        };
        let status = txn.unwrap_or(self.txn);
        let now = self.now;
        let earlier = self.take_suspended(&name, portal.id);
        let part = self.suspended.entry(name).or_insert(Suspended {
            portal,
            sent: started,
            rows: 0,
            txn: status,
            last: now,
        });
        if let Some(earlier) = earlier {
            part.sent = earlier.sent;
            part.txn = earlier.txn;
            part.rows += earlier.rows;
        }
        part.rows += rows;
        part.last = now;
        self.last_done = Some(now);
    }

    /// The earlier parts of portal `id` suspended under `name`; a portal
    /// suspended there by an earlier Bind was dropped when the server ran
    /// the later one, and is recorded.
    fn take_suspended(&mut self, name: &str, id: u64) -> Option<Suspended> {
        let earlier = self.suspended.remove(name)?;
        if earlier.portal.id == id {
            return Some(earlier);
        }
        self.emit_suspended(earlier);
        None
    }

    /// The server dropped a suspended portal: its statement is recorded with
    /// the rows fetched, ending when its last part was answered.
    fn end_suspended(&mut self, name: &str) {
        if let Some(portal) = self.suspended.remove(name) {
            self.emit_suspended(portal);
        }
    }

    /// Every suspended portal was dropped (its transaction ended), recorded
    /// in the order they started.
    fn end_all_suspended(&mut self) {
        if self.suspended.is_empty() {
            return;
        }
        let ended: Vec<Suspended> = self.suspended.drain().map(|(_, s)| s).collect();
        for portal in ended {
            let event = self.suspended_event(portal);
            self.hold(event);
        }
        self.release();
    }

    fn emit_suspended(&mut self, s: Suspended) {
        let event = self.suspended_event(s);
        self.emit(event);
    }

    fn suspended_event(&mut self, s: Suspended) -> Recorded {
        let mut event = self.event(
            s.portal.sql,
            Some(s.portal.params),
            s.sent,
            s.last,
            None,
            None,
            None,
        );
        event.rows = Some(s.rows);
        event.txn = s.txn;
        event
    }

    #[allow(clippy::too_many_arguments)]
    fn event(
        &mut self,
        sql: Arc<str>,
        params: Option<Arc<Vec<Option<String>>>>,
        sent: Sent,
        done: Instant,
        tag: Option<&str>,
        counted_rows: Option<u64>,
        error: Option<msg::ErrorFields>,
    ) -> Recorded {
        let start = self.start_of(sent);
        let wall = self.wall + start.duration_since(self.opened);
        let rows = tag.and_then(msg::rows_of_tag).or(match tag {
            Some(t) if t.starts_with("SELECT") => counted_rows,
            _ => None,
        });
        let status = self.txn;
        if let Some(tag) = tag {
            let command = tag.split(' ').next().unwrap_or("");
            match command {
                "BEGIN" | "START" => self.txn = TxnStatus::Open,
                "COMMIT" | "ROLLBACK" => self.txn = TxnStatus::Idle,
                _ => {}
            }
        }
        let connect_us = if self.first_event {
            self.first_event = false;
            self.connect_us
        } else {
            None
        };
        Recorded {
            sql,
            params,
            started: wall,
            duration_us: micros(done.saturating_duration_since(start)),
            conn: self.conn,
            txn: status,
            rows,
            error: error.map(|e| SqlError {
                code: e.code,
                message: e.message,
            }),
            application_name: self.application_name.clone(),
            connect_us,
            cut_by_stop: false,
            instance: self.instance,
            source: "proxy",
        }
    }

    /// The connection closed: statements sent but never answered are recorded
    /// as failed with a connection error (SQLSTATE 08006), so that none is
    /// lost; `by_stop` when the proxy's stop closed it, which they then say.
    pub fn close(&mut self, done: Instant, by_stop: bool) {
        if let Some(race) = &self.race {
            race.closed(self.conn);
        }
        // Portals suspended had their answers: they ran, as far as they were read.
        self.end_all_suspended();
        let pending = std::mem::take(&mut self.queue);
        for request in pending {
            let lost = || msg::ErrorFields {
                code: "08006".into(),
                message: if by_stop {
                    "the proxy stopped before the statement completed".into()
                } else {
                    "the connection closed before the statement completed".into()
                },
            };
            let event = match request {
                Pending::Query {
                    statements, sent, ..
                } => statements.into_iter().next().map(|sql| {
                    let sql = Arc::from(sql);
                    self.event(sql, None, sent, done, None, None, Some(lost()))
                }),
                Pending::Execute { portal, sent, .. } => Some(self.event(
                    portal.sql,
                    Some(portal.params),
                    sent,
                    done,
                    None,
                    None,
                    Some(lost()),
                )),
                _ => None,
            };
            if let Some(mut event) = event {
                event.cut_by_stop = by_stop;
                self.emit(event);
            }
        }
    }
}

/// The name at the start of `text` as PostgreSQL reads an identifier:
/// `"Quoted"` as written (`""` is a quote), otherwise folded to lower case.
fn identifier(text: &str) -> String {
    if let Some(quoted) = text.strip_prefix('"') {
        let mut name = String::new();
        let mut chars = quoted.chars().peekable();
        while let Some(c) = chars.next() {
            if c == '"' {
                if chars.peek() != Some(&'"') {
                    break;
                }
                chars.next();
            }
            name.push(c);
        }
        return name;
    }
    text.split(|c: char| c == '(' || c == ';' || c.is_whitespace())
        .next()
        .unwrap_or("")
        .to_ascii_lowercase()
}

/// Gives back a map's room once most of it is empty: a map keeps its
/// capacity after removals, and 100,000 names once prepared would
/// otherwise stay allocated for the connection's life.
fn shrink<V>(map: &mut HashMap<String, V>) {
    if map.capacity() > 64 && map.len() * 4 < map.capacity() {
        map.shrink_to_fit();
    }
}

/// A message: tag, length, body.
fn encode(tag: u8, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len() + 5);
    out.push(tag);
    out.extend_from_slice(&(body.len() as i32 + 4).to_be_bytes());
    out.extend_from_slice(body);
    out
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {

    use proptest::prelude::*;

    use super::*;

    /// What the writer would make of the statements observed so far.
    fn events(s: &mut Session) -> Vec<Event> {
        s.take().map(Recorded::into_event).collect()
    }

    fn frame(tag: u8, body: &[u8]) -> Frame<'_> {
        Frame {
            tag,
            body,
            len: body.len(),
            truncated: false,
        }
    }

    fn bind_body(portal: &str, statement: &str, values: &[&str]) -> Vec<u8> {
        let mut b = format!("{portal}\0{statement}\0").into_bytes();
        b.extend_from_slice(&0i16.to_be_bytes());
        b.extend_from_slice(&(values.len() as i16).to_be_bytes());
        for v in values {
            b.extend_from_slice(&(v.len() as i32).to_be_bytes());
            b.extend_from_slice(v.as_bytes());
        }
        b.extend_from_slice(&0i16.to_be_bytes());
        b
    }

    fn parse_body(name: &str, sql: &str) -> Vec<u8> {
        let mut b = format!("{name}\0{sql}\0").into_bytes();
        b.extend_from_slice(&0i16.to_be_bytes());
        b
    }

    #[test]
    fn a_pipeline_reusing_the_unnamed_portal_keeps_each_statements_values() {
        let mut s = Session::new(1, None, Instant::now());
        // Two batches sent before any answer, both through the unnamed
        // statement and portal.
        for (sql, value) in [("select $1::int", "1"), ("select $1::text", "two")] {
            s.client_frame(frame(b'P', &parse_body("", sql)));
            s.client_frame(frame(b'B', &bind_body("", "", &[value])));
            s.client_frame(frame(b'E', b"\0\0\0\0\0"));
            s.client_frame(frame(b'S', b""));
        }
        for _ in 0..2 {
            s.server_frame(frame(b'1', b""));
            s.server_frame(frame(b'2', b""));
            s.server_frame(frame(b'C', b"SELECT 1\0"));
            s.server_frame(frame(b'Z', b"I"));
        }
        let events = events(&mut s);
        let got: Vec<(String, Option<Vec<Option<String>>>)> =
            events.into_iter().map(|e| (e.sql, e.params)).collect();
        assert_eq!(
            got,
            vec![
                ("select $1::int".into(), Some(vec![Some("1".into())])),
                ("select $1::text".into(), Some(vec![Some("two".into())])),
            ]
        );
    }

    /// Issue 13, defect 1: a portal suspended (`s`) is one statement, ended
    /// by its Sync outside a transaction, by a Bind reusing its name, or by
    /// COMMIT, with the rows fetched.
    #[test]
    fn suspended_portals_are_recorded_once_when_the_server_drops_them() {
        let mut s = Session::new(1, None, Instant::now());
        s.client_frame(frame(b'P', &parse_body("s1", "select $1::int")));
        s.client_frame(frame(b'S', b""));
        s.server_frame(frame(b'1', b""));
        s.server_frame(frame(b'Z', b"I"));
        // fetchrow: a row limit of 1, then Sync.
        let fetch = |s: &mut Session, value: &str, done: u8| {
            s.client_frame(frame(b'B', &bind_body("", "s1", &[value])));
            s.client_frame(frame(b'E', b"\0\0\0\0\x01"));
            s.client_frame(frame(b'S', b""));
            s.server_frame(frame(b'2', b""));
            s.server_frame(frame(b'D', b""));
            s.server_frame(frame(b's', b""));
            s.server_frame(frame(b'Z', &[done]));
        };
        fetch(&mut s, "1", b'I');
        s.client_frame(frame(b'Q', b"BEGIN\0"));
        s.server_frame(frame(b'C', b"BEGIN\0"));
        s.server_frame(frame(b'Z', b"T"));
        fetch(&mut s, "2", b'T');
        fetch(&mut s, "3", b'T');
        s.client_frame(frame(b'Q', b"COMMIT\0"));
        s.server_frame(frame(b'C', b"COMMIT\0"));
        s.server_frame(frame(b'Z', b"I"));
        // sql, first value, rows, status
        type Seen = (String, Option<String>, Option<u64>, Option<TxnStatus>);
        let got: Vec<Seen> = events(&mut s)
            .into_iter()
            .map(|e| {
                let param = e.params.and_then(|p| p.into_iter().next().flatten());
                (e.sql, param, e.rows, e.txn)
            })
            .collect();
        let select = |v: &str, txn| ("select $1::int".into(), Some(v.into()), Some(1), Some(txn));
        assert_eq!(
            got,
            vec![
                select("1", TxnStatus::Idle),
                ("BEGIN".into(), None, None, Some(TxnStatus::Idle)),
                select("2", TxnStatus::Open),
                select("3", TxnStatus::Open),
                ("COMMIT".into(), None, None, Some(TxnStatus::Open)),
            ]
        );
    }

    /// Issue 13, defect 3: psycopg 3 sends Parse, Bind, Describe, Execute
    /// and Sync at once. The answers to the Parse and Bind the proxy adds in
    /// place of the Execute are kept from the client, not the client's own,
    /// and the failed statement is recorded with its error.
    #[test]
    fn an_injected_fault_in_a_parse_bind_describe_execute_batch_is_recorded() {
        let hook = FaultHook(Arc::new(Mutex::new(
            |_: u64, sql: &str, _: Option<&str>| {
                sql.starts_with("insert").then(|| "fail".to_owned())
            },
        )));
        let mut s = Session::new(1, None, Instant::now()).with_fault(Some(hook));
        let mut to_server = Vec::new();
        for (tag, body) in [
            (b'P', parse_body("", "insert into t values ($1)")),
            (b'B', bind_body("", "", &["7"])),
            (b'D', b"P\0".to_vec()),
            (b'E', b"\0\0\0\0\0".to_vec()),
            (b'S', Vec::new()),
        ] {
            s.client_frame_rewriting(frame(tag, &body), &mut to_server);
        }
        let tags: Vec<u8> = FrameTags(&to_server).collect();
        assert_eq!(tags, b"PBDPBES".to_vec(), "the Execute is replaced");
        let error = b"SERROR\0CFA001\0Mflowaudit: injected fault\0\0";
        let mut to_client = Vec::new();
        for (tag, body) in [
            (b'1', &b""[..]),
            (b'2', b""),
            (b'n', b""),
            (b'1', b""),
            (b'2', b""),
            (b'E', error),
            (b'Z', b"I"),
        ] {
            s.server_frame_forwarding(frame(tag, body), &mut to_client);
        }
        let tags: Vec<u8> = FrameTags(&to_client).collect();
        assert_eq!(tags, b"12nEZ".to_vec(), "one answer to each client message");
        let events = events(&mut s);
        assert_eq!(events.len(), 1, "{events:?}");
        assert_eq!(events[0].sql, "insert into t values ($1)");
        assert_eq!(events[0].params, Some(vec![Some("7".into())]));
        assert_eq!(events[0].error.as_ref().map(|e| &*e.code), Some("FA001"));
    }

    /// Issue 13, defect 2: a Bind cut by the frame decoder is the start of
    /// its own statement, never taken for the portal bound before it.
    #[test]
    fn a_cut_bind_is_recorded_as_its_own_statement_marked() {
        let mut s = Session::new(1, None, Instant::now());
        s.client_frame(frame(b'P', &parse_body("", "select $1::text")));
        s.client_frame(frame(b'B', &bind_body("", "", &["small"])));
        s.client_frame(frame(b'E', b"\0\0\0\0\0"));
        s.client_frame(frame(
            b'P',
            &parse_body("", "insert into t values ($1, $2)"),
        ));
        let whole = bind_body("", "", &["abcdef", "7"]);
        // Cut inside the first value: 3 of its 6 bytes kept.
        s.client_frame(Frame {
            tag: b'B',
            body: &whole[..13],
            len: whole.len(),
            truncated: true,
        });
        s.client_frame(frame(b'E', b"\0\0\0\0\0"));
        s.client_frame(frame(b'S', b""));
        for tag in [b'1', b'2'] {
            s.server_frame(frame(tag, b""));
        }
        s.server_frame(frame(b'C', b"SELECT 1\0"));
        for tag in [b'1', b'2'] {
            s.server_frame(frame(tag, b""));
        }
        s.server_frame(frame(b'C', b"INSERT 0 1\0"));
        s.server_frame(frame(b'Z', b"I"));
        let got: Vec<(String, Option<Vec<Option<String>>>)> = events(&mut s)
            .into_iter()
            .map(|e| (e.sql, e.params))
            .collect();
        assert_eq!(
            got,
            vec![
                ("select $1::text".into(), Some(vec![Some("small".into())])),
                (
                    "insert into t values ($1, $2)".into(),
                    Some(vec![
                        Some("abc…[truncated 3 bytes]".into()),
                        Some("…[truncated]".into())
                    ])
                ),
            ]
        );
        assert_eq!(s.counts.undecoded, 0);
    }

    /// A simple Query answered with `tag`, outside a transaction.
    fn simple(s: &mut Session, sql: &str, tag: &str) {
        s.client_frame(frame(b'Q', format!("{sql}\0").as_bytes()));
        s.server_frame(frame(b'C', format!("{tag}\0").as_bytes()));
        s.server_frame(frame(b'Z', b"I"));
    }

    /// `n` statements prepared with Parse, named `prefix0`, `prefix1`, …
    fn prepare_many(s: &mut Session, n: usize, prefix: &str) {
        for i in 0..n {
            s.client_frame(frame(
                b'P',
                &parse_body(&format!("{prefix}{i}"), "select 1"),
            ));
        }
        s.client_frame(frame(b'S', b""));
        for _ in 0..n {
            s.server_frame(frame(b'1', b""));
        }
        s.server_frame(frame(b'Z', b"I"));
    }

    /// Issue 15, item 9: the prepared statements a client drops with
    /// DISCARD ALL, DEALLOCATE (a name, or ALL) or Close are forgotten, and
    /// the room they took is given back: a pool resetting its connections
    /// with DISCARD ALL added 35 MB per 100,000 names.
    #[test]
    fn dropped_prepared_statements_are_forgotten_and_their_room_given_back() {
        let mut s = Session::new(1, None, Instant::now());
        prepare_many(&mut s, 100_000, "s");
        assert_eq!(s.prepared.len(), 100_000);
        simple(&mut s, "DISCARD ALL", "DISCARD ALL");
        assert_eq!(s.prepared.len(), 0);
        assert!(s.prepared.capacity() <= 64, "{}", s.prepared.capacity());

        prepare_many(&mut s, 3, "Named");
        simple(&mut s, "PREPARE q(int) AS select $1", "PREPARE");
        simple(&mut s, "DEALLOCATE \"Named0\"", "DEALLOCATE");
        assert!(!s.prepared.contains_key("Named0"));
        assert!(s.prepared.contains_key("Named1"));
        simple(&mut s, "deallocate prepare Q", "DEALLOCATE");
        assert!(s.sql_prepared.is_empty());
        prepare_many(&mut s, 1, "preparedx");
        simple(&mut s, "DEALLOCATE preparedx0", "DEALLOCATE");
        assert!(
            !s.prepared.contains_key("preparedx0"),
            "a name, not a keyword"
        );
        // A DEALLOCATE that failed dropped nothing.
        s.client_frame(frame(b'Q', b"DEALLOCATE ALL\0"));
        s.server_frame(frame(
            b'E',
            b"SERROR\0C25P02\0Mcurrent transaction is aborted\0\0",
        ));
        s.server_frame(frame(b'Z', b"E"));
        assert_eq!(s.prepared.len(), 2);
        simple(&mut s, "ROLLBACK", "ROLLBACK");
        // Through the extended protocol too.
        s.client_frame(frame(b'P', &parse_body("", "DEALLOCATE ALL")));
        s.client_frame(frame(b'B', &bind_body("", "", &[])));
        s.client_frame(frame(b'E', b"\0\0\0\0\0"));
        s.client_frame(frame(b'S', b""));
        for (tag, body) in [
            (b'1', &b""[..]),
            (b'2', b""),
            (b'C', b"DEALLOCATE ALL\0"),
            (b'Z', b"I"),
        ] {
            s.server_frame(frame(tag, body));
        }
        assert!(s.prepared.is_empty(), "{:?}", s.prepared.keys());

        prepare_many(&mut s, 100_000, "c");
        for i in 0..100_000 {
            s.client_frame(frame(b'C', format!("Sc{i}\0").as_bytes()));
        }
        assert!(s.prepared.is_empty());
        assert!(s.prepared.capacity() <= 64, "{}", s.prepared.capacity());
    }

    /// Portals end with their transaction: a client binding a new portal
    /// name in each one (pipelined or not) does not grow the map, and a
    /// portal of a transaction still open stays.
    #[test]
    fn portals_are_forgotten_when_their_transaction_ends() {
        let mut s = Session::new(1, None, Instant::now());
        s.client_frame(frame(b'P', &parse_body("q", "select $1::int")));
        s.client_frame(frame(b'S', b""));
        s.server_frame(frame(b'1', b""));
        s.server_frame(frame(b'Z', b"I"));
        let send = |s: &mut Session, portal: &str| {
            s.client_frame(frame(b'B', &bind_body(portal, "q", &["1"])));
            s.client_frame(frame(b'E', format!("{portal}\0\0\0\0\0").as_bytes()));
            s.client_frame(frame(b'S', b""));
        };
        let answer = |s: &mut Session, status: &[u8]| {
            s.server_frame(frame(b'2', b""));
            s.server_frame(frame(b'C', b"SELECT 1\0"));
            s.server_frame(frame(b'Z', status));
        };
        for i in 0..1000 {
            send(&mut s, &format!("p{i}"));
            answer(&mut s, b"I");
        }
        assert!(s.portals.is_empty(), "{}", s.portals.len());
        // Pipelined: the second portal outlives the first one's Sync.
        send(&mut s, "a");
        send(&mut s, "b");
        answer(&mut s, b"I");
        assert_eq!(s.portals.keys().collect::<Vec<_>>(), vec!["b"]);
        answer(&mut s, b"I");
        assert!(s.portals.is_empty());
        // In a transaction block, until it ends.
        s.client_frame(frame(b'Q', b"BEGIN\0"));
        s.server_frame(frame(b'C', b"BEGIN\0"));
        s.server_frame(frame(b'Z', b"T"));
        send(&mut s, "t");
        answer(&mut s, b"T");
        assert_eq!(s.portals.len(), 1);
        simple(&mut s, "COMMIT", "COMMIT");
        assert!(s.portals.is_empty());
        assert_eq!(events(&mut s).len(), 1000 + 2 + 1 + 1 + 1);
    }

    /// The tags of the messages in a byte stream.
    struct FrameTags<'a>(&'a [u8]);

    impl Iterator for FrameTags<'_> {
        type Item = u8;
        fn next(&mut self) -> Option<u8> {
            let (&tag, rest) = self.0.split_first()?;
            let len = i32::from_be_bytes(rest.get(..4)?.try_into().ok()?) as usize;
            self.0 = rest.get(len..)?;
            Some(tag)
        }
    }

    #[test]
    fn sql_level_execute_becomes_its_prepared_statement_and_odd_text_is_safe() {
        let mut s = Session::new(1, None, Instant::now());
        for sql in [
            "PREPARE stock(int) AS SELECT stock FROM inventory WHERE product_id = $1",
            "EXECUTE stock(7)",
            "execut\u{e9} x",
            "\u{e9}\u{e9}\u{e9}",
        ] {
            s.client_frame(frame(b'Q', format!("{sql}\0").as_bytes()));
            s.server_frame(frame(b'C', b"SELECT 1\0"));
            s.server_frame(frame(b'Z', b"I"));
        }
        let events = events(&mut s);
        assert_eq!(events.len(), 4);
        assert_eq!(
            events[1].sql,
            "SELECT stock FROM inventory WHERE product_id = $1"
        );
        assert_eq!(events[1].params, Some(vec![Some("7".into())]));
        assert_eq!(events[2].sql, "execut\u{e9} x");
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(500))]

        /// Whatever frames arrive from either side, the observer never panics.
        #[test]
        fn arbitrary_frames_never_panic(
            frames in proptest::collection::vec(
                (any::<bool>(),
                 prop_oneof![Just(b'Q'), Just(b'P'), Just(b'B'), Just(b'E'), Just(b'S'),
                             Just(b'C'), Just(b'Z'), Just(b'D'), Just(b't'), Just(b's'),
                             Just(b'1'), Just(b'2'), Just(b'I'), any::<u8>()],
                 proptest::collection::vec(any::<u8>(), 0..64)),
                0..64),
        ) {
            let mut s = Session::new(1, None, Instant::now());
            for (from_client, tag, body) in &frames {
                if *from_client {
                    s.client_frame(frame(*tag, body));
                } else {
                    s.server_frame(frame(*tag, body));
                }
            }
            s.close(Instant::now(), false);
            prop_assert!(s.take().count() <= frames.len());
        }
    }
}
