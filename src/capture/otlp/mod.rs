//! OpenTelemetry traces as a capture source: the database spans of a trace
//! become [`Event`]s, attributed to a flow and step by the spans around them.
//!
//! This module is the conversion only, independent of how spans arrive: the
//! file reader ([`reader`], `analyze --input otlp-json`) and an OTLP/HTTP
//! receiver both hand an [`Assembler`] the [`json::ResourceSpans`] they
//! decoded and take the events it has ready.
//!
//! # What a database span gives
//!
//! A span is a database call when it has `db.system.name` / `db.system` or
//! `db.query.text` / `db.statement`; its statement is `db.query.text` (the
//! current semantic conventions) or `db.statement` (the older ones), and a
//! database span without either is counted, not audited. Its bind values are
//! the `db.query.parameter.<key>` attributes in the order of their keys
//! (`0`, `1`, … or `$1`, `$2`, …, by number), else the `db.statement.parameters`
//! that the Python DB-API instrumentation writes (`str()` of the arguments,
//! read when it is a flat tuple or list of plain values: [`params`]). A
//! statement with placeholders whose span recorded no values (the default of
//! most instrumentations) has them unknown (`params_dropped`): no two are
//! taken for equal. `ts` is
//! its start, `duration_us` its end minus its start, `rows` the
//! `db.response.returned_rows` (or `db.rows_affected`), and a status ERROR is
//! a failed statement with the code from `db.response.status_code` (SQLSTATE)
//! or `error.type` and the status message.
//!
//! `source` is `otlp`, or `otlp-mysql` when `db.system` names MySQL or
//! MariaDB (and `otlp-sqlite` for SQLite): the transaction rules read the
//! dialect from the source ([`crate::rules::units::Dialect::of`]), and an event
//! has no other field for it.
//!
//! The connection (`conn`, a stable hash): a span that names its client
//! connection (`db.client.connection.id`, `network.local.address` /
//! `network.local.port`, `client.address` / `client.port`) is on that
//! connection of that server and service instance; otherwise each parent span
//! (a request handler, a job) is one connection per server, since
//! instrumentations rarely say which pooled connection ran a statement.
//!
//! # Flow and step
//!
//! From the span and its ancestors, nearest first: a `flowaudit.flow` /
//! `flowaudit.step` attribute wins. Otherwise the flow is the root span's
//! service (`service.name` of its resource; the span's own when the root is
//! not known), and the step comes from the `--step-from` rules in order
//! ([`StepFrom`]), else the nearest ancestor's `http.route`, else the root
//! span's name.
//!
//! # Order and memory
//!
//! A span is exported when it ends, so a trace's children come before its
//! root. The assembler holds a trace's spans until its root arrives, then
//! hands out its statements in start-time order, and those that started in
//! the same instant in the order their spans arrived. That matters: Node's
//! SDK stamps a span's start to the millisecond (its end is its start plus
//! the exact duration), so a transaction's last INSERT and its COMMIT often
//! start in the same millisecond; and an exporter sends a span when it ends,
//! so one process's spans arrive in the order its statements completed,
//! which on one connection is the order they ran. asyncpg's instrumentation
//! makes a span of each fetch from a cursor: a fetch that follows one of the
//! same statement and values on its connection goes on reading that
//! statement's portal, and is counted with it (its time and rows added), as
//! the server ran it.
//!
//! A root span is not the end of its trace's spans: an exporter sends several
//! batches at once (the Node SDK flushes all it holds concurrently at
//! shutdown, a Collector's queue has several senders), so a batch with a
//! request's last statements can arrive after the batch with the request's own
//! span. A trace whose root arrived therefore waits, and is handed out when
//! [`Options::max_rooted_traces`] later traces have found their root, or at
//! the end of the input. A span that arrives after its trace was handed out
//! starts the trace anew (without the ancestors it had), and the
//! [`Stats::late_spans`] say how many did.
//!
//! At most [`Options::max_open_traces`] traces without their root are held:
//! beyond that the oldest is handed out with what is known of it (its
//! statements attributed by the ancestors that did arrive), as is every trace
//! still open at the end of the input ([`Assembler::finish`]).

pub mod json;
pub mod params;
pub mod proto;
pub mod reader;
pub mod receiver;

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use regex::Regex;

