//! `n-plus-one`: one statement run once per row of an earlier query.

use foldhash::{HashMap, HashMapExt, HashSet};

use super::{
    DISTINCT_CAP, Rule, RuleMeta, RuleSetup, Statement, TxnSpread, documented_rule, thousands,
};
use crate::fingerprint::StatementKind;
use crate::model::{Finding, Severity, StepKey};

pub static META: RuleMeta = RuleMeta {
    id: "n-plus-one",
    default_severity: Severity::Error,
    summary: "one statement run once per row of an earlier query, with varying parameters",
    doc: NPlusOne::DOC,
    build,
    judges_transactions: false,
};

documented_rule! {
    /// ## What it does
    /// Flags a statement that a step runs many times with different parameters,
    /// once per row of an earlier query: the N+1 pattern. Within one step (all
    /// of its connections), a fingerprint must run at least `min_repeats` times
    /// (default 5) with at least 2 distinct parameter sets (bind values, or the
    /// literals the fingerprint replaced), and follow a *source*: an earlier
    /// SELECT of another fingerprint on the same connection. No source, no N+1.
    /// The source named is the closest earlier SELECT of the step that returned
    /// at least as many rows as there are distinct values, where row counts
    /// are known (the proxy); else the previous SELECT on the connection, and
    /// the finding says the loop ran *after* it rather than per row of it.
    /// Whether a loop is an N+1 never depends on row counts, so a server log
    /// of the same run, which has none, gives the same findings.
    ///
    /// Each loop is judged on its own: a loop ends when a marker starts a new
    /// run of the step, or when the oldest query that could have fed it runs
    /// again (the next request's list query). A step that runs once per
    /// request is judged per request, and the finding says in how many loops
    /// the pattern showed.
    ///
    /// When some runs of a loop repeat a value of that loop, the finding
    /// says how many: those repeats are the loop's, and `repeated-query` does
    /// not report the fingerprint again in that step.
    ///
    /// A loop of explicit transactions that each run the statement once (a
    /// benchmark, a batch job) is independent units of work, not an N+1.
    /// Writes repeated the same way (an INSERT per row) are reported too, as a
    /// write N+1. Transaction control, SET and markers never are.
    ///
    /// ## Why is this bad?
    /// Every round trip costs latency, and the count grows with the data: a page
    /// that runs 21 queries over 20 products runs 1,001 over 1,000.
    ///
    /// ## Example
    /// ```sql
    /// select * from products order by id limit 20;          -- 20 rows
    /// select * from inventory where product_id = $1;        -- 20 times, $1 = 1, 2, …
    /// ```
    ///
    /// ## How to fix
    /// Load the rows in one query: `where product_id = any($1)` or
    /// `in (…)`, a JOIN, or your ORM's eager loading (`select_related`,
    /// `includes`, `joinedload`, `JOIN FETCH`). For writes, one multi-row
    /// `INSERT … VALUES (…), (…)`, `INSERT … SELECT` or COPY.
    ///
    /// ## Settings
    /// `min_repeats` (integer, default 5): runs needed before it counts.
    pub struct NPlusOne {
        severity: Severity,
        settings: Settings,
        steps: HashMap<usize, StepState>,
        /// Per connection: the steps that keep its latest SELECT
        /// (`StepState::last_select`), dropped when it closes.
        selected_in: HashMap<u64, HashSet<usize>>,
    }
}

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
struct Settings {
    min_repeats: u64,
}

impl Default for Settings {
    fn default() -> Self {
        Self { min_repeats: 5 }
    }
}

fn build(setup: &RuleSetup<'_>) -> Result<Box<dyn Rule>, toml::de::Error> {
    let settings: Settings = setup.settings()?;
    // One run is no loop; 0 would flag every query (issue 15).
    if settings.min_repeats < 2 {
        return Err(serde::de::Error::custom(format!(
            "min_repeats: {} is too small: at least 2 runs make a loop",
            settings.min_repeats
        )));
    }
    Ok(Box::new(NPlusOne {
        severity: setup.severity,
        settings,
        steps: HashMap::new(),
        selected_in: HashMap::new(),
    }))
}

