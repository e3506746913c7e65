//! The corpus's Rust stack: the shop's journey on sqlx 0.9 (PostgreSQL),
//! with its own counter around each query call. `tests/corpus.rs` runs it
//! as a child of `flowaudit run` by starting its own test binary again with
//! `sqlx_application`; the variant and the counts file come in
//! `CORPUS_VARIANT` and `CORPUS_COUNTS`, the database in `DATABASE_URL`.

use std::collections::BTreeMap;

use sqlx::{Connection, PgConnection};

const EMAIL: &str = "corpus@example.com";
/// The cart of the contract: (product id, quantity).
const CART: [(i64, i64); 2] = [(7, 2), (19, 2)];

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

/// The wrapper's counter: one per query call the shop makes, per step.
#[derive(Default)]
struct Counter {
    step: &'static str,
    counts: BTreeMap<&'static str, u64>,
}

impl Counter {
    fn count(&mut self) {
        *self.counts.entry(self.step).or_default() += 1;
    }
}

async fn mark(
    conn: &mut PgConnection,
    c: &mut Counter,
    key: &str,
    value: &'static str,
) -> Result<()> {
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "SET flowaudit.{key} = '{value}'"
    )))
    .execute(conn)
    .await?;
    if key == "step" {
        c.step = value;
        c.counts.insert(value, 0);
    }
    Ok(())
}

/// Runs the journey; the counts JSON is written when checkout succeeded.
pub async fn main(url: &str, fixed: bool, counts_file: &str) -> Result<()> {
    let mut conn = PgConnection::connect(url).await?;
    let c = &mut Counter::default();
    mark(&mut conn, c, "flow", "shop").await?;
    mark(&mut conn, c, "step", "register").await?;
    let user = register(&mut conn, c).await?;
    mark(&mut conn, c, "step", "browse").await?;
    browse(&mut conn, c, fixed).await?;
    mark(&mut conn, c, "step", "add_to_cart").await?;
    if fixed {
        let mut tx = conn.begin().await?;
        let user = find_user(&mut tx, c, user).await?;
        let cart = cart_of(&mut tx, c, user).await?;
        for (product, qty) in CART {
            add_line(&mut tx, c, cart, product, qty).await?;
        }
        tx.commit().await?;
    } else {
        // One transaction, as a request would have, but the user looked up
        // again for every line.
        let mut tx = conn.begin().await?;
        let cart = cart_of(&mut tx, c, user).await?;
        for (product, qty) in CART {
            find_user(&mut tx, c, user).await?;
            add_line(&mut tx, c, cart, product, qty).await?;
        }
        tx.commit().await?;
    }
    mark(&mut conn, c, "step", "checkout").await?;
    if fixed {
        let mut tx = conn.begin().await?;
        checkout_fixed(&mut tx, c, user).await?;
        tx.commit().await?;
    } else {
        checkout_shipped(&mut conn, c, user).await?;
    }
    let report = serde_json::json!({
        "stack": "sqlx",
        "variant": if fixed { "fixed" } else { "shipped" },
        "counter": "wrapper",
        "steps": c.counts,
    });
    std::fs::write(counts_file, report.to_string())?;
    Ok(())
}

async fn register(conn: &mut PgConnection, c: &mut Counter) -> Result<i64> {
    c.count();
    let known: Option<i64> =
        sqlx::query_scalar("SELECT users.id FROM users WHERE users.email = $1")
            .bind(EMAIL)
            .fetch_optional(&mut *conn)
            .await?;
    if known.is_some() {
        return Err(format!("{EMAIL} is already registered").into());
    }
    c.count();
    Ok(sqlx::query_scalar(
        "INSERT INTO users (email, full_name, password_hash) VALUES ($1, $2, $3) RETURNING id",
    )
    .bind(EMAIL)
    .bind("Corpus User")
    .bind("$argon2id$v=19$m=1024,t=1,p=1$c2FsdA$aGFzaA")
    .fetch_one(conn)
    .await?)
}

/// Shipped: each product's stock one at a time. Fixed: one join.
async fn browse(conn: &mut PgConnection, c: &mut Counter, fixed: bool) -> Result<()> {
    c.count();
    if fixed {
        let rows: Vec<(i64, String, i64, i64)> = sqlx::query_as(
            "SELECT products.id, products.name, products.price_cents, inventory.stock \
             FROM products JOIN inventory ON inventory.product_id = products.id \
             ORDER BY products.id",
        )
        .fetch_all(&mut *conn)
        .await?;
        return if rows.is_empty() {
            Err("no products".into())
        } else {
            Ok(())
        };
    }
    let products: Vec<(i64, String, i64)> = sqlx::query_as(
        "SELECT products.id, products.name, products.price_cents FROM products ORDER BY products.id",
    )
    .fetch_all(&mut *conn)
    .await?;
    for (id, _, _) in products {
        c.count();
        let _stock: i64 = sqlx::query_scalar(
            "SELECT inventory.stock FROM inventory WHERE inventory.product_id = $1",
        )
        .bind(id)
        .fetch_one(&mut *conn)
        .await?;
    }
    Ok(())
}

async fn find_user(conn: &mut PgConnection, c: &mut Counter, id: i64) -> Result<i64> {
    c.count();
    sqlx::query_scalar::<_, i64>("SELECT users.id FROM users WHERE users.id = $1")
        .bind(id)
        .fetch_optional(conn)
        .await?
        .ok_or_else(|| format!("no user {id}").into())
}