use crate::model::{Event, SqlError};
use json::{ResourceSpans, STATUS_CODE_ERROR, Span};

/// Where a step's name comes from, when no `flowaudit.step` attribute gives it
/// (`--step-from`, repeatable, tried in order).
#[derive(Debug, Clone)]
pub enum StepFrom {
    /// `attr:NAME`: the attribute NAME of the span or its nearest ancestor that has it.
    Attr(String),
    /// `name:REGEX`: the nearest ancestor whose name matches, its first
    /// capture group when the pattern has one, else its whole name.
    Name(Regex),
}

impl std::str::FromStr for StepFrom {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        if let Some(name) = text.strip_prefix("attr:") {
            if name.is_empty() {
                return Err("attr: needs an attribute name, e.g. attr:http.route".to_owned());
            }
            Ok(StepFrom::Attr(name.to_owned()))
        } else if let Some(pattern) = text.strip_prefix("name:") {
            Regex::new(pattern)
                .map(StepFrom::Name)
                .map_err(|e| format!("name:{pattern} is not a valid regular expression: {e}"))
        } else {
            Err(format!(
                "{text:?} is neither attr:NAME (a span attribute) nor name:REGEX (a span name \
                 pattern)"
            ))
        }
    }
}

/// How the assembler attributes and how much it holds.
#[derive(Debug, Clone)]
pub struct Options {
    pub step_from: Vec<StepFrom>,
    /// Traces held while waiting for their root; beyond it the oldest is
    /// handed out as it is.
    pub max_open_traces: usize,
    /// Traces whose root arrived, held for spans of theirs still on the
    /// way; beyond it the one whose root came first is handed out.
    pub max_rooted_traces: usize,
}

/// Traces whose root arrived held at most by default: an SDK's batches in
/// flight, a few hundred requests.
pub const DEFAULT_MAX_ROOTED_TRACES: usize = 1_000;

/// How many traces handed out are remembered, to tell a late span from the
/// first span of a new trace.
const RECENTLY_CLOSED: usize = 10_000;

/// Traces held at most by default: a service's requests in flight.
pub const DEFAULT_MAX_OPEN_TRACES: usize = 10_000;

impl Default for Options {
    fn default() -> Self {
        Self {
            step_from: Vec::new(),
            max_open_traces: DEFAULT_MAX_OPEN_TRACES,
            max_rooted_traces: DEFAULT_MAX_ROOTED_TRACES,
        }
    }
}

/// What the assembler saw, for the report's notes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    pub spans: u64,
    pub database_spans: u64,
    /// Database spans without statement text (a connect, a pool wait).
    pub without_text: u64,
    pub statements: u64,
    /// Traces handed out when their root arrived.
    pub traces_closed: u64,
    /// Traces handed out without their root: at the end of the input.
    pub traces_unclosed: u64,
    /// Traces handed out without their root because too many were open.
    pub traces_evicted: u64,
    /// Spans that arrived after their trace had been handed out (more than
    /// [`Options::max_rooted_traces`] traces found their root in between):
    /// audited with what they say of themselves.
    pub late_spans: u64,
    /// asyncpg cursor fetches folded into the statement whose portal they
    /// went on reading ([`ASYNCPG`]).
    pub cursor_fetches_folded: u64,
}

/// COMMIT, ROLLBACK (not `ROLLBACK TO`), END or ABORT: the transaction ends,
/// and its cursors' portals with it.
fn ends_transaction(sql: &str) -> bool {
    let mut words = sql.split_whitespace();
    let first = words.next().unwrap_or("").trim_end_matches(';');
    if ["COMMIT", "END", "ABORT"]
        .iter()
        .any(|w| first.eq_ignore_ascii_case(w))
    {
        return true;
    }
    first.eq_ignore_ascii_case("ROLLBACK")
        && !words.next().is_some_and(|w| w.eq_ignore_ascii_case("TO"))
}

fn sum(a: Option<u64>, b: Option<u64>) -> Option<u64> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a + b),
        (a, b) => a.or(b),
    }
}

/// What a span's resource says, shared by its spans.
#[derive(Debug, Default)]
struct ResourceInfo {
    service: Option<String>,
    instance: Option<String>,
}

