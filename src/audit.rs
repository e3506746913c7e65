//! Runs a stream of events through attribution, the per-step counts and the
//! rules, and makes the [`Report`]. Nothing here keeps statements: each is
//! observed once and dropped, so a trace of any length audits in bounded memory.

use foldhash::{HashMap, HashMapExt, HashSet, HashSetExt};
use std::collections::BTreeSet;

use crate::baseline::Baseline;

use xxhash_rust::xxh3::Xxh3;

use crate::attribute::{Attributed, Attributor, TxnOp};
use crate::capture::logs::MysqlSession;
use crate::model::{Event, Finding, Location, Origin, Severity, StepKey, TxnStatus};
use crate::redact::ParamsMode;
use crate::report::{AllowedFinding, FingerprintCount, FlowReport, Report, StepReport, Summary};
use crate::rules::config::Allow;
use crate::rules::units::Dialect;
use crate::rules::{REGISTRY, Rule, RuleConfig, RuleMeta, RuleSetup, Statement};

#[derive(Debug, thiserror::Error)]
#[error("[rules.{rule}]: {source}")]
pub struct BuildError {
    rule: &'static str,
    #[source]
    source: toml::de::Error,
}

/// One audit run.
#[derive(Debug)]
pub struct Audit {
    attributor: Attributor,
    ready: Vec<Attributed>,
    /// The enabled rules, with their ids (for inline allowances).
    rules: Vec<(&'static RuleMeta, Box<dyn Rule>)>,
    /// The allowances that have not expired.
    allows: Vec<Allow>,
    /// Notes for the report (expired allowances).
    notes: Vec<String>,
    baseline: Option<Baseline>,
    /// Open explicit transaction per connection.
    open_txn: HashMap<u64, u64>,
    /// Per connection of a MySQL source that gave no `txn`: its session, to
    /// follow autocommit (issue 13, defect 5).
    mysql: HashMap<u64, MysqlSession>,
    next_txn: u64,
    steps: Vec<StepCounts>,
    step_index: HashMap<StepKey, usize>,
    /// Per open connection: the steps it ran statements in, so that it
    /// leaves their sets of connections when it closes.
    conn_steps: HashMap<u64, Vec<usize>>,
    sources: BTreeSet<String>,
    statements: u64,
    markers: u64,
    /// Findings from outside the trace (data invariants).
    extra: Vec<Finding>,
    /// Statements the proxy's stop cut off.
    cut_by_stop: u64,
    /// Statements whose source could not see their transaction boundaries.
    txn_unknown: u64,
    /// The files read so far ([`Self::begin_input`]), for findings' locations.
    inputs: Vec<String>,
    /// How bind values enter the audit (`--params`).
    params: ParamsMode,
    /// Statements whose bind values were dropped (here or when recorded).
    params_dropped: u64,
    /// What the HTML report draws of each step, when it is asked for.
    timeline: Option<crate::report::timeline::Recorder>,
}

#[derive(Debug)]
struct StepCounts {
    key: StepKey,
    statements: u64,
    queries: u64,
    duration_us: u64,
    timed: bool,
    transactions: u64,
    /// The open connections that ran statements in the step.
    connections: HashSet<u64>,
    /// Connections that ran statements in the step and have closed.
    closed_connections: u64,
    /// Fingerprint hash → (fingerprint text, runs): one entry per distinct
    /// fingerprint of the step.
    fingerprints: HashMap<u64, FingerprintCount>,
    /// Fingerprint hash → where its first statement in the step came from
    /// (the code its tags name, the input it was read from): what a finding
    /// about it points at (issue 14).
    first_seen: HashMap<u64, (Location, Option<Origin>)>,
}

impl Audit {
    pub fn new(config: &RuleConfig) -> Result<Self, BuildError> {
        Self::with_baseline(config, None)
    }

