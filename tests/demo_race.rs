//! `flowaudit demo --race checkout` (issue 19): several customers check out
//! the same products at once, and the race scheduler forces the interleaving
//! that loses updates. The shipped checkout (stock read, then written back as
//! a value computed in the shop, in autocommit) must lose one update per
//! product every time, which `lost-update` and the `stock-follows-orders`
//! invariant show; the fixed checkout (one transaction, guarded relative
//! update) must lose none under the same race. Each is run several times:
//! the interleaving is forced, not lucky.

use assert_cmd::Command;
use serde_json::Value;

use flowaudit::demo::{self, CART, DemoSettings};
use flowaudit::race::RaceSpec;

/// Runs of each race: every one must show the same thing.
const RUNS: usize = 5;

/// The binary, run in an empty directory so that no `./rules` is picked up.
fn flowaudit(dir: &tempfile::TempDir) -> Command {
    let mut cmd = Command::cargo_bin("flowaudit").expect("the binary is built");
    cmd.current_dir(dir.path());
    cmd
}

/// The JSON report of `demo` with `args`, which must exit with `code`.
fn report(args: &[&str], code: i32) -> Value {
    let dir = tempfile::tempdir().expect("temp dir");
    let out = flowaudit(&dir)
        .arg("demo")
        .args(args)
        .args(["--format", "json"])
        .assert()
        .code(code)
        .get_output()
        .stdout
        .clone();
    serde_json::from_slice(&out).expect("the report is JSON")
}

fn findings<'a>(report: &'a Value, rule: &str) -> Vec<&'a Value> {
    report["findings"]
        .as_array()
        .expect("findings")
        .iter()
        .filter(|f| f["rule"] == rule)
        .collect()
}

fn notes(report: &Value) -> Vec<&str> {
    report["notes"]
        .as_array()
        .expect("notes")
        .iter()
        .filter_map(Value::as_str)
        .collect()
}

fn race_note(report: &Value) -> &str {
    notes(report)
        .into_iter()
        .find(|n| n.starts_with("race on step checkout:"))
        .unwrap_or_else(|| panic!("a note of the race: {report:#}"))
}

/// The examples of a finding, as one text.
fn examples(finding: &Value) -> String {
    finding["examples"]
        .as_array()
        .expect("examples")
        .iter()
        .filter_map(Value::as_str)
        .collect::<Vec<_>>()
        .join("\n")
}

/// The shipped checkout raced by `customers`: every product of the cart
/// loses the updates of all customers but one, every time.
fn shipped_race_loses_updates(customers: usize) {
    let instances = customers.to_string();
    for run in 0..RUNS {
        let report = report(&["--race", "checkout", "--race-instances", &instances], 0);
        let lost = findings(&report, "lost-update");
        assert_eq!(lost.len(), 1, "run {run}: {report:#}");
        let lost = lost[0];
        assert_eq!(lost["severity"], "error");
        assert_eq!(lost["step"], "checkout");
        // Each of the cart's products: all customers but one lose theirs.
        let expected = CART.len() * (customers - 1);
        assert_eq!(
            lost["count"],
            expected,
            "run {run}: {lost:#}\n{}",
            race_note(&report)
        );
        let text = examples(lost);
        for (product, _) in CART {
            assert!(
                text.contains(&format!("inventory(product_id = '{product}')")),
                "run {run}: {text}"
            );
        }

        let violated: Vec<_> = findings(&report, "invariant-violated")
            .into_iter()
            .filter(|f| f["fingerprint"] == "invariant stock-follows-orders")
            .collect();
        assert!(!violated.is_empty(), "run {run}: {report:#}");
        let rows = examples(violated[0]);
        for (product, _) in CART {
            assert!(
                rows.contains(&format!("product_id={product},")),
                "run {run}: {rows}"
            );
        }

        let note = race_note(&report);
        assert!(
            note.contains(&format!(
                "{customers} connection(s) ran it, at most {customers} at once"
            )),
            "{note}"
        );
        assert!(note.contains("0 by the 2 s timeout"), "{note}");
    }
}