/// What is kept of a span while its trace is open: what attribution reads
/// and, for a database span, its statement without flow and step. The rest
/// of the span (its other attributes, its events) is dropped on arrival.
#[derive(Debug)]
struct Held {
    /// `None` on a root span.
    parent: Option<u64>,
    name: String,
    /// The attributes attribution reads, by their index in
    /// [`Assembler::kept`], as text.
    kept: Vec<(u8, String)>,
    resource: Arc<ResourceInfo>,
    kind: Kind,
}

#[derive(Debug)]
enum Kind {
    Other,
    /// A database span without statement text.
    NoText,
    Statement(Box<Pending>),
}

/// A database span's statement while its trace is open: the [`Event`]
/// without flow and step, in less room.
#[derive(Debug)]
struct Pending {
    sql: String,
    params: Option<Vec<Option<String>>>,
    start: u64,
    end: u64,
    conn: u64,
    /// The connection stands for the span's request (no attribute named
    /// one): it ends with its trace.
    per_trace: bool,
    rows: Option<u64>,
    error: Option<SqlError>,
    source: &'static str,
    /// The statement has placeholders and the span recorded no values.
    params_unknown: bool,
    txn_unknown: bool,
    /// The how-manieth span of the input it was: the order of statements
    /// that started in the same instant.
    arrival: u64,
    /// A fetch from an asyncpg cursor ([`ASYNCPG`]): when it follows a fetch
    /// of the same statement and values on its connection, it continues that
    /// statement's portal and is folded into it.
    cursor_fetch: bool,
    line: Option<u64>,
}

impl Pending {
    fn into_event(self, flow: Option<String>, step: Option<String>) -> Event {
        let (start, end) = (self.start, self.end);
        Event {
            sql: self.sql,
            params: self.params,
            ts: (start > 0).then(|| crate::date::rfc3339(UNIX_EPOCH + Duration::from_nanos(start))),
            conn: Some(self.conn),
            flow,
            step,
            rows: self.rows,
            duration_us: (start > 0 && end >= start).then(|| (end - start) / 1_000),
            error: self.error,
            source: Some(self.source.to_owned()),
            txn_unknown: self.txn_unknown,
            params_dropped: self.params_unknown,
            ..Event::default()
        }
    }
}

/// Indexes of the attributes every assembler keeps.
const FLOW: u8 = 0;
const STEP: u8 = 1;
const ROUTE: u8 = 2;

#[derive(Debug)]
struct OpenTrace {
    /// When it was opened, its key in [`Assembler::order`].
    seq: u64,
    spans: HashMap<u64, Held>,
    /// Its root arrived: it waits in [`Assembler::rooted`].
    rooted: bool,
}

/// Turns spans, in the order they arrive, into the statements of their
/// traces. Feed it with [`Assembler::push`], take events with
/// [`Assembler::pop`] or [`Assembler::drain`], and call
/// [`Assembler::finish`] at the end of the input.
#[derive(Debug)]
pub struct Assembler {
    options: Options,
    /// The attributes attribution reads: `flowaudit.flow`, `flowaudit.step`,
    /// `http.route` and those the `--step-from` rules name.
    kept: Vec<String>,
    traces: HashMap<u128, OpenTrace>,
    /// Traces without their root, by age, oldest first.
    order: BTreeMap<u64, u128>,
    /// Traces whose root arrived, in the order the roots did.
    rooted: VecDeque<u128>,
    /// The traces handed out last, to count the spans that come too late.
    closed: VecDeque<u128>,
    closed_set: foldhash::HashSet<u128>,
    next_seq: u64,
    ready: VecDeque<(Event, Option<u64>)>,
    /// Connections of the traces handed out that stood for their request:
    /// the audit can forget them ([`Assembler::take_ended`]).
    ended: Vec<u64>,
    /// [`Assembler::finish`] was called: open traces go as they are.
    finishing: bool,
    stats: Stats,
}

