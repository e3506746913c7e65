//! Transaction boundaries and data invariants: the trace rules on hand-written
//! traces of each dialect, the bundled shop with and without an injected
//! fault, and invariants that fail as tool errors (SQLite here; PostgreSQL
//! and MariaDB against the real servers, skipped when they are absent unless
//! CI=true).

use std::collections::BTreeSet;
use std::path::Path;

use assert_cmd::Command;
use flowaudit::audit::Audit;
use flowaudit::demo::{self, DemoRun, DemoSettings};
use flowaudit::invariants::Invariants;
use flowaudit::model::Finding;
use flowaudit::rules::RuleConfig;

const TXN_RULES: [&str; 7] = [
    "non-atomic-write",
    "open-transaction",
    "commit-after-error",
    "unlocked-read-modify-write",
    "unbounded-write",
    "partial-write-on-failure",
    "invariant-violated",
];

fn flowaudit() -> Command {
    let mut cmd = Command::cargo_bin("flowaudit").expect("the binary is built");
    cmd.current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures"));
    cmd
}

fn fired(findings: &serde_json::Value) -> BTreeSet<String> {
    findings
        .as_array()
        .expect("findings")
        .iter()
        .map(|f| f["rule"].as_str().expect("rule").to_owned())
        .collect()
}

#[test]
fn each_rule_fires_and_stays_silent_by_dialect() {
    let cases: [(&str, &[&str]); 15] = [
        // PostgreSQL: COMMIT after an error rolls back; nothing is left.
        ("pg-commit-after-error", &["commit-after-error"]),
        // MySQL: the same COMMIT keeps the order without its item.
        (
            "mysql-commit-after-error",
            &["commit-after-error", "partial-write-on-failure"],
        ),
        // MySQL commits at DDL (not at CREATE TEMPORARY TABLE): the order and
        // its item no longer share a transaction. PostgreSQL's DDL is
        // transactional.
        ("mysql-ddl-implicit-commit", &["non-atomic-write"]),
        ("pg-ddl-in-transaction", &[]),
        // issue 13, defect 5: with autocommit off (pymysql's default) the
        // writes up to one COMMIT are one transaction; a COMMIT after each
        // write splits them.
        ("mysql-autocommit-off-one-commit", &[]),
        ("mysql-autocommit-off-commit-each", &["non-atomic-write"]),
        ("pg-open-transaction", &["open-transaction"]),
        ("pg-unbounded-write", &["unbounded-write"]),
        ("pg-read-modify-write", &["unlocked-read-modify-write"]),
        // issue 13, defect 4: the keys behind casts and placeholder styles.
        // SQLAlchemy's `inv = s.get(Inventory, 7); inv.stock -= 2;
        // s.commit()` through psycopg 3, as sent on the wire ...
        (
            "pg-orm-cast-read-modify-write",
            &["unlocked-read-modify-write"],
        ),
        // ... and as SQLAlchemy logs it;
        (
            "pyformat-read-modify-write",
            &["unlocked-read-modify-write"],
        ),
        // literals with casts name the same row as the plain literal.
        (
            "pg-literal-cast-read-modify-write",
            &["unlocked-read-modify-write"],
        ),
        ("pg-atomic-checkout", &[]),
        ("pg-failed-and-rolled-back", &[]),
        ("pg-autocommit-partial", &["partial-write-on-failure"]),
    ];
    for (name, expected) in cases {
        let out = flowaudit()
            .args(["analyze", "--format", "json", "--fail-on", "never"])
            .arg(format!("transactions/{name}.jsonl"))
            .assert()
            .code(0)
            .get_output()
            .stdout
            .clone();
        let v: serde_json::Value = serde_json::from_slice(&out).expect("JSON report");
        let expected: BTreeSet<String> = expected.iter().map(|s| (*s).to_owned()).collect();
        assert_eq!(fired(&v["findings"]), expected, "{name}: {v:#}");
    }
}

