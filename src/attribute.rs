//! Ties every statement to a flow and a step, in the order DESIGN.md fixes
//! (first match wins, for the flow and the step each):
//!
//! 1. the event's own `flow` / `step` fields;
//! 2. sqlcommenter tags in a comment at the end or the start of the statement
//!    (`flow`, `step`; else `route`, `controller`/`action` or `job` name the step);
//! 3. marker statements (`SET flowaudit.flow = '…'`, `SET flowaudit.step =
//!    '…'`, `SET @flowaudit_step = '…'` for MySQL, or `SELECT
//!    set_config('flowaudit.step', '…', …)`). A marker is a session setting:
//!    it names the flow or step of its own connection until that connection's
//!    next marker. A connection that never set the flow (or the step) follows
//!    the latest marker of the run that did (a test harness marking steps on
//!    its own connection while the application's pool runs the statements);
//!    issue 13, defect 6;
//! 4. the connection's `application_name`;
//! 5. `(unattributed)`.
//!
//! Transaction control that carries no tags of its own belongs to the step of
//! the statements it encloses on the same connection: BEGIN and SAVEPOINT wait
//! for the next statement of their connection, COMMIT and ROLLBACK take the
//! step of the statement before them. Markers are attribution only: they are
//! returned flagged so that nothing counts them.

use foldhash::HashMap;
use std::sync::LazyLock;

use percent_encoding::percent_decode_str;
use regex::Regex;

use crate::fingerprint::{Fingerprint, StatementKind, fingerprint};
use crate::model::{Event, Location, Origin, StepKey, UNATTRIBUTED};

/// sqlcommenter key/value pairs found in a statement's comment.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Tags {
    pub pairs: Vec<(String, String)>,
}