impl Assembler {
    pub fn new(options: Options) -> Self {
        let mut kept: Vec<String> = ["flowaudit.flow", "flowaudit.step", "http.route"]
            .map(str::to_owned)
            .to_vec();
        for rule in &options.step_from {
            if let StepFrom::Attr(name) = rule
                && !kept.contains(name)
                && kept.len() < usize::from(u8::MAX)
            {
                kept.push(name.clone());
            }
        }
        Self {
            options,
            kept,
            traces: HashMap::new(),
            order: BTreeMap::new(),
            rooted: VecDeque::new(),
            closed: VecDeque::new(),
            closed_set: foldhash::HashSet::default(),
            next_seq: 0,
            ready: VecDeque::new(),
            ended: Vec::new(),
            finishing: false,
            stats: Stats::default(),
        }
    }

    /// Takes the spans of one resource; `line` is where they were read, if
    /// anywhere (the events keep it).
    pub fn push(&mut self, resource_spans: ResourceSpans, line: Option<u64>) {
        let resource = Arc::new(ResourceInfo {
            service: resource_spans.resource.service_name().map(str::to_owned),
            instance: resource_spans
                .resource
                .attributes
                .iter()
                .find(|kv| kv.key == "service.instance.id")
                .and_then(|kv| kv.value.text()),
        });
        for scope in resource_spans.scope_spans {
            let library = scope.scope.name;
            for span in scope.spans {
                self.push_span(span, &resource, line, &library);
            }
        }
    }

    fn push_span(
        &mut self,
        span: Span,
        resource: &Arc<ResourceInfo>,
        line: Option<u64>,
        library: &str,
    ) {
        self.stats.spans += 1;
        let parent = span_id(&span.parent_span_id);
        let is_root = parent.is_none();
        let kind = if is_database(&span) {
            self.stats.database_spans += 1;
            match statement(&span, resource, line, library) {
                Some(pending) => Kind::Statement(Box::new(Pending {
                    arrival: self.stats.spans,
                    ..pending
                })),
                None => {
                    self.stats.without_text += 1;
                    Kind::NoText
                }
            }
        } else {
            Kind::Other
        };
        let kept = (0u8..)
            .zip(&self.kept)
            .filter_map(|(i, k)| Some((i, span.attr_text(k)?)))
            .collect();
        let trace_id = trace_id(&span.trace_id);
        let id = span_id(&span.span_id).unwrap_or(0);
        let held = Held {
            parent,
            name: span.name,
            kept,
            resource: Arc::clone(resource),
            kind,
        };
        let trace = match self.traces.get_mut(&trace_id) {
            Some(trace) => trace,
            None => {
                if self.closed_set.contains(&trace_id) {
                    self.stats.late_spans += 1;
                }
                let seq = self.next_seq;
                self.next_seq += 1;
                self.order.insert(seq, trace_id);
                self.traces.entry(trace_id).or_insert(OpenTrace {
                    seq,
                    spans: HashMap::new(),
                    rooted: false,
                })
            }
        };
        trace.spans.insert(id, held);
        if is_root && !trace.rooted {
            trace.rooted = true;
            let seq = trace.seq;
            self.order.remove(&seq);
            self.rooted.push_back(trace_id);
            if self.rooted.len() > self.options.max_rooted_traces
                && let Some(first) = self.rooted.pop_front()
            {
                self.stats.traces_closed += 1;
                self.close(first);
            }
        } else if self.order.len() > self.options.max_open_traces
            && let Some((_, oldest)) = self.order.pop_first()
        {
            self.stats.traces_evicted += 1;
            self.close(oldest);
        }
    }

    /// The end of the input: every trace still held is to be handed out
    /// with what is known of it, one trace at a time as [`Assembler::pop`]
    /// asks (so that their statements are not all in memory at once), or all
    /// at once by [`Assembler::drain`].
    pub fn finish(&mut self) {
        self.finishing = true;
    }

    /// The next statement ready, with the line its span was read at.
    pub fn pop(&mut self) -> Option<(Event, Option<u64>)> {
        loop {
            if let Some(ready) = self.ready.pop_front() {
                return Some(ready);
            }
            if !self.finishing {
                return None;
            }
            if let Some(first) = self.rooted.pop_front() {
                self.stats.traces_closed += 1;
                self.close(first);
                continue;
            }
            let (_, oldest) = self.order.pop_first()?;
            self.stats.traces_unclosed += 1;
            self.close(oldest);
        }
    }