#[test]
fn the_shipped_checkout_loses_an_update_of_every_product_every_time() {
    shipped_race_loses_updates(2);
}

#[test]
fn three_customers_lose_two_updates_of_every_product() {
    shipped_race_loses_updates(3);
}

#[test]
fn the_fixed_checkout_loses_nothing_under_the_same_race() {
    for run in 0..RUNS {
        let report = report(&["--race", "checkout", "--fixed", "--fail-on", "error"], 0);
        assert!(findings(&report, "lost-update").is_empty(), "run {run}");
        assert!(
            findings(&report, "invariant-violated").is_empty(),
            "run {run}: {report:#}"
        );
        assert_eq!(report["summary"]["errors"], 0, "run {run}: {report:#}");
        let note = race_note(&report);
        assert!(
            note.contains("2 connection(s) ran it, at most 2 at once"),
            "{note}"
        );
        // Both customers got their order.
        assert!(
            notes(&report).iter().all(|n| !n.contains("refused")),
            "run {run}: {report:#}"
        );
    }
}

/// Three customers want 2 of the 4 units of product 7: the fixed checkout
/// sells two of them and refuses the third, rather than selling 6.
#[test]
fn the_fixed_checkout_refuses_a_third_customer_rather_than_oversell() {
    let report = report(
        &[
            "--race",
            "checkout",
            "--race-instances",
            "3",
            "--fixed",
            "--fail-on",
            "error",
        ],
        0,
    );
    assert!(findings(&report, "lost-update").is_empty(), "{report:#}");
    assert!(
        findings(&report, "invariant-violated").is_empty(),
        "{report:#}"
    );
    let refused: Vec<_> = notes(&report)
        .into_iter()
        .filter(|n| n.contains("checkout was refused"))
        .collect();
    assert_eq!(refused.len(), 1, "{report:#}");
    assert!(
        refused[0].contains("product 7 is out of stock"),
        "{refused:?}"
    );
}

/// The data itself: the database (`--db`, kept in WAL mode) holds the stock
/// that the race left.
#[test]
fn the_race_leaves_the_stock_the_orders_do_not_add_up_to() {
    let dir = tempfile::tempdir().expect("temp dir");
    for fixed in [false, true] {
        let path = dir.path().join(format!("shop-{fixed}.db"));
        let run = demo::run(&DemoSettings {
            fixed,
            db: Some(path.clone()),
            race: Some(RaceSpec::new("checkout")),
            ..DemoSettings::default()
        })
        .expect("the race runs");
        let summary = run.race.expect("a race summary");
        assert!(summary.raced(), "{summary:?}");
        assert_eq!(run.checkouts.len(), 2);
        assert!(
            run.checkouts.iter().all(|(_, c)| c.is_ok()),
            "{:?}",
            run.checkouts
        );
        // Every checkout statement names its customer.
        let instances: std::collections::BTreeSet<_> = run
            .events
            .iter()
            .filter(|e| e.step.as_deref() == Some("checkout"))
            .map(|e| e.instance)
            .collect();
        assert_eq!(instances, [Some(1), Some(2)].into());

        let (journal, stock) = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime")
            .block_on(async {
                use sqlx::Connection;
                let mut conn =
                    sqlx::SqliteConnection::connect(&format!("sqlite:{}?mode=ro", path.display()))
                        .await
                        .expect("the kept database");
                let journal: String = sqlx::query_scalar("PRAGMA journal_mode")
                    .fetch_one(&mut conn)
                    .await
                    .expect("journal mode");
                let stock: Vec<(i64, i64, i64, i64)> = sqlx::query_as(
                    "SELECT inventory.product_id, inventory.stock, inventory.seeded_stock, \
                     (SELECT COALESCE(SUM(order_items.quantity), 0) FROM order_items \
                      WHERE order_items.product_id = inventory.product_id) \
                     FROM inventory WHERE inventory.product_id IN (?, ?) \
                     ORDER BY inventory.product_id",
                )
                .bind(CART[0].0)
                .bind(CART[1].0)
                .fetch_all(&mut conn)
                .await
                .expect("stock");
                conn.close().await.expect("close");
                (journal, stock)
            });
        assert_eq!(journal, "wal");
        assert_eq!(stock.len(), CART.len());
        for ((product, stock, seeded, ordered), (_, quantity)) in stock.into_iter().zip(CART) {
            assert_eq!(ordered, 2 * quantity, "both customers' orders");
            if fixed {
                assert_eq!(stock, seeded - 2 * quantity, "product {product}");
            } else {
                // Two orders, one unit count taken: an update lost.
                assert_eq!(stock, seeded - quantity, "product {product}");
            }
        }
    }
}