    /// An audit judged against a baseline: `query-count-regression` compares
    /// counts with it, and the findings it has are known, not failing.
    pub fn with_baseline(
        config: &RuleConfig,
        baseline: Option<&Baseline>,
    ) -> Result<Self, BuildError> {
        // In registry order: a rule's finish sees the findings of the rules
        // before it (see `Rule::finish`).
        let mut rules = Vec::new();
        for m in REGISTRY {
            let Some(entry) = config.rules.get(m.id) else {
                continue;
            };
            if !entry.enabled {
                continue;
            }
            let setup = RuleSetup {
                severity: entry.severity,
                settings: entry.settings.clone(),
                budgets: &config.budgets,
                baseline,
            };
            let rule = (m.build)(&setup).map_err(|source| BuildError { rule: m.id, source })?;
            rules.push((*m, rule));
        }
        Ok(Self {
            attributor: Attributor::new(),
            ready: Vec::new(),
            rules,
            allows: config
                .allows
                .iter()
                .filter(|a| !a.expired(config.today))
                .cloned()
                .collect(),
            notes: config
                .allows
                .iter()
                .filter_map(|a| {
                    let last = a.expires.filter(|_| a.expired(config.today))?;
                    Some(format!(
                        "an [[allow]] in {} expired on {last} and no longer applies ({}): {}",
                        a.file,
                        a.rule.as_deref().unwrap_or("any rule"),
                        a.reason
                    ))
                })
                .collect(),
            baseline: baseline.cloned(),
            open_txn: HashMap::new(),
            mysql: HashMap::new(),
            next_txn: 0,
            steps: Vec::new(),
            step_index: HashMap::new(),
            conn_steps: HashMap::new(),
            sources: BTreeSet::new(),
            statements: 0,
            markers: 0,
            extra: Vec::new(),
            cut_by_stop: 0,
            txn_unknown: 0,
            inputs: Vec::new(),
            params: ParamsMode::Keep,
            params_dropped: 0,
            timeline: None,
        })
    }

    /// Takes bind values in as `params` says (`--params`): the rules and
    /// every example then see them so.
    pub fn with_params(mut self, params: ParamsMode) -> Self {
        self.params = params;
        self
    }

    /// Keeps what the HTML report draws of each step (its statements, up to
    /// a bound, and its transactions); see [`crate::report::timeline`].
    pub fn with_timeline(mut self, on: bool) -> Self {
        self.timeline = on.then(crate::report::timeline::Recorder::new);
        self
    }

    /// Adds findings made outside the trace (data invariants): they are
    /// allowed, known and sorted as the rules' own.
    pub fn add_findings(&mut self, findings: impl IntoIterator<Item = Finding>) {
        self.extra.extend(findings);
    }

    pub fn push(&mut self, event: Event) {
        let origin = self
            .inputs
            .len()
            .checked_sub(1)
            .map(|input| Origin { input, line: None });
        self.push_from(event, origin);
    }

    /// Starts reading another file: the events pushed from now on were read
    /// from it, and findings about them name it.
    pub fn begin_input(&mut self, name: String) {
        self.inputs.push(name);
    }

    /// [`Self::push`] for an event read at a known line of the current input.
    pub fn push_at(&mut self, event: Event, line: u64) {
        let origin = self.inputs.len().checked_sub(1).map(|input| Origin {
            input,
            line: Some(line),
        });
        self.push_from(event, origin);
    }

    fn push_from(&mut self, mut event: Event, origin: Option<Origin>) {
        // Where statements enter every report: passwords go here, and bind
        // values become what `--params` says, before anything reads them.
        crate::redact::event(&mut event, self.params);
        self.cut_by_stop += u64::from(event.cut_by_stop);
        self.params_dropped += u64::from(event.params_dropped);
        self.attributor.push_from(event, origin, &mut self.ready);
        self.drain();
    }

    fn drain(&mut self) {
        let ready = std::mem::take(&mut self.ready);
        for item in &ready {
            self.observe(item);
        }
        self.ready = ready;
        self.ready.clear();
    }

    fn step(&mut self, key: &StepKey) -> usize {
        match self.step_index.get(key) {
            Some(&i) => i,
            None => {
                self.steps.push(StepCounts {
                    key: key.clone(),
                    statements: 0,
                    queries: 0,
                    duration_us: 0,
                    timed: false,
                    transactions: 0,
                    connections: HashSet::new(),
                    closed_connections: 0,
                    fingerprints: HashMap::new(),
                    first_seen: HashMap::new(),
                });
                self.step_index.insert(key.clone(), self.steps.len() - 1);
                self.steps.len() - 1
            }
        }
    }

    /// Which explicit transaction a statement ran in. Follows BEGIN / COMMIT /
    /// ROLLBACK per connection, and trusts the source's `txn` status where it
    /// gave one (a trace that starts inside a transaction, an implicit end).
    /// A MySQL statement without one gets it from its session as the general
    /// log reader does, so that `SET autocommit = 0` and MySQL's implicit
    /// commits count in a trace too.
    fn transaction(&mut self, item: &Attributed) -> (Option<u64>, bool) {
        let current = self.open_txn.get(&item.conn).copied();
        let status = match item.event.txn {
            Some(status) => Some(status),
            None if Dialect::of(&item.event) == Dialect::MySql => Some(
                self.mysql
                    .entry(item.conn)
                    .or_default()
                    .statement(&item.event.sql),
            ),
            None => None,
        };
        match item.txn_op {
            Some(TxnOp::Begin) => {
                // A BEGIN inside a transaction: PostgreSQL ignores it (the
                // source says `open`), MySQL commits first (it says `idle`).
                if let Some(id) = current
                    && status != Some(TxnStatus::Idle)
                {
                    return (Some(id), false);
                }
                let id = self.next_txn;
                self.next_txn += 1;
                self.open_txn.insert(item.conn, id);
                (Some(id), true)
            }
            Some(TxnOp::Commit | TxnOp::Rollback) => {
                self.open_txn.remove(&item.conn);
                (current, false)
            }
            _ => match (status, current) {
                (Some(TxnStatus::Idle), Some(_)) => {
                    self.open_txn.remove(&item.conn);
                    (None, false)
                }
                (Some(TxnStatus::Open | TxnStatus::Failed), None) => {
                    let id = self.next_txn;
                    self.next_txn += 1;
                    self.open_txn.insert(item.conn, id);
                    (Some(id), true)
                }
                (_, current) => (current, false),
            },
        }
    }

