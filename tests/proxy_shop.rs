//! The bundled shop's journey on the machine's real PostgreSQL server, sent
//! through `flowaudit proxy` by a small sqlx client that marks its steps the
//! way an application would (`SET flowaudit.flow` / `SET flowaudit.step`).
//!
//! The client mirrors `src/demo/` statement for statement where it matters:
//! the shipped checkout writes in autocommit and computes the new stock
//! itself, the fixed one runs in one transaction with a guarded stock update
//! and rolls back on any error. The statements of checkout are numbered as in
//! the demo, so `--inject-fault checkout:3` fails the first order item of the
//! shipped checkout (after its order was committed) and the order itself in
//! the fixed one (inside its transaction). The schema and catalogue are the
//! demo's, ported: `tests/workloads/shop_pg/`, so that the invariants of
//! `rules/shop.toml` run unchanged.

mod support;

use std::collections::BTreeSet;

use sqlx::{Connection, PgConnection};
use support::pg::{self, ProxyProcess, Stopped, TestDb};

const SCHEMA: &str = include_str!("workloads/shop_pg/schema.sql");
const SEED: &str = include_str!("workloads/shop_pg/seed.sql");
const RULES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/rules");

/// The rules these tests are about.
const TXN_RULES: [&str; 4] = [
    "non-atomic-write",
    "unlocked-read-modify-write",
    "partial-write-on-failure",
    "invariant-violated",
];

/// The shopper's cart, as in the demo: (product id, quantity).
const CART: [(i64, i64); 2] = [(7, 2), (19, 2)];
/// 2 × 8900 + 2 × 5900.
const TOTAL_CENTS: i64 = 29_600;

#[derive(Debug)]
enum ShopError {
    Database(sqlx::Error),
    Rejected(String),
}

impl From<sqlx::Error> for ShopError {
    fn from(e: sqlx::Error) -> Self {
        ShopError::Database(e)
    }
}

impl std::fmt::Display for ShopError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ShopError::Database(e) => write!(f, "database: {e}"),
            ShopError::Rejected(why) => write!(f, "the shop refused: {why}"),
        }
    }
}

impl ShopError {
    fn sqlstate(&self) -> Option<String> {
        match self {
            ShopError::Database(e) => e
                .as_database_error()
                .and_then(|d| d.code())
                .map(|c| c.into_owned()),
            ShopError::Rejected(_) => None,
        }
    }
}

type Result<T, E = ShopError> = std::result::Result<T, E>;

async fn marker(conn: &mut PgConnection, key: &str, value: &str) -> Result<()> {
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "SET flowaudit.{key} = '{value}'"
    )))
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// register → browse → add_to_cart → checkout, each step marked. Stops at
/// the first error, as the demo does; returns the order's id.
async fn journey(conn: &mut PgConnection, fixed: bool) -> Result<i64> {
    marker(conn, "flow", "shop").await?;

    marker(conn, "step", "register").await?;
    let user_id = register(conn).await?;

    marker(conn, "step", "browse").await?;
    let listed = browse(conn, fixed).await?;
    if listed == 0 {
        return Err(ShopError::Rejected("no products available".into()));
    }

    marker(conn, "step", "add_to_cart").await?;
    if fixed {
        let mut tx = conn.begin().await?;
        match add_items(&mut tx, user_id).await {
            Ok(()) => tx.commit().await?,
            Err(e) => {
                tx.rollback().await?;
                return Err(e);
            }
        }
    } else {
        for (product_id, quantity) in CART {
            add_item(conn, user_id, product_id, quantity).await?;
        }
    }

    marker(conn, "step", "checkout").await?;
    if fixed {
        let mut tx = conn.begin().await?;
        match checkout_atomic(&mut tx, user_id).await {
            Ok(order) => {
                tx.commit().await?;
                Ok(order)
            }
            Err(e) => {
                tx.rollback().await?;
                Err(e)
            }
        }
    } else {
        checkout_shipped(conn, user_id).await
    }
}