#[test]
fn mysql_commit_after_error_names_the_writes_it_kept() {
    let out = flowaudit()
        .args([
            "analyze",
            "transactions/mysql-commit-after-error.jsonl",
            "--format",
            "json",
        ])
        .assert()
        .code(1)
        .get_output()
        .stdout
        .clone();
    let v: serde_json::Value = serde_json::from_slice(&out).expect("JSON report");
    let partial = v["findings"]
        .as_array()
        .expect("findings")
        .iter()
        .find(|f| f["rule"] == "partial-write-on-failure")
        .expect("partial-write-on-failure");
    let examples: Vec<&str> = partial["examples"]
        .as_array()
        .expect("examples")
        .iter()
        .map(|e| e.as_str().expect("text"))
        .collect();
    assert_eq!(
        examples,
        [
            "[committed] INSERT INTO orders (user_id, total_cents) VALUES ($1, $2)  -- params: '1', '29600'",
            "[failed] INSERT INTO order_items (order_id, product_id, quantity) VALUES ($1, $2, $3)  -- params: '1', '99', '2'",
        ]
    );
    let commit = v["findings"]
        .as_array()
        .expect("findings")
        .iter()
        .find(|f| f["rule"] == "commit-after-error")
        .expect("commit-after-error");
    assert!(
        commit["message"]
            .as_str()
            .is_some_and(|m| m.contains("MySQL undid only the failed statement")),
        "{commit:#}"
    );
}

fn shop_invariants() -> Invariants {
    let mut config = RuleConfig::builtin().expect("defaults");
    config
        .add(Path::new(demo::SHOP_RULES_PATH), demo::SHOP_RULES)
        .expect("rules/shop.toml is valid");
    assert_eq!(config.invariants.len(), 6);
    Invariants::from_config(&config)
}

/// Runs the journey with the shop's invariants and audits it as `demo` does.
fn journey(fixed: bool, fault: Option<&str>) -> (DemoRun, Vec<Finding>) {
    let run = demo::run(&DemoSettings {
        fixed,
        fault: fault.map(|f| f.parse().expect("fault spec")),
        invariants: shop_invariants(),
        ..DemoSettings::default()
    })
    .expect("the journey runs");
    let config = RuleConfig::builtin().expect("defaults");
    let mut audit = Audit::new(&config).expect("rules");
    for e in run.events.clone() {
        audit.push(e);
    }
    audit.add_findings(run.invariant_findings.clone());
    let findings = audit.finish().findings;
    (run, findings)
}

fn txn_findings(findings: &[Finding]) -> Vec<(&'static str, String)> {
    findings
        .iter()
        .filter(|f| TXN_RULES.contains(&f.rule))
        .map(|f| (f.rule, f.step.clone()))
        .collect()
}

#[test]
fn shipped_checkout_is_not_atomic_and_does_not_lock_the_stock() {
    let (run, findings) = journey(false, None);
    assert!(run.failure.is_none());
    assert_eq!(
        txn_findings(&findings),
        [
            ("non-atomic-write", "add_to_cart".to_owned()),
            ("non-atomic-write", "checkout".to_owned()),
            ("unlocked-read-modify-write", "checkout".to_owned()),
        ],
        "{findings:#?}"
    );
    // Without a failure the shipped shop keeps its data consistent.
    assert!(
        run.invariant_findings.is_empty(),
        "{:#?}",
        run.invariant_findings
    );
}