    fn observe(&mut self, item: &Attributed) {
        let source = item.event.source.as_deref().unwrap_or("trace");
        if !self.sources.contains(source) {
            self.sources.insert(source.to_owned());
        }
        if item.marker.is_some() {
            // A marker starts a step but is not one of its statements; a step
            // appears in the report once a statement runs in it.
            self.markers += 1;
            return;
        }
        self.statements += 1;
        let (txn, started) = self.transaction(item);
        let step_id = self.step(&item.key);
        let statement = Statement {
            seq: item.seq,
            conn: item.conn,
            key: &item.key,
            step: step_id,
            instance: item.instance,
            event: &item.event,
            fingerprint: &item.fingerprint,
            values: if item.event.params_dropped {
                unknown_values(item.seq)
            } else {
                // Passwords hidden from the text still tell runs apart.
                values_hash(
                    &item.event,
                    item.fingerprint.values ^ item.event.hidden_values,
                )
            },
            txn,
            txn_op: item.txn_op,
        };
        let query = statement.is_query();
        let step = &mut self.steps[step_id];
        step.statements += 1;
        step.queries += u64::from(query);
        step.transactions += u64::from(started);
        if step.connections.insert(item.conn) {
            self.conn_steps.entry(item.conn).or_default().push(step_id);
        }
        // A `flowaudit_allow` tag silences the rules it names for this statement.
        let allowed = crate::attribute::allowed_rules(&item.event.sql);
        let counted = step
            .fingerprints
            .entry(item.fingerprint.hash)
            .or_insert_with(|| {
                // The first of its fingerprint in the step: the tags are read
                // once per fingerprint and step, not per statement.
                let code = crate::attribute::parse_tags(&item.event.sql).location();
                step.first_seen
                    .insert(item.fingerprint.hash, (code, item.origin));
                FingerprintCount {
                    text: item.fingerprint.text.clone(),
                    query,
                    ..FingerprintCount::default()
                }
            });
        counted.count += 1;
        for id in &allowed {
            if !counted.allows.contains(id) {
                counted.allows.push(id.clone());
            }
        }
        if let Some(d) = item.event.duration_us {
            step.duration_us += d;
            step.timed = true;
        }
        if item.event.txn_unknown {
            self.txn_unknown += 1;
        }
        for (meta, rule) in &mut self.rules {
            let unseen = item.event.txn_unknown && meta.judges_transactions;
            if !unseen && !allowed.iter().any(|a| a == meta.id) {
                rule.observe(&statement);
            }
        }
        if let Some(timeline) = &mut self.timeline {
            timeline.observe(&statement);
        }
    }

    /// Connection `conn` ended (the proxy saw it close, a server log its
    /// disconnection): every statement of it has been pushed. What the audit
    /// and the rules kept for it is dropped or summarised, so that their
    /// state is bounded by the connections still open, not by all the
    /// connections of the run.
    pub fn connection_closed(&mut self, conn: u64) {
        // A statement the attribution still holds (a BEGIN with nothing
        // after it) is counted at the end: until then the connection is
        // kept whole, or that statement would count it a second time.
        if !self.attributor.connection_closed(conn) {
            return;
        }
        self.mysql.remove(&conn);
        for step in self.conn_steps.remove(&conn).unwrap_or_default() {
            let counts = &mut self.steps[step];
            if counts.connections.remove(&conn) {
                counts.closed_connections += 1;
            }
        }
        for (_, rule) in &mut self.rules {
            rule.connection_closed(conn);
        }
    }

