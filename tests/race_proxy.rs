//! Race mode through the PostgreSQL proxy (issue 19): `flowaudit run --race
//! checkout --race-instances 2` runs the corpus's SQLAlchemy shop
//! (tests/corpus/python/sqlalchemy_shop.py) twice at once, each copy through
//! a listener of its own, and forces the interleaving that loses an update:
//! the shipped checkout (the ORM reads the stock, computes, writes it back)
//! loses one every time, which `lost-update` and the invariant of
//! tests/corpus/rules/race.toml show; the fixed one (a guarded, relative
//! update in one transaction) loses none.
//!
//! Needs the machine's PostgreSQL and the corpus venv (`bash
//! tests/corpus/setup.sh`); without them the tests say why and skip, except
//! with CI=true, where they fail.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use support::pg::{self, TestDb};

const SCHEMA: &str = include_str!("workloads/shop_pg/schema.sql");
const SEED: &str = include_str!("workloads/shop_pg/seed.sql");
const ROOT: &str = env!("CARGO_MANIFEST_DIR");
/// Repetitions of each variant: the interleaving is forced, not lucky.
const REPETITIONS: usize = 20;

fn flowaudit() -> Command {
    Command::new(env!("CARGO_BIN_EXE_flowaudit"))
}

fn ready(what: &str) -> Option<PathBuf> {
    if !pg::available(what) {
        return None;
    }
    pg::corpus_python(what)
}

/// A database with the corpus's schema and catalogue.
fn shop_db(tag: &str) -> TestDb {
    let db = TestDb::new(tag);
    db.direct(SCHEMA);
    db.direct(SEED);
    db
}

/// Back to the seeded shop: no users, carts or orders, the stock as seeded.
/// Once before the instances start, never by them (each keeps to its own
/// user and cart, and deletes nothing but its own cart's lines).
fn reset(db: &TestDb) {
    db.direct(
        "TRUNCATE order_items, orders, cart_items, carts, users RESTART IDENTITY CASCADE; \
         UPDATE inventory SET stock = seeded_stock",
    );
}

/// What one `flowaudit run --race` left.
struct Raced {
    output: Output,
    report: Value,
    elapsed: Duration,
}

impl Raced {
    fn rules(&self) -> Vec<&str> {
        self.report["findings"]
            .as_array()
            .map(|f| f.iter().filter_map(|f| f["rule"].as_str()).collect())
            .unwrap_or_default()
    }

    fn notes(&self) -> Vec<&str> {
        self.report["notes"]
            .as_array()
            .map(|n| n.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default()
    }

    fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.output.stderr).into_owned()
    }
}

/// `flowaudit run --race STEP --race-instances 2 … -- CMD`, with the race's
/// rule file, the report as JSON in `dir`.
fn race(db: &TestDb, dir: &Path, step: &str, extra: &[&str], command: &[&str]) -> Raced {
    let url = db.url(pg::PG_ADDR);
    let report = dir.join("report.json");
    let _ = std::fs::remove_file(&report);
    let started = Instant::now();
    let output = flowaudit()
        .args(["run", "--race", step, "--race-instances", "2"])
        .args(["--upstream", &url, "--database", &url, "--rules"])
        .arg(Path::new(ROOT).join("tests/corpus/rules/race.toml"))
        .args(["--format", "json", "--fail-on", "never", "--output"])
        .arg(&report)
        .args(extra)
        .arg("--")
        .args(command)
        .output()
        .expect("flowaudit runs");
    let elapsed = started.elapsed();
    let report = std::fs::read_to_string(&report)
        .ok()
        .and_then(|text| serde_json::from_str(&text).ok())
        .unwrap_or(Value::Null);
    Raced {
        output,
        report,
        elapsed,
    }
}

fn shop(python: &Path, variant: &str, dir: &Path) -> Vec<String> {
    vec![
        python.display().to_string(),
        Path::new(ROOT)
            .join("tests/corpus/python/sqlalchemy_shop.py")
            .display()
            .to_string(),
        "--variant".into(),
        variant.into(),
        "--counts".into(),
        dir.join("counts.json").display().to_string(),
    ]
}

fn median(mut times: Vec<Duration>) -> Duration {
    times.sort();
    times[times.len() / 2]
}

