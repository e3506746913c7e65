use crate::model::{Event, SqlError, TxnStatus};
use crate::report::Report;

fn ev(sql: &str, conn: u64, ts_us: u64, duration_us: u64) -> Event {
    let secs = 1_764_547_200 + ts_us / 1_000_000;
    let t = chrono::DateTime::from_timestamp(
        i64::try_from(secs).expect("secs"),
        u32::try_from(ts_us % 1_000_000 * 1000).expect("nanos"),
    )
    .expect("time");
    Event {
        sql: sql.into(),
        conn: Some(conn),
        ts: Some(t.to_rfc3339_opts(chrono::SecondsFormat::Micros, true)),
        duration_us: Some(duration_us),
        ..Event::default()
    }
}

fn audit(events: Vec<Event>) -> Report {
    let config = crate::rules::RuleConfig::builtin().expect("defaults");
    let mut audit = crate::audit::Audit::new(&config)
        .expect("audit")
        .with_timeline(true);
    for e in events {
        audit.push(e);
    }
    audit.finish()
}

/// A step with an N+1 (products, then one lookup per row) and a transaction
/// whose second write fails and is rolled back.
fn shop() -> Vec<Event> {
    let mut events = vec![
        ev("SET flowaudit.flow = 'shop'", 1, 0, 0),
        ev("SET flowaudit.step = 'browse'", 1, 0, 0),
    ];
    let mut list = ev("SELECT id FROM products", 1, 10, 100);
    list.rows = Some(6);
    events.push(list);
    for i in 0..6 {
        let mut e = ev(
            "SELECT * FROM stock WHERE product_id = $1",
            1,
            200 + i * 150,
            100,
        );
        e.params = Some(vec![Some(i.to_string())]);
        e.rows = Some(1);
        events.push(e);
    }
    events.push(ev("SET flowaudit.step = 'checkout'", 2, 2_000, 0));
    let mut begin = ev("BEGIN", 2, 2_100, 10);
    begin.txn = Some(TxnStatus::Idle);
    let mut write = ev("INSERT INTO orders (id) VALUES (1)", 2, 2_200, 50);
    write.txn = Some(TxnStatus::Open);
    let mut failed = ev("INSERT INTO order_items (id) VALUES ('<x>')", 2, 2_300, 50);
    failed.txn = Some(TxnStatus::Open);
    failed.error = Some(SqlError {
        code: "23505".into(),
        message: "duplicate key".into(),
    });
    let mut rollback = ev("ROLLBACK", 2, 2_400, 10);
    rollback.txn = Some(TxnStatus::Failed);
    events.extend([begin, write, failed, rollback]);
    events
}

#[test]
fn page_is_self_contained_and_escaped() {
    let html = super::render(&audit(shop()));
    assert!(html.starts_with("<!DOCTYPE html>"));
    for outside in [
        "http://", "https://", "<link", " src=", "@import", "url(http",
    ] {
        assert!(!html.contains(outside), "{outside} in the page");
    }
    assert!(html.contains("VALUES (&#39;&lt;x&gt;&#39;)"), "SQL escaped");
    assert!(!html.contains("'<x>'"));
    assert!(html.contains("<script>") && html.contains("<style>"));
}

#[test]
fn timeline_draws_statements_transactions_and_the_loop() {
    let report = audit(shop());
    let timeline = report.timeline.as_ref().expect("timeline");
    let browse = timeline.step("shop", "browse").expect("browse");
    assert_eq!(browse.bars.len(), 7);
    assert!(browse.clocked);
    assert_eq!(browse.bars[1].start_us, 190, "{:?}", browse.bars[1]);
    let checkout = timeline.step("shop", "checkout").expect("checkout");
    assert_eq!(checkout.bands.len(), 1);
    assert_eq!(
        checkout.bands[0].outcome,
        crate::report::timeline::Outcome::RolledBack
    );
    let html = super::render(&report);
    let n = report
        .findings
        .iter()
        .position(|f| f.rule == "n-plus-one")
        .expect("n-plus-one found");
    // The six lookups carry the finding's number, the list query drove it.
    let marked = html.matches(&format!("data-f=\"{n}\"")).count();
    assert_eq!(marked, 6 + 1, "six bars and the loop's bracket");
    assert_eq!(html.matches(&format!("data-src=\"{n}\"")).count(), 1);
    assert!(html.contains("N+1 ×6"));
    assert!(html.contains("class=\"band rolled-back\""));
    assert!(html.contains("class=\"st failed\""));
    assert!(html.contains(&format!("id=\"finding-{n}\"")));
}

#[test]
fn large_steps_become_fingerprint_lanes_in_bounded_memory() {
    let mut events = vec![ev("SET flowaudit.step = 'big'", 1, 0, 0)];
    let total = super::super::timeline::STEP_DETAIL as u64 * 3;
    for i in 0..total {
        events.push(ev(
            &format!("SELECT * FROM t{} WHERE id = {i}", i % 3),
            1 + i % 4,
            i * 10,
            5,
        ));
    }
    let report = audit(events);
    let step = report
        .timeline
        .as_ref()
        .and_then(|t| t.step("(unattributed)", "big"))
        .expect("step");
    assert!(step.summarised);
    assert!(step.bars.is_empty() && step.bands.is_empty());
    assert_eq!(step.lanes.len(), 3);
    assert_eq!(step.lanes.iter().map(|l| l.count).sum::<u64>(), total);
    let html = super::render(&report);
    assert!(html.contains("×1,000"));
    assert!(html.len() < 100_000, "{} bytes", html.len());
}

