//! The rule engine. A rule watches the attributed statements of a run one at
//! a time ([`Rule::observe`]) and says what it found when the run ends
//! ([`Rule::finish`]); it keeps per step only what it needs, so that memory
//! grows with the distinct fingerprints of a step, not with the statements.
//!
//! Adding a rule: write `src/rules/<rule_id>.rs` with its documentation, its
//! [`RuleMeta`] and its tests, and add one line to [`REGISTRY`].

pub mod config;

mod commit_after_error;
mod connection_churn;
mod invariant_violated;
mod lost_update;
mod missing_step;
mod n_plus_one;
mod non_atomic_write;
mod open_transaction;
mod partial_write_on_failure;
mod query_budget;
mod query_count_regression;
mod repeated_query;
mod slow_query;
mod unbounded_write;
pub mod units;
mod unlocked_read_modify_write;

// Schema rules (src/schema/lint.rs runs them).
pub(crate) mod foreign_key_type_mismatch;
pub(crate) mod missing_foreign_key;
pub(crate) mod missing_primary_key;
pub(crate) mod orphan_rows;
pub(crate) mod unindexed_foreign_key;

use crate::attribute::TxnOp;
use crate::fingerprint::Fingerprint;
use crate::model::{Event, Finding, Severity, StepKey};
use foldhash::HashMap;

pub use config::{Budget, ConfigError, RuleConfig};

/// Every built-in rule, one line each, in catalogue order.
pub static REGISTRY: &[&RuleMeta] = &[
    &n_plus_one::META,
    &repeated_query::META,
    &query_budget::META,
    &slow_query::META,
    &query_count_regression::META,
    &missing_step::META,
    &non_atomic_write::META,
    &open_transaction::META,
    &commit_after_error::META,
    &unlocked_read_modify_write::META,
    &lost_update::META,
    &unbounded_write::META,
    &partial_write_on_failure::META,
    &invariant_violated::META,
    &connection_churn::META,
    // Schema rules.
    &missing_primary_key::META,
    &unindexed_foreign_key::META,
    &foreign_key_type_mismatch::META,
    &missing_foreign_key::META,
    &orphan_rows::META,
];

/// The id of the rule whose findings come from data invariants (see
/// [`crate::invariants`]), not from the trace.
pub const INVARIANT_VIOLATED: &str = "invariant-violated";

/// The id of the rule that compares counts with a baseline.
pub const QUERY_COUNT_REGRESSION: &str = "query-count-regression";

/// The id of the rule that reports the baseline's steps a run lacks.
pub const MISSING_STEP: &str = "missing-step";

/// Whether a rule's findings are judgements against the `--baseline` (never
/// stored in one: the next baseline is the judged run's own counts).
pub fn judges_the_baseline(rule: &str) -> bool {
    rule == QUERY_COUNT_REGRESSION || rule == MISSING_STEP
}

/// Looks a rule up by its id.
pub fn meta(id: &str) -> Option<&'static RuleMeta> {
    REGISTRY.iter().copied().find(|m| m.id == id)
}

/// Reads a rule id (a JSON report's `rule`) as the registry's own `&'static
/// str`; an id this build does not know is an error naming it.
pub fn registered_id<'de, D: serde::Deserializer<'de>>(d: D) -> Result<&'static str, D::Error> {
    let id: std::borrow::Cow<'de, str> = serde::Deserialize::deserialize(d)?;
    meta(&id).map(|m| m.id).ok_or_else(|| {
        serde::de::Error::custom(format!(
            "unknown rule id \"{id}\" (`flowaudit rules list` names the rules this build knows)"
        ))
    })
}

/// What the catalogue knows of a rule.
#[derive(Debug)]
pub struct RuleMeta {
    /// Kebab-case id naming the thing flagged.
    pub id: &'static str,
    pub default_severity: Severity,
    /// One line for `flowaudit rules list`.
    pub summary: &'static str,
    /// The rule's documentation (What it does, Why is this bad?, Example,
    /// How to fix): the doc comment of its struct, for `rules explain`.
    pub doc: &'static str,
    /// Builds the rule from its settings; an unknown or ill-typed key is an error.
    pub build: fn(&RuleSetup<'_>) -> Result<Box<dyn Rule>, toml::de::Error>,
    /// The rule's verdict rests on where transactions begin and end: it
    /// does not see the statements whose source cannot tell
    /// ([`crate::model::Event::txn_unknown`]), rather than take them for
    /// autocommit.
    pub judges_transactions: bool,
}

impl RuleMeta {
    /// The documentation as written, without the doc-comment indentation.
    pub fn documentation(&self) -> String {
        let mut out = String::new();
        for line in self.doc.lines() {
            out.push_str(line.strip_prefix(' ').unwrap_or(line));
            out.push('\n');
        }
        out.trim_end().to_owned() + "\n"
    }
}

/// Everything a rule is built from.
#[derive(Debug)]
pub struct RuleSetup<'a> {
    pub severity: Severity,
    /// The rule's own keys from the rule files (severity and enabled removed).
    pub settings: toml::Table,
    pub budgets: &'a [Budget],
    /// The `--baseline`, when one was given.
    pub baseline: Option<&'a crate::baseline::Baseline>,
}