impl Tags {
    pub fn get(&self, key: &str) -> Option<&str> {
        self.pairs
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// The step these tags name, by the precedence DESIGN.md gives.
    pub fn step(&self) -> Option<String> {
        if let Some(step) = self.get("step") {
            return Some(step.to_owned());
        }
        if let Some(route) = self.get("route") {
            return Some(route.to_owned());
        }
        match (self.get("controller"), self.get("action")) {
            (Some(c), Some(a)) => return Some(format!("{c}#{a}")),
            (Some(c), None) => return Some(c.to_owned()),
            (None, Some(a)) => return Some(a.to_owned()),
            (None, None) => {}
        }
        self.get("job").map(str::to_owned)
    }

    /// The code these tags name (issue 14): `file` and `line`, or Rails'
    /// `source_location` (`app/models/user.rb:12`, maybe followed by
    /// `:in 'method'`); `controller`/`action`, `route`, `framework` and
    /// `db_driver` as sqlcommenter and Rails' `query_log_tags` write them.
    /// Empty when they name none of it.
    pub fn location(&self) -> Location {
        let (mut file, mut line) = (
            self.get("file")
                .filter(|f| !f.is_empty())
                .map(str::to_owned),
            self.get("line").and_then(|l| l.trim().parse().ok()),
        );
        if file.is_none()
            && let Some((path, at)) = self.get("source_location").and_then(split_source_location)
        {
            file = Some(path.to_owned());
            line = at;
        }
        let action = match (self.get("controller"), self.get("action")) {
            (Some(c), Some(a)) => Some(format!("{c}#{a}")),
            (Some(one), None) | (None, Some(one)) => Some(one.to_owned()),
            (None, None) => None,
        };
        let get = |key: &str| self.get(key).filter(|v| !v.is_empty()).map(str::to_owned);
        Location {
            line: line.filter(|_| file.is_some()),
            file,
            action,
            route: get("route"),
            framework: get("framework"),
            db_driver: get("db_driver"),
            ..Location::default()
        }
    }
}

/// `app/models/user.rb:12` → (`app/models/user.rb`, 12); a path alone has no line.
fn split_source_location(text: &str) -> Option<(&str, Option<u64>)> {
    let text = text.trim();
    if text.is_empty() {
        return None;
    }
    for (i, _) in text.match_indices(':') {
        let rest = &text[i + 1..];
        let digits = rest.len() - rest.trim_start_matches(|c: char| c.is_ascii_digit()).len();
        if i > 0 && digits > 0 && (digits == rest.len() || rest[digits..].starts_with(':')) {
            return Some((&text[..i], rest[..digits].parse().ok()));
        }
    }
    Some((text, None))
}

/// The sqlcommenter key that silences rules for one statement (issue 8):
/// `/*flowaudit_allow='n-plus-one,repeated-query'*/`.
pub const ALLOW_TAG: &str = "flowaudit_allow";

/// The rule ids a statement's `flowaudit_allow` tag names (comma-separated).
pub fn allowed_rules(sql: &str) -> Vec<String> {
    // Most statements carry no such tag: skip parsing them.
    if !sql.contains(ALLOW_TAG) {
        return Vec::new();
    }
    parse_tags(sql).get(ALLOW_TAG).map_or_else(Vec::new, |ids| {
        ids.split(',')
            .map(|id| id.trim().to_owned())
            .filter(|id| !id.is_empty())
            .collect()
    })
}

/// Where the sqlcommenter comment sits in the statement text, if any.
fn tag_comment_span(sql: &str) -> Option<(usize, usize)> {
    let trimmed_end = sql.trim_end().trim_end_matches(';').trim_end();
    if trimmed_end.ends_with("*/")
        && let Some(open) = trimmed_end.rfind("/*")
    {
        return Some((open, trimmed_end.len()));
    }
    let lead = sql.len() - sql.trim_start().len();
    if sql[lead..].starts_with("/*")
        && let Some(close) = sql[lead..].find("*/")
    {
        return Some((lead, lead + close + 2));
    }
    None
}

/// Reads sqlcommenter tags (`key='url-encoded value',…`) from the comment at
/// the end of the statement, or else at its start. Plain (unquoted, not
/// encoded) values are accepted too. A comment that is not made of `key=value`
/// pairs yields no tags.
pub fn parse_tags(sql: &str) -> Tags {
    let Some((start, end)) = tag_comment_span(sql) else {
        return Tags::default();
    };
    let body = sql[start + 2..end - 2].trim();
    let mut pairs = Vec::new();
    for part in split_pairs(body) {
        let Some((key, value)) = part.split_once('=') else {
            return Tags::default();
        };
        let key = decode(key.trim());
        let value = value.trim();
        let value = value
            .strip_prefix('\'')
            .and_then(|v| v.strip_suffix('\''))
            .unwrap_or(value);
        // sqlcommenter escapes a quote inside a value as \'
        let value = decode(&value.replace("\\'", "'"));
        if key.is_empty()
            || !key
                .chars()
                .all(|c| c.is_alphanumeric() || "_-.".contains(c))
        {
            return Tags::default();
        }
        pairs.push((key, value));
    }
    Tags { pairs }
}

fn decode(s: &str) -> String {
    percent_decode_str(s).decode_utf8_lossy().into_owned()
}

/// Splits `a='x,y',b='z'` on the commas outside quotes.
fn split_pairs(body: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let mut quoted = false;
    let mut escaped = false;
    let mut start = 0;
    for (i, c) in body.char_indices() {
        match c {
            '\\' if quoted => escaped = !escaped,
            '\'' if !escaped => quoted = !quoted,
            ',' if !quoted => {
                parts.push(&body[start..i]);
                start = i + 1;
            }
            _ => escaped = false,
        }
        if c != '\\' {
            escaped = false;
        }
    }
    if !body[start..].trim().is_empty() {
        parts.push(&body[start..]);
    }
    parts
}

/// The statement text without its sqlcommenter comment, for showing examples.
pub fn strip_tags(sql: &str) -> &str {
    match tag_comment_span(sql) {
        Some((start, end)) if !parse_tags(sql).pairs.is_empty() => {
            if start == sql.len() - sql.trim_start().len() {
                sql[end..].trim()
            } else {
                sql[..start].trim()
            }
        }
        _ => sql.trim(),
    }
}

/// Whether the statement's first word is `word` (ASCII, any case).
fn starts_with_word(sql: &str, word: &str) -> bool {
    let s = sql.trim_start().as_bytes();
    s.len() > word.len()
        && s[..word.len()].eq_ignore_ascii_case(word.as_bytes())
        && !s[word.len()].is_ascii_alphanumeric()
        && s[word.len()] != b'_'
}

/// What a marker statement sets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Marker {
    Flow(String),
    Step(String),
}