#[test]
fn shipped_checkout_with_a_fault_leaves_a_partial_order_behind() {
    let (run, findings) = journey(false, Some("checkout:3"));
    let (step, error) = run.failure.clone().expect("the fault stopped checkout");
    assert_eq!(step, "checkout");
    assert!(
        error.contains("flowaudit: injected fault at checkout:3"),
        "{error}"
    );
    assert!(run.order.is_none());

    // The third statement of checkout is the one that failed, in SQLite itself.
    let checkout: Vec<_> = run
        .events
        .iter()
        .filter(|e| e.step.as_deref() == Some("checkout"))
        .collect();
    assert_eq!(checkout.len(), 3);
    assert!(
        checkout[2].sql.contains("json_extract"),
        "{:?}",
        checkout[2]
    );
    assert!(checkout[2].error.is_some());
    assert!(checkout[1].sql.starts_with("INSERT INTO orders"));

    let got = txn_findings(&findings);
    assert!(
        got.contains(&("partial-write-on-failure", "checkout".to_owned())),
        "{got:?}"
    );
    let partial = findings
        .iter()
        .find(|f| f.rule == "partial-write-on-failure")
        .expect("partial write");
    assert!(partial.examples[0].starts_with("[autocommit] INSERT INTO orders"));

    let violated: Vec<(&str, &[String])> = findings
        .iter()
        .filter(|f| f.rule == "invariant-violated")
        .map(|f| {
            (
                f.fingerprint.as_deref().unwrap_or(""),
                f.examples.as_slice(),
            )
        })
        .collect();
    assert_eq!(
        violated,
        [
            (
                "invariant cart-empty-after-checkout",
                &[
                    "user_id=1, product_id=7, quantity=2".to_owned(),
                    "user_id=1, product_id=19, quantity=2".to_owned()
                ][..]
            ),
            (
                "invariant order-has-items",
                &["order_id=1, user_id=1, total_cents=29600".to_owned()][..]
            ),
        ],
        "{findings:#?}"
    );
}

#[test]
fn shipped_checkout_failing_at_the_stock_update_breaks_the_stock_invariants() {
    // 1 priced lines, 2 order, 3 item, 4 stock read, 5 stock update
    let (_, findings) = journey(false, Some("checkout:5"));
    let violated: BTreeSet<&str> = findings
        .iter()
        .filter(|f| f.rule == "invariant-violated")
        .filter_map(|f| f.fingerprint.as_deref())
        .collect();
    assert!(
        violated.contains("invariant stock-follows-orders"),
        "{violated:?}"
    );
    assert!(
        violated.contains("invariant order-total-matches-items"),
        "{violated:?}"
    );
    let stock = findings
        .iter()
        .find(|f| f.fingerprint.as_deref() == Some("invariant stock-follows-orders"))
        .expect("stock");
    assert_eq!(stock.count, 1);
    assert_eq!(
        stock.examples,
        ["product_id=7, stock=4, seeded_stock=4, ordered=2"]
    );
}

#[test]
fn fixed_checkout_rolls_back_whole_whatever_fails() {
    for fault in [
        None,
        Some("checkout:2"),
        Some("checkout:3"),
        Some("checkout:5"),
        Some("checkout:7"),
        Some("checkout:commit"),
        Some("add_to_cart:6"),
    ] {
        let (run, findings) = journey(true, fault);
        assert_eq!(run.failure.is_some(), fault.is_some(), "{fault:?}");
        assert_eq!(txn_findings(&findings), [], "{fault:?}: {findings:#?}");
        if let Some(f) = fault {
            // The transaction ended with ROLLBACK right after the failure.
            let failed = run
                .events
                .iter()
                .position(|e| e.error.is_some())
                .unwrap_or_else(|| panic!("{f}: no failed statement"));
            assert_eq!(run.events[failed + 1].sql, "ROLLBACK", "{f}");
            assert_eq!(run.events.len(), failed + 2, "{f}: the journey stops");
        }
    }
}

#[test]
fn a_fault_past_the_steps_statements_changes_nothing() {
    let (run, findings) = journey(true, Some("checkout:99"));
    assert!(run.failure.is_none());
    assert!(run.order.is_some());
    assert_eq!(txn_findings(&findings), []);
}