    pub fn finish(mut self) -> Report {
        self.attributor.finish(&mut self.ready);
        self.drain();
        if self.cut_by_stop > 0 {
            let n = self.cut_by_stop;
            self.notes.push(format!(
                "{n} statement{s} {were} cut off by the proxy's stop (SQLSTATE 08006): their \
                 time up to the stop is not a slow query, nor a transaction the stop ended an \
                 open one",
                s = if n == 1 { "" } else { "s" },
                were = if n == 1 { "was" } else { "were" },
            ));
        }

        if self.txn_unknown > 0 {
            let judges: Vec<&str> = self
                .rules
                .iter()
                .filter(|(meta, _)| meta.judges_transactions)
                .map(|(meta, _)| meta.id)
                .collect();
            if !judges.is_empty() {
                self.notes.push(format!(
                    "{} came from a source that sees no BEGIN or COMMIT (such as an OpenTelemetry \
                     instrumentation of a Python DB-API driver): {} did not judge them, since a \
                     transaction there cannot be told from autocommit; capture through the proxy \
                     or the server log to judge them",
                    crate::rules::plural(self.txn_unknown, "statement", "statements"),
                    judges.join(", "),
                ));
            }
        }
        match (self.params, self.params_dropped) {
            (ParamsMode::Hash, _) => self.notes.push(
                "bind values are shown as keyed hashes (--params hash): equal values, equal \
                 hashes; the key is random for this run and never written"
                    .to_owned(),
            ),
            (_, 0) => {}
            (mode, n) => self.notes.push(format!(
                "{} had {}: repeated-query cannot tell their repeats, n-plus-one counts each \
                 run as a new value, and unlocked-read-modify-write cannot match rows by bound \
                 keys",
                crate::rules::plural(n, "statement", "statements"),
                if mode == ParamsMode::Drop {
                    "their bind values dropped (--params drop)"
                } else {
                    "bind values their source did not record (an OpenTelemetry \
                     instrumentation records them only when told to: psycopg's \
                     capture_parameters, pg's enhancedDatabaseReporting)"
                }
            )),
        }
        let mut found = Vec::new();
        for (_, rule) in &mut self.rules {
            rule.finish(&mut found);
        }
        found.append(&mut self.extra);
        for f in &mut found {
            f.location = self.locate(f);
        }
        let mut findings = Vec::new();
        let mut allowed = Vec::new();
        for f in found {
            match self.allows.iter().find(|a| a.matches(&f)) {
                Some(a) => allowed.push(AllowedFinding {
                    finding: f,
                    reason: a.reason.clone(),
                    file: a.file.clone(),
                }),
                None => findings.push(f),
            }
        }
        let mut known = Vec::new();
        if let Some(b) = &self.baseline {
            (known, findings) = findings.into_iter().partition(|f| b.knows(f));
        }
        findings.sort_by(|a, b| a.sort_key().cmp(&b.sort_key()));
        known.sort_by(|a, b| a.sort_key().cmp(&b.sort_key()));
        allowed.sort_by(|a, b| a.finding.sort_key().cmp(&b.finding.sort_key()));

        let count = |s: Severity| findings.iter().filter(|f| f.severity == s).count() as u64;
        let summary = Summary {
            statements: self.statements,
            markers: self.markers,
            errors: count(Severity::Error),
            warnings: count(Severity::Warning),
            infos: count(Severity::Info),
            allowed: allowed.len() as u64,
            known: known.len() as u64,
        };

        let mut flows: Vec<FlowReport> = Vec::new();
        // Flow name → its index in `flows`: a run of many flows is not
        // searched once per step.
        let mut flow_index: HashMap<String, usize> = HashMap::new();
        for s in self.steps {
            let base = self
                .baseline
                .as_ref()
                .and_then(|b| b.step(&s.key.flow, &s.key.step));
            let step = StepReport {
                name: s.key.step,
                statements: s.statements,
                queries: s.queries,
                duration_us: s.timed.then_some(s.duration_us),
                transactions: s.transactions,
                connections: s.connections.len() as u64 + s.closed_connections,
                baseline_statements: base.map(|b| b.statements),
                baseline_queries: base.map(|b| b.queries()),
                fingerprints: s
                    .fingerprints
                    .into_iter()
                    .map(|(hash, v)| (format!("{hash:016x}"), v))
                    .collect(),
            };
            match flow_index.get(&s.key.flow) {
                Some(&i) => flows[i].steps.push(step),
                None => {
                    flow_index.insert(s.key.flow.clone(), flows.len());
                    flows.push(FlowReport {
                        name: s.key.flow,
                        steps: vec![step],
                    });
                }
            }
        }

        let mut report = Report {
            version: 1,
            sources: self.sources.into_iter().collect(),
            flows,
            findings,
            allowed,
            known,
            tighten: Vec::new(),
            notes: self.notes,
            summary,
            capture: None,
            inputs: Vec::new(),
            timeline: self.timeline.map(crate::report::timeline::Recorder::finish),
            comparison: None,
        };
        if let Some(b) = &self.baseline {
            report.tighten = b.improvements(&report);
            report.tighten.extend(b.fixed(&report));
            if !report.tighten.is_empty() {
                let file = b
                    .path
                    .as_ref()
                    .map_or_else(|| "FILE".to_owned(), |p| p.display().to_string());
                report.notes.push(format!(
                    "to tighten the baseline, run the same command with --write-baseline {file}"
                ));
            }
        }
        report
    }
}

impl Audit {
    /// Where a finding points (issue 14): the first statement of its step
    /// with the fingerprint of its first example (else of the finding's own
    /// fingerprint), by the code its tags name and the input it was read
    /// from. `None` when neither is known.
    fn locate(&self, f: &Finding) -> Option<Location> {
        let step = &self.steps[*self.step_index.get(&StepKey {
            flow: f.flow.clone(),
            step: f.step.clone(),
        })?];
        let from_example = f.examples.first().map(|e| {
            // Examples may open with a label (`[autocommit] …`) and close with
            // their bind values (see `rules::example_of`).
            let sql = match e.strip_prefix('[').and_then(|e| e.split_once("] ")) {
                Some((_, sql)) => sql,
                None => e,
            };
            let sql = sql.rsplit_once("  -- params: ").map_or(sql, |(sql, _)| sql);
            crate::fingerprint::fingerprint(sql).hash
        });
        let own = f
            .fingerprint_hash
            .as_deref()
            .and_then(|h| u64::from_str_radix(h, 16).ok());
        let (code, origin) = [from_example, own]
            .into_iter()
            .flatten()
            .find_map(|hash| step.first_seen.get(&hash))?;
        let mut location = code.clone();
        if let Some(origin) = origin {
            location.input = self.inputs.get(origin.input).cloned();
            location.input_line = origin.line;
        }
        (location != Location::default()).then_some(location)
    }
}

/// The identity of a statement's parameter set: its bind values (NULL apart
/// from any text) and the literals its fingerprint replaced.
fn values_hash(event: &Event, literals: u64) -> u64 {
    let Some(params) = &event.params else {
        return literals;
    };
    let mut h = Xxh3::new();
    h.update(&literals.to_le_bytes());
    for p in params {
        match p {
            Some(v) => {
                h.update(&[1]);
                h.update(&(v.len() as u64).to_le_bytes());
                h.update(v.as_bytes());
            }
            None => h.update(&[0]),
        }
    }
    h.digest()
}

/// The values of a statement whose bind values were dropped: unknown, so
/// equal to no other statement's (a repeat cannot be told from a loop).
fn unknown_values(seq: u64) -> u64 {
    xxhash_rust::xxh3::xxh3_64_with_seed(&seq.to_le_bytes(), 0x0d_0f_fa_ce) | 1
}

/// Audits events that are already in memory (tests, the demo).
pub fn audit_events(
    config: &RuleConfig,
    events: impl IntoIterator<Item = Event>,
) -> Result<Report, BuildError> {
    let mut audit = Audit::new(config)?;
    for e in events {
        audit.push(e);
    }
    Ok(audit.finish())
}

/// Findings at or above a severity (for `--fail-on`).
pub fn at_or_above(findings: &[Finding], level: Severity) -> usize {
    findings.iter().filter(|f| f.severity >= level).count()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(sql: &str, conn: u64) -> Event {
        Event {
            sql: sql.into(),
            conn: Some(conn),
            duration_us: Some(1000),
            ..Event::default()
        }
    }

    /// A connection that closes with a BEGIN still held by the attribution
    /// (nothing came after it) is counted once, when the BEGIN is.
    #[test]
    fn a_connection_closed_after_a_bare_begin_counts_once() {
        let config = RuleConfig::builtin().expect("defaults");
        let mut audit = Audit::new(&config).expect("audit");
        audit.push(ev("SET flowaudit.step = 'checkout'", 1));
        audit.push(ev("select stock from inventory where product_id = 1", 1));
        audit.push(ev("BEGIN", 1));
        audit.connection_closed(1);
        let report = audit.finish();
        let step = &report.flows[0].steps[0];
        assert_eq!((step.name.as_str(), step.connections), ("checkout", 1));
    }

    /// Issue 16: a run of many short connections, each closed, keeps no
    /// state per connection, and the report still counts them all.
    #[test]
    fn closed_connections_leave_no_state_and_still_count() {
        let config = RuleConfig::builtin().expect("defaults");
        let mut audit = Audit::new(&config).expect("audit");
        audit.push(ev("SET flowaudit.step = 'checkout'", 0));
        for conn in 1..=500 {
            audit.push(ev("select stock from inventory where product_id = 1", conn));
            audit.push(ev("insert into orders (user_id) values (1)", conn));
            audit.connection_closed(conn);
        }
        audit.connection_closed(0);
        assert_eq!(audit.attributor.connections_held(), 0);
        assert!(audit.conn_steps.is_empty(), "{:?}", audit.conn_steps);
        assert!(audit.steps.iter().all(|s| s.connections.is_empty()));
        let report = audit.finish();
        let step = &report.flows[0].steps[0];
        assert_eq!((step.name.as_str(), step.connections), ("checkout", 500));
        // Opened one per few statements: churn, counted from the summaries.
        assert!(
            report.findings.iter().any(|f| f.rule == "connection-churn"),
            "{:#?}",
            report.findings
        );
    }

    #[test]
    fn per_step_counts() {
        let config = RuleConfig::builtin().expect("defaults");
        let report = audit_events(
            &config,
            vec![
                ev("SET flowaudit.flow = 'shop'", 1),
                ev("SET flowaudit.step = 'browse'", 1),
                ev("BEGIN", 1),
                ev("select 1", 1),
                ev("SET search_path = public", 1),
                ev("COMMIT", 1),
                ev("select 2", 2),
                ev("SET flowaudit.step = 'pay'", 1),
                ev("insert into t values (1)", 1),
            ],
        )
        .expect("audit");
        assert_eq!(report.summary.statements, 6);
        assert_eq!(report.summary.markers, 3);
        assert_eq!(report.flows.len(), 1);
        let browse = &report.flows[0].steps[0];
        assert_eq!(browse.name, "browse");
        assert_eq!(
            (
                browse.statements,
                browse.queries,
                browse.transactions,
                browse.connections
            ),
            (5, 2, 1, 2)
        );
        assert_eq!(browse.duration_us, Some(5000));
        assert_eq!(report.flows[0].steps[1].statements, 1);
    }

    /// Issue 15: a password hidden from a statement's text still tells its
    /// runs apart: the same password twice is a repeat, two different ones
    /// are not, and no report holds either.
    #[test]
    fn hidden_passwords_still_compare_and_never_show() {
        let config = RuleConfig::builtin().expect("defaults");
        let run = |a: &str, b: &str| {
            audit_events(
                &config,
                vec![
                    ev("SET flowaudit.step = 'accounts'", 1),
                    ev(&format!("ALTER ROLE app PASSWORD '{a}'"), 1),
                    ev(&format!("ALTER ROLE app PASSWORD '{b}'"), 1),
                ],
            )
            .expect("audit")
        };
        let same = run("hunter2", "hunter2");
        let repeated: Vec<&Finding> = same
            .findings
            .iter()
            .filter(|f| f.rule == "repeated-query")
            .collect();
        assert_eq!(repeated.len(), 1, "{:?}", same.findings);
        assert_eq!(
            repeated[0].examples,
            vec!["ALTER ROLE app PASSWORD '***'".to_owned()]
        );
        let text = format!("{:?}", same.findings);
        assert!(!text.contains("hunter2"), "{text}");
        let different = run("hunter2", "hunter3");
        assert!(
            different
                .findings
                .iter()
                .all(|f| f.rule != "repeated-query"),
            "{:?}",
            different.findings
        );
    }

    /// With `--params drop` the values are unknown: runs of one statement are
    /// no repeats, whatever their values were.
    #[test]
    fn dropped_values_are_never_the_same() {
        let config = RuleConfig::builtin().expect("defaults");
        let events = || {
            (0..3).map(|_| Event {
                params: Some(vec![Some("7".into())]),
                ..ev("SELECT * FROM t WHERE id = $1", 1)
            })
        };
        let kept = audit_events(&config, events()).expect("audit");
        assert!(kept.findings.iter().any(|f| f.rule == "repeated-query"));
        let mut audit = Audit::new(&config)
            .expect("audit")
            .with_params(ParamsMode::Drop);
        for e in events() {
            audit.push(e);
        }
        let dropped = audit.finish();
        assert!(
            dropped.findings.iter().all(|f| f.rule != "repeated-query"),
            "{:?}",
            dropped.findings
        );
        assert!(
            dropped
                .notes
                .iter()
                .any(|n| n.starts_with("3 statements had their bind values dropped")),
            "{:?}",
            dropped.notes
        );
    }

    /// Issue 20: statements whose source cannot see transaction boundaries
    /// (a Python DB-API driver's OpenTelemetry spans) are not judged by the
    /// transaction rules, which would take them for autocommit; the other
    /// rules judge them, and the report says how many were left.
    #[test]
    fn statements_of_unknown_transactions_are_left_to_the_other_rules() {
        let config = RuleConfig::builtin().expect("defaults");
        let step = |txn_unknown: bool| -> Vec<Event> {
            let mut events = vec![
                ev("INSERT INTO orders (id) VALUES (1)", 1),
                ev("INSERT INTO order_items (order_id) VALUES (1)", 1),
            ];
            for _ in 0..6 {
                events.push(Event {
                    params: Some(vec![Some("7".into())]),
                    ..ev("SELECT stock FROM inventory WHERE product_id = $1", 1)
                });
            }
            for e in &mut events {
                e.step = Some("checkout".into());
                e.txn_unknown = txn_unknown;
            }
            events
        };
        let rules = |report: &Report| -> Vec<&'static str> {
            report.findings.iter().map(|f| f.rule).collect()
        };
        let seen = audit_events(&config, step(false)).expect("audit");
        assert!(
            rules(&seen).contains(&"non-atomic-write"),
            "{:?}",
            rules(&seen)
        );
        assert!(!seen.notes.iter().any(|n| n.contains("BEGIN or COMMIT")));

        let unknown = audit_events(&config, step(true)).expect("audit");
        assert!(
            !rules(&unknown).contains(&"non-atomic-write"),
            "{:?}",
            rules(&unknown)
        );
        assert!(
            rules(&unknown).contains(&"repeated-query"),
            "{:?}",
            rules(&unknown)
        );
        let noted: Vec<&String> = unknown
            .notes
            .iter()
            .filter(|n| n.contains("no BEGIN or COMMIT"))
            .collect();
        assert_eq!(noted.len(), 1, "{:?}", unknown.notes);
        assert!(
            noted[0].starts_with("8 statements came from"),
            "{}",
            noted[0]
        );
        for id in [
            "commit-after-error",
            "non-atomic-write",
            "open-transaction",
            "partial-write-on-failure",
        ] {
            assert!(noted[0].contains(id), "{}", noted[0]);
        }
    }