    /// Moves every statement ready into `out` (after [`Assembler::finish`],
    /// those of every trace still held).
    pub fn drain(&mut self, out: &mut Vec<Event>) {
        while let Some((event, _)) = self.pop() {
            out.push(event);
        }
    }

    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// Moves into `out` the connections that ended with the traces handed
    /// out so far: each stood for one request, and its statements have all
    /// been popped once [`Assembler::pop`] returns `None`. Passed to
    /// [`crate::audit::Audit::connection_closed`], they keep the audit's
    /// state bounded by the requests still open, not by all of them.
    pub fn take_ended(&mut self, out: &mut Vec<u64>) {
        out.append(&mut self.ended);
    }

    /// Statements are ready to [`Assembler::pop`].
    pub fn has_ready(&self) -> bool {
        !self.ready.is_empty()
    }

    /// The most traces held at once without their root.
    pub fn max_open_traces(&self) -> usize {
        self.options.max_open_traces
    }

    /// The most traces held at once after their root arrived.
    pub fn max_rooted_traces(&self) -> usize {
        self.options.max_rooted_traces
    }

    /// Traces held now, without their root or waiting after it.
    pub fn open_traces(&self) -> usize {
        self.traces.len()
    }

    fn close(&mut self, trace_id: u128) {
        let Some(mut trace) = self.traces.remove(&trace_id) else {
            return;
        };
        if !trace.rooted {
            self.order.remove(&trace.seq);
        }
        if self.closed_set.insert(trace_id) {
            self.closed.push_back(trace_id);
            if self.closed.len() > RECENTLY_CLOSED
                && let Some(old) = self.closed.pop_front()
            {
                self.closed_set.remove(&old);
            }
        }
        // Flow and step first (they read the spans), then the statements
        // are taken out.
        let mut named = Vec::new();
        for (id, held) in &trace.spans {
            if matches!(held.kind, Kind::Statement(_)) {
                let chain = ancestors(*id, &trace.spans);
                named.push((*id, self.flow(&chain), self.step(&chain)));
            }
        }
        let mut events = Vec::with_capacity(named.len());
        for (id, flow, step) in named {
            if let Some(held) = trace.spans.remove(&id)
                && let Kind::Statement(pending) = held.kind
            {
                let (start, line) = ((pending.start, pending.arrival), pending.line);
                if pending.per_trace && !self.ended.contains(&pending.conn) {
                    self.ended.push(pending.conn);
                }
                let fetch = pending.cursor_fetch;
                events.push((start, pending.into_event(flow, step), line, fetch));
            }
        }
        // Start-time order; equal starts in the order the spans arrived (see
        // the module's documentation), so that the output never depends on
        // hashing either.
        events.sort_unstable_by_key(|e| e.0);
        // A cursor's later fetches are one statement with its first, as the
        // server ran them: their times and rows add to it. Its portal lives
        // until its transaction ends, other statements running in between.
        let mut kept: Vec<(Event, Option<u64>)> = Vec::with_capacity(events.len());
        let mut open: HashMap<u64, Vec<usize>> = HashMap::new();
        for (_, event, line, fetch) in events {
            let conn = event.conn.unwrap_or(0);
            if ends_transaction(&event.sql) {
                open.remove(&conn);
            }
            if fetch {
                let continued = open.get(&conn).and_then(|indexes| {
                    indexes.iter().copied().find(|&i| {
                        let first = &kept[i].0;
                        first.sql == event.sql
                            && first.params == event.params
                            && first.error.is_none()
                    })
                });
                if let Some(i) = continued {
                    let first = &mut kept[i].0;
                    first.duration_us = sum(first.duration_us, event.duration_us);
                    first.rows = sum(first.rows, event.rows);
                    first.error = event.error;
                    self.stats.cursor_fetches_folded += 1;
                    continue;
                }
                open.entry(conn).or_default().push(kept.len());
            }
            kept.push((event, line));
        }
        self.stats.statements += kept.len() as u64;
        self.ready.extend(kept);
    }

    /// `flowaudit.flow` on the span or an ancestor, else the service of the
    /// topmost span known (the root's, when it arrived).
    fn flow(&self, chain: &[&Held]) -> Option<String> {
        attr_in(chain, FLOW).or_else(|| {
            chain
                .iter()
                .rev()
                .find_map(|held| held.resource.service.clone())
        })
    }