impl RuleSetup<'_> {
    /// Deserialises the rule's settings; keys left out take their defaults.
    pub fn settings<T: serde::de::DeserializeOwned>(&self) -> Result<T, toml::de::Error> {
        toml::Value::Table(self.settings.clone()).try_into()
    }
}

/// One statement as the rules see it. Markers never reach the rules.
#[derive(Debug, Clone, Copy)]
pub struct Statement<'a> {
    /// Position in the order the statements were read.
    pub seq: u64,
    pub conn: u64,
    pub key: &'a StepKey,
    /// A small number standing for `key`, the same for every statement of the
    /// step: rules key their per-step state by it instead of cloning names.
    pub step: usize,
    pub event: &'a Event,
    pub fingerprint: &'a Fingerprint,
    /// Hash of the statement's parameter set: its bind values and the literals
    /// its fingerprint replaced. Equal values, equal hash.
    pub values: u64,
    /// Which run of its step this is, as far as markers tell: every marker
    /// begins a new run of the step it names, for its own connection (and for
    /// the connections that never sent a marker); see
    /// [`crate::attribute::Attributed::instance`]. Without markers it stays 0,
    /// and a step's runs are judged together.
    pub instance: u64,
    /// The explicit transaction the statement ran in (unique within the run),
    /// `None` in autocommit.
    pub txn: Option<u64>,
    pub txn_op: Option<TxnOp>,
}

impl Statement<'_> {
    /// Transaction control, session settings and driver housekeeping
    /// (`DEALLOCATE ALL`, `DISCARD ALL`, a pool's reset) are not queries: a
    /// framework's own query counter does not count them.
    pub fn is_query(&self) -> bool {
        !self.fingerprint.kind.is_bookkeeping()
    }

    /// The statement as a reader would want to see it in an example: its text
    /// without sqlcommenter tags, on one line, with its bind values.
    pub fn example(&self) -> String {
        example_of(&self.event.sql, self.event.params.as_deref())
    }

    /// What [`Self::example`] is made from, kept for later: a rule that may
    /// never report keeps this (two clones) rather than the formatted text.
    pub fn shown(&self) -> Shown {
        Shown {
            sql: self.event.sql.clone(),
            params: self.event.params.clone(),
        }
    }
}

/// A statement kept for an example that may never be written.
#[derive(Debug, Clone, Default)]
pub struct Shown {
    sql: String,
    params: Option<Vec<Option<String>>>,
}

impl Shown {
    pub fn example(&self) -> String {
        example_of(&self.sql, self.params.as_deref())
    }
}

/// See [`Statement::example`].
fn example_of(sql: &str, params: Option<&[Option<String>]>) -> String {
    let sql = crate::attribute::strip_tags(sql);
    let mut text: String = sql.split_whitespace().collect::<Vec<_>>().join(" ");
    if text.chars().count() > 160 {
        text = text.chars().take(159).collect::<String>() + "…";
    }
    if let Some(params) = params
        && !params.is_empty()
    {
        let shown: Vec<String> = params
            .iter()
            .map(|p| match p {
                Some(v) if v.chars().count() > 40 => {
                    format!("'{}…'", v.chars().take(39).collect::<String>())
                }
                Some(v) => format!("'{v}'"),
                None => "NULL".to_owned(),
            })
            .collect();
        text.push_str("  -- params: ");
        text.push_str(&shown.join(", "));
    }
    text
}