static MARKER_SET: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r#"(?is)^\s*set\s+(?:session\s+|local\s+)?(?:flowaudit\.|@flowaudit_)(flow|step)\s*(?:=|:=|\s+to\s+)\s*'((?:[^']|'')*)'\s*;?\s*$"#,
    )
    .expect("marker regex is valid")
});

static MARKER_SET_CONFIG: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r#"(?is)^\s*select\s+(?:pg_catalog\.)?set_config\s*\(\s*'flowaudit\.(flow|step)'\s*,\s*'((?:[^']|'')*)'\s*,\s*(?:true|false)\s*\)\s*;?\s*$"#,
    )
    .expect("marker regex is valid")
});

/// Recognises a marker statement (its sqlcommenter comment, if any, aside).
pub fn parse_marker(sql: &str) -> Option<Marker> {
    // Cheap refusal first: this runs on every statement.
    if !starts_with_word(sql, "set")
        && !starts_with_word(sql, "select")
        && !sql.trim_start().starts_with("/*")
    {
        return None;
    }
    if !contains_flowaudit(sql.as_bytes()) {
        return None;
    }
    let bare = strip_tags(sql);
    let caps = MARKER_SET
        .captures(bare)
        .or_else(|| MARKER_SET_CONFIG.captures(bare))?;
    let value = caps[2].replace("''", "'");
    match caps[1].to_ascii_lowercase().as_str() {
        "flow" => Some(Marker::Flow(value)),
        _ => Some(Marker::Step(value)),
    }
}

/// Whether `flowaudit` appears in any case: compares only where an `f` is,
/// found with memchr's vector search (this runs on every statement).
fn contains_flowaudit(bytes: &[u8]) -> bool {
    memchr::memchr2_iter(b'f', b'F', bytes).any(|i| {
        bytes
            .get(i..i + 9)
            .is_some_and(|w| w.eq_ignore_ascii_case(b"flowaudit"))
    })
}

static SET_APPLICATION_NAME: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r#"(?is)^\s*set\s+(?:session\s+)?application_name\s*(?:=|\s+to\s+)\s*'((?:[^']|'')*)'\s*;?\s*$"#,
    )
    .expect("application_name regex is valid")
});

/// Transaction control verbs, as far as attribution and transaction tracking
/// need them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TxnOp {
    /// BEGIN, START TRANSACTION.
    Begin,
    /// COMMIT, END.
    Commit,
    /// ROLLBACK, ABORT (not ROLLBACK TO).
    Rollback,
    /// SAVEPOINT, RELEASE, ROLLBACK TO: inside a transaction, ending nothing.
    Savepoint,
}

impl TxnOp {
    pub fn of(fp: &Fingerprint) -> Option<TxnOp> {
        if fp.kind != StatementKind::TransactionControl {
            return None;
        }
        let mut words = fp.text.split([' ', ';']).filter(|w| !w.is_empty());
        let first = words.next()?;
        let second = words.next();
        Some(match first {
            "begin" | "start" => TxnOp::Begin,
            "commit" | "end" => TxnOp::Commit,
            "rollback" | "abort" => match (second, words.next()) {
                (Some("to"), _) | (Some("work" | "transaction"), Some("to")) => TxnOp::Savepoint,
                _ => TxnOp::Rollback,
            },
            _ => TxnOp::Savepoint,
        })
    }
}

