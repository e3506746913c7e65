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
//! read when it is a flat tuple or list of plain values: [`params`]). `ts` is
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
//! hands out its statements in start-time order. At most
//! [`Options::max_open_traces`] traces are held: beyond that the oldest is
//! handed out with what is known of it (its statements attributed by the
//! ancestors that did arrive), as is every trace still open at the end of the
//! input ([`Assembler::finish`]). A span of a trace that arrives after its root
//! starts the trace anew.

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
}

/// Traces held at most by default: a service's requests in flight.
pub const DEFAULT_MAX_OPEN_TRACES: usize = 10_000;

impl Default for Options {
    fn default() -> Self {
        Self {
            step_from: Vec::new(),
            max_open_traces: DEFAULT_MAX_OPEN_TRACES,
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
}

/// What a span's resource says, shared by its spans.
#[derive(Debug, Default)]
struct ResourceInfo {
    service: Option<String>,
    instance: Option<String>,
}

#[derive(Debug)]
struct Held {
    span: Span,
    resource: Arc<ResourceInfo>,
    line: Option<u64>,
}

#[derive(Debug)]
struct OpenTrace {
    /// When it was opened, its key in [`Assembler::order`].
    seq: u64,
    spans: HashMap<String, Held>,
}

/// Turns spans, in the order they arrive, into the statements of their
/// traces. Feed it with [`Assembler::push`], take events with
/// [`Assembler::pop`] or [`Assembler::drain`], and call
/// [`Assembler::finish`] at the end of the input.
#[derive(Debug)]
pub struct Assembler {
    options: Options,
    traces: HashMap<String, OpenTrace>,
    /// Open traces by age, oldest first.
    order: BTreeMap<u64, String>,
    next_seq: u64,
    ready: VecDeque<(Event, Option<u64>)>,
    stats: Stats,
}

impl Assembler {
    pub fn new(options: Options) -> Self {
        Self {
            options,
            traces: HashMap::new(),
            order: BTreeMap::new(),
            next_seq: 0,
            ready: VecDeque::new(),
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
            for span in scope.spans {
                self.push_span(span, &resource, line);
            }
        }
    }

    fn push_span(&mut self, span: Span, resource: &Arc<ResourceInfo>, line: Option<u64>) {
        self.stats.spans += 1;
        let is_root = span.parent_span_id.is_empty();
        let trace_id = span.trace_id.clone();
        let trace = match self.traces.get_mut(&trace_id) {
            Some(trace) => trace,
            None => {
                let seq = self.next_seq;
                self.next_seq += 1;
                self.order.insert(seq, trace_id.clone());
                self.traces.entry(trace_id.clone()).or_insert(OpenTrace {
                    seq,
                    spans: HashMap::new(),
                })
            }
        };
        trace.spans.insert(
            span.span_id.clone(),
            Held {
                span,
                resource: Arc::clone(resource),
                line,
            },
        );
        if is_root {
            self.stats.traces_closed += 1;
            self.close(&trace_id);
        } else if self.traces.len() > self.options.max_open_traces
            && let Some((_, oldest)) = self.order.pop_first()
        {
            self.stats.traces_evicted += 1;
            self.close(&oldest);
        }
    }

    /// Hands out every trace still held, with what is known of it.
    pub fn finish(&mut self) {
        while let Some((_, oldest)) = self.order.pop_first() {
            self.stats.traces_unclosed += 1;
            self.close(&oldest);
        }
    }

    /// The next statement ready, with the line its span was read at.
    pub fn pop(&mut self) -> Option<(Event, Option<u64>)> {
        self.ready.pop_front()
    }

    /// Moves every statement ready into `out`.
    pub fn drain(&mut self, out: &mut Vec<Event>) {
        out.extend(self.ready.drain(..).map(|(event, _)| event));
    }

    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// The most traces held at once.
    pub fn max_open_traces(&self) -> usize {
        self.options.max_open_traces
    }

    /// Traces held now.
    pub fn open_traces(&self) -> usize {
        self.traces.len()
    }

    fn close(&mut self, trace_id: &str) {
        let Some(trace) = self.traces.remove(trace_id) else {
            return;
        };
        self.order.remove(&trace.seq);
        let mut events = Vec::new();
        for held in trace.spans.values() {
            if !is_database(&held.span) {
                continue;
            }
            self.stats.database_spans += 1;
            match self.event(held, &trace.spans) {
                Some(event) => events.push((held.span.start_time_unix_nano, event, held.line)),
                None => self.stats.without_text += 1,
            }
        }
        // Start-time order; equal starts in the order of the statements' text
        // and connection, so that the output never depends on hashing.
        events.sort_by(|a, b| {
            (a.0, &a.1.sql, a.1.conn, &a.1.ts).cmp(&(b.0, &b.1.sql, b.1.conn, &b.1.ts))
        });
        self.stats.statements += events.len() as u64;
        self.ready
            .extend(events.into_iter().map(|(_, event, line)| (event, line)));
    }

    /// The statement of a database span, or `None` when it has no text.
    fn event(&self, held: &Held, spans: &HashMap<String, Held>) -> Option<Event> {
        let span = &held.span;
        let sql = span
            .attr("db.query.text")
            .or_else(|| span.attr("db.statement"))
            .and_then(json::AnyValue::as_str)?
            .to_owned();
        let chain = ancestors(span, spans);
        let flow = attr_in(&chain, "flowaudit.flow").or_else(|| {
            chain
                .last()
                .and_then(|top| top.resource.service.clone())
                .or_else(|| held.resource.service.clone())
        });
        let step = attr_in(&chain, "flowaudit.step")
            .or_else(|| self.step_from(&chain))
            .or_else(|| attr_in(&chain[1..], "http.route"))
            .or_else(|| (chain.len() > 1).then(|| chain[chain.len() - 1].span.name.clone()));
        let start = span.start_time_unix_nano;
        let end = span.end_time_unix_nano;
        let failed = span.status.code == STATUS_CODE_ERROR;
        Some(Event {
            sql,
            params: params::of_span(span),
            ts: (start > 0).then(|| crate::date::rfc3339(UNIX_EPOCH + Duration::from_nanos(start))),
            conn: Some(connection(held)),
            flow,
            step,
            rows: [
                "db.response.returned_rows",
                "db.rows_affected",
                "db.response.affected_rows",
            ]
            .iter()
            .find_map(|k| span.attr(k).and_then(json::AnyValue::as_u64)),
            duration_us: (start > 0 && end >= start).then(|| (end - start) / 1_000),
            error: failed.then(|| SqlError {
                code: span
                    .attr_text("db.response.status_code")
                    .or_else(|| span.attr_text("error.type"))
                    .unwrap_or_default(),
                message: span.status.message.clone(),
            }),
            source: Some(source_of(span).to_owned()),
            ..Event::default()
        })
    }

    fn step_from(&self, chain: &[&Held]) -> Option<String> {
        self.options.step_from.iter().find_map(|rule| match rule {
            StepFrom::Attr(name) => attr_in(chain, name),
            StepFrom::Name(pattern) => chain[1..].iter().find_map(|held| {
                let caps = pattern.captures(&held.span.name)?;
                Some(
                    caps.get(1)
                        .map_or(&*held.span.name, |m| m.as_str())
                        .to_owned(),
                )
            }),
        })
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

/// The span and its known ancestors, nearest first (a cycle or a missing
/// parent ends the walk).
fn ancestors<'a>(span: &Span, spans: &'a HashMap<String, Held>) -> Vec<&'a Held> {
    let mut chain = Vec::new();
    if let Some(held) = spans.get(&span.span_id) {
        chain.push(held);
    }
    let mut parent = &span.parent_span_id;
    while !parent.is_empty() && chain.len() <= spans.len() {
        let Some(held) = spans.get(parent) else { break };
        chain.push(held);
        parent = &held.span.parent_span_id;
    }
    chain
}

/// The attribute `key` as text on the nearest span of `chain` that has it.
fn attr_in(chain: &[&Held], key: &str) -> Option<String> {
    chain.iter().find_map(|held| held.span.attr_text(key))
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
/// span and server.
fn connection(held: &Held) -> u64 {
    let span = &held.span;
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
    if named.is_empty() {
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
        key.push_str(held.resource.instance.as_deref().unwrap_or(""));
        for part in named {
            key.push('\u{1f}');
            key.push_str(&part);
        }
    }
    xxhash_rust::xxh3::xxh3_64(key.as_bytes()) & CONN_MASK
}

#[cfg(test)]
mod tests;