/// A built-in check over a run's statements.
pub trait Rule: std::fmt::Debug + Send {
    fn observe(&mut self, statement: &Statement<'_>);
    /// The findings, once every statement has been observed. Rules finish
    /// in [`REGISTRY`] order, and `out` already holds the findings of the
    /// rules before this one: a rule may leave to an earlier one what it
    /// reported (`repeated-query` the loops `n-plus-one` reported).
    fn finish(&mut self, out: &mut Vec<Finding>);
    /// Connection `conn` ended: its statements have all been observed.
    /// A rule drops or summarises what it kept for that connection, so that
    /// its state stays bounded by the connections still open (issue 16).
    fn connection_closed(&mut self, conn: u64) {
        let _ = conn;
    }
}

/// How many distinct parameter sets a rule tracks per fingerprint and step
/// before it stops adding new ones: the bound that keeps memory independent
/// of the number of statements. Counts stay exact; the distinct-value count
/// saturates here and reports say "at least".
pub const DISTINCT_CAP: usize = 4096;

/// Declares a rule's struct and keeps its doc comment as `Self::DOC`, so that
/// the documentation lives once, on the rule, and feeds `rules explain`.
macro_rules! documented_rule {
    ($(#[doc = $doc:literal])* $vis:vis struct $name:ident $body:tt) => {
        $(#[doc = $doc])*
        #[derive(Debug)]
        $vis struct $name $body
        impl $name {
            pub const DOC: &'static str = concat!($($doc, "\n"),*);
        }
    };
}
pub(crate) use documented_rule;

/// Formats a count with thousands separators, as reports show counts.
pub fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// A count and its noun, singular for one: "1 statement", "1,204 statements".
pub fn plural(n: u64, one: &str, many: &str) -> String {
    format!("{} {}", thousands(n), if n == 1 { one } else { many })
}

#[cfg(test)]
pub(crate) mod testing {
    //! Runs hand-written statements through the whole audit, as rule tests need.
    use crate::audit::Audit;
    use crate::model::{Event, Finding};
    use crate::rules::RuleConfig;

    /// Events from (conn, sql, params, rows) tuples.
    pub fn events(rows: &[(u64, &str, &[&str], Option<u64>)]) -> Vec<Event> {
        rows.iter()
            .map(|(conn, sql, params, n)| Event {
                sql: (*sql).to_owned(),
                conn: Some(*conn),
                params: if params.is_empty() {
                    None
                } else {
                    Some(params.iter().map(|p| Some((*p).to_owned())).collect())
                },
                rows: *n,
                ..Event::default()
            })
            .collect()
    }

    /// Audits the events with the built-in defaults plus `extra` rule-file text.
    pub fn audit(events: Vec<Event>, extra: &str) -> Vec<Finding> {
        let config = RuleConfig::builtin_with(extra).expect("valid rule file");
        let mut audit = Audit::new(&config).expect("rules build");
        for e in events {
            audit.push(e);
        }
        audit.finish().findings
    }

    pub fn fired<'a>(findings: &'a [Finding], rule: &str) -> Vec<&'a Finding> {
        findings.iter().filter(|f| f.rule == rule).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registry_ids_are_unique_kebab_case_and_documented() {
        let mut ids: Vec<&str> = REGISTRY.iter().map(|m| m.id).collect();
        for m in REGISTRY {
            assert!(
                m.id.chars().all(|c| c.is_ascii_lowercase() || c == '-'),
                "{}",
                m.id
            );
            let doc = m.documentation();
            for section in [
                "## What it does",
                "## Why is this bad?",
                "## Example",
                "## How to fix",
            ] {
                assert!(doc.contains(section), "{} lacks {section}", m.id);
            }
        }
        ids.sort_unstable();
        ids.dedup();
        assert_eq!(ids.len(), REGISTRY.len());
    }

    #[test]
    fn thousands_separators() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(1000), "1,000");
        assert_eq!(thousands(1234567), "1,234,567");
        assert_eq!(plural(1, "run", "runs"), "1 run");
        assert_eq!(plural(2000, "run", "runs"), "2,000 runs");
    }
}

/// Whether a fingerprint's runs were independent units of work: every run
/// inside an explicit transaction, each transaction running it once (a
/// benchmark's or a batch job's loop of transactions). Such runs are neither
/// an N+1 nor repeats, however many there are.
#[derive(Debug, Default, Clone)]
pub struct TxnSpread {
    outside: u64,
    max_in_one: u64,
    /// Per connection: the transaction of the latest run and its runs so far.
    current: HashMap<u64, (u64, u64)>,
}

impl TxnSpread {
    pub fn observe(&mut self, s: &Statement<'_>) {
        let Some(txn) = s.txn else {
            self.outside += 1;
            return;
        };
        let entry = self.current.entry(s.conn).or_insert((txn, 0));
        if entry.0 != txn {
            *entry = (txn, 0);
        }
        entry.1 += 1;
        self.max_in_one = self.max_in_one.max(entry.1);
    }

    pub fn independent_units(&self) -> bool {
        self.outside == 0 && self.max_in_one <= 1
    }
}