#[test]
fn fingerprints_beyond_the_lane_cap_share_one_lane() {
    let cap = super::super::timeline::STEP_LANES as u64;
    let mut events = vec![ev("SET flowaudit.step = 'wide'", 1, 0, 0)];
    let total = super::super::timeline::STEP_DETAIL as u64 + 10;
    for i in 0..total {
        events.push(ev(&format!("SELECT c{} FROM t", i % (cap + 5)), 1, i, 1));
    }
    let report = audit(events);
    let step = &report.timeline.as_ref().expect("timeline").steps[0];
    assert_eq!(step.lanes.len() as u64, cap + 1);
    assert_eq!(step.lanes.last().map(|l| l.fingerprint.as_str()), Some(""));
    assert_eq!(step.lanes.iter().map(|l| l.count).sum::<u64>(), total);
}

#[test]
fn without_times_statements_are_drawn_in_order() {
    let events: Vec<Event> = ["SELECT 1", "SELECT 2", "SELECT 3"]
        .into_iter()
        .map(|sql| Event {
            sql: sql.into(),
            conn: Some(1),
            ..Event::default()
        })
        .collect();
    let report = audit(events);
    let step = &report.timeline.as_ref().expect("timeline").steps[0];
    assert!(!step.clocked);
    let html = super::render(&report);
    assert!(html.contains("in the order they ran"));
}

#[test]
fn no_timeline_unless_asked() {
    let config = crate::rules::RuleConfig::builtin().expect("defaults");
    let report = crate::audit::audit_events(&config, shop()).expect("audit");
    assert!(report.timeline.is_none());
    // The page still renders the summary and findings.
    let html = super::render(&report);
    assert!(html.contains("n-plus-one"));
    assert!(!html.contains("<figure class=\"timeline\""));
}

/// Many small steps: the run draws at most RUN_DETAIL statements one by one
/// and STEPS_DRAWN steps, so the page stays a few megabytes whatever the run.
#[test]
fn a_run_of_many_steps_stays_bounded() {
    use super::super::timeline::{RUN_DETAIL, STEPS_DRAWN};
    let steps = STEPS_DRAWN + 200;
    let mut events = Vec::new();
    for s in 0..steps {
        events.push(ev(&format!("SET flowaudit.step = 's{s}'"), 1, 0, 0));
        for i in 0..12u64 {
            let mut e = ev(
                "SELECT * FROM stock WHERE product_id = $1",
                1 + i % 3,
                (s as u64) * 1_000 + i * 20,
                10,
            );
            e.params = Some(vec![Some(format!("{i}"))]);
            events.push(e);
        }
    }
    let report = audit(events);
    let timeline = report.timeline.as_ref().expect("timeline");
    assert_eq!(timeline.steps.len(), STEPS_DRAWN);
    let bars: usize = timeline.steps.iter().map(|s| s.bars.len()).sum();
    assert!(bars <= RUN_DETAIL, "{bars} bars");
    assert!(timeline.steps.iter().any(|s| s.summarised));
    let html = super::render(&report);
    assert!(html.contains("the first 1,000 are drawn"));
    assert!(html.len() < 5 * 1024 * 1024, "{} bytes", html.len());
}

/// A transaction still open when its step ends is drawn as such, and the
/// next step's part of it too.
#[test]
fn a_transaction_open_at_the_step_end_is_drawn_open() {
    let mut events = vec![ev("SET flowaudit.step = 'cart'", 1, 0, 0)];
    let mut begin = ev("BEGIN", 1, 10, 5);
    begin.txn = Some(TxnStatus::Idle);
    let mut write = ev("UPDATE carts SET n = n + 1 WHERE id = 1", 1, 20, 5);
    write.txn = Some(TxnStatus::Open);
    events.extend([begin, write]);
    events.push(ev("SET flowaudit.step = 'pay'", 1, 30, 0));
    let mut pay = ev("INSERT INTO payments (id) VALUES (1)", 1, 40, 5);
    pay.txn = Some(TxnStatus::Open);
    let mut commit = ev("COMMIT", 1, 50, 5);
    commit.txn = Some(TxnStatus::Open);
    events.extend([pay, commit]);
    let report = audit(events);
    let timeline = report.timeline.as_ref().expect("timeline");
    let outcome = |step: &str| {
        let t = timeline.step("(unattributed)", step).expect("step");
        assert_eq!(t.bands.len(), 1, "{step}: {:?}", t.bands);
        t.bands[0].outcome
    };
    use crate::report::timeline::Outcome;
    assert_eq!(outcome("cart"), Outcome::Open);
    assert_eq!(outcome("pay"), Outcome::Committed);
    let html = super::render(&report);
    assert!(html.contains("<rect class=\"band open\""));
    assert!(html.contains("<rect class=\"band committed\""));
}