/// An earlier SELECT that may have fed a loop.
#[derive(Debug, Clone, Copy)]
struct Source {
    hash: u64,
    rows: Option<u64>,
}

/// How many candidate sources a step keeps; see `StepState::sources`.
const SOURCE_CAP: usize = 64;

#[derive(Debug)]
struct StepState {
    key: StepKey,
    groups: HashMap<u64, Group>,
    /// Earlier SELECTs with known row counts, oldest first, with strictly
    /// decreasing row counts: a SELECT followed by one with as many rows or
    /// more can never be the *closest* source for any count, so it is dropped.
    sources: Vec<Source>,
    /// The latest SELECT on each connection.
    last_select: HashMap<u64, Source>,
}

impl StepState {
    fn new(key: &StepKey) -> Self {
        Self {
            key: key.clone(),
            groups: HashMap::new(),
            sources: Vec::new(),
            last_select: HashMap::new(),
        }
    }
}

#[derive(Debug)]
struct Group {
    hash: u64,
    text: String,
    kind: StatementKind,
    /// Every run in the step.
    runs: u64,
    spread: TxnSpread,
    /// The loop under way.
    episode: Episode,
    /// What the loops that ended showed.
    flagged: Flagged,
}

/// One loop of a fingerprint: its runs since its candidate sources were
/// captured. A step that runs many times (every request of a load test) runs
/// its loops many times; judging each loop against the query that fed it keeps
/// the distinct-value count to one loop's, as the source's row count is.
#[derive(Debug, Default)]
struct Episode {
    runs: u64,
    distinct: HashSet<u64>,
    /// Runs whose values an earlier run of the loop had already used.
    repeated: u64,
    examples: Vec<String>,
    /// The step's candidate sources when the loop began (this fingerprint aside).
    sources: Vec<Source>,
    /// The oldest candidate and its runs when the loop began: when it runs
    /// again, a new loop begins.
    oldest: Option<(u64, u64)>,
    /// The run of the step the loop belongs to (see `Statement::instance`).
    instance: u64,
    last_select: Option<Source>,
}

#[derive(Debug, Default)]
struct Flagged {
    loops: u64,
    runs: u64,
    /// Runs of the flagged loops that repeated a value of their loop: the
    /// finding reports them, and `repeated-query` leaves them to it.
    repeated: u64,
    most_runs: u64,
    most_distinct: u64,
    source: Option<Source>,
    examples: Vec<String>,
}

impl Episode {
    fn begin(state: &StepState, hash: u64, conn: u64, instance: u64) -> Self {
        let sources: Vec<Source> = state
            .sources
            .iter()
            .filter(|src| src.hash != hash)
            .copied()
            .collect();
        let oldest = sources
            .first()
            .and_then(|src| state.groups.get(&src.hash).map(|g| (src.hash, g.runs)));
        Self {
            sources,
            oldest,
            instance,
            last_select: state
                .last_select
                .get(&conn)
                .filter(|src| src.hash != hash)
                .copied(),
            ..Self::default()
        }
    }

    /// The query that fed this loop, if one did: the closest earlier SELECT
    /// that returned at least as many rows as the loop had distinct values,
    /// else the previous SELECT (of another fingerprint) on the connection.
    ///
    /// Whether there is a source must not depend on row counts, which only
    /// the proxy knows: a server log of the same run has to give the same
    /// findings (issue 13, defect 10). Row counts only pick the better source
    /// to name.
    fn source(&self) -> Option<Source> {
        let distinct = self.distinct.len() as u64;
        self.sources
            .iter()
            .rev()
            .find(|src| src.rows.is_some_and(|r| r >= distinct))
            .or(self.last_select.as_ref())
            .copied()
    }
}