    /// Issue 13, defect 11: a statement the proxy's stop cut off is not a
    /// slow query, its transaction is not left open by the application, and
    /// the report says once how many the stop cut.
    #[test]
    fn statements_cut_by_the_stop_are_noted_not_judged() {
        let config = RuleConfig::builtin().expect("defaults");
        let cut = Event {
            duration_us: Some(3_000_000),
            txn: Some(TxnStatus::Open),
            error: Some(crate::model::SqlError {
                code: "08006".into(),
                message: "the proxy stopped before the statement completed".into(),
            }),
            cut_by_stop: true,
            ..ev("select pg_sleep(30)", 1)
        };
        let report = audit_events(
            &config,
            vec![ev("BEGIN", 1), ev("INSERT INTO t VALUES (1)", 1), cut],
        )
        .expect("audit");
        let rules: Vec<&str> = report.findings.iter().map(|f| f.rule).collect();
        assert!(
            !rules.contains(&"slow-query") && !rules.contains(&"open-transaction"),
            "{rules:?}"
        );
        let noted: Vec<&String> = report
            .notes
            .iter()
            .filter(|n| n.contains("cut off by the proxy's stop"))
            .collect();
        assert_eq!(noted.len(), 1, "{:?}", report.notes);
        assert!(
            noted[0].starts_with("1 statement was cut off"),
            "{}",
            noted[0]
        );

        // A step whose autocommit write is followed by a statement the stop
        // cut did not fail: the stop is no failure of the application.
        let cut_write = |cut_by_stop| Event {
            txn: Some(TxnStatus::Idle),
            error: Some(crate::model::SqlError {
                code: "08006".into(),
                message: "connection lost".into(),
            }),
            cut_by_stop,
            ..ev("INSERT INTO u VALUES (2)", 1)
        };
        let partial = |cut_by_stop| {
            let report = audit_events(
                &config,
                vec![ev("INSERT INTO t VALUES (1)", 1), cut_write(cut_by_stop)],
            )
            .expect("audit");
            report
                .findings
                .iter()
                .any(|f| f.rule == "partial-write-on-failure")
        };
        assert!(!partial(true));
        assert!(partial(false));

        // The same statement not cut by the stop is judged.
        let slow = Event {
            duration_us: Some(3_000_000),
            ..ev("select pg_sleep(30)", 1)
        };
        let report = audit_events(
            &config,
            vec![ev("BEGIN", 1), ev("INSERT INTO t VALUES (1)", 1), slow],
        )
        .expect("audit");
        let rules: Vec<&str> = report.findings.iter().map(|f| f.rule).collect();
        assert!(
            rules.contains(&"slow-query") && rules.contains(&"open-transaction"),
            "{rules:?}"
        );
    }

