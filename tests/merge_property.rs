//! Issue 20: "`merge` of the reports of two halves of a trace equals the
//! report of the whole". Random traces of several flows and steps (N+1 loops,
//! repeated queries, transactions, writes in autocommit, slow statements) are
//! audited whole and in two halves; each half's report goes through its JSON
//! text and back, the two are merged, and the merge is compared with the
//! whole's report.
//!
//! Two splits are exact, because every rule judges a step's statements
//! together and each step's statements go wholly to one half:
//! - by flow (shards run different tests);
//! - by step, the steps of one flow going to different halves.
//!
//! There, every step's counts, the summary, the sources and every finding
//! (key, count, severity, message, examples, fingerprint, help) are equal;
//! the flows' and steps' order is not (the halves cannot tell how their
//! flows interleaved), so steps are compared by name and the merged order is
//! checked to keep each half's; the merge adds its own note.
//!
//! Splitting the runs of one step between the halves is not exact for
//! findings: a statement repeated once in each half is a `repeated-query` of
//! the whole only, and N+1 thresholds and distinct-value counts are the
//! whole step's. For that split the step counts that add are checked
//! (statements, queries, transactions, durations, the summary), the
//! connections are at least the whole's (a connection seen by both halves
//! counts in each), and `slow-query`'s findings, which judge each statement
//! alone, have the whole's keys, counts and severities: there one finding's
//! count does come from both halves.
//!
//! A report merged with itself doubles every count and keeps everything
//! else; one report alone comes back unchanged.

use std::collections::BTreeMap;

use flowaudit::audit::audit_events;
use flowaudit::model::Event;
use flowaudit::report::merge::{merge, parse};
use flowaudit::report::{Report, json};
use flowaudit::rules::RuleConfig;
use proptest::prelude::*;

#[derive(Debug, Clone)]
enum Item {
    /// A query returning `rows` rows, then one lookup per row: the same
    /// value each time or a new one.
    Loop { table: u8, rows: u8, same: bool },
    /// One lookup `times` times with the same value.
    Repeat { id: u8, times: u8 },
    /// Writes in one explicit transaction, committed or rolled back.
    Txn { writes: u8, rollback: bool },
    /// Writes in autocommit.
    Autocommit { writes: u8 },
    /// One slow statement.
    Slow { ms: u32 },
}

#[derive(Debug, Clone)]
struct Run {
    flow: u8,
    step: u8,
    conn: u8,
    timed: bool,
    source: bool,
    items: Vec<Item>,
}

fn item() -> impl Strategy<Value = Item> {
    prop_oneof![
        (0..3u8, 0..7u8, any::<bool>()).prop_map(|(table, rows, same)| Item::Loop {
            table,
            rows,
            same
        }),
        (0..3u8, 1..4u8).prop_map(|(id, times)| Item::Repeat { id, times }),
        (1..4u8, any::<bool>()).prop_map(|(writes, rollback)| Item::Txn { writes, rollback }),
        (1..4u8).prop_map(|writes| Item::Autocommit { writes }),
        (50..400u32).prop_map(|ms| Item::Slow { ms }),
    ]
}

fn run() -> impl Strategy<Value = Run> {
    (
        0..3u8,
        0..3u8,
        0..3u8,
        any::<bool>(),
        any::<bool>(),
        prop::collection::vec(item(), 1..5),
    )
        .prop_map(|(flow, step, conn, timed, source, items)| Run {
            flow,
            step,
            conn,
            timed,
            source,
            items,
        })
}

fn events(run: &Run, seq: &mut u64) -> Vec<Event> {
    let mut out = Vec::new();
    let mut push = |sql: String, params: Vec<String>, rows: u64, us: u64| {
        *seq += 1;
        out.push(Event {
            sql,
            params: (!params.is_empty()).then(|| params.into_iter().map(Some).collect()),
            conn: Some(u64::from(run.conn) + 1),
            flow: Some(format!("f{}", run.flow)),
            step: Some(format!("s{}", run.step)),
            rows: Some(rows),
            duration_us: run.timed.then_some(us),
            source: Some(if run.source { "proxy" } else { "trace" }.to_owned()),
            ..Event::default()
        });
    };
    for item in &run.items {
        match *item {
            Item::Loop { table, rows, same } => {
                push(
                    format!("select id from parent_{table} order by id"),
                    vec![],
                    u64::from(rows),
                    300,
                );
                for i in 0..rows {
                    let value = if same { 1 } else { i + 1 };
                    push(
                        format!("select * from child_{table} where parent_id = $1"),
                        vec![value.to_string()],
                        1,
                        100,
                    );
                }
            }
            Item::Repeat { id, times } => {
                for _ in 0..times {
                    push(
                        "select * from users where id = $1".to_owned(),
                        vec![id.to_string()],
                        1,
                        80,
                    );
                }
            }
            Item::Txn { writes, rollback } => {
                push("BEGIN".to_owned(), vec![], 0, 10);
                for w in 0..writes {
                    push(
                        format!("update stock_{w} set n = n - 1 where id = $1"),
                        vec![w.to_string()],
                        1,
                        200,
                    );
                }
                let end = if rollback { "ROLLBACK" } else { "COMMIT" };
                push(end.to_owned(), vec![], 0, 10);
            }
            Item::Autocommit { writes } => {
                for w in 0..writes {
                    push(
                        format!("insert into log_{w} (at) values ($1)"),
                        vec![w.to_string()],
                        1,
                        150,
                    );
                }
            }
            Item::Slow { ms } => push(
                "select pg_sleep($1)".to_owned(),
                vec![format!("0.{ms:03}")],
                1,
                u64::from(ms) * 1000,
            ),
        }
    }
    out
}