impl Group {
    /// Ends the loop under way, keeping what it showed if it was an N+1.
    fn end_loop(&mut self, min_repeats: u64) {
        let episode = std::mem::take(&mut self.episode);
        let distinct = episode.distinct.len() as u64;
        if episode.runs < min_repeats || distinct < 2 {
            return;
        }
        let Some(source) = episode.source() else {
            return;
        };
        let f = &mut self.flagged;
        f.loops += 1;
        f.runs += episode.runs;
        f.repeated += episode.repeated;
        if episode.runs > f.most_runs {
            f.most_runs = episode.runs;
            f.most_distinct = distinct;
            f.source = Some(source);
            f.examples = episode.examples;
        }
    }
}

impl Rule for NPlusOne {
    fn observe(&mut self, s: &Statement<'_>) {
        let kind = s.fingerprint.kind;
        let counted = matches!(
            kind,
            StatementKind::Select
                | StatementKind::Insert
                | StatementKind::Update
                | StatementKind::Delete
                | StatementKind::Merge
        );
        if !counted {
            return;
        }
        let min_repeats = self.settings.min_repeats;
        let state = self
            .steps
            .entry(s.step)
            .or_insert_with(|| StepState::new(s.key));
        let hash = s.fingerprint.hash;

        // A new loop begins at the fingerprint's first run, in a new run of
        // the step (a marker), or when the oldest candidate source has run
        // again (the next request's list query).
        let restart = match state.groups.get(&hash) {
            None => true,
            Some(g) => {
                g.episode.instance != s.instance
                    || g.episode.oldest.is_some_and(|(h, at)| {
                        state.groups.get(&h).is_some_and(|oldest| oldest.runs > at)
                    })
            }
        };
        let episode = restart.then(|| Episode::begin(state, hash, s.conn, s.instance));
        let group = state.groups.entry(hash).or_insert_with(|| Group {
            hash,
            text: s.fingerprint.text.clone(),
            kind,
            runs: 0,
            spread: TxnSpread::default(),
            episode: Episode::default(),
            flagged: Flagged::default(),
        });
        if let Some(episode) = episode {
            group.end_loop(min_repeats);
            group.episode = episode;
        }
        group.runs += 1;
        group.spread.observe(s);
        let ep = &mut group.episode;
        ep.runs += 1;
        if ep.distinct.len() < DISTINCT_CAP {
            if !ep.distinct.insert(s.values) {
                ep.repeated += 1;
            } else if ep.examples.len() < 3 {
                ep.examples.push(s.example());
            }
        } else if ep.distinct.contains(&s.values) {
            ep.repeated += 1;
        }

        if kind == StatementKind::Select {
            let source = Source {
                hash,
                rows: s.event.rows,
            };
            if state.last_select.insert(s.conn, source).is_none() {
                self.selected_in.entry(s.conn).or_default().insert(s.step);
            }
            if let Some(rows) = s.event.rows {
                while state
                    .sources
                    .last()
                    .is_some_and(|top| top.rows <= Some(rows))
                {
                    state.sources.pop();
                }
                if state.sources.len() == SOURCE_CAP {
                    state.sources.remove(0);
                }
                state.sources.push(source);
            }
        }
    }

    fn connection_closed(&mut self, conn: u64) {
        for step in self.selected_in.remove(&conn).unwrap_or_default() {
            if let Some(state) = self.steps.get_mut(&step) {
                state.last_select.remove(&conn);
            }
        }
    }

    fn finish(&mut self, out: &mut Vec<Finding>) {
        let min_repeats = self.settings.min_repeats;
        for state in self.steps.values_mut() {
            for group in state.groups.values_mut() {
                group.end_loop(min_repeats);
            }
        }
        for state in self.steps.values() {
            for group in state.groups.values() {
                if group.flagged.loops == 0 || group.spread.independent_units() {
                    continue;
                }
                let Some(source) = group.flagged.source else {
                    continue;
                };
                let Some(source_group) = state.groups.get(&source.hash) else {
                    continue;
                };
                out.push(self.finding(&state.key, group, &source, &source_group.text));
            }
        }
    }
}