/// Both orders placed, and what the stock of products 7 and 19 (seeded 4
/// and 5, each order takes 2 of each) became.
fn orders_and_stock(db: &TestDb) -> String {
    db.direct(
        "SELECT (SELECT count(*) FROM orders) || ' ' || \
         (SELECT string_agg(stock::text, ',' ORDER BY product_id) FROM inventory \
          WHERE product_id IN (7, 19))",
    )
}

#[test]
fn the_shipped_checkout_loses_an_update_in_every_race() {
    let Some(python) = ready("race_proxy shipped") else {
        return;
    };
    let db = shop_db("race_shipped");
    let dir = tempfile::tempdir().expect("tempdir");
    let command = shop(&python, "shipped", dir.path());
    let command: Vec<&str> = command.iter().map(String::as_str).collect();
    let trace = dir.path().join("trace.jsonl");
    let mut times = Vec::new();
    for repetition in 1..=REPETITIONS {
        reset(&db);
        let traced = ["--trace", trace.to_str().expect("path")];
        let extra: &[&str] = if repetition == 1 { &traced } else { &[] };
        let run = race(&db, dir.path(), "checkout", extra, &command);
        eprintln!("shipped race {repetition}: {:?}", run.elapsed);
        times.push(run.elapsed);
        assert_eq!(
            run.output.status.code(),
            Some(0),
            "repetition {repetition}: both instances check out\n{}",
            run.stderr()
        );
        let rules = run.rules();
        for expected in ["lost-update", "invariant-violated"] {
            assert!(
                rules.contains(&expected),
                "repetition {repetition}: {expected} missing from {rules:?}\n{}",
                run.stderr()
            );
        }
        let notes = run.notes();
        let note = notes
            .iter()
            .find(|n| n.starts_with("race on step checkout"))
            .unwrap_or_else(|| panic!("no race note in {notes:?}"));
        assert!(
            note.contains("2 connection(s) ran it, at most 2 at once")
                && note.contains("0 by a lock wait in the database, 0 by the 2 s timeout"),
            "repetition {repetition}: {note}"
        );
        assert!(
            !notes
                .iter()
                .any(|n| n.contains("waited for the other instances until")),
            "repetition {repetition}: a start of the step waited until the timeout: {notes:?}"
        );
        // Two orders of 2 each of products 7 (seeded 4) and 19 (seeded 5),
        // and each product's stock decremented once: both races forced.
        assert_eq!(orders_and_stock(&db), "2 2,3", "repetition {repetition}");
        if repetition == 1 {
            // Every statement names its instance; each instance's ORM
            // connection followed its own instance's markers.
            let text = std::fs::read_to_string(&trace).expect("trace");
            let events: Vec<Value> = text
                .lines()
                .map(|l| serde_json::from_str(l).expect("json"))
                .collect();
            assert!(events.iter().all(|e| e["instance"].is_u64()));
            let writers: Vec<u64> = events
                .iter()
                .filter(|e| {
                    e["sql"]
                        .as_str()
                        .is_some_and(|s| s.starts_with("UPDATE inventory"))
                })
                .filter_map(|e| e["instance"].as_u64())
                .collect();
            let mut instances = writers.clone();
            instances.sort_unstable();
            assert_eq!(instances, vec![1, 1, 2, 2], "{writers:?}");
        }
    }
    eprintln!(
        "shipped: {REPETITIONS} of {REPETITIONS} lost the update of both products; median {:?} \
         per repetition",
        median(times)
    );
}

#[test]
fn the_fixed_checkout_loses_nothing_in_any_race() {
    let Some(python) = ready("race_proxy fixed") else {
        return;
    };
    let db = shop_db("race_fixed");
    let dir = tempfile::tempdir().expect("tempdir");
    let command = shop(&python, "fixed", dir.path());
    let command: Vec<&str> = command.iter().map(String::as_str).collect();
    let mut times = Vec::new();
    for repetition in 1..=REPETITIONS {
        reset(&db);
        let run = race(&db, dir.path(), "checkout", &[], &command);
        eprintln!("fixed race {repetition}: {:?}", run.elapsed);
        times.push(run.elapsed);
        assert_eq!(
            run.output.status.code(),
            Some(0),
            "repetition {repetition}: every instance succeeds\n{}",
            run.stderr()
        );
        let rules = run.rules();
        for unexpected in ["lost-update", "invariant-violated"] {
            assert!(
                !rules.contains(&unexpected),
                "repetition {repetition}: {unexpected} in {rules:?}"
            );
        }
        assert_eq!(orders_and_stock(&db), "2 0,1", "repetition {repetition}");
        assert!(
            run.notes()
                .iter()
                .any(|n| n.contains("2 connection(s) ran it, at most 2 at once")),
            "repetition {repetition}: {:?}",
            run.notes()
        );
    }
    eprintln!(
        "fixed: {REPETITIONS} of {REPETITIONS} kept the stock; median {:?} per repetition",
        median(times)
    );
}