fn audit(runs: &[&Run]) -> Report {
    let config = RuleConfig::builtin().expect("the built-in rules load");
    let mut seq = 0;
    let all: Vec<Event> = runs.iter().flat_map(|r| events(r, &mut seq)).collect();
    audit_events(&config, all).expect("the audit runs")
}

/// A report as `merge` reads it: through its JSON text.
fn roundtrip(report: &Report) -> Report {
    parse("half.json", &json::render(report)).expect("a JSON report reads back")
}

type Counts = (u64, u64, Option<u64>, u64, u64);

fn steps(report: &Report) -> BTreeMap<(String, String), Counts> {
    report
        .flows
        .iter()
        .flat_map(|f| {
            f.steps.iter().map(|s| {
                (
                    (f.name.clone(), s.name.clone()),
                    (
                        s.statements,
                        s.queries,
                        s.duration_us,
                        s.transactions,
                        s.connections,
                    ),
                )
            })
        })
        .collect()
}

fn value<T: serde::Serialize>(v: &T) -> serde_json::Value {
    serde_json::to_value(v).expect("serialisable")
}

/// The names of `merged` that `part` has, in `merged`'s order, equal
/// `part`'s order: the merge keeps each report's order where the reports do
/// not contradict each other (their flows when `flows` is true, their
/// steps of a flow always, each step being in one half only).
fn keeps_order(merged: &Report, part: &Report, flows: bool) -> Result<(), TestCaseError> {
    let names = |r: &Report| -> Vec<String> { r.flows.iter().map(|f| f.name.clone()).collect() };
    let part_flows = names(part);
    let kept: Vec<String> = names(merged)
        .into_iter()
        .filter(|n| part_flows.contains(n))
        .collect();
    if flows {
        prop_assert_eq!(kept, part_flows);
    }
    for flow in &part.flows {
        let part_steps: Vec<&str> = flow.steps.iter().map(|s| s.name.as_str()).collect();
        let merged_flow = merged.flows.iter().find(|f| f.name == flow.name);
        let kept: Vec<&str> = merged_flow
            .into_iter()
            .flat_map(|f| &f.steps)
            .map(|s| s.name.as_str())
            .filter(|n| part_steps.contains(n))
            .collect();
        prop_assert_eq!(kept, part_steps);
    }
    Ok(())
}