impl NPlusOne {
    fn finding(&self, key: &StepKey, group: &Group, source: &Source, source_text: &str) -> Finding {
        let f = &group.flagged;
        let values = if f.most_distinct as usize >= DISTINCT_CAP {
            format!("at least {} different values", thousands(f.most_distinct))
        } else {
            format!("{} different values", thousands(f.most_distinct))
        };
        let rows = match source.rows {
            Some(r) => format!(" ({})", super::plural(r, "row", "rows")),
            None => String::new(),
        };
        // A source with fewer rows than the loop had values did not feed it
        // all: the loop ran after it, with values from elsewhere.
        let fed = if source.rows.is_none_or(|r| r >= f.most_distinct) {
            "once per row of"
        } else {
            "after"
        };
        let write = group.kind.is_write();
        let what = if write { "write" } else { "query" };
        let mut message = if f.loops == 1 {
            format!(
                "{what} ran {}× with {values}, {fed}: {source_text}{rows}",
                thousands(f.runs),
            )
        } else {
            format!(
                "{what} ran in {} loops, {} runs in all, up to {}× with {values} in one loop, \
                 {fed}: {source_text}{rows}",
                thousands(f.loops),
                thousands(f.runs),
                thousands(f.most_runs),
            )
        };
        if f.repeated > 0 {
            // Issue 13, defect 9: one loop, one finding; its repeats are told here.
            message.push_str(&format!(
                "; {} of its {} runs repeated a value",
                thousands(f.repeated),
                thousands(f.runs)
            ));
        }
        let help = if write {
            "write the rows in one statement: a multi-row INSERT … VALUES (…), (…), INSERT … SELECT, \
             or COPY; for updates, one UPDATE … FROM (VALUES …) or WHERE id = ANY(?)"
        } else {
            "load them in one query (… WHERE col = ANY(?) or IN (…)), a JOIN, or the ORM's eager \
             loading (select_related / includes / joinedload / JOIN FETCH)"
        };
        Finding {
            location: None,
            driver: Some(format!("{:016x}", source.hash)),
            rule: META.id,
            severity: self.severity,
            flow: key.flow.clone(),
            step: key.step.clone(),
            message,
            fingerprint: Some(group.text.clone()),
            fingerprint_hash: Some(format!("{:016x}", group.hash)),
            count: f.runs,
            examples: f.examples.clone(),
            help: help.to_owned(),
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::rules::testing::{audit, events, fired};

    fn loop_over(n: u64, rows: Option<u64>) -> Vec<(u64, String, Vec<String>, Option<u64>)> {
        let mut v = vec![(
            1,
            "select id from products order by id limit 20".to_owned(),
            vec![],
            rows,
        )];
        for i in 0..n {
            v.push((
                1,
                "select * from inventory where product_id = $1".to_owned(),
                vec![i.to_string()],
                rows.map(|_| 1),
            ));
        }
        v
    }

    fn run(
        rows: &[(u64, String, Vec<String>, Option<u64>)],
        extra: &str,
    ) -> Vec<crate::model::Finding> {
        let borrowed: Vec<Vec<&str>> = rows
            .iter()
            .map(|r| r.2.iter().map(String::as_str).collect())
            .collect();
        let tuples: Vec<(u64, &str, &[&str], Option<u64>)> = rows
            .iter()
            .zip(&borrowed)
            .map(|(r, p)| (r.0, r.1.as_str(), p.as_slice(), r.3))
            .collect();
        audit(events(&tuples), extra)
    }

    #[test]
    fn fires_on_a_loop_fed_by_an_earlier_query() {
        let findings = run(&loop_over(20, Some(20)), "");
        let f = fired(&findings, "n-plus-one");
        assert_eq!(f.len(), 1, "{findings:#?}");
        assert_eq!(f[0].count, 20);
        assert!(
            f[0].message.contains("20 different values"),
            "{}",
            f[0].message
        );
        assert!(f[0].message.contains("products"), "{}", f[0].message);
        assert_eq!(f[0].examples.len(), 3);
        assert!(
            f[0].examples[0].contains("params: '0'"),
            "{:?}",
            f[0].examples
        );
    }

    #[test]
    fn silent_below_min_repeats_and_configurable() {
        assert!(fired(&run(&loop_over(4, Some(20)), ""), "n-plus-one").is_empty());
        let f = run(
            &loop_over(4, Some(20)),
            "[rules.n-plus-one]\nmin_repeats = 3\n",
        );
        assert_eq!(fired(&f, "n-plus-one").len(), 1);
    }

    #[test]
    fn a_source_with_fewer_rows_still_feeds_the_loop_as_in_a_log() {
        // Issue 13, defect 10: the earlier query returned 3 rows, so it did
        // not feed 20 distinct values, but a server log of the same run knows
        // no row counts: both captures must give the same finding, which
        // says the loop ran after that query rather than per row of it.
        let few: Vec<_> = loop_over(20, Some(20))
            .into_iter()
            .map(|mut r| {
                if r.3 == Some(20) {
                    r.3 = Some(3);
                }
                r
            })
            .collect();
        let with_rows = run(&few, "");
        let without: Vec<_> = few
            .iter()
            .cloned()
            .map(|mut r| {
                r.3 = None;
                r
            })
            .collect();
        let from_log = run(&without, "");
        let proxy = fired(&with_rows, "n-plus-one");
        let log = fired(&from_log, "n-plus-one");
        assert_eq!(proxy.len(), 1);
        assert_eq!(log.len(), 1);
        assert_eq!(proxy[0].count, log[0].count);
        assert!(
            proxy[0].message.contains(", after: "),
            "{}",
            proxy[0].message
        );
        assert!(
            log[0].message.contains("once per row of: "),
            "{}",
            log[0].message
        );
        // No earlier query at all: no source, no N+1.
        let only_loop: Vec<_> = loop_over(20, Some(20)).into_iter().skip(1).collect();
        assert!(fired(&run(&only_loop, ""), "n-plus-one").is_empty());
    }

    #[test]
    fn unknown_row_counts_use_the_previous_select_on_the_connection() {
        let f = run(&loop_over(20, None), "");
        assert_eq!(fired(&f, "n-plus-one").len(), 1);
        // On another connection there is no source.
        let mut other = loop_over(20, None);
        other[0].0 = 2;
        assert!(fired(&run(&other, ""), "n-plus-one").is_empty());
    }

    #[test]
    fn same_values_are_repeats_not_n_plus_one() {
        let rows: Vec<_> = loop_over(20, Some(20))
            .into_iter()
            .map(|mut r| {
                if !r.2.is_empty() {
                    r.2 = vec!["7".into()];
                }
                r
            })
            .collect();
        let f = run(&rows, "");
        assert!(fired(&f, "n-plus-one").is_empty());
        assert_eq!(fired(&f, "repeated-query").len(), 1);
    }

    #[test]
    fn literals_count_as_values() {
        let mut rows = vec![(1, "select id from products".to_owned(), vec![], Some(10))];
        for i in 0..10 {
            rows.push((
                1,
                format!("select * from inventory where product_id = {i}"),
                vec![],
                Some(1),
            ));
        }
        assert_eq!(fired(&run(&rows, ""), "n-plus-one").len(), 1);
    }

    #[test]
    fn a_loop_of_independent_transactions_is_not_n_plus_one() {
        let mut rows = Vec::new();
        for i in 0..10 {
            rows.push((1, "BEGIN".to_owned(), vec![], None));
            rows.push((
                1,
                "select abalance from accounts where aid = $1".to_owned(),
                vec![i.to_string()],
                Some(1),
            ));
            rows.push((
                1,
                "update accounts set abalance = abalance + $1 where aid = $2".to_owned(),
                vec!["5".into(), i.to_string()],
                Some(1),
            ));
            rows.push((1, "COMMIT".to_owned(), vec![], None));
        }
        assert!(fired(&run(&rows, ""), "n-plus-one").is_empty());
    }

    #[test]
    fn a_loop_inside_one_transaction_is_n_plus_one() {
        let mut rows = vec![(1, "BEGIN".to_owned(), vec![], None)];
        rows.extend(loop_over(10, Some(10)));
        rows.push((1, "COMMIT".to_owned(), vec![], None));
        assert_eq!(fired(&run(&rows, ""), "n-plus-one").len(), 1);
    }

    #[test]
    fn insert_per_row_is_a_write_n_plus_one() {
        let mut rows = vec![(
            1,
            "select id, price from cart_items where cart_id = $1".to_owned(),
            vec!["1".into()],
            Some(6),
        )];
        for i in 0..6 {
            rows.push((
                1,
                "insert into order_items (order_id, product_id) values ($1, $2)".to_owned(),
                vec!["1".into(), i.to_string()],
                Some(1),
            ));
        }
        let f = run(&rows, "");
        let f = fired(&f, "n-plus-one");
        assert_eq!(f.len(), 1);
        assert!(f[0].message.starts_with("write ran 6×"), "{}", f[0].message);
        assert!(f[0].help.contains("multi-row INSERT"));
    }

    #[test]
    fn batched_fix_is_silent() {
        let rows = vec![
            (
                1,
                "select id from products order by id limit 20".to_owned(),
                vec![],
                Some(20),
            ),
            (
                1,
                "select * from inventory where product_id = any($1)".to_owned(),
                vec!["{1,2,3}".into()],
                Some(20),
            ),
        ];
        assert!(run(&rows, "").is_empty());
    }

    #[test]
    fn each_request_is_its_own_loop() {
        // The same step run for 30 requests: 600 distinct values in all, but each
        // loop has 20, fed by that request's 20-row list query.
        let mut rows = Vec::new();
        for request in 0..30u64 {
            rows.push((
                1,
                "select id from products order by id limit 20".to_owned(),
                vec![],
                Some(20),
            ));
            for i in 0..20u64 {
                rows.push((
                    1,
                    "select * from inventory where product_id = $1".to_owned(),
                    vec![(request * 100 + i).to_string()],
                    Some(1),
                ));
            }
        }
        let f = run(&rows, "");
        let f = fired(&f, "n-plus-one");
        assert_eq!(f.len(), 1);
        assert_eq!(f[0].count, 600);
        assert!(
            f[0].message.starts_with("query ran in 30 loops, 600 runs in all, up to 20× with 20 different values in one loop"),
            "{}",
            f[0].message
        );
    }

    #[test]
    fn a_second_loop_query_in_the_same_loop_is_found_too() {
        // orders (10 rows) → per order: its items (3 rows) and its payment (1 row).
        let mut rows = vec![(
            1,
            "select id from orders where user_id = $1".to_owned(),
            vec!["1".into()],
            Some(10),
        )];
        for o in 0..10u64 {
            rows.push((
                1,
                "select * from order_items where order_id = $1".to_owned(),
                vec![o.to_string()],
                Some(3),
            ));
            rows.push((
                1,
                "select * from payments where order_id = $1".to_owned(),
                vec![o.to_string()],
                Some(1),
            ));
        }
        let f = run(&rows, "");
        let mut found: Vec<_> = fired(&f, "n-plus-one")
            .iter()
            .map(|f| (f.fingerprint.clone().unwrap_or_default(), f.count))
            .collect();
        found.sort();
        assert_eq!(
            found,
            vec![
                (
                    "select * from order_items where order_id = ?".to_owned(),
                    10
                ),
                ("select * from payments where order_id = ?".to_owned(), 10),
            ]
        );
    }

    #[test]
    fn steps_are_separate() {
        let mut rows = loop_over(3, Some(20));
        rows.push((1, "SET flowaudit.step = 'other'".to_owned(), vec![], None));
        rows.extend(loop_over(3, Some(20)).into_iter().skip(1));
        assert!(fired(&run(&rows, ""), "n-plus-one").is_empty());
    }
}