/// A statement with its attribution, ready for the rules.
#[derive(Debug, Clone)]
pub struct Attributed {
    /// Position in the order the statements were read, from 0.
    pub seq: u64,
    pub event: Event,
    pub key: StepKey,
    pub fingerprint: Fingerprint,
    pub marker: Option<Marker>,
    pub txn_op: Option<TxnOp>,
    /// Connection id (0 when the source did not say).
    pub conn: u64,
    /// Which run of its step the statement belongs to: the number of the
    /// marker that set its connection's step (its own latest marker, or for
    /// a connection that never sent one the run's latest), 0 before any.
    /// Every marker starts a new run, so equal numbers mean the same run.
    pub instance: u64,
    /// Where the event was read, when the caller said.
    pub origin: Option<Origin>,
}

#[derive(Debug, Default)]
struct Conn {
    application_name: Option<String>,
    /// Transaction control waiting for the next statement of the connection.
    pending: Vec<Attributed>,
    /// The step (and its run) of the latest attributed statement, for COMMIT
    /// and ROLLBACK.
    last: Option<(StepKey, u64)>,
    /// What this connection's own markers set.
    marks: Marks,
}

/// What markers have set: for the run (the latest of any connection) or for
/// one connection.
#[derive(Debug, Default, Clone)]
struct Marks {
    flow: Option<String>,
    step: Option<String>,
    /// The number of the latest marker; `None` before any.
    instance: Option<u64>,
}

/// The attribution state of one run: the latest markers of the run and, per
/// connection, its own markers, its application name and the transaction
/// control it holds back.
#[derive(Debug, Default)]
pub struct Attributor {
    run: Marks,
    /// The latest markers of each application instance, for events that
    /// name theirs ([`Event::instance`], race mode): instances run the flow
    /// side by side, each its own run.
    instance_runs: HashMap<u64, Marks>,
    markers: u64,
    conns: HashMap<u64, Conn>,
    seq: u64,
    /// Fingerprints of recent statement texts: applications (and server logs
    /// of prepared statements) send the same text again and again, and the
    /// same text always has the same fingerprint. Cleared when full.
    fingerprints: HashMap<String, Fingerprint>,
}

/// The run number of the statements of application instance `i` that no
/// marker numbered: `APP_INSTANCE_RUN | i`, apart from marker numbers.
const APP_INSTANCE_RUN: u64 = 1 << 63;

/// Statement texts whose fingerprints [`Attributor`] keeps.
const FINGERPRINT_CACHE: usize = 4096;

impl Attributor {
    pub fn new() -> Self {
        Self::default()
    }

    /// Attributes one event. What is ready is appended to `out`, in an order
    /// that keeps every connection's statements in their original order.
    pub fn push(&mut self, event: Event, out: &mut Vec<Attributed>) {
        self.push_from(event, None, out);
    }