    #[test]
    fn driver_housekeeping_counts_as_statements_not_queries() {
        // issue 13, defect 8: psycopg's DEALLOCATE ALL after a rollback, a
        // pooler's DISCARD ALL, asyncpg's pool reset; each run twice in the
        // step, which is not a repeated query either.
        let housekeeping = [
            "DEALLOCATE ALL",
            "DEALLOCATE PREPARE _pg3_2",
            "DISCARD ALL",
            "RESET ALL",
            "CLOSE ALL",
            "UNLISTEN *",
            "SELECT pg_advisory_unlock_all()",
            "SELECT pg_advisory_unlock_all(); CLOSE ALL; UNLISTEN *; RESET ALL;",
        ];
        let mut events = vec![ev("SET flowaudit.step = 'browse'", 1)];
        for _ in 0..2 {
            events.push(ev("select * from products where id = 1", 1));
            events.push(ev("ROLLBACK", 1));
            events.extend(housekeeping.iter().map(|sql| ev(sql, 1)));
        }
        let config = RuleConfig::builtin().expect("defaults");
        let report = audit_events(&config, events).expect("audit");
        let browse = &report.flows[0].steps[0];
        let housekeeping = 2 * housekeeping.len() as u64;
        assert_eq!(browse.statements, 2 + 2 + housekeeping);
        assert_eq!(browse.queries, 2);
        assert_eq!(browse.statements - browse.queries - 2, housekeeping);
        let fired: Vec<_> = report.findings.iter().map(|f| f.rule).collect();
        // Only the product read, which did repeat.
        assert_eq!(fired, ["repeated-query"], "{:#?}", report.findings);
        assert!(
            report.findings[0]
                .fingerprint
                .as_deref()
                .unwrap_or("")
                .contains("products")
        );
    }