/// The trace of a race, audited later, shows the same lost updates: the
/// events are in the order the statements ran, each naming its customer.
#[test]
fn the_race_trace_through_analyze_shows_the_lost_updates() {
    let dir = tempfile::tempdir().expect("temp dir");
    let trace = dir.path().join("race.jsonl");
    let from_demo = report(
        &[
            "--race",
            "checkout",
            "--trace",
            trace.to_str().expect("utf-8"),
        ],
        0,
    );
    let out = flowaudit(&dir)
        .arg("analyze")
        .arg(&trace)
        .args(["--format", "json"])
        .assert()
        .code(1)
        .get_output()
        .stdout
        .clone();
    let from_trace: Value = serde_json::from_slice(&out).expect("JSON report");
    let count = |r: &Value| {
        findings(r, "lost-update")
            .first()
            .map(|f| f["count"].clone())
    };
    assert_eq!(count(&from_demo), Some(Value::from(CART.len())));
    assert_eq!(count(&from_trace), count(&from_demo));
    let text = std::fs::read_to_string(&trace).expect("trace");
    assert!(text.contains("\"instance\":2"), "{text}");
}

#[test]
fn a_step_the_demo_does_not_run_at_once_is_exit_2_naming_the_one_it_can() {
    let dir = tempfile::tempdir().expect("temp dir");
    for (step, why) in [
        ("browse", "it runs that step one customer at a time"),
        ("register", "it runs that step one customer at a time"),
        ("add_to_cart", "it runs that step one customer at a time"),
        ("pay", "its journey has no such step"),
    ] {
        let out = flowaudit(&dir)
            .args(["demo", "--race", step])
            .assert()
            .code(2)
            .get_output()
            .clone();
        let err = String::from_utf8(out.stderr).expect("utf-8");
        assert!(
            err.contains(&format!("the demo cannot race step {step}: {why}")),
            "{err}"
        );
        assert!(err.contains("the step it can race: checkout"), "{err}");
        assert!(
            err.contains("hint: flowaudit demo --race checkout"),
            "{err}"
        );
        assert!(out.stdout.is_empty(), "no report");
    }
    // A fault and a race at once: refused as bad arguments.
    flowaudit(&dir)
        .args(["demo", "--race", "checkout", "--inject-fault", "checkout:1"])
        .assert()
        .code(2);
    // The race options need --race.
    flowaudit(&dir)
        .args(["demo", "--race-instances", "3"])
        .assert()
        .code(2);
}

/// Outside race mode nothing waits and every statement runs on the one
/// in-memory connection, as before (issue 19 must not change the demo).
#[test]
fn without_race_the_demo_runs_as_before() {
    let run = demo::run(&DemoSettings::default()).expect("the demo runs");
    assert!(run.race.is_none() && run.checkouts.is_empty());
    assert!(
        run.events
            .iter()
            .all(|e| e.conn == Some(1) && e.instance.is_none())
    );
}
