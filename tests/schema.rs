//! `flowaudit schema` against real databases: the fixtures under
//! sql/fixtures/ (one of every case, and a clean twin) loaded into a
//! PostgreSQL database, a MariaDB database and a SQLite file of their own.
//! Without a server the test says so and passes, unless CI=true.

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::atomic::{AtomicU32, Ordering};

use assert_cmd::Command;
use flowaudit::rules::RuleConfig;
use flowaudit::schema::model::Enforcement;
use flowaudit::schema::{ReviewOptions, SchemaReview, review};
use sqlx::{Connection, Executor};

const PG_ADMIN: &str = "postgres://postgres@127.0.0.1:5432/test";
const PG_BASE: &str = "postgres://postgres@127.0.0.1:5432";
const MYSQL_BASE: &str = "mysql://root@127.0.0.1:3306";

static COUNTER: AtomicU32 = AtomicU32::new(0);

fn unique_name() -> String {
    format!(
        "flowaudit_schema_{}_{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::SeqCst)
    )
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

/// A server that does not answer skips the test, except in CI.
fn unavailable(server: &str, e: &dyn std::fmt::Display) {
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("{server} is required in CI (CI=true) but is not reachable: {e}");
    }
    eprintln!("skipping: {server} is not reachable ({e}); start it as DESIGN.md says");
}

/// A database of its own, dropped when the test ends.
struct TempDb {
    url: String,
    drop_sql: String,
    admin: &'static str,
}

impl Drop for TempDb {
    fn drop(&mut self) {
        let (admin, sql) = (self.admin, self.drop_sql.clone());
        runtime().block_on(async move {
            if admin.starts_with("postgres") {
                if let Ok(mut c) = sqlx::PgConnection::connect(admin).await {
                    let _ = c.execute(sqlx::AssertSqlSafe(sql)).await;
                }
            } else if let Ok(mut c) = sqlx::MySqlConnection::connect(admin).await {
                let _ = c.execute(sqlx::AssertSqlSafe(sql)).await;
            }
        });
    }
}