#[test]
fn cli_inject_fault() {
    let out = flowaudit()
        .args(["demo", "--inject-fault", "checkout:3", "--format", "json"])
        .assert()
        .code(0)
        .get_output()
        .stdout
        .clone();
    let v: serde_json::Value = serde_json::from_slice(&out).expect("JSON");
    let rules = fired(&v["findings"]);
    assert!(rules.contains("partial-write-on-failure"), "{rules:?}");
    assert!(rules.contains("invariant-violated"), "{rules:?}");
    assert!(
        v["notes"].to_string().contains("injected fault checkout:3"),
        "{v:#}"
    );
    flowaudit()
        .args([
            "demo",
            "--fixed",
            "--inject-fault",
            "checkout:3",
            "--fail-on",
            "warning",
        ])
        .assert()
        .code(0);
    flowaudit()
        .args(["demo", "--inject-fault", "checkout:3", "--fail-on", "error"])
        .assert()
        .code(1);
    // Issue 14: a fault that never fired proved nothing; the message lists
    // the steps that ran with their statement counts.
    for (missed, says) in [
        ("pay:1", "step pay never ran"),
        ("checkout:999", "fewer than 999"),
    ] {
        let out = flowaudit()
            .args(["demo", "--inject-fault", missed])
            .assert()
            .code(2)
            .get_output()
            .stderr
            .clone();
        let err = String::from_utf8(out).expect("utf-8");
        assert!(
            err.contains(&format!("--inject-fault {missed} did not fire"))
                && err.contains(says)
                && err.contains("steps that ran: ")
                && err.contains(" › checkout ("),
            "{err}"
        );
    }
    for (bad, says) in [
        ("checkout", "is not STEP:N or STEP:commit"),
        ("checkout:0", "is neither a statement number"),
        (":3", "names no step"),
    ] {
        let out = flowaudit()
            .args(["demo", "--inject-fault", bad])
            .assert()
            .code(2)
            .get_output()
            .stderr
            .clone();
        let err = String::from_utf8(out).expect("utf-8");
        assert!(
            err.contains("--inject-fault") && err.contains(says),
            "{err}"
        );
    }
}

/// A rule directory holding one file with these invariants.
fn rules_dir(text: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::write(dir.path().join("data.toml"), text).expect("rule file");
    dir
}

const ORDERS_HAVE_ITEMS: &str = r#"
[[invariant]]
name = "order-has-items"
sql = "SELECT orders.id AS order_id FROM orders WHERE NOT EXISTS (SELECT 1 FROM order_items WHERE order_items.order_id = orders.id) ORDER BY orders.id"
"#;

const BROKEN: &str = r#"
[[invariant]]
name = "broken"
sql = "SELECT id FROM no_such_table"
"#;

const SLOW_SQLITE: &str = r#"
[[invariant]]
name = "slow"
timeout_ms = 300
sql = "WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r) SELECT n FROM r WHERE n < 0"
"#;

fn analyze_on(url: &str, rules: &Path, code: i32) -> (serde_json::Value, String) {
    let out = flowaudit()
        .args([
            "analyze",
            "empty.jsonl",
            // The invariants are checked on the database, not on the trace.
            "--allow-empty",
            "--format",
            "json",
            "--database",
            url,
            "--rules",
        ])
        .arg(rules)
        .assert()
        .code(code)
        .get_output()
        .clone();
    let stderr = String::from_utf8(out.stderr).expect("utf-8");
    let json = serde_json::from_slice(&out.stdout).unwrap_or(serde_json::Value::Null);
    (json, stderr)
}

/// Checks an invariant that holds rows, one whose SQL is invalid and one that
/// times out, on the database at `url` (which has `orders` 1..=12 and one
/// item, for order 1).
fn invariants_on(url: &str, slow: &str) {
    let dir = rules_dir(ORDERS_HAVE_ITEMS);
    let (v, _) = analyze_on(url, dir.path(), 1);
    let f = &v["findings"][0];
    assert_eq!(f["rule"], "invariant-violated", "{v:#}");
    assert_eq!(f["count"], 11, "{v:#}");
    let rows = f["examples"].as_array().expect("rows");
    assert_eq!(rows.len(), 10, "at most 10 rows");
    assert_eq!(rows[0], "order_id=2");
    assert!(
        f["message"]
            .as_str()
            .is_some_and(|m| m.contains("data.toml")),
        "{f:#}"
    );

    let dir = rules_dir(BROKEN);
    let (_, err) = analyze_on(url, dir.path(), 2);
    let file = dir.path().join("data.toml");
    assert!(
        err.contains(&format!(
            "{}: invariant \"broken\": its query failed",
            file.display()
        )),
        "{err}"
    );

    let dir = rules_dir(slow);
    let started = std::time::Instant::now();
    let (_, err) = analyze_on(url, dir.path(), 2);
    assert!(
        err.contains("invariant \"slow\": its query ran over the 0.3 s statement timeout"),
        "{err}"
    );
    assert!(started.elapsed() < std::time::Duration::from_secs(10));
}