    #[test]
    fn allowed_findings_are_set_aside_with_their_reason() {
        let config = RuleConfig::builtin_with(
            "[[allow]]\nrule = \"repeated-query\"\nfingerprint = \"^select \\\\?$\"\nreason = \"health check\"\n",
        )
        .expect("valid");
        let report =
            audit_events(&config, vec![ev("select 1", 1), ev("select 1", 1)]).expect("audit");
        assert!(report.findings.is_empty());
        assert_eq!(report.allowed.len(), 1);
        assert_eq!(report.allowed[0].reason, "health check");
        assert_eq!(report.summary.allowed, 1);
    }

    #[test]
    fn inline_allow_tag_silences_the_rules_it_names() {
        let tagged = |tag: &str| -> Vec<Event> {
            (0..3)
                .map(|_| ev(&format!("select 1 /*flowaudit_allow='{tag}'*/"), 1))
                .collect()
        };
        let config = RuleConfig::builtin().expect("defaults");
        let fired = |events| {
            let report = audit_events(&config, events).expect("audit");
            report.findings.iter().map(|f| f.rule).collect::<Vec<_>>()
        };
        assert_eq!(fired(tagged("n-plus-one")), ["repeated-query"]);
        assert!(fired(tagged("n-plus-one,repeated-query")).is_empty());
        assert!(fired(tagged("n-plus-one%2C%20repeated-query")).is_empty());
        // The statements still count.
        let report = audit_events(&config, tagged("repeated-query")).expect("audit");
        assert_eq!(report.summary.statements, 3);
    }