fn postgres_with(fixture: &str) -> Option<TempDb> {
    let name = unique_name();
    let sql = std::fs::read_to_string(fixture_path(fixture)).expect("fixture");
    let created = runtime().block_on(async {
        let mut admin = sqlx::PgConnection::connect(PG_ADMIN).await?;
        admin
            .execute(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .await?;
        Ok::<_, sqlx::Error>(())
    });
    if let Err(e) = created {
        unavailable("PostgreSQL at 127.0.0.1:5432", &e);
        return None;
    }
    let db = TempDb {
        url: format!("{PG_BASE}/{name}"),
        drop_sql: format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"),
        admin: PG_ADMIN,
    };
    runtime().block_on(async {
        let mut c = sqlx::PgConnection::connect(&db.url).await.expect("connect");
        sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
            .execute(&mut c)
            .await
            .expect("fixture loads");
    });
    Some(db)
}

fn mariadb_with(fixture: &str) -> Option<TempDb> {
    let name = unique_name();
    let sql = std::fs::read_to_string(fixture_path(fixture)).expect("fixture");
    let created = runtime().block_on(async {
        let mut admin = sqlx::MySqlConnection::connect(MYSQL_BASE).await?;
        admin
            .execute(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .await?;
        Ok::<_, sqlx::Error>(())
    });
    if let Err(e) = created {
        unavailable("MariaDB at 127.0.0.1:3306", &e);
        return None;
    }
    let db = TempDb {
        url: format!("{MYSQL_BASE}/{name}"),
        drop_sql: format!("DROP DATABASE IF EXISTS {name}"),
        admin: MYSQL_BASE,
    };
    runtime().block_on(async {
        let mut c = sqlx::MySqlConnection::connect(&db.url)
            .await
            .expect("connect");
        sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
            .execute(&mut c)
            .await
            .expect("fixture loads");
    });
    Some(db)
}

/// Loads a SQLite fixture into `dir/file`; returns its URL relative to `dir`.
fn sqlite_with(dir: &Path, file: &str, fixture: &str) -> String {
    let sql = std::fs::read_to_string(fixture_path(fixture)).expect("fixture");
    let path = dir.join(file);
    runtime().block_on(async {
        use sqlx::ConnectOptions;
        let mut c = sqlx::sqlite::SqliteConnectOptions::new()
            .filename(&path)
            .create_if_missing(true)
            .foreign_keys(false)
            .connect()
            .await
            .expect("create the file");
        sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
            .execute(&mut c)
            .await
            .expect("fixture loads");
        c.close().await.expect("close");
    });
    format!("sqlite://{}", path.display())
}

fn fixture_path(name: &str) -> String {
    format!("{}/sql/fixtures/{name}", env!("CARGO_MANIFEST_DIR"))
}

fn run_review(url: &str) -> SchemaReview {
    review(
        url,
        &ReviewOptions::default(),
        &RuleConfig::builtin().expect("defaults"),
    )
    .expect("review")
}

fn found(r: &SchemaReview) -> BTreeSet<(String, String)> {
    r.findings
        .iter()
        .map(|f| (f.rule.to_owned(), f.fingerprint.clone().unwrap_or_default()))
        .collect()
}

fn set(items: &[(&str, &str)]) -> BTreeSet<(String, String)> {
    items
        .iter()
        .map(|(a, b)| ((*a).to_owned(), (*b).to_owned()))
        .collect()
}

fn orphans(r: &SchemaReview, subject: &str) -> (u64, Vec<String>) {
    let f = r
        .findings
        .iter()
        .find(|f| f.rule == "orphan-rows" && f.fingerprint.as_deref() == Some(subject))
        .unwrap_or_else(|| panic!("no orphan-rows for {subject}: {:#?}", r.findings));
    (f.count, f.examples.clone())
}

/// The SVG ER diagram of a review (issue 18): tags balanced, a box per shown
/// table, and every finding marked on its table, the ones about a
/// relationship on the child's columns too.
fn assert_svg_marks_every_finding(r: &SchemaReview) {
    use flowaudit::schema::diagram;
    let svg = diagram::svg::render(r);
    let mut open: Vec<&str> = Vec::new();
    for tag in svg.split('<').skip(1) {
        let tag = &tag[..tag.find('>').expect("tag closes")];
        if let Some(closing) = tag.strip_prefix('/') {
            assert_eq!(open.pop(), Some(closing), "unbalanced </{closing}>");
        } else if !tag.ends_with('/') {
            open.push(tag.split(' ').next().unwrap_or_default());
        }
    }
    assert!(open.is_empty(), "unclosed {open:?}");
    assert_eq!(
        svg.matches("class=\"er-table\"").count(),
        diagram::tables(r).len()
    );
    // The indices an opening tag's data-findings lists, for tags containing `needle`.
    let marked_by = |needle: &str| -> BTreeSet<usize> {
        svg.match_indices(needle)
            .flat_map(|(at, _)| {
                let tag = &svg[at..at + svg[at..].find('>').expect("tag closes")];
                tag.split_once("data-findings=\"")
                    .map(|(_, list)| list[..list.find('"').expect("quoted")].to_owned())
                    .unwrap_or_default()
                    .split(' ')
                    .filter_map(|i| i.parse().ok())
                    .collect::<Vec<usize>>()
            })
            .collect()
    };
    let ids = diagram::svg::table_ids(r);
    for (i, f) in r.findings.iter().enumerate() {
        let (_, id) = ids
            .iter()
            .find(|(name, _)| *name == f.step)
            .unwrap_or_else(|| panic!("no box for {}", f.step));
        assert!(
            marked_by(&format!("id=\"{id}\"")).contains(&i),
            "{f:?} not on {id}"
        );
        assert!(
            marked_by("class=\"er-finding ").contains(&i),
            "no badge for {f:?}"
        );
        if f.rule != "missing-primary-key" {
            assert!(
                marked_by("class=\"er-column\"").contains(&i),
                "{f:?} on no column"
            );
        }
    }
}

#[test]
fn postgres_fixture_shows_every_finding() {
    let Some(db) = postgres_with("postgres.sql") else {
        return;
    };
    let r = run_review(&db.url);
    assert_eq!(
        found(&r),
        set(&[
            (
                "foreign-key-type-mismatch",
                "orders(customer_id) → customers(id)"
            ),
            ("missing-foreign-key", "stock(product_id) → products(id)"),
            ("missing-primary-key", "audit_log"),
            ("orphan-rows", "shipments(order_id) → orders(id)"),
            ("orphan-rows", "stock(product_id) → products(id)"),
            (
                "unindexed-foreign-key",
                "orders(customer_id) → customers(id)"
            ),
            (
                "unindexed-foreign-key",
                "stock(region, code) → warehouses(region, code)"
            ),
        ])
    );
    assert_eq!(
        orphans(&r, "stock(product_id) → products(id)"),
        (
            2,
            vec![
                "id=2, product_id=999".to_owned(),
                "id=3, product_id=998".to_owned()
            ]
        )
    );
    assert_eq!(orphans(&r, "shipments(order_id) → orders(id)").0, 1);

    // The model: a composite key with its actions, a NOT VALID key, partial
    // and expression indexes marked.
    let stock = r.schema.table("public.stock").expect("stock");
    let composite = &stock.foreign_keys[0];
    assert_eq!(composite.columns, ["region", "code"]);
    assert_eq!(composite.ref_columns, ["region", "code"]);
    assert_eq!(composite.on_update, "CASCADE");
    assert_eq!(composite.on_delete, "NO ACTION");
    let partial = stock
        .indexes
        .iter()
        .find(|i| i.name == "stock_active_warehouse")
        .expect("partial index");
    assert!(partial.partial);
    let customers = r.schema.table("public.customers").expect("customers");
    let expr = customers
        .indexes
        .iter()
        .find(|i| i.name == "customers_lower_email")
        .expect("expression index");
    assert!(expr.expression);
    assert_eq!(expr.columns, ["lower(email)"]);
    let shipments = r.schema.table("public.shipments").expect("shipments");
    assert_eq!(shipments.foreign_keys[0].enforcement, Enforcement::NotValid);
    assert_eq!(
        r.schema
            .table("public.orders")
            .expect("orders")
            .foreign_keys[0]
            .on_delete,
        "CASCADE"
    );
}

#[test]
fn postgres_clean_fixture_has_no_finding() {
    let Some(db) = postgres_with("postgres_clean.sql") else {
        return;
    };
    let r = run_review(&db.url);
    assert!(r.findings.is_empty(), "{:#?}", r.findings);
    assert_eq!(r.relationships.len(), 4);
    assert!(r.relationships.iter().all(|rel| rel.indexed));
}

#[test]
fn postgres_schemas_can_be_excluded_and_reviews_are_read_only() {
    let Some(db) = postgres_with("postgres.sql") else {
        return;
    };
    let options = ReviewOptions {
        filter: flowaudit::schema::SchemaFilter {
            include: vec![],
            exclude: vec!["public".into()],
        },
        ..ReviewOptions::default()
    };
    let r = review(&db.url, &options, &RuleConfig::builtin().expect("defaults")).expect("review");
    assert!(r.schema.tables.is_empty());
    // The session flowaudit opens refuses writes.
    let refused = runtime().block_on(async {
        let mut conn =
            flowaudit::schema::introspect::Conn::open(&db.url, std::time::Duration::from_secs(5))
                .await
                .expect("open");
        conn.rows("CREATE TABLE should_fail (id int)").await
    });
    let e = refused.expect_err("read-only").to_string();
    assert!(e.contains("read-only"), "{e}");
    // And every statement is bounded by the timeout.
    let slow = runtime().block_on(async {
        let mut conn =
            flowaudit::schema::introspect::Conn::open(&db.url, std::time::Duration::from_secs(1))
                .await
                .expect("open");
        conn.rows("SELECT pg_sleep(5)::text").await
    });
    let e = slow.expect_err("cancelled").to_string();
    assert!(e.contains("statement timeout"), "{e}");
}

#[test]
fn mariadb_reviews_are_read_only() {
    let Some(db) = mariadb_with("mysql_clean.sql") else {
        return;
    };
    let refused = runtime().block_on(async {
        let mut conn =
            flowaudit::schema::introspect::Conn::open(&db.url, std::time::Duration::from_secs(5))
                .await
                .expect("open");
        conn.rows("INSERT INTO coupons VALUES ('SNEAKY')").await
    });
    let e = refused.expect_err("read-only").to_string();
    assert!(e.contains("READ ONLY"), "{e}");
}

#[test]
fn mariadb_fixture_shows_every_finding() {
    let Some(db) = mariadb_with("mysql.sql") else {
        return;
    };
    let r = run_review(&db.url);
    assert_eq!(
        found(&r),
        set(&[
            (
                "foreign-key-type-mismatch",
                "orders(coupon_code) → coupons(code)"
            ),
            ("missing-foreign-key", "legacy_notes(order_id) → orders(id)"),
            ("missing-foreign-key", "stock(product_id) → products(id)"),
            ("missing-primary-key", "audit_log"),
            ("orphan-rows", "legacy_notes(order_id) → orders(id)"),
            ("orphan-rows", "stock(product_id) → products(id)"),
        ])
    );
    assert_eq!(orphans(&r, "stock(product_id) → products(id)").0, 2);
    let (n, rows) = orphans(&r, "legacy_notes(order_id) → orders(id)");
    assert_eq!((n, rows), (1, vec!["id=2, order_id=77".to_owned()]));
    let legacy = r
        .findings
        .iter()
        .find(|f| f.rule == "orphan-rows" && f.step == "legacy_notes")
        .expect("legacy orphans");
    assert!(
        legacy.message.contains("MyISAM tables keep none"),
        "{}",
        legacy.message
    );
    // InnoDB indexed the composite key itself, so it is no finding.
    let stock = r
        .schema
        .tables
        .iter()
        .find(|t| t.name == "stock")
        .expect("stock");
    assert_eq!(stock.foreign_keys[0].columns, ["region", "code"]);
    assert!(
        r.relationships
            .iter()
            .find(|rel| rel.columns == ["region", "code"])
            .expect("composite")
            .indexed
    );
}

#[test]
fn mariadb_clean_fixture_has_no_finding() {
    let Some(db) = mariadb_with("mysql_clean.sql") else {
        return;
    };
    let r = run_review(&db.url);
    assert!(r.findings.is_empty(), "{:#?}", r.findings);
    assert_eq!(r.relationships.len(), 5);
}

const SQLITE_FINDINGS: &[(&str, &str)] = &[
    (
        "foreign-key-type-mismatch",
        "orders(customer_id) → customers(id)",
    ),
    ("missing-foreign-key", "stock(productId) → products(id)"),
    ("missing-primary-key", "audit_log"),
    ("orphan-rows", "shipments(order_id) → orders(id)"),
    ("orphan-rows", "stock(productId) → products(id)"),
    (
        "orphan-rows",
        "stock(region, code) → warehouses(region, code)",
    ),
    (
        "unindexed-foreign-key",
        "orders(customer_id) → customers(id)",
    ),
    (
        "unindexed-foreign-key",
        "stock(region, code) → warehouses(region, code)",
    ),
];

#[test]
fn sqlite_fixture_shows_every_finding() {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = sqlite_with(dir.path(), "fixture.db", "sqlite.sql");
    let r = run_review(&url);
    assert_eq!(found(&r), set(SQLITE_FINDINGS));
    assert_eq!(orphans(&r, "stock(productId) → products(id)").0, 2);
    assert_eq!(
        orphans(&r, "stock(region, code) → warehouses(region, code)").1,
        vec!["id=4, region=xx, code=nyc".to_owned()]
    );
    let stock = r.schema.table("main.stock").expect("stock");
    assert!(
        stock
            .indexes
            .iter()
            .any(|i| i.name == "stock_lower_code" && i.expression)
    );
}

#[test]
fn sqlite_fixture_svg_diagram_marks_every_finding() {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = sqlite_with(dir.path(), "fixture.db", "sqlite.sql");
    assert_svg_marks_every_finding(&run_review(&url));
}

#[test]
fn postgres_fixture_svg_diagram_marks_every_finding() {
    let Some(db) = postgres_with("postgres.sql") else {
        return;
    };
    assert_svg_marks_every_finding(&run_review(&db.url));
}

#[test]
fn sqlite_clean_fixture_has_no_finding() {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = sqlite_with(dir.path(), "clean.db", "sqlite_clean.sql");
    let r = run_review(&url);
    assert!(r.findings.is_empty(), "{:#?}", r.findings);
    assert_eq!(r.relationships.len(), 4);
}

fn flowaudit(dir: &Path) -> Command {
    let mut cmd = Command::cargo_bin("flowaudit").expect("the binary is built");
    cmd.current_dir(dir);
    cmd
}

fn stdout_of(cmd: &mut Command, code: i32) -> String {
    let out = cmd.assert().code(code).get_output().stdout.clone();
    String::from_utf8(out).expect("utf-8 output")
}

#[test]
fn cli_table_mermaid_and_dot_of_the_sqlite_fixture() {
    let dir = tempfile::tempdir().expect("tempdir");
    sqlite_with(dir.path(), "fixture.db", "sqlite.sql");
    let table = stdout_of(
        flowaudit(dir.path()).args(["schema", "sqlite://fixture.db"]),
        1,
    );
    for line in table.lines() {
        assert!(line.chars().count() <= 80, "wider than 80 columns: {line}");
    }
    insta::assert_snapshot!("schema_table", table);
    // A diagram is not a gate: exit 0 whatever the review found (issue 14).
    let mermaid = stdout_of(
        flowaudit(dir.path()).args(["schema", "sqlite://fixture.db", "--format", "mermaid"]),
        0,
    );
    assert!(mermaid.contains("products ||..o{ stock : \"productId (implied)\""));
    assert!(mermaid.contains("warehouses ||--o{ stock : \"region, code\""));
    insta::assert_snapshot!("schema_mermaid", mermaid);
    let dot = stdout_of(
        flowaudit(dir.path()).args(["schema", "sqlite://fixture.db", "--format", "dot"]),
        0,
    );
    assert!(dot.contains("style=dashed"));
    insta::assert_snapshot!("schema_dot", dot);
    // …unless --fail-on asks for one.
    flowaudit(dir.path())
        .args([
            "schema",
            "sqlite://fixture.db",
            "--format",
            "mermaid",
            "--fail-on",
            "error",
        ])
        .assert()
        .code(1);
    let written = dir.path().join("er.dot");
    flowaudit(dir.path())
        .args([
            "schema",
            "sqlite://fixture.db",
            "--format",
            "dot",
            "--output",
        ])
        .arg(&written)
        .assert()
        .code(0);
    assert_eq!(
        std::fs::read_to_string(&written).expect("the diagram was written"),
        dot
    );
    let json = stdout_of(
        flowaudit(dir.path()).args(["schema", "sqlite://fixture.db", "--format", "json"]),
        1,
    );
    let v: serde_json::Value = serde_json::from_str(&json).expect("valid JSON");
    assert_eq!(v["summary"]["errors"], 4);
    assert_eq!(v["summary"]["warnings"], 4);
    assert_eq!(v["relationships"].as_array().map(Vec::len), Some(4));
    let md = stdout_of(
        flowaudit(dir.path()).args(["schema", "sqlite://fixture.db", "--format", "markdown"]),
        1,
    );
    assert!(
        md.contains("| stock(productId) → products(id) |  | yes | no | implied |"),
        "{md}"
    );
    // --fail-on decides the exit code as for traces.
    flowaudit(dir.path())
        .args(["schema", "sqlite://fixture.db", "--fail-on", "never"])
        .assert()
        .code(0);
}

#[test]
fn trace_joins_imply_relationships() {
    let dir = tempfile::tempdir().expect("tempdir");
    sqlite_with(dir.path(), "fixture.db", "sqlite.sql");
    let trace = format!(
        "{}/tests/fixtures/schema/payments.jsonl",
        env!("CARGO_MANIFEST_DIR")
    );
    let json = stdout_of(
        flowaudit(dir.path()).args([
            "schema",
            "sqlite://fixture.db",
            "--trace",
            &trace,
            "--format",
            "json",
        ]),
        1,
    );
    let v: serde_json::Value = serde_json::from_str(&json).expect("valid JSON");
    let subjects: Vec<&str> = v["findings"]
        .as_array()
        .expect("findings")
        .iter()
        .filter(|f| f["rule"] == "missing-foreign-key")
        .filter_map(|f| f["fingerprint"].as_str())
        .collect();
    assert_eq!(
        subjects,
        [
            "payments(payer) → customers(id)",
            "stock(productId) → products(id)"
        ]
    );
}

#[test]
fn analyze_with_a_database_reviews_the_tables_the_trace_touched() {
    let dir = tempfile::tempdir().expect("tempdir");
    sqlite_with(dir.path(), "fixture.db", "sqlite.sql");
    let trace = format!(
        "{}/tests/fixtures/schema/payments.jsonl",
        env!("CARGO_MANIFEST_DIR")
    );
    let json = stdout_of(
        flowaudit(dir.path()).args([
            "analyze",
            &trace,
            "--database",
            "sqlite://fixture.db",
            "--format",
            "json",
        ]),
        1,
    );
    let v: serde_json::Value = serde_json::from_str(&json).expect("valid JSON");
    let got: BTreeSet<(String, String)> = v["findings"]
        .as_array()
        .expect("findings")
        .iter()
        .map(|f| {
            (
                f["rule"].as_str().unwrap_or_default().to_owned(),
                f["fingerprint"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    // payments, customers and orders only: nothing about stock, shipments
    // or audit_log.
    assert_eq!(
        got,
        set(&[
            (
                "foreign-key-type-mismatch",
                "orders(customer_id) → customers(id)"
            ),
            ("missing-foreign-key", "payments(payer) → customers(id)"),
            (
                "unindexed-foreign-key",
                "orders(customer_id) → customers(id)"
            ),
        ])
    );
    assert_eq!(v["summary"]["errors"], 1);
    assert_eq!(v["summary"]["statements"], 2);
}

#[test]
fn analyze_with_a_database_reviews_the_tables_a_server_log_touched() {
    let dir = tempfile::tempdir().expect("tempdir");
    sqlite_with(dir.path(), "fixture.db", "sqlite.sql");
    // The same two statements as payments.jsonl, in PostgreSQL's stderr log.
    std::fs::write(
        dir.path().join("postgresql.log"),
        "2026-11-25 15:07:34.020 UTC [2610] app@shop LOG:  statement: SELECT p.id, c.email \
         FROM payments p JOIN customers c ON c.id = p.payer WHERE p.id = 1\n\
         2026-11-25 15:07:34.021 UTC [2610] app@shop LOG:  statement: SELECT id, customer_id \
         FROM orders WHERE id = 10\n",
    )
    .expect("write log");
    let json = stdout_of(
        flowaudit(dir.path()).args([
            "analyze",
            "postgresql.log",
            "--database",
            "sqlite://fixture.db",
            "--format",
            "json",
        ]),
        1,
    );
    let v: serde_json::Value = serde_json::from_str(&json).expect("valid JSON");
    let got: BTreeSet<(String, String)> = v["findings"]
        .as_array()
        .expect("findings")
        .iter()
        .map(|f| {
            (
                f["rule"].as_str().unwrap_or_default().to_owned(),
                f["fingerprint"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        got,
        set(&[
            (
                "foreign-key-type-mismatch",
                "orders(customer_id) → customers(id)"
            ),
            ("missing-foreign-key", "payments(payer) → customers(id)"),
            (
                "unindexed-foreign-key",
                "orders(customer_id) → customers(id)"
            ),
        ])
    );
    assert!(
        v["notes"]
            .to_string()
            .contains("read as pg-stderr (detected)"),
        "{v}"
    );
}

#[test]
fn rule_files_allow_disable_and_limit_schema_rules() {
    let dir = tempfile::tempdir().expect("tempdir");
    sqlite_with(dir.path(), "fixture.db", "sqlite.sql");
    std::fs::create_dir(dir.path().join("rules")).expect("mkdir");
    std::fs::write(
        dir.path().join("rules/schema.toml"),
        r#"
[rules.unindexed-foreign-key]
enabled = false

[rules.missing-primary-key]
severity = "error"

[rules.orphan-rows]
max_table_rows = 3

[[allow]]
rule = "foreign-key-type-mismatch"
fingerprint = '^orders\(customer_id\)'
reason = "legacy import keeps text ids until the migration"
"#,
    )
    .expect("write");
    let json = stdout_of(
        flowaudit(dir.path()).args(["schema", "sqlite://fixture.db", "--format", "json"]),
        1,
    );
    let v: serde_json::Value = serde_json::from_str(&json).expect("valid JSON");
    let rules: Vec<&str> = v["findings"]
        .as_array()
        .expect("findings")
        .iter()
        .filter_map(|f| f["rule"].as_str())
        .collect();
    assert!(!rules.contains(&"unindexed-foreign-key"), "{rules:?}");
    assert!(!rules.contains(&"foreign-key-type-mismatch"), "{rules:?}");
    assert_eq!(v["allowed"][0]["rule"], "foreign-key-type-mismatch");
    let pk = v["findings"]
        .as_array()
        .expect("findings")
        .iter()
        .find(|f| f["rule"] == "missing-primary-key")
        .expect("pk");
    assert_eq!(pk["severity"], "error");
    // stock has 4 rows, over the limit of 3: not searched, with a note.
    let notes = v["notes"].as_array().expect("notes");
    assert!(
        notes.iter().any(|n| n
            .as_str()
            .is_some_and(|n| n.contains("stock has about 4 rows"))),
        "{notes:?}"
    );
    assert_eq!(
        v["findings"]
            .as_array()
            .expect("findings")
            .iter()
            .filter(|f| f["rule"] == "orphan-rows")
            .count(),
        1,
        "only shipments (3 rows) is searched"
    );
}

#[test]
fn the_demo_shop_database_has_a_correct_relationships_table() {
    let dir = tempfile::tempdir().expect("tempdir");
    flowaudit(dir.path())
        .args(["demo", "--db", "shop.db"])
        .assert()
        .code(0);
    let out = stdout_of(
        flowaudit(dir.path()).args(["schema", "sqlite://shop.db"]),
        0,
    );
    let r = run_review(&format!(
        "sqlite://{}",
        dir.path().join("shop.db").display()
    ));
    let rels: Vec<String> = r
        .relationships
        .iter()
        .map(|rel| rel.describe(&r.schema))
        .collect();
    // Every REFERENCES of sql/shop/schema.sql, each indexed and not null.
    assert_eq!(
        rels,
        [
            "cart_items(cart_id) → carts(id)",
            "cart_items(product_id) → products(id)",
            "carts(user_id) → users(id)",
            "inventory(product_id) → products(id)",
            "order_items(order_id) → orders(id)",
            "order_items(product_id) → products(id)",
            "orders(user_id) → users(id)",
            "products(category_id) → categories(id)",
        ]
    );
    assert!(
        r.relationships
            .iter()
            .all(|rel| rel.indexed && !rel.nullable)
    );
    assert!(r.findings.is_empty(), "{:#?}", r.findings);
    insta::assert_snapshot!("schema_demo_shop", out);
}

#[test]
fn unreachable_database_is_exit_2_without_the_password() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = flowaudit(dir.path())
        .args(["schema", "postgres://app:hunter2@127.0.0.1:1/shop"])
        .assert()
        .code(2)
        .get_output()
        .stderr
        .clone();
    let err = String::from_utf8(out).expect("utf-8");
    assert!(
        err.contains("cannot connect to postgres://app:***@127.0.0.1:1/shop"),
        "{err}"
    );
    assert!(!err.contains("hunter2"), "{err}");
    let err = String::from_utf8(
        flowaudit(dir.path())
            .args(["schema", "oracle://x"])
            .assert()
            .code(2)
            .get_output()
            .stderr
            .clone(),
    )
    .expect("utf-8");
    assert!(err.contains("must start with postgres://"), "{err}");
}

#[test]
fn analyze_with_a_database_honours_the_baseline() {
    let dir = tempfile::tempdir().expect("tempdir");
    sqlite_with(dir.path(), "fixture.db", "sqlite.sql");
    let trace = format!(
        "{}/tests/fixtures/schema/payments.jsonl",
        env!("CARGO_MANIFEST_DIR")
    );
    let args = |extra: &[&str]| {
        let mut a = vec![
            "analyze",
            trace.as_str(),
            "--database",
            "sqlite://fixture.db",
        ];
        a.extend_from_slice(extra);
        a.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>()
    };
    flowaudit(dir.path())
        .args(args(&["--write-baseline", "baseline.json"]))
        .assert()
        .code(0);
    let json = stdout_of(
        flowaudit(dir.path()).args(args(&["--baseline", "baseline.json", "--format", "json"])),
        0,
    );
    let v: serde_json::Value = serde_json::from_str(&json).expect("valid JSON");
    assert_eq!(v["findings"].as_array().map(Vec::len), Some(0), "{json}");
    assert_eq!(v["summary"]["known"], 3);
    // Each schema finding keeps an identity of its own in the baseline.
    let baseline = std::fs::read_to_string(dir.path().join("baseline.json")).expect("baseline");
    let b: serde_json::Value = serde_json::from_str(&baseline).expect("json");
    let identities: BTreeSet<(&str, &str)> = b["findings"]
        .as_array()
        .expect("findings")
        .iter()
        .filter_map(|f| Some((f["rule"].as_str()?, f["fingerprint_hash"].as_str()?)))
        .collect();
    assert_eq!(identities.len(), 3, "{baseline}");
}

/// `schema --format html` on the PostgreSQL fixture: each finding listed
/// with a button that marks its table in the diagram (`data-findings`).
#[test]
fn postgres_fixture_html_page_links_every_finding_to_the_diagram() {
    let Some(db) = postgres_with("postgres.sql") else {
        return;
    };
    let out = Command::cargo_bin("flowaudit")
        .expect("the binary is built")
        .args(["schema", &db.url, "--format", "html"])
        .output()
        .expect("flowaudit schema");
    assert_eq!(out.status.code(), Some(1), "the fixture has errors");
    let page = String::from_utf8(out.stdout).expect("utf-8");
    let findings = run_review(&db.url).findings.len();
    assert!(findings > 0);
    assert_eq!(page.matches("<li class=\"finding ").count(), findings);
    assert!(page.contains("class=\"er-edge implied\""));
    for n in 0..findings {
        assert!(
            page.contains(&format!(
                "class=\"show\" data-finding=\"{n}\" aria-pressed=\"false\""
            )),
            "finding {n} has no button"
        );
        let marked =
            regex::Regex::new(&format!(r#"data-findings="(\d+ )*{n}( \d+)*""#)).expect("regex");
        assert!(marked.is_match(&page), "finding {n} is marked nowhere");
    }
}