fn block_on<F: Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(f)
}

const SETUP: [&str; 3] = [
    "CREATE TABLE orders (id INTEGER PRIMARY KEY)",
    "CREATE TABLE order_items (id INTEGER PRIMARY KEY, order_id INTEGER NOT NULL)",
    "INSERT INTO order_items (id, order_id) VALUES (1, 1)",
];

#[test]
fn invariants_on_sqlite_report_rows_and_fail_as_tool_errors() {
    use sqlx::Connection;
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("app.db");
    block_on(async {
        let mut conn =
            sqlx::SqliteConnection::connect(&format!("sqlite:{}?mode=rwc", path.display()))
                .await
                .expect("sqlite");
        for sql in SETUP {
            sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
                .execute(&mut conn)
                .await
                .expect(sql);
        }
        for id in 1..=12 {
            sqlx::query("INSERT INTO orders (id) VALUES (?)")
                .bind(id)
                .execute(&mut conn)
                .await
                .expect("order");
        }
        conn.close().await.expect("close");
    });
    invariants_on(&format!("sqlite:{}", path.display()), SLOW_SQLITE);

    // The demo reports an invariant's bad SQL the same way.
    let out = flowaudit()
        .args(["demo", "--rules"])
        .arg(rules_dir(BROKEN).path())
        .assert()
        .code(2)
        .get_output()
        .stderr
        .clone();
    let err = String::from_utf8(out).expect("utf-8");
    assert!(
        err.contains("invariant \"broken\": its query failed"),
        "{err}"
    );
}

/// A fresh database on a server, dropped when done; `None` (with the reason
/// printed) when the server does not answer and CI is not set.
fn server_database(admin_url: &str, kind: &str) -> Option<String> {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static N: AtomicUsize = AtomicUsize::new(0);
    let name = format!(
        "flowaudit_inv_{}_{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    );
    let created = block_on(async {
        use sqlx::Connection;
        if kind == "postgres" {
            match sqlx::PgConnection::connect(admin_url).await {
                Ok(mut c) => sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
                    .execute(&mut c)
                    .await
                    .map(|_| ()),
                Err(e) => Err(e),
            }
        } else {
            match sqlx::MySqlConnection::connect(admin_url).await {
                Ok(mut c) => sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
                    .execute(&mut c)
                    .await
                    .map(|_| ()),
                Err(e) => Err(e),
            }
        }
    });
    match created {
        Ok(()) => Some(name),
        Err(e) => {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "{kind} at {admin_url} is required when CI=true: {e}"
            );
            eprintln!("skipped: {kind} at {admin_url} does not answer: {e}");
            None
        }
    }
}

#[test]
fn invariants_on_postgres_report_rows_and_fail_as_tool_errors() {
    let admin = "postgres://postgres@127.0.0.1:5432/test";
    let Some(name) = server_database(admin, "postgres") else {
        return;
    };
    let url = format!("postgres://postgres@127.0.0.1:5432/{name}");
    let result = std::panic::catch_unwind(|| {
        block_on(async {
            use sqlx::Connection;
            let mut c = sqlx::PgConnection::connect(&url).await.expect("connect");
            for sql in SETUP {
                sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
                    .execute(&mut c)
                    .await
                    .expect(sql);
            }
            sqlx::raw_sql(
                "CREATE SEQUENCE counter; INSERT INTO orders SELECT generate_series(1, 12)",
            )
            .execute(&mut c)
            .await
            .expect("orders");
            c.close().await.expect("close");
        });
        let slow = "[[invariant]]\nname = \"slow\"\ntimeout_ms = 300\nsql = \"SELECT pg_sleep(5) AS slept\"\n";
        invariants_on(&url, slow);
        // Read-only: a query that writes (nextval) is refused by the server.
        let dir = rules_dir(
            "[[invariant]]\nname = \"writes\"\nsql = \"SELECT nextval('counter') AS n\"\n",
        );
        let (_, err) = analyze_on(&url, dir.path(), 2);
        assert!(
            err.contains("invariant \"writes\"") && err.contains("read-only"),
            "{err}"
        );
    });
    block_on(async {
        use sqlx::Connection;
        if let Ok(mut c) = sqlx::PgConnection::connect(admin).await {
            let _ = sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
                "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
            )))
            .execute(&mut c)
            .await;
        }
    });
    if let Err(e) = result {
        std::panic::resume_unwind(e);
    }
}