    /// [`Self::push`] for an event read at a known place.
    pub fn push_from(&mut self, event: Event, origin: Option<Origin>, out: &mut Vec<Attributed>) {
        let seq = self.seq;
        self.seq += 1;
        let conn_id = event.conn.unwrap_or(0);
        // MySQL reads `\'` in a string as a quote; a text where that matters is
        // fingerprinted as its dialect reads it, and kept out of the cache, which
        // is keyed by text alone.
        let mysql_escapes = crate::rules::units::Dialect::of(&event)
            == crate::rules::units::Dialect::MySql
            && event.sql.contains('\\');
        let fingerprint = if mysql_escapes {
            crate::fingerprint::fingerprint_mysql(&event.sql)
        } else {
            match self.fingerprints.get(&event.sql) {
                Some(fp) => fp.clone(),
                None => {
                    let fp = fingerprint(&event.sql);
                    if self.fingerprints.len() >= FINGERPRINT_CACHE {
                        self.fingerprints.clear();
                    }
                    self.fingerprints.insert(event.sql.clone(), fp.clone());
                    fp
                }
            }
        };
        let marker = parse_marker(&event.sql);
        let txn_op = TxnOp::of(&fingerprint);
        let tags = if event.flow.is_some() && event.step.is_some() {
            Tags::default()
        } else {
            parse_tags(&event.sql)
        };

        let conn = self.conns.entry(conn_id).or_default();
        if let Some(app) = event.application_name.as_ref() {
            conn.application_name = Some(app.clone());
        } else if let Some(caps) = starts_with_word(&event.sql, "set")
            .then(|| SET_APPLICATION_NAME.captures(&event.sql))
            .flatten()
        {
            conn.application_name = Some(caps[1].replace("''", "'"));
        }

        let run = match event.instance {
            Some(i) => self.instance_runs.entry(i).or_default(),
            None => &mut self.run,
        };
        if let Some(marker) = &marker {
            self.markers += 1;
            for marks in [&mut *run, &mut conn.marks] {
                match marker {
                    Marker::Flow(flow) => marks.flow = Some(flow.clone()),
                    Marker::Step(step) => marks.step = Some(step.clone()),
                }
                marks.instance = Some(self.markers);
            }
        }
        // The connection's own markers first; what it never set, the run's.
        let marked_flow = conn.marks.flow.as_ref().or(run.flow.as_ref());
        let marked_step = conn.marks.step.as_ref().or(run.step.as_ref());
        // Without markers, each application instance is a run of its own.
        let instance = conn
            .marks
            .instance
            .or(run.instance)
            .unwrap_or_else(|| event.instance.map_or(0, |i| APP_INSTANCE_RUN | i));

        let own_flow = event
            .flow
            .clone()
            .or_else(|| tags.get("flow").map(str::to_owned));
        let own_step = event.step.clone().or_else(|| tags.step());
        let has_own = own_flow.is_some() || own_step.is_some();
        let app = conn.application_name.clone();
        let resolved = StepKey {
            flow: own_flow
                .or_else(|| marked_flow.cloned())
                .or_else(|| app.clone())
                .unwrap_or_else(|| UNATTRIBUTED.to_owned()),
            step: own_step
                .or_else(|| marked_step.cloned())
                .or(app)
                .unwrap_or_else(|| UNATTRIBUTED.to_owned()),
        };

        let mut item = Attributed {
            seq,
            event,
            key: resolved,
            fingerprint,
            marker,
            txn_op,
            conn: conn_id,
            instance,
            origin,
        };

        if item.marker.is_some() {
            out.push(item);
            return;
        }
        match (item.txn_op, has_own) {
            (Some(TxnOp::Begin | TxnOp::Savepoint), false) => conn.pending.push(item),
            (Some(TxnOp::Commit | TxnOp::Rollback), false) => {
                if conn.pending.is_empty() {
                    if let Some((key, instance)) = conn.last.clone() {
                        item.key = key;
                        item.instance = instance;
                    }
                } else {
                    // BEGIN … COMMIT with nothing between: the run's state names them.
                    for p in &mut conn.pending {
                        p.key = item.key.clone();
                        p.instance = item.instance;
                    }
                    out.append(&mut conn.pending);
                }
                conn.last = Some((item.key.clone(), item.instance));
                out.push(item);
            }
            _ => {
                for mut p in conn.pending.drain(..) {
                    p.key = item.key.clone();
                    p.instance = item.instance;
                    out.push(p);
                }
                conn.last = Some((item.key.clone(), item.instance));
                out.push(item);
            }
        }
    }

    /// Connection `conn` ended: its markers, application name and last step
    /// go, and `true` says so. Statements it left waiting (a BEGIN with
    /// nothing after it) stay until [`Self::finish`] releases them, as for an
    /// open connection, and then the connection stays too: `false`.
    pub fn connection_closed(&mut self, conn: u64) -> bool {
        match self.conns.get(&conn) {
            Some(c) if !c.pending.is_empty() => false,
            _ => {
                self.conns.remove(&conn);
                true
            }
        }
    }

    /// The connections it keeps state for (tests of bounded state).
    #[cfg(test)]
    pub fn connections_held(&self) -> usize {
        self.conns.len()
    }

