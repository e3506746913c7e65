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
/// Fixed, they share one transaction and the stock is taken by one guarded
/// UPDATE.
pub async fn checkout(db: &Db, user_id: i64, fixed: bool) -> Result<Order> {
    let mut pooled = db.acquire().await?;
    if fixed {
        let mut tx = db.begin(&mut pooled).await?;
        let order = checkout_atomic(&mut db.conn(&mut tx), user_id).await?;
        db.commit(tx).await?;
        return Ok(order);
    }
    let mut conn = db.conn(&mut pooled);
    let cart = open_cart(&mut conn, user_id).await?;
    let lines = cart::lines(&mut conn, cart.id).await?;
    let mut priced = Vec::with_capacity(lines.len());
    for line in lines {
        let product = products::find(&mut conn, line.product_id).await?;
        priced.push(PricedLine {
            product_id: line.product_id,
            quantity: line.quantity,
            price_cents: product.price_cents,
        });
    }
    let order = insert_order(&mut conn, user_id, &priced).await?;
    for line in &priced {
        insert_item(&mut conn, order.id, line).await?;
        let stock = products::stock_of(&mut conn, line.product_id).await?;
        if stock < line.quantity {
            return Err(out_of_stock(line.product_id));
        }
        products::set_stock(&mut conn, line.product_id, stock - line.quantity).await?;
    }
    cart::empty(&mut conn, cart.id).await?;
    Ok(order)
}

async fn checkout_atomic(conn: &mut Conn<'_>, user_id: i64) -> Result<Order> {
    let cart = open_cart(conn, user_id).await?;
    let priced: Vec<PricedLine> = sqlx::query_as(
        "SELECT cart_items.product_id, cart_items.quantity, products.price_cents \
         FROM cart_items JOIN products ON products.id = cart_items.product_id \
         WHERE cart_items.cart_id = ? ORDER BY cart_items.id",
    )
    .bind(cart.id)
    .fetch_all(conn.run())
    .await?;
    let order = insert_order(conn, user_id, &priced).await?;
    sqlx::query(
        "INSERT INTO order_items (order_id, product_id, quantity, unit_price_cents) \
         SELECT ?, cart_items.product_id, cart_items.quantity, products.price_cents \
         FROM cart_items JOIN products ON products.id = cart_items.product_id \
         WHERE cart_items.cart_id = ? ORDER BY cart_items.id",
    )
    .bind(order.id)
    .bind(cart.id)
    .execute(conn.run())
    .await?;
    for line in &priced {
        if !products::take_stock(conn, line.product_id, line.quantity).await? {
            return Err(out_of_stock(line.product_id));
        }
    }
    cart::empty(conn, cart.id).await?;
    Ok(order)
}

async fn open_cart(conn: &mut Conn<'_>, user_id: i64) -> Result<cart::Cart> {
    cart::find_for_user(conn, user_id)
        .await?
        .ok_or_else(|| DemoError::Rejected(format!("user {user_id} has no cart")))
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
        .execute(conn.run())
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
    .execute(conn.run())
    .await?;
    Ok(())
}

fn out_of_stock(product_id: i64) -> DemoError {
    DemoError::Rejected(format!("product {product_id} is out of stock"))
}