#[test]
fn invariants_on_mariadb_report_rows_and_fail_as_tool_errors() {
    let admin = "mysql://root@127.0.0.1:3306/test";
    let Some(name) = server_database(admin, "mysql") else {
        return;
    };
    let url = format!("mysql://root@127.0.0.1:3306/{name}");
    let result = std::panic::catch_unwind(|| {
        block_on(async {
            use sqlx::Connection;
            let mut c = sqlx::MySqlConnection::connect(&url).await.expect("connect");
            for sql in SETUP {
                sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
                    .execute(&mut c)
                    .await
                    .expect(sql);
            }
            for id in 1..=12 {
                sqlx::query("INSERT INTO orders (id) VALUES (?)")
                    .bind(id)
                    .execute(&mut c)
                    .await
                    .expect("order");
            }
            c.close().await.expect("close");
        });
        let slow = "[[invariant]]\nname = \"slow\"\ntimeout_ms = 300\nsql = \"SELECT SLEEP(5) AS slept FROM orders\"\n";
        invariants_on(&url, slow);
    });
    block_on(async {
        use sqlx::Connection;
        if let Ok(mut c) = sqlx::MySqlConnection::connect(admin).await {
            let _ = sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
                "DROP DATABASE IF EXISTS {name}"
            )))
            .execute(&mut c)
            .await;
        }
    });
    if let Err(e) = result {
        std::panic::resume_unwind(e);
    }
}

#[test]
fn invariants_run_after_every_step_or_the_steps_they_name() {
    let config = RuleConfig::builtin_with(
        "[[invariant]]\nname = \"always\"\nsql = \"SELECT 1 AS one\"\n\
         [[invariant]]\nname = \"browse-only\"\nsteps = [\"browse\"]\nsql = \"SELECT 2 AS two\"\n\
         [[invariant]]\nname = \"at-the-end\"\nwhen = \"end\"\nsql = \"SELECT 3 AS three\"\n",
    )
    .expect("valid");
    let run = demo::run(&DemoSettings {
        fixed: true,
        invariants: Invariants::from_config(&config),
        ..DemoSettings::default()
    })
    .expect("the journey runs");
    let got: Vec<(String, String, String)> = run
        .invariant_findings
        .iter()
        .map(|f| {
            (
                f.step.clone(),
                f.fingerprint.clone().unwrap_or_default(),
                f.examples.join(";"),
            )
        })
        .collect();
    let want = |step: &str, name: &str, row: &str| {
        (step.to_owned(), format!("invariant {name}"), row.to_owned())
    };
    assert_eq!(
        got,
        [
            want("register", "always", "one=1"),
            want("browse", "always", "one=1"),
            want("browse", "browse-only", "two=2"),
            want("add_to_cart", "always", "one=1"),
            want("checkout", "always", "one=1"),
            want("(end)", "at-the-end", "three=3"),
        ]
    );

    // Turned off, the rule runs no invariant.
    let mut off = config.clone();
    off.add(
        Path::new("off.toml"),
        "[rules.invariant-violated]\nenabled = false\n",
    )
    .expect("valid");
    assert!(Invariants::from_config(&off).is_empty());
}

#[test]
fn a_database_flowaudit_cannot_open_is_a_tool_error() {
    let dir = rules_dir(ORDERS_HAVE_ITEMS);
    for (url, says) in [
        ("foo://bar", "--database foo://bar: not a database URL"),
        (
            "sqlite:/nonexistent/dir/app.db",
            "cannot connect to the database",
        ),
        (
            "postgres://postgres@127.0.0.1:1/x",
            "cannot connect to the database: error communicating with database",
        ),
    ] {
        let (_, err) = analyze_on(url, dir.path(), 2);
        assert!(err.contains(says), "{url}: {err}");
    }
}