async fn register(conn: &mut PgConnection) -> Result<i64> {
    let email = "integration@test.com";
    let known: Option<i64> =
        sqlx::query_scalar("SELECT users.id FROM users WHERE users.email = $1")
            .bind(email)
            .fetch_optional(&mut *conn)
            .await?;
    if known.is_some() {
        return Err(ShopError::Rejected(format!(
            "{email} is already registered"
        )));
    }
    Ok(sqlx::query_scalar(
        "INSERT INTO users (email, full_name, password_hash) VALUES ($1, $2, $3) RETURNING id",
    )
    .bind(email)
    .bind("Test User")
    .bind("$argon2id$v=19$m=1024,t=1,p=1$c2FsdA$aGFzaA")
    .fetch_one(&mut *conn)
    .await?)
}

/// The catalogue: shipped, each product's category and stock one at a time;
/// fixed, one join.
async fn browse(conn: &mut PgConnection, fixed: bool) -> Result<usize> {
    if fixed {
        let rows: Vec<(i64, String, i64, String, i64)> = sqlx::query_as(
            "SELECT products.id, products.name, products.price_cents, \
             categories.name AS category, inventory.stock \
             FROM products \
             JOIN categories ON categories.id = products.category_id \
             JOIN inventory ON inventory.product_id = products.id \
             ORDER BY products.id",
        )
        .fetch_all(&mut *conn)
        .await?;
        return Ok(rows.len());
    }
    let products: Vec<(i64, i64, String, i64)> = sqlx::query_as(
        "SELECT products.id, products.category_id, products.name, products.price_cents \
         FROM products ORDER BY products.id",
    )
    .fetch_all(&mut *conn)
    .await?;
    for (id, category_id, _, _) in &products {
        let _: (i64, String) = sqlx::query_as(
            "SELECT categories.id, categories.name FROM categories WHERE categories.id = $1",
        )
        .bind(category_id)
        .fetch_one(&mut *conn)
        .await?;
        stock_of(conn, *id).await?;
    }
    Ok(products.len())
}

/// Shipped: one item, looking the user and the cart up again each time.
async fn add_item(
    conn: &mut PgConnection,
    user_id: i64,
    product_id: i64,
    quantity: i64,
) -> Result<()> {
    let user = find_user(conn, user_id).await?;
    let cart = cart_of(conn, user).await?;
    add_line(conn, cart, product_id, quantity).await
}

/// Fixed: every item at once, in the caller's transaction.
async fn add_items(conn: &mut PgConnection, user_id: i64) -> Result<()> {
    let user = find_user(conn, user_id).await?;
    let cart = cart_of(conn, user).await?;
    for (product_id, quantity) in CART {
        add_line(conn, cart, product_id, quantity).await?;
    }
    Ok(())
}

async fn find_user(conn: &mut PgConnection, id: i64) -> Result<i64> {
    sqlx::query_scalar::<_, i64>("SELECT users.id FROM users WHERE users.id = $1")
        .bind(id)
        .fetch_optional(&mut *conn)
        .await?
        .ok_or_else(|| ShopError::Rejected(format!("no user {id}")))
}

async fn cart_of(conn: &mut PgConnection, user_id: i64) -> Result<i64> {
    let found: Option<i64> =
        sqlx::query_scalar("SELECT carts.id FROM carts WHERE carts.user_id = $1")
            .bind(user_id)
            .fetch_optional(&mut *conn)
            .await?;
    if let Some(id) = found {
        return Ok(id);
    }
    Ok(
        sqlx::query_scalar("INSERT INTO carts (user_id) VALUES ($1) RETURNING id")
            .bind(user_id)
            .fetch_one(&mut *conn)
            .await?,
    )
}

async fn add_line(
    conn: &mut PgConnection,
    cart_id: i64,
    product_id: i64,
    quantity: i64,
) -> Result<()> {
    let product: i64 =
        sqlx::query_scalar("SELECT products.id FROM products WHERE products.id = $1")
            .bind(product_id)
            .fetch_one(&mut *conn)
            .await?;
    sqlx::query(
        "INSERT INTO cart_items (cart_id, product_id, quantity) VALUES ($1, $2, $3) \
         ON CONFLICT (cart_id, product_id) DO UPDATE SET quantity = cart_items.quantity + excluded.quantity",
    )
    .bind(cart_id)
    .bind(product)
    .bind(quantity)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// A cart line with its product's current price.
struct PricedLine {
    cart_id: i64,
    product_id: i64,
    quantity: i64,
    price_cents: i64,
}

async fn priced_lines(conn: &mut PgConnection, user_id: i64) -> Result<Vec<PricedLine>> {
    let rows: Vec<(i64, i64, i64, i64)> = sqlx::query_as(
        "SELECT carts.id AS cart_id, cart_items.product_id, cart_items.quantity, \
         products.price_cents \
         FROM carts JOIN cart_items ON cart_items.cart_id = carts.id \
         JOIN products ON products.id = cart_items.product_id \
         WHERE carts.user_id = $1 ORDER BY cart_items.id",
    )
    .bind(user_id)
    .fetch_all(&mut *conn)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(cart_id, product_id, quantity, price_cents)| PricedLine {
            cart_id,
            product_id,
            quantity,
            price_cents,
        })
        .collect())
}

