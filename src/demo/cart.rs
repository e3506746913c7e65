//! Carts: one per user, with a line per product.

use super::db::{Conn, Db};
use super::{DemoError, Result, auth, products};

#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct Cart {
    pub id: i64,
    pub user_id: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct CartLine {
    pub product_id: i64,
    pub quantity: i64,
}

/// Adds a product to the user's cart, as the "add to cart" button does. Every
/// call checks the user and finds (or opens) the cart: called once per item,
/// the user is looked up again for each (a repeated query).
pub async fn add_item(db: &Db, user_id: i64, product_id: i64, quantity: i64) -> Result<Cart> {
    let mut pooled = db.acquire().await?;
    let mut conn = db.conn(&mut pooled);
    let user = auth::find(&mut conn, user_id).await?;
    let cart = cart_of(&mut conn, user.id).await?;
    add_line(&mut conn, &cart, product_id, quantity).await?;
    Ok(cart)
}

/// Adds several products at once, in one transaction: the user and the cart
/// are loaded once, and the cart gets all of them or none.
pub async fn add_items(db: &Db, user_id: i64, items: &[(i64, i64)]) -> Result<Cart> {
    let mut pooled = db.acquire().await?;
    let mut tx = db.begin(&mut pooled).await?;
    let added = async {
        let mut conn = db.conn(&mut tx);
        let user = auth::find(&mut conn, user_id).await?;
        let cart = cart_of(&mut conn, user.id).await?;
        for &(product_id, quantity) in items {
            add_line(&mut conn, &cart, product_id, quantity).await?;
        }
        Ok::<_, DemoError>(cart)
    }
    .await;
    match added {
        Ok(cart) => {
            db.commit(tx).await?;
            Ok(cart)
        }
        Err(e) => {
            db.rollback(tx).await?;
            Err(e)
        }
    }
}

async fn add_line(conn: &mut Conn<'_>, cart: &Cart, product_id: i64, quantity: i64) -> Result<()> {
    if quantity <= 0 {
        return Err(DemoError::Rejected(format!("quantity {quantity}")));
    }
    let product = products::find(conn, product_id).await?;
    sqlx::query(
        "INSERT INTO cart_items (cart_id, product_id, quantity) VALUES (?, ?, ?) \
         ON CONFLICT (cart_id, product_id) DO UPDATE SET quantity = quantity + excluded.quantity",
    )
    .bind(cart.id)
    .bind(product.id)
    .bind(quantity)
    .execute(conn.run().await?)
    .await?;
    Ok(())
}

/// The user's cart, opened on first use.
pub async fn cart_of(conn: &mut Conn<'_>, user_id: i64) -> Result<Cart> {
    if let Some(cart) = find_for_user(conn, user_id).await? {
        return Ok(cart);
    }
    let id = sqlx::query("INSERT INTO carts (user_id) VALUES (?)")
        .bind(user_id)
        .execute(conn.run().await?)
        .await?
        .last_insert_rowid();
    Ok(Cart { id, user_id })
}

pub async fn find_for_user(conn: &mut Conn<'_>, user_id: i64) -> Result<Option<Cart>> {
    Ok(
        sqlx::query_as("SELECT carts.id, carts.user_id FROM carts WHERE carts.user_id = ?")
            .bind(user_id)
            .fetch_optional(conn.run().await?)
            .await?,
    )
}

pub async fn lines(conn: &mut Conn<'_>, cart_id: i64) -> Result<Vec<CartLine>> {
    Ok(sqlx::query_as(
        "SELECT cart_items.product_id, cart_items.quantity FROM cart_items \
         WHERE cart_items.cart_id = ? ORDER BY cart_items.id",
    )
    .bind(cart_id)
    .fetch_all(conn.run().await?)
    .await?)
}

pub async fn empty(conn: &mut Conn<'_>, cart_id: i64) -> Result<()> {
    sqlx::query("DELETE FROM cart_items WHERE cart_id = ?")
        .bind(cart_id)
        .execute(conn.run().await?)
        .await?;
    Ok(())
}