/// Audits the two halves `half_a` picks, merges them both ways round, and
/// compares with the whole.
fn check_exact_split(runs: &[Run], half_a: impl Fn(&Run) -> bool) -> Result<(), TestCaseError> {
    let whole = audit(&runs.iter().collect::<Vec<_>>());
    let (a, b): (Vec<&Run>, Vec<&Run>) = runs.iter().partition(|r| half_a(r));
    let (a, b) = (roundtrip(&audit(&a)), roundtrip(&audit(&b)));
    let merged = merge(vec![a.clone(), b.clone()]).expect("two reports merge");
    let swapped = merge(vec![b.clone(), a.clone()]).expect("two reports merge");
    prop_assert_eq!(json::render(&merged), json::render(&swapped));

    prop_assert_eq!(steps(&merged), steps(&whole));
    prop_assert_eq!(value(&merged.summary), value(&whole.summary));
    prop_assert_eq!(&merged.sources, &whole.sources);
    prop_assert_eq!(value(&merged.findings), value(&whole.findings));
    prop_assert_eq!(value(&merged.allowed), value(&whole.allowed));
    prop_assert_eq!(value(&merged.known), value(&whole.known));
    let mut notes = merged.notes.clone();
    let own = notes.pop().unwrap_or_default();
    prop_assert!(own.starts_with("merged from 2 reports"), "{}", own);
    prop_assert_eq!(notes, whole.notes.clone());
    // Split by step, the halves may have run their flows in opposite orders.
    let disjoint = a
        .flows
        .iter()
        .all(|f| b.flows.iter().all(|g| g.name != f.name));
    keeps_order(&merged, &a, disjoint)?;
    keeps_order(&merged, &b, disjoint)?;
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn merging_halves_split_by_flow_gives_the_whole(
        runs in prop::collection::vec(run(), 1..10),
        flows_in_a in 0..8u8,
    ) {
        check_exact_split(&runs, |r| flows_in_a & (1 << r.flow) != 0)?;
    }

    #[test]
    fn merging_halves_split_by_step_gives_the_whole(
        runs in prop::collection::vec(run(), 1..10),
        steps_in_a in 0..512u16,
    ) {
        check_exact_split(&runs, |r| steps_in_a & (1 << (r.flow * 3 + r.step)) != 0)?;
    }

    #[test]
    fn merging_halves_split_by_run_adds_the_counts(
        runs in prop::collection::vec(run(), 1..10),
        runs_in_a in any::<u16>(),
    ) {
        let whole = audit(&runs.iter().collect::<Vec<_>>());
        let half = |in_a: bool| {
            let runs: Vec<&Run> = runs
                .iter()
                .enumerate()
                .filter(|(i, _)| (runs_in_a & (1 << i) != 0) == in_a)
                .map(|(_, r)| r)
                .collect();
            roundtrip(&audit(&runs))
        };
        let merged = merge(vec![half(true), half(false)]).expect("two reports merge");
        let whole_steps = steps(&whole);
        let merged_steps = steps(&merged);
        prop_assert_eq!(whole_steps.keys().collect::<Vec<_>>(), merged_steps.keys().collect::<Vec<_>>());
        for (key, w) in &whole_steps {
            let m = merged_steps[key];
            prop_assert_eq!((m.0, m.1, m.2, m.3), (w.0, w.1, w.2, w.3), "{:?}", key);
            prop_assert!(m.4 >= w.4, "{:?}: {} connections, the whole had {}", key, m.4, w.4);
        }
        // slow-query judges each run alone: its findings add exactly, and
        // here findings of one key do come from both halves.
        let slow = |r: &Report| -> Vec<(String, String, Option<String>, u64, String)> {
            r.findings
                .iter()
                .filter(|f| f.rule == "slow-query")
                .map(|f| (f.flow.clone(), f.step.clone(), f.fingerprint_hash.clone(), f.count, f.severity.to_string()))
                .collect()
        };
        prop_assert_eq!(slow(&merged), slow(&whole));
        prop_assert_eq!(merged.summary.statements, whole.summary.statements);
        prop_assert_eq!(merged.summary.markers, whole.summary.markers);
        prop_assert_eq!(&merged.sources, &whole.sources);
    }

    /// A report merged with itself: every count doubles, nothing else moves.
    #[test]
    fn merging_a_report_with_itself_doubles_its_counts(
        runs in prop::collection::vec(run(), 1..10),
    ) {
        let whole = roundtrip(&audit(&runs.iter().collect::<Vec<_>>()));
        let twice = merge(vec![whole.clone(), whole.clone()]).expect("two reports merge");
        let doubled: BTreeMap<_, _> = steps(&whole)
            .into_iter()
            .map(|(k, (s, q, d, t, c))| (k, (2 * s, 2 * q, d.map(|d| 2 * d), 2 * t, 2 * c)))
            .collect();
        prop_assert_eq!(steps(&twice), doubled);
        prop_assert_eq!(twice.summary.statements, 2 * whole.summary.statements);
        prop_assert_eq!(twice.findings.len(), whole.findings.len());
        for (t, w) in twice.findings.iter().zip(&whole.findings) {
            prop_assert_eq!(t.count, 2 * w.count);
            let mut t = t.clone();
            t.count = w.count;
            prop_assert_eq!(value(&t), value(w));
        }
        // One report alone comes back as it was.
        let once = merge(vec![whole.clone()]).expect("one report merges");
        prop_assert_eq!(json::render(&once), json::render(&whole));
    }
}

/// The generator's items make the findings the properties are about, so a
/// merge that mishandled findings could not pass them unseen.
#[test]
fn the_generated_items_make_findings() {
    let run = Run {
        flow: 0,
        step: 0,
        conn: 0,
        timed: true,
        source: true,
        items: vec![
            Item::Loop {
                table: 0,
                rows: 6,
                same: false,
            },
            Item::Repeat { id: 1, times: 3 },
            Item::Txn {
                writes: 2,
                rollback: false,
            },
            Item::Autocommit { writes: 2 },
            Item::Slow { ms: 300 },
        ],
    };
    let report = audit(&[&run]);
    let mut rules: Vec<&str> = report.findings.iter().map(|f| f.rule).collect();
    rules.dedup();
    assert_eq!(
        rules,
        [
            "n-plus-one",
            "non-atomic-write",
            "repeated-query",
            "slow-query"
        ],
        "{:#?}",
        report.findings
    );
}