async fn insert_order(conn: &mut PgConnection, user_id: i64, lines: &[PricedLine]) -> Result<i64> {
    if lines.is_empty() {
        return Err(ShopError::Rejected(format!(
            "the cart of user {user_id} is empty"
        )));
    }
    let total: i64 = lines.iter().map(|l| l.quantity * l.price_cents).sum();
    Ok(sqlx::query_scalar(
        "INSERT INTO orders (user_id, status, total_cents) VALUES ($1, $2, $3) RETURNING id",
    )
    .bind(user_id)
    .bind("pending")
    .bind(total)
    .fetch_one(&mut *conn)
    .await?)
}

async fn stock_of(conn: &mut PgConnection, product_id: i64) -> Result<i64> {
    Ok(
        sqlx::query_scalar("SELECT inventory.stock FROM inventory WHERE inventory.product_id = $1")
            .bind(product_id)
            .fetch_one(&mut *conn)
            .await?,
    )
}

async fn empty_cart(conn: &mut PgConnection, cart_id: i64) -> Result<()> {
    sqlx::query("DELETE FROM cart_items WHERE cart_id = $1")
        .bind(cart_id)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// As shipped: 1 priced lines, 2 order, then per line 3 item, 4 stock read,
/// 5 stock written as computed here; last, the cart emptied. Autocommit.
async fn checkout_shipped(conn: &mut PgConnection, user_id: i64) -> Result<i64> {
    let priced = priced_lines(conn, user_id).await?;
    let order = insert_order(conn, user_id, &priced).await?;
    for line in &priced {
        sqlx::query(
            "INSERT INTO order_items (order_id, product_id, quantity, unit_price_cents) \
             VALUES ($1, $2, $3, $4)",
        )
        .bind(order)
        .bind(line.product_id)
        .bind(line.quantity)
        .bind(line.price_cents)
        .execute(&mut *conn)
        .await?;
        let stock = stock_of(conn, line.product_id).await?;
        if stock < line.quantity {
            return Err(ShopError::Rejected(format!(
                "product {} is out of stock",
                line.product_id
            )));
        }
        sqlx::query("UPDATE inventory SET stock = $1 WHERE product_id = $2")
            .bind(stock - line.quantity)
            .bind(line.product_id)
            .execute(&mut *conn)
            .await?;
    }
    if let Some(line) = priced.first() {
        empty_cart(conn, line.cart_id).await?;
    }
    Ok(order)
}

/// Fixed, inside the caller's transaction (1 BEGIN): 2 priced lines, 3 order,
/// 4 items in one statement, then one guarded stock update per line, the cart
/// emptied.
async fn checkout_atomic(conn: &mut PgConnection, user_id: i64) -> Result<i64> {
    let priced = priced_lines(conn, user_id).await?;
    let order = insert_order(conn, user_id, &priced).await?;
    let cart_id = priced.first().map_or(0, |l| l.cart_id);
    sqlx::query(
        "INSERT INTO order_items (order_id, product_id, quantity, unit_price_cents) \
         SELECT $1, cart_items.product_id, cart_items.quantity, products.price_cents \
         FROM cart_items JOIN products ON products.id = cart_items.product_id \
         WHERE cart_items.cart_id = $2 ORDER BY cart_items.id",
    )
    .bind(order)
    .bind(cart_id)
    .execute(&mut *conn)
    .await?;
    for line in &priced {
        let taken = sqlx::query(
            "UPDATE inventory SET stock = stock - $1 WHERE product_id = $2 AND stock >= $1",
        )
        .bind(line.quantity)
        .bind(line.product_id)
        .execute(&mut *conn)
        .await?;
        if taken.rows_affected() != 1 {
            return Err(ShopError::Rejected(format!(
                "product {} is out of stock",
                line.product_id
            )));
        }
    }
    empty_cart(conn, cart_id).await?;
    Ok(order)
}

/// What one journey through the proxy left.
struct Run {
    db: TestDb,
    outcome: Result<i64>,
    stopped: Stopped,
}

/// A fresh shop database, the proxy in front of the server with the
/// repository's rules (and `--inject-fault` when given), the journey through
/// it, the proxy stopped.
fn run(fixed: bool, fault: Option<&str>) -> Run {
    let db = TestDb::new("shop");
    db.direct(SCHEMA);
    db.direct(SEED);
    let direct_url = db.url(pg::PG_ADDR);
    let mut args = vec!["--rules", RULES, "--database", &direct_url];
    if let Some(spec) = fault {
        args.extend(["--inject-fault", spec]);
    }
    let proxy = ProxyProcess::start(&format!("postgres://postgres@{}/test", pg::PG_ADDR), &args);
    let url = db.url(&proxy.addr.to_string());
    let outcome = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(async {
            let mut conn = PgConnection::connect(&url)
                .await
                .expect("connect through the proxy");
            let outcome = journey(&mut conn, fixed).await;
            conn.close().await.expect("close");
            outcome
        });
    let stopped = proxy.stop();
    Run {
        db,
        outcome,
        stopped,
    }
}

/// (rule, flow, step) of the findings of [`TXN_RULES`], sorted and distinct.
fn txn_findings(report: &serde_json::Value) -> BTreeSet<(String, String, String)> {
    findings(report)
        .iter()
        .filter(|f| TXN_RULES.iter().any(|r| f["rule"] == *r))
        .map(|f| {
            let s = |k: &str| f[k].as_str().unwrap_or_default().to_owned();
            (s("rule"), s("flow"), s("step"))
        })
        .collect()
}

fn findings(report: &serde_json::Value) -> &[serde_json::Value] {
    report["findings"].as_array().map_or(&[], Vec::as_slice)
}

fn owned(rows: &[(&str, &str, &str)]) -> BTreeSet<(String, String, String)> {
    rows.iter()
        .map(|&(r, f, s)| (r.to_owned(), f.to_owned(), s.to_owned()))
        .collect()
}

/// The statements of `step` in the trace, markers excluded. The trace keeps
/// the markers as statements; the step is the last one a marker named.
fn statements_of<'a>(trace: &'a [serde_json::Value], step: &str) -> Vec<&'a serde_json::Value> {
    let mut current = String::new();
    let mut found = Vec::new();
    for event in trace {
        let sql = event["sql"].as_str().unwrap_or_default();
        if let Some(value) = sql.strip_prefix("SET flowaudit.step = ") {
            current = value.trim_matches('\'').to_owned();
        } else if !sql.starts_with("SET flowaudit.") && current == step {
            found.push(event);
        }
    }
    found
}

