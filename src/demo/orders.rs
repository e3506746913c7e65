//! Orders: checkout turns the user's cart into an order.

use super::db::{Conn, Db};
use super::{DemoError, Result, cart, products};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Order {
    pub id: i64,
    pub user_id: i64,
    pub status: String,
    pub total_cents: i64,
    pub items: usize,
}

/// A cart line with the product's current price.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
struct PricedLine {
    cart_id: i64,
    product_id: i64,
    quantity: i64,
    price_cents: i64,
}

/// Creates the order from the user's cart: the order row, one item per cart
/// line at the product's price, the stock taken, the cart emptied.
///
/// As shipped, these writes run one by one in autocommit, and the stock is
/// read and then written back as a value computed here, so a failure half-way
/// leaves a partial order and two checkouts at once can sell the same unit.
/// Fixed, they share one transaction, rolled back on any error, and the stock
/// is taken by one guarded UPDATE.
pub async fn checkout(db: &Db, user_id: i64, fixed: bool) -> Result<Order> {
    let mut pooled = db.acquire().await?;
    if fixed {
        let mut tx = db.begin(&mut pooled).await?;
        return match checkout_atomic(&mut db.conn(&mut tx), user_id).await {
            Ok(order) => {
                db.commit(tx).await?;
                Ok(order)
            }
            Err(e) => {
                db.rollback(tx).await?;
                Err(e)
            }
        };
    }
    let mut conn = db.conn(&mut pooled);
    let priced = priced_lines(&mut conn, user_id).await?;
    let order = insert_order(&mut conn, user_id, &priced).await?;
    for line in &priced {
        insert_item(&mut conn, order.id, line).await?;
        let stock = products::stock_of(&mut conn, line.product_id).await?;
        if stock < line.quantity {
            return Err(out_of_stock(line.product_id));
        }
        products::set_stock(&mut conn, line.product_id, stock - line.quantity).await?;
    }
    if let Some(line) = priced.first() {
        cart::empty(&mut conn, line.cart_id).await?;
    }
    Ok(order)
}

async fn checkout_atomic(conn: &mut Conn<'_>, user_id: i64) -> Result<Order> {
    let priced = priced_lines(conn, user_id).await?;
    let order = insert_order(conn, user_id, &priced).await?;
    let cart_id = priced.first().map_or(0, |l| l.cart_id);
    sqlx::query(
        "INSERT INTO order_items (order_id, product_id, quantity, unit_price_cents) \
         SELECT ?, cart_items.product_id, cart_items.quantity, products.price_cents \
         FROM cart_items JOIN products ON products.id = cart_items.product_id \
         WHERE cart_items.cart_id = ? ORDER BY cart_items.id",
    )
    .bind(order.id)
    .bind(cart_id)
    .execute(conn.run().await?)
    .await?;
    for line in &priced {
        if !products::take_stock(conn, line.product_id, line.quantity).await? {
            return Err(out_of_stock(line.product_id));
        }
    }
    cart::empty(conn, cart_id).await?;
    Ok(order)
}

/// The user's cart lines with their products' current prices, in one query.
async fn priced_lines(conn: &mut Conn<'_>, user_id: i64) -> Result<Vec<PricedLine>> {
    Ok(sqlx::query_as(
        "SELECT carts.id AS cart_id, cart_items.product_id, cart_items.quantity, \
         products.price_cents \
         FROM carts JOIN cart_items ON cart_items.cart_id = carts.id \
         JOIN products ON products.id = cart_items.product_id \
         WHERE carts.user_id = ? ORDER BY cart_items.id",
    )
    .bind(user_id)
    .fetch_all(conn.run().await?)
    .await?)
}

async fn insert_order(conn: &mut Conn<'_>, user_id: i64, lines: &[PricedLine]) -> Result<Order> {
    if lines.is_empty() {
        return Err(DemoError::Rejected(format!(
            "the cart of user {user_id} is empty"
        )));
    }
    let total_cents = lines.iter().map(|l| l.quantity * l.price_cents).sum();
    let id = sqlx::query("INSERT INTO orders (user_id, status, total_cents) VALUES (?, ?, ?)")
        .bind(user_id)
        .bind("pending")
        .bind(total_cents)
        .execute(conn.run().await?)
        .await?
        .last_insert_rowid();
    Ok(Order {
        id,
        user_id,
        status: "pending".to_owned(),
        total_cents,
        items: lines.len(),
    })
}

async fn insert_item(conn: &mut Conn<'_>, order_id: i64, line: &PricedLine) -> Result<()> {
    sqlx::query(
        "INSERT INTO order_items (order_id, product_id, quantity, unit_price_cents) \
         VALUES (?, ?, ?, ?)",
    )
    .bind(order_id)
    .bind(line.product_id)
    .bind(line.quantity)
    .bind(line.price_cents)
    .execute(conn.run().await?)
    .await?;
    Ok(())
}

fn out_of_stock(product_id: i64) -> DemoError {
    DemoError::Rejected(format!("product {product_id} is out of stock"))
}