/// A shell command run by each instance: psql through the instance's own
/// port, marking `step`; `before` runs first in the shell.
fn psql_in_step(step: &str, before: &str, sql: &str) -> Vec<String> {
    vec![
        "sh".into(),
        "-c".into(),
        format!(
            "{before} psql -X -q -v ON_ERROR_STOP=1 -c \"SET flowaudit.step = '{step}'\" -c \
             \"{sql}\""
        ),
    ]
}

#[test]
fn a_race_that_does_not_happen_is_an_error_naming_what_ran() {
    if !pg::available("race_proxy missed") {
        return;
    }
    let db = shop_db("race_missed");
    let dir = tempfile::tempdir().expect("tempdir");
    // A step nobody runs.
    let command = psql_in_step("browse", "", "SELECT 1");
    let command: Vec<&str> = command.iter().map(String::as_str).collect();
    let run = race(&db, dir.path(), "checkout", &[], &command);
    assert_eq!(run.output.status.code(), Some(2), "{}", run.stderr());
    let stderr = run.stderr();
    assert!(
        stderr.contains("--race checkout did not race: step checkout never ran")
            && stderr.contains("steps that ran:")
            && stderr.contains("browse"),
        "{stderr}"
    );
    // A step the instances run one after the other: the second comes after
    // the first is gone, past the start's wait (--race-timeout).
    let command = psql_in_step(
        "checkout",
        "if [ \"$FLOWAUDIT_INSTANCE\" = 2 ]; then sleep 1; fi;",
        "SELECT 1",
    );
    let command: Vec<&str> = command.iter().map(String::as_str).collect();
    let run = race(
        &db,
        dir.path(),
        "checkout",
        &["--race-timeout", "100"],
        &command,
    );
    assert_eq!(run.output.status.code(), Some(2), "{}", run.stderr());
    assert!(
        run.stderr().contains(
            "--race checkout did not race: 2 connections ran step checkout, but one after \
             another, never two at once"
        ),
        "{}",
        run.stderr()
    );
}

#[test]
fn an_instance_that_fails_is_reported_by_its_number() {
    if !pg::available("race_proxy instance failure") {
        return;
    }
    let db = shop_db("race_failure");
    let dir = tempfile::tempdir().expect("tempdir");
    let mut command = psql_in_step("checkout", "", "SELECT pg_sleep(0.3)");
    command[2].push_str(" && [ \"$FLOWAUDIT_INSTANCE\" != 2 ] || exit 3");
    let command: Vec<&str> = command.iter().map(String::as_str).collect();
    let run = race(&db, dir.path(), "checkout", &[], &command);
    let stderr = run.stderr();
    assert_eq!(
        run.output.status.code(),
        Some(1),
        "the command's failure first: {stderr}"
    );
    assert!(
        stderr.contains("flowaudit: instance 2: sh exited with status 3")
            && !stderr.contains("instance 1:"),
        "{stderr}"
    );
    assert!(
        run.notes().contains(&"instance 2: sh exited with status 3"),
        "{:?}",
        run.notes()
    );
}