/// Orders, order items and the two carted products' stock, read directly.
fn shop_state(db: &TestDb) -> String {
    db.direct(
        "SELECT (SELECT count(*) FROM orders) || ' orders, ' || \
         (SELECT count(*) FROM order_items) || ' items, ' || \
         (SELECT count(*) FROM cart_items) || ' in cart, stock ' || \
         (SELECT string_agg(product_id || '=' || stock, ' ' ORDER BY product_id) \
          FROM inventory WHERE product_id IN (7, 19))",
    )
}

#[test]
fn shipped_checkout_is_not_atomic_and_does_not_lock_the_stock() {
    if !pg::available("the shop through the proxy") {
        return;
    }
    let run = run(false, None);
    let order = run.outcome.expect("the journey completes");
    let report = &run.stopped.report;
    // As the demo on SQLite: the cart's and the checkout's writes each in
    // autocommit, the stock read and then written back; no failure, so no
    // partial write and no broken invariant.
    assert_eq!(
        txn_findings(report),
        owned(&[
            ("non-atomic-write", "shop", "add_to_cart"),
            ("non-atomic-write", "shop", "checkout"),
            ("unlocked-read-modify-write", "shop", "checkout"),
        ]),
        "{report:#}"
    );
    // The read-modify-write is the stock: read, then written as a value.
    let rmw = findings(report)
        .iter()
        .find(|f| f["rule"] == "unlocked-read-modify-write")
        .expect("read-modify-write");
    assert!(rmw.to_string().contains("inventory"), "{rmw:#}");

    // Without a failure the shipped shop keeps its data consistent.
    assert_eq!(
        shop_state(&run.db),
        "1 orders, 2 items, 0 in cart, stock 7=2 19=3"
    );
    assert_eq!(
        run.db.direct(&format!(
            "SELECT total_cents FROM orders WHERE id = {order}"
        )),
        TOTAL_CENTS.to_string()
    );
}