    #[test]
    fn expired_allowances_stop_applying_and_say_so() {
        let mut config = RuleConfig::builtin_with(
            "[[allow]]\nrule = \"repeated-query\"\nstep = \"(unattributed)\"\nreason = \"until the cache lands\"\nexpires = \"2026-03-01\"\n",
        )
        .expect("valid");
        let events = || vec![ev("select 1", 1), ev("select 1", 1)];
        config.today = crate::date::Date::parse("2026-03-01").expect("date");
        let report = audit_events(&config, events()).expect("audit");
        assert!(report.findings.is_empty());
        assert!(report.notes.is_empty());
        config.today = crate::date::Date::parse("2026-03-02").expect("date");
        let report = audit_events(&config, events()).expect("audit");
        assert_eq!(report.findings.len(), 1);
        assert_eq!(
            report.notes,
            [
                "an [[allow]] in <inline> expired on 2026-03-01 and no longer applies \
                 (repeated-query): until the cache lands"
            ]
        );
    }

    #[test]
    fn values_hash_tells_null_from_text() {
        let a = Event {
            params: Some(vec![None]),
            ..Event::default()
        };
        let b = Event {
            params: Some(vec![Some(String::new())]),
            ..Event::default()
        };
        assert_ne!(values_hash(&a, 0), values_hash(&b, 0));
        assert_eq!(values_hash(&Event::default(), 7), 7);
    }
}