/// `proxy --race STEP`: one listener, and the instances are connections, as
/// for an application whose own test runs the step concurrently; here two
/// psql sessions that take one unit of product 7's stock (seeded 4), each
/// computing the new stock from what it read. Without a lock, one unit is
/// lost, every time; with `FOR UPDATE`, the second session waits for the
/// first in the database, nothing is held, nothing is lost.
#[test]
fn proxy_race_makes_two_psql_sessions_lose_an_update_unless_they_lock() {
    if !pg::available("race_proxy proxy --race") {
        return;
    }
    let db = shop_db("race_psql");
    let dir = tempfile::tempdir().expect("tempdir");
    for (lock, stock, lost) in [("", "3", true), (" FOR UPDATE", "2", false)] {
        reset(&db);
        let script = dir.path().join("take.sql");
        std::fs::write(
            &script,
            format!(
                "SET flowaudit.step = 'checkout';\nBEGIN;\nSELECT stock - 1 AS left FROM \
                 inventory WHERE product_id = 7{lock} \\gset\nUPDATE inventory SET stock = \
                 :left WHERE product_id = 7;\nCOMMIT;\n"
            ),
        )
        .expect("script");
        let (stopped, _) = two_psql_sessions(&db, &script);
        assert_eq!(stopped.code, Some(0), "{}", stopped.stderr);
        assert_eq!(
            db.direct("SELECT stock FROM inventory WHERE product_id = 7"),
            stock,
            "lock: {lock:?}"
        );
        let rules: Vec<&str> = stopped.report["findings"]
            .as_array()
            .expect("findings")
            .iter()
            .filter_map(|f| f["rule"].as_str())
            .collect();
        assert_eq!(rules.contains(&"lost-update"), lost, "{lock:?}: {rules:?}");
        let notes = stopped.report["notes"].to_string();
        assert!(
            notes.contains("2 connection(s) ran it, at most 2 at once")
                && notes.contains("0 by the 2 s timeout"),
            "{lock:?}: {notes}"
        );
        assert!(
            stopped.trace.iter().all(|e| e.get("instance").is_none()),
            "one listener: no instances"
        );
    }
}

/// Two psql sessions run `script` at once through `proxy --race checkout`;
/// what the proxy reported, and how long the sessions took.
fn two_psql_sessions(db: &TestDb, script: &Path) -> (pg::Stopped, Duration) {
    let proxy = pg::ProxyProcess::start(&db.url(pg::PG_ADDR), &["--race", "checkout"]);
    let script = script.to_str().expect("path");
    let started = Instant::now();
    let sessions: Vec<_> = (0..2)
        .map(|_| {
            pg::psql_command(
                &proxy.port(),
                &db.name,
                &["-v", "ON_ERROR_STOP=1", "-f", script],
            )
            .stdout(Stdio::null())
            .spawn()
            .expect("psql starts")
        })
        .collect();
    for mut session in sessions {
        assert!(session.wait().expect("psql ends").success());
    }
    let took = started.elapsed();
    (proxy.stop(), took)
}

/// A lock wait in the database ends a hold rather than deadlock: each psql
/// session locks product 19 first (`FOR UPDATE`), then reads product 7
/// without a lock and writes it back. The session that got the lock has its
/// write of 7 held for the other's read of 7; the other waits in the
/// database for the lock on 19 and never reads 7 before the first commits.
/// The hold ends as a lock wait, the first commits and closes, the second
/// goes on and reads the new stock (its own write held, if the first has
/// closed by then, only until the scheduler sees that nobody is left in the
/// step): nothing lost, no timeout.
#[test]
fn a_lock_wait_in_the_database_ends_a_hold() {
    if !pg::available("race_proxy lock wait") {
        return;
    }
    let db = shop_db("race_lock_wait");
    let dir = tempfile::tempdir().expect("tempdir");
    reset(&db);
    let script = dir.path().join("take.sql");
    std::fs::write(
        &script,
        "SET flowaudit.step = 'checkout';\nBEGIN;\nSELECT 1 FROM inventory WHERE product_id = \
         19 FOR UPDATE;\nSELECT stock - 1 AS left FROM inventory WHERE product_id = 7 \
         \\gset\nUPDATE inventory SET stock = :left WHERE product_id = 7;\nCOMMIT;\n",
    )
    .expect("script");
    let (stopped, took) = two_psql_sessions(&db, &script);
    assert_eq!(stopped.code, Some(0), "{}", stopped.stderr);
    assert_eq!(
        db.direct("SELECT stock FROM inventory WHERE product_id = 7"),
        "2",
        "both units taken"
    );
    let notes = stopped.report["notes"].to_string();
    assert!(
        notes.contains("1 by a lock wait in the database")
            && notes.contains("0 by the 2 s timeout"),
        "{notes}"
    );
    assert!(
        took < Duration::from_secs(2),
        "the hold ended at the lock wait, not at the timeout: {took:?}"
    );
}