#[test]
fn fixed_checkout_gives_no_transaction_finding() {
    if !pg::available("the fixed shop through the proxy") {
        return;
    }
    let run = run(true, None);
    run.outcome.expect("the journey completes");
    let got = txn_findings(&run.stopped.report);
    assert!(got.is_empty(), "{got:#?}\n{:#}", run.stopped.report);
    // The checkout ran in one transaction, ended by COMMIT.
    let checkout = statements_of(&run.stopped.trace, "checkout");
    let sql: Vec<&str> = checkout.iter().filter_map(|e| e["sql"].as_str()).collect();
    assert_eq!(sql.first(), Some(&"BEGIN"), "{sql:#?}");
    assert_eq!(sql.last(), Some(&"COMMIT"), "{sql:#?}");
    assert_eq!(
        shop_state(&run.db),
        "1 orders, 2 items, 0 in cart, stock 7=2 19=3"
    );
}

#[test]
fn shipped_checkout_with_a_fault_leaves_a_partial_order_behind() {
    if !pg::available("the shop with a fault through the proxy") {
        return;
    }
    let run = run(false, Some("checkout:3"));
    let error = run.outcome.expect_err("the fault stops checkout");
    assert_eq!(error.sqlstate().as_deref(), Some("FA001"), "{error}");
    let report = &run.stopped.report;

    // The third statement of checkout failed in the server: the first item.
    let checkout = statements_of(&run.stopped.trace, "checkout");
    assert_eq!(checkout.len(), 3, "{}", run.stopped.trace_text);
    assert!(
        checkout[1]["sql"]
            .as_str()
            .is_some_and(|s| s.starts_with("INSERT INTO orders")),
        "{:#}",
        checkout[1]
    );
    assert!(
        checkout[2]["sql"]
            .as_str()
            .is_some_and(|s| s.starts_with("INSERT INTO order_items")),
        "{:#}",
        checkout[2]
    );
    assert!(!checkout[2]["error"].is_null(), "{:#}", checkout[2]);

    let got = txn_findings(report);
    for expected in owned(&[
        ("partial-write-on-failure", "shop", "checkout"),
        ("invariant-violated", "shop", "checkout"),
    ]) {
        assert!(
            got.contains(&expected),
            "{expected:?} in {got:#?}\n{report:#}"
        );
    }
    let partial = findings(report)
        .iter()
        .find(|f| f["rule"] == "partial-write-on-failure")
        .expect("partial write");
    assert!(
        partial.to_string().contains("INSERT INTO orders"),
        "{partial:#}"
    );

    // What checkout left behind, row by row, as the demo on SQLite reports
    // it: an order without items, and the cart not emptied. Every earlier
    // step kept the invariants.
    let violated: Vec<serde_json::Value> = findings(report)
        .iter()
        .filter(|f| f["rule"] == "invariant-violated")
        .map(|f| serde_json::json!([f["fingerprint"], f["flow"], f["step"], f["examples"]]))
        .collect();
    assert_eq!(
        violated,
        [
            serde_json::json!([
                "invariant cart-empty-after-checkout",
                "shop",
                "checkout",
                [
                    "user_id=1, product_id=7, quantity=2",
                    "user_id=1, product_id=19, quantity=2"
                ]
            ]),
            serde_json::json!([
                "invariant order-has-items",
                "shop",
                "checkout",
                [format!("order_id=1, user_id=1, total_cents={TOTAL_CENTS}")]
            ]),
        ],
        "{report:#}"
    );
    assert_fault_note(report, "checkout:3", "INSERT INTO order_items");
    assert_eq!(
        shop_state(&run.db),
        "1 orders, 0 items, 2 in cart, stock 7=4 19=5"
    );
}