    /// `flowaudit.step` on the span or an ancestor, else the `--step-from`
    /// rules in order, else the nearest ancestor's `http.route`, else the
    /// topmost ancestor's name.
    fn step(&self, chain: &[&Held]) -> Option<String> {
        let ancestors = chain.get(1..).unwrap_or_default();
        attr_in(chain, STEP)
            .or_else(|| {
                self.options.step_from.iter().find_map(|rule| match rule {
                    StepFrom::Attr(name) => {
                        let index = self.kept.iter().position(|k| k == name)?;
                        attr_in(chain, u8::try_from(index).ok()?)
                    }
                    StepFrom::Name(pattern) => ancestors.iter().find_map(|held| {
                        let caps = pattern.captures(&held.name)?;
                        Some(caps.get(1).map_or(&*held.name, |m| m.as_str()).to_owned())
                    }),
                })
            })
            .or_else(|| attr_in(ancestors, ROUTE))
            .or_else(|| ancestors.last().map(|held| held.name.clone()))
    }
}

/// The statement of a database span, without flow and step, or `None` when
/// it has no text.
fn statement(
    span: &Span,
    resource: &ResourceInfo,
    line: Option<u64>,
    library: &str,
) -> Option<Pending> {
    let sql = span
        .attr("db.query.text")
        .or_else(|| span.attr("db.statement"))
        .and_then(json::AnyValue::as_str)?
        .to_owned();
    let failed = span.status.code == STATUS_CODE_ERROR;
    let (conn, per_trace) = connection(span, resource);
    let params = params::of_span(span);
    // Placeholders and no values recorded (an instrumentation's default):
    // the values are unknown, not equal from one statement to the next.
    let params_unknown = params.is_none() && crate::fingerprint::has_placeholder(&sql);
    Some(Pending {
        params_unknown,
        sql,
        params,
        start: span.start_time_unix_nano,
        end: span.end_time_unix_nano,
        conn,
        per_trace,
        rows: [
            "db.response.returned_rows",
            "db.rows_affected",
            "db.response.affected_rows",
        ]
        .iter()
        .find_map(|k| span.attr(k).and_then(json::AnyValue::as_u64)),
        error: failed.then(|| SqlError {
            code: span
                .attr_text("db.response.status_code")
                .or_else(|| span.attr_text("error.type"))
                .unwrap_or_default(),
            message: span.status.message.clone(),
        }),
        source: source_of(span),
        txn_unknown: hides_transactions(library),
        cursor_fetch: library == ASYNCPG && span.name.starts_with("CURSOR: "),
        arrival: 0,
        line,
    })
}

/// asyncpg's instrumentation: it makes a span, named `CURSOR: …`, of each
/// fetch from a cursor, with the cursor's statement; on the wire the first
/// fetch binds and executes the statement and the next ones go on executing
/// its suspended portal.
const ASYNCPG: &str = "opentelemetry.instrumentation.asyncpg";

/// The instrumentations that record no span for a transaction's boundaries:
/// those of Python's DB-API drivers (psycopg, psycopg2, PyMySQL, …, and
/// SQLAlchemy's, which traces the cursor too) wrap `cursor.execute()` and
/// `executemany()`, while the BEGIN that the driver sends itself before the
/// first statement (autocommit off, the DB-API default) and
/// `connection.commit()` / `rollback()` go to the server without a span. A
/// statement of theirs may be in a transaction or in autocommit: the
/// transaction rules leave it alone ([`Event::txn_unknown`]).
///
/// Node's `pg` and `mysql2` instrumentations do record them: there BEGIN and
/// COMMIT are queries (`client.query('BEGIN')`, and mysql2's
/// `beginTransaction()` sends `START TRANSACTION` through `query()`).
pub fn hides_transactions(scope: &str) -> bool {
    const PYTHON_DBAPI: &[&str] = &[
        "aiopg",
        "dbapi",
        "mysql",
        "mysqlclient",
        "psycopg",
        "psycopg2",
        "pymssql",
        "pymysql",
        "sqlalchemy",
        "sqlite3",
    ];
    scope
        .strip_prefix("opentelemetry.instrumentation.")
        .is_some_and(|library| PYTHON_DBAPI.contains(&library))
}