    /// Releases what is still held back at the end of the run (a BEGIN with
    /// nothing after it), attributed by the run's state at that point.
    pub fn finish(&mut self, out: &mut Vec<Attributed>) {
        let mut ids: Vec<u64> = self.conns.keys().copied().collect();
        ids.sort_unstable();
        for id in ids {
            if let Some(conn) = self.conns.get_mut(&id) {
                out.append(&mut conn.pending);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(sql: &str, conn: u64) -> Event {
        Event {
            sql: sql.into(),
            conn: Some(conn),
            ..Event::default()
        }
    }

    fn run(events: Vec<Event>) -> Vec<(String, String, String, bool)> {
        let mut a = Attributor::new();
        let mut out = Vec::new();
        for e in events {
            a.push(e, &mut out);
        }
        a.finish(&mut out);
        out.into_iter()
            .map(|x| (x.event.sql, x.key.flow, x.key.step, x.marker.is_some()))
            .collect()
    }

    #[test]
    fn tags_at_end_and_start_url_encoded_or_plain() {
        let t = parse_tags("select 1 /*flow='check%20out',step='browse'*/");
        assert_eq!(t.get("flow"), Some("check out"));
        assert_eq!(t.get("step"), Some("browse"));
        let t = parse_tags("/* route='%2Fcart%2F%3Aid' */ select 1;");
        assert_eq!(t.get("route"), Some("/cart/:id"));
        let t = parse_tags("select 1 /*step=browse,flow=shop*/;");
        assert_eq!(t.step().as_deref(), Some("browse"));
        let t = parse_tags("select 1 /*controller='orders',action='show',x='a\\'b'*/");
        assert_eq!(t.step().as_deref(), Some("orders#show"));
        assert_eq!(t.get("x"), Some("a'b"));
        assert_eq!(
            parse_tags("select 1 /*job='mailer'*/").step().as_deref(),
            Some("mailer")
        );
        assert_eq!(parse_tags("select 1 /* just a note */").pairs, vec![]);
        assert_eq!(parse_tags("select 1").pairs, vec![]);
    }

    /// Issue 14: the tags that name code become a location.
    #[test]
    fn tags_that_name_code() {
        let l = parse_tags("select 1 /*file='app%2Fshop%2Fbrowse.py',line='42'*/").location();
        assert_eq!(
            (l.file.as_deref(), l.line, l.code().as_deref()),
            (
                Some("app/shop/browse.py"),
                Some(42),
                Some("app/shop/browse.py:42")
            )
        );
        let l = parse_tags(
            "select 1 /*application='Shop',controller='carts',action='show',\
             source_location='app%2Fmodels%2Fcart.rb%3A12%3Ain%20%60total%27'*/",
        )
        .location();
        assert_eq!(
            l.code().as_deref(),
            Some("app/models/cart.rb:12 (carts#show)")
        );
        let l = parse_tags(
            "select 1 /*route='%2Fcart%2F%3Aid',framework='django%3A4.2',db_driver='psycopg'*/",
        )
        .location();
        assert_eq!(
            (
                l.route.as_deref(),
                l.framework.as_deref(),
                l.db_driver.as_deref()
            ),
            (Some("/cart/:id"), Some("django:4.2"), Some("psycopg"))
        );
        assert_eq!(l.code().as_deref(), Some("/cart/:id"));
        assert_eq!(split_source_location("lib/x.rb"), Some(("lib/x.rb", None)));
        assert_eq!(
            parse_tags("select 1 /*line='3'*/").location(),
            Location::default()
        );
        assert_eq!(parse_tags("select 1").location(), Location::default());
    }

    #[test]
    fn strip_tags_keeps_plain_comments() {
        assert_eq!(strip_tags("select 1 /*step='x'*/"), "select 1");
        assert_eq!(strip_tags("/*step='x'*/ select 1"), "select 1");
        assert_eq!(strip_tags("select 1 /* note */"), "select 1 /* note */");
    }

    #[test]
    fn markers_in_their_forms() {
        assert_eq!(
            parse_marker("SET flowaudit.step = 'browse'"),
            Some(Marker::Step("browse".into()))
        );
        assert_eq!(
            parse_marker("set session flowaudit.flow to 'check''out';"),
            Some(Marker::Flow("check'out".into()))
        );
        assert_eq!(
            parse_marker("SET @flowaudit_step = 'pay'"),
            Some(Marker::Step("pay".into()))
        );
        assert_eq!(
            parse_marker("SELECT set_config('flowaudit.step', 'ship', false)"),
            Some(Marker::Step("ship".into()))
        );
        assert_eq!(parse_marker("SET search_path = 'x'"), None);
        assert_eq!(parse_marker("select 'SET flowaudit.step = 1'"), None);
    }

    #[test]
    fn precedence_fields_tags_markers_app_name() {
        let mut e1 = ev("select 1 /*flow='f2',step='s2'*/", 1);
        e1.flow = Some("f1".into());
        e1.step = Some("s1".into());
        let e2 = ev("select 2 /*flow='f2',step='s2'*/", 1);
        let e3 = ev("SET flowaudit.step = 'm'", 1);
        let e4 = ev("select 3", 1);
        let mut e5 = ev("select 4", 2);
        e5.application_name = Some("worker".into());
        let got = run(vec![ev("select 0", 2), e1, e2, e3, e4, e5]);
        let pairs: Vec<_> = got.iter().map(|g| (g.1.as_str(), g.2.as_str())).collect();
        assert_eq!(
            pairs,
            vec![
                ("(unattributed)", "(unattributed)"),
                ("f1", "s1"),
                ("f2", "s2"),
                ("(unattributed)", "m"),
                ("(unattributed)", "m"),
                ("worker", "m"),
            ]
        );
        assert!(got[3].3, "the marker is flagged");
    }

    #[test]
    fn transaction_control_follows_the_statements_it_encloses() {
        let got = run(vec![
            ev("SET flowaudit.step = 'before'", 1),
            ev("BEGIN", 1),
            ev("select 1 /*step='pay'*/", 1),
            ev("select 2", 2),
            ev("COMMIT", 1),
            ev("ROLLBACK", 3),
        ]);
        let got: Vec<_> = got.iter().map(|g| (g.0.as_str(), g.2.as_str())).collect();
        assert_eq!(
            got,
            vec![
                ("SET flowaudit.step = 'before'", "before"),
                ("BEGIN", "pay"),
                ("select 1 /*step='pay'*/", "pay"),
                ("select 2", "before"),
                ("COMMIT", "pay"),
                ("ROLLBACK", "before"),
            ]
        );
    }

    #[test]
    fn set_application_name_attributes_later_statements() {
        let got = run(vec![
            ev("SET application_name = 'billing'", 1),
            ev("select 1", 1),
        ]);
        assert_eq!(got[1].2, "billing");
    }

    /// Issue 13, defect 6: a marker is a session setting. Two connections
    /// marking their own steps keep them, however they interleave.
    #[test]
    fn markers_set_the_step_of_their_own_connection() {
        let got = run(vec![
            ev("SET flowaudit.step = 'request_a'", 1),
            ev("SET flowaudit.step = 'request_b'", 2),
            ev("select 1", 1),
            ev("select 2", 2),
            ev("BEGIN", 1),
            ev("select 3", 1),
            ev("COMMIT", 1),
            ev("select 4", 2),
        ]);
        let got: Vec<_> = got.iter().map(|g| (g.0.as_str(), g.2.as_str())).collect();
        assert_eq!(
            got,
            vec![
                ("SET flowaudit.step = 'request_a'", "request_a"),
                ("SET flowaudit.step = 'request_b'", "request_b"),
                ("select 1", "request_a"),
                ("select 2", "request_b"),
                ("BEGIN", "request_a"),
                ("select 3", "request_a"),
                ("COMMIT", "request_a"),
                ("select 4", "request_b"),
            ]
        );
    }

    /// Issue 13, defect 6: a connection that never sent a marker follows the
    /// latest marker of the run (a harness marks, the pool runs the queries);
    /// a connection that set only the step takes the run's flow.
    #[test]
    fn unmarked_connections_follow_the_latest_marker_of_the_run() {
        let got = run(vec![
            ev("SET flowaudit.flow = 'shop'", 9),
            ev("SET flowaudit.step = 'browse'", 9),
            ev("select 1", 1),
            ev("select 2", 2),
            ev("SET flowaudit.step = 'own'", 3),
            ev("select 3", 3),
            ev("select 4", 1),
            ev("SET flowaudit.step = 'cart'", 9),
            ev("select 5", 2),
            ev("select 6", 3),
        ]);
        let got: Vec<_> = got
            .iter()
            .filter(|g| !g.3)
            .map(|g| (g.0.as_str(), g.1.as_str(), g.2.as_str()))
            .collect();
        assert_eq!(
            got,
            vec![
                ("select 1", "shop", "browse"),
                ("select 2", "shop", "browse"),
                ("select 3", "shop", "own"),
                ("select 4", "shop", "own"),
                ("select 5", "shop", "cart"),
                ("select 6", "shop", "own"),
            ]
        );
    }

    /// Issue 19: instances of an application racing side by side each mark
    /// their steps on a connection of their own; the pool's connections
    /// follow the markers of their own instance, not the other's.
    #[test]
    fn unmarked_connections_follow_the_markers_of_their_own_instance() {
        let of = |sql: &str, conn: u64, instance: u64| Event {
            instance: Some(instance),
            ..ev(sql, conn)
        };
        let got = run(vec![
            of("SET flowaudit.step = 'checkout'", 10, 1),
            of("SET flowaudit.step = 'browse'", 20, 2),
            of("select 1", 1, 1),
            of("select 2", 2, 2),
            ev("select 3", 3),
        ]);
        let steps: Vec<(&str, &str)> = got
            .iter()
            .map(|(sql, _, step, _)| (sql.as_str(), step.as_str()))
            .collect();
        assert_eq!(
            steps,
            [
                ("SET flowaudit.step = 'checkout'", "checkout"),
                ("SET flowaudit.step = 'browse'", "browse"),
                ("select 1", "checkout"),
                ("select 2", "browse"),
                ("select 3", UNATTRIBUTED),
            ]
        );
    }

    /// Issue 19: without markers, each application instance is a run of its
    /// own step, so that two racing checkouts are judged one by one.
    #[test]
    fn application_instances_without_markers_are_runs_of_their_own() {
        let mut a = Attributor::new();
        let mut out = Vec::new();
        for (conn, instance) in [(1, Some(1)), (2, Some(2)), (3, None), (4, Some(1))] {
            a.push(
                Event {
                    instance,
                    step: Some("checkout".into()),
                    ..ev("select 1", conn)
                },
                &mut out,
            );
        }
        let runs: Vec<u64> = out.iter().map(|x| x.instance).collect();
        assert_eq!(runs[0], runs[3], "one instance, one run");
        assert_ne!(runs[0], runs[1]);
        assert_eq!(runs[2], 0);
        assert!(runs[0] != 0 && runs[1] != 0);
    }

    /// Issue 13, defect 6: a step's run (`instance`) changes with the markers
    /// that apply to the connection only.
    #[test]
    fn instances_follow_the_connections_own_markers() {
        let mut a = Attributor::new();
        let mut out = Vec::new();
        for e in [
            ev("SET flowaudit.step = 'a'", 1),
            ev("select 1", 1),
            ev("SET flowaudit.step = 'b'", 2),
            ev("select 2", 1),
            ev("select 3", 3),
            ev("SET flowaudit.step = 'a'", 1),
            ev("select 4", 1),
            ev("select 5", 2),
        ] {
            a.push(e, &mut out);
        }
        let runs: Vec<_> = out
            .iter()
            .filter(|x| x.marker.is_none())
            .map(|x| (x.event.sql.as_str(), x.instance))
            .collect();
        assert_eq!(
            runs,
            vec![
                ("select 1", 1),
                ("select 2", 1),
                ("select 3", 2),
                ("select 4", 3),
                ("select 5", 2),
            ]
        );
    }

    #[test]
    fn dangling_begin_is_released_at_the_end() {
        let got = run(vec![ev("BEGIN", 1)]);
        assert_eq!(got.len(), 1);
    }
}