#[test]
fn fixed_checkout_with_a_fault_rolls_back_whole() {
    if !pg::available("the fixed shop with a fault through the proxy") {
        return;
    }
    let run = run(true, Some("checkout:3"));
    let error = run.outcome.expect_err("the fault stops checkout");
    assert_eq!(error.sqlstate().as_deref(), Some("FA001"), "{error}");
    let got = txn_findings(&run.stopped.report);
    assert!(got.is_empty(), "{got:#?}\n{:#}", run.stopped.report);

    // BEGIN, priced lines, the order (failed), then ROLLBACK.
    let checkout = statements_of(&run.stopped.trace, "checkout");
    let sql: Vec<&str> = checkout.iter().filter_map(|e| e["sql"].as_str()).collect();
    assert_eq!(sql.len(), 4, "{sql:#?}");
    assert!(sql[2].starts_with("INSERT INTO orders"), "{sql:#?}");
    assert!(!checkout[2]["error"].is_null(), "{:#}", checkout[2]);
    assert_eq!(sql[3], "ROLLBACK", "{sql:#?}");

    assert_fault_note(&run.stopped.report, "checkout:3", "INSERT INTO orders");

    // Nothing of the checkout stayed: no order, the cart and stock as before.
    assert_eq!(
        shop_state(&run.db),
        "0 orders, 0 items, 2 in cart, stock 7=4 19=5"
    );
}

/// Wherever the fault hits the fixed shop's transactions, at a statement or
/// at COMMIT, they roll back whole: no transaction finding, no invariant
/// broken, nothing of the failed step left in the database.
#[test]
fn fixed_transactions_roll_back_whole_whatever_fails() {
    if !pg::available("the fixed shop with faults through the proxy") {
        return;
    }
    // The fixed add_to_cart: 1 BEGIN, 2 user, 3 cart, 4 new cart, 5 product,
    // 6 first line, …; its 6th fails before any line is in.
    let checkout_failed = "0 orders, 0 items, 2 in cart, stock 7=4 19=5";
    for (fault, after) in [
        ("checkout:2", checkout_failed),
        ("checkout:5", checkout_failed),
        ("checkout:7", checkout_failed),
        ("checkout:commit", checkout_failed),
        (
            "add_to_cart:6",
            "0 orders, 0 items, 0 in cart, stock 7=4 19=5",
        ),
    ] {
        let run = run(true, Some(fault));
        let error = run.outcome.expect_err("the fault stops the journey");
        assert_eq!(
            error.sqlstate().as_deref(),
            Some("FA001"),
            "{fault}: {error}"
        );
        let report = &run.stopped.report;
        let got = txn_findings(report);
        assert!(got.is_empty(), "{fault}: {got:#?}\n{report:#}");
        assert!(
            report["notes"].to_string().contains(&format!(
                "injected fault {fault}: the server ran a failing statement"
            )),
            "{fault}: {report:#}"
        );
        let trace = &run.stopped.trace;
        let failed = trace
            .iter()
            .position(|e| !e["error"].is_null())
            .unwrap_or_else(|| panic!("{fault}: no failed statement\n{}", run.stopped.trace_text));
        if !fault.ends_with(":commit") {
            // The client rolled back right after the failure and stopped.
            assert_eq!(trace[failed + 1]["sql"], "ROLLBACK", "{fault}");
            assert_eq!(trace.len(), failed + 2, "{fault}: the journey stops");
        }
        assert_eq!(shop_state(&run.db), after, "{fault}");
    }
}

/// The report's note names the statement the fault replaced.
fn assert_fault_note(report: &serde_json::Value, spec: &str, replaced: &str) {
    let notes = report["notes"].as_array().expect("notes");
    let prefix = format!(
        "injected fault {spec}: the server ran a failing statement (SQLSTATE FA001) in place of: \
         {replaced}"
    );
    assert!(
        notes
            .iter()
            .any(|n| n.as_str().is_some_and(|n| n.starts_with(&prefix))),
        "{prefix:?} in {notes:#?}"
    );
}