/// A span id (16 hex digits) as a number; `None` when empty or all zeros (no
/// parent). An id in another form is hashed.
fn span_id(text: &str) -> Option<u64> {
    let id = if text.len() <= 16 {
        u64::from_str_radix(text, 16)
            .unwrap_or_else(|_| xxhash_rust::xxh3::xxh3_64(text.as_bytes()))
    } else {
        xxhash_rust::xxh3::xxh3_64(text.as_bytes())
    };
    (!text.is_empty() && id != 0).then_some(id)
}

/// A trace id (32 hex digits) as a number; one in another form is hashed.
fn trace_id(text: &str) -> u128 {
    match u128::from_str_radix(text, 16) {
        Ok(id) if text.len() <= 32 => id,
        _ => xxhash_rust::xxh3::xxh3_128(text.as_bytes()),
    }
}

/// A database call: the span names a database system or carries a statement.
fn is_database(span: &Span) -> bool {
    [
        "db.system.name",
        "db.system",
        "db.query.text",
        "db.statement",
    ]
    .iter()
    .any(|k| span.attr(k).is_some())
}

/// The span `id` and its known ancestors, nearest first (a cycle or a
/// missing parent ends the walk).
fn ancestors(id: u64, spans: &HashMap<u64, Held>) -> Vec<&Held> {
    let mut chain: Vec<&Held> = spans.get(&id).into_iter().collect();
    while let Some(last) = chain.last()
        && chain.len() <= spans.len()
        && let Some(parent) = last.parent.and_then(|p| spans.get(&p))
    {
        chain.push(parent);
    }
    chain
}

/// The attribute `key` as text on the nearest span of `chain` that has it.
fn attr_in(chain: &[&Held], key: u8) -> Option<String> {
    chain.iter().find_map(|held| {
        held.kept
            .iter()
            .find(|(k, _)| *k == key)
            .map(|(_, v)| v.clone())
    })
}

fn db_system(span: &Span) -> Option<&str> {
    span.attr("db.system.name")
        .or_else(|| span.attr("db.system"))
        .and_then(json::AnyValue::as_str)
}

/// `otlp`, with the dialect when the transaction rules need it.
fn source_of(span: &Span) -> &'static str {
    match db_system(span) {
        Some("mysql" | "mariadb") => "otlp-mysql",
        Some("sqlite") => "otlp-sqlite",
        _ => "otlp",
    }
}

/// Connection ids stay below 2^40: `analyze` moves each file's ids into a
/// range of its own above that.
const CONN_MASK: u64 = (1 << 40) - 1;

/// The span's connection: the one its attributes name, else one per parent
/// span and server (then `true`: it stands for the request).
fn connection(span: &Span, resource: &ResourceInfo) -> (u64, bool) {
    let text = |keys: &[&str]| keys.iter().find_map(|k| span.attr_text(k));
    let mut key = String::new();
    for part in [
        db_system(span).map(str::to_owned),
        text(&["server.address", "net.peer.name", "network.peer.address"]),
        text(&["server.port", "net.peer.port", "network.peer.port"]),
        text(&["db.namespace", "db.name"]),
    ] {
        key.push_str(part.as_deref().unwrap_or(""));
        key.push('\u{1f}');
    }
    let named: Vec<String> = [
        "db.client.connection.id",
        "network.local.address",
        "network.local.port",
        "client.address",
        "client.port",
    ]
    .iter()
    .filter_map(|k| span.attr_text(k))
    .collect();
    let per_trace = named.is_empty();
    if per_trace {
        key.push_str("parent\u{1f}");
        key.push_str(&span.trace_id);
        key.push('\u{1f}');
        // A root database span is its own request.
        let parent = if span.parent_span_id.is_empty() {
            &span.span_id
        } else {
            &span.parent_span_id
        };
        key.push_str(parent);
    } else {
        key.push_str("named\u{1f}");
        key.push_str(resource.instance.as_deref().unwrap_or(""));
        for part in named {
            key.push('\u{1f}');
            key.push_str(&part);
        }
    }
    (
        xxhash_rust::xxh3::xxh3_64(key.as_bytes()) & CONN_MASK,
        per_trace,
    )
}

#[cfg(test)]
mod tests;