async fn cart_of(conn: &mut PgConnection, c: &mut Counter, user: i64) -> Result<i64> {
    c.count();
    let found: Option<i64> =
        sqlx::query_scalar("SELECT carts.id FROM carts WHERE carts.user_id = $1")
            .bind(user)
            .fetch_optional(&mut *conn)
            .await?;
    if let Some(id) = found {
        return Ok(id);
    }
    c.count();
    Ok(
        sqlx::query_scalar("INSERT INTO carts (user_id) VALUES ($1) RETURNING id")
            .bind(user)
            .fetch_one(conn)
            .await?,
    )
}

async fn add_line(
    conn: &mut PgConnection,
    c: &mut Counter,
    cart: i64,
    product: i64,
    qty: i64,
) -> Result<()> {
    c.count();
    let product: i64 =
        sqlx::query_scalar("SELECT products.id FROM products WHERE products.id = $1")
            .bind(product)
            .fetch_one(&mut *conn)
            .await?;
    c.count();
    sqlx::query("INSERT INTO cart_items (cart_id, product_id, quantity) VALUES ($1, $2, $3)")
        .bind(cart)
        .bind(product)
        .bind(qty)
        .execute(conn)
        .await?;
    Ok(())
}

/// A cart line with its product's current price: (cart, product, quantity, price).
type PricedLine = (i64, i64, i64, i64);

async fn priced_lines(
    conn: &mut PgConnection,
    c: &mut Counter,
    user: i64,
) -> Result<Vec<PricedLine>> {
    c.count();
    let lines: Vec<PricedLine> = sqlx::query_as(
        "SELECT carts.id, cart_items.product_id, cart_items.quantity, products.price_cents \
         FROM carts JOIN cart_items ON cart_items.cart_id = carts.id \
         JOIN products ON products.id = cart_items.product_id \
         WHERE carts.user_id = $1 ORDER BY cart_items.id",
    )
    .bind(user)
    .fetch_all(conn)
    .await?;
    if lines.is_empty() {
        return Err(format!("the cart of user {user} is empty").into());
    }
    Ok(lines)
}

async fn insert_order(
    conn: &mut PgConnection,
    c: &mut Counter,
    user: i64,
    lines: &[PricedLine],
) -> Result<i64> {
    c.count();
    let total: i64 = lines.iter().map(|l| l.2 * l.3).sum();
    Ok(sqlx::query_scalar(
        "INSERT INTO orders (user_id, status, total_cents) VALUES ($1, 'pending', $2) RETURNING id",
    )
    .bind(user)
    .bind(total)
    .fetch_one(conn)
    .await?)
}

async fn empty_cart(conn: &mut PgConnection, c: &mut Counter, cart: i64) -> Result<()> {
    c.count();
    sqlx::query("DELETE FROM cart_items WHERE cart_items.cart_id = $1")
        .bind(cart)
        .execute(conn)
        .await?;
    Ok(())
}

/// As shipped: every write commits on its own, and the new stock is computed
/// here from the stock read just before.
async fn checkout_shipped(conn: &mut PgConnection, c: &mut Counter, user: i64) -> Result<()> {
    let lines = priced_lines(conn, c, user).await?;
    let order = insert_order(conn, c, user, &lines).await?;
    for &(_, product, qty, price) in &lines {
        c.count();
        sqlx::query(
            "INSERT INTO order_items (order_id, product_id, quantity, unit_price_cents) \
             VALUES ($1, $2, $3, $4)",
        )
        .bind(order)
        .bind(product)
        .bind(qty)
        .bind(price)
        .execute(&mut *conn)
        .await?;
        c.count();
        let stock: i64 = sqlx::query_scalar(
            "SELECT inventory.stock FROM inventory WHERE inventory.product_id = $1",
        )
        .bind(product)
        .fetch_one(&mut *conn)
        .await?;
        if stock < qty {
            return Err(format!("product {product} is out of stock").into());
        }
        c.count();
        sqlx::query("UPDATE inventory SET stock = $1 WHERE inventory.product_id = $2")
            .bind(stock - qty)
            .bind(product)
            .execute(&mut *conn)
            .await?;
    }
    empty_cart(conn, c, lines[0].0).await
}

/// Fixed, inside the caller's transaction: the items in one statement, a
/// guarded stock update per line.
async fn checkout_fixed(conn: &mut PgConnection, c: &mut Counter, user: i64) -> Result<()> {
    let lines = priced_lines(conn, c, user).await?;
    let order = insert_order(conn, c, user, &lines).await?;
    let cart = lines[0].0;
    c.count();
    sqlx::query(
        "INSERT INTO order_items (order_id, product_id, quantity, unit_price_cents) \
         SELECT $1, cart_items.product_id, cart_items.quantity, products.price_cents \
         FROM cart_items JOIN products ON products.id = cart_items.product_id \
         WHERE cart_items.cart_id = $2 ORDER BY cart_items.id",
    )
    .bind(order)
    .bind(cart)
    .execute(&mut *conn)
    .await?;
    for &(_, product, qty, _) in &lines {
        c.count();
        let taken = sqlx::query(
            "UPDATE inventory SET stock = stock - $1 \
             WHERE inventory.product_id = $2 AND inventory.stock >= $1",
        )
        .bind(qty)
        .bind(product)
        .execute(&mut *conn)
        .await?;
        if taken.rows_affected() != 1 {
            return Err(format!("product {product} is out of stock").into());
        }
    }
    empty_cart(conn, c, cart).await
}
