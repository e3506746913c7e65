//! The catalogue: categories, products and their stock.

use super::Result;
use super::db::{Conn, Db};

#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct Category {
    pub id: i64,
    pub name: String,
}

#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct Product {
    pub id: i64,
    pub category_id: i64,
    pub name: String,
    pub price_cents: i64,
}

/// A product as the catalogue page shows it.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct Listing {
    pub id: i64,
    pub name: String,
    pub price_cents: i64,
    pub category: String,
    pub stock: i64,
}

/// The catalogue page: every product with its category and stock.
///
/// As shipped, each product's category and stock are loaded through their
/// own lookups, one product at a time (an N+1); fixed, one JOIN loads it all.
pub async fn list_catalogue(db: &Db, fixed: bool) -> Result<Vec<Listing>> {
    let mut pooled = db.acquire().await?;
    let mut conn = db.conn(&mut pooled);
    if fixed {
        return Ok(sqlx::query_as(
            "SELECT products.id, products.name, products.price_cents, \
             categories.name AS category, inventory.stock \
             FROM products \
             JOIN categories ON categories.id = products.category_id \
             JOIN inventory ON inventory.product_id = products.id \
             ORDER BY products.id",
        )
        .fetch_all(conn.run().await?)
        .await?);
    }
    let products = all(&mut conn).await?;
    let mut listings = Vec::with_capacity(products.len());
    for product in products {
        let category = find_category(&mut conn, product.category_id).await?;
        let stock = stock_of(&mut conn, product.id).await?;
        listings.push(Listing {
            id: product.id,
            name: product.name,
            price_cents: product.price_cents,
            category: category.name,
            stock,
        });
    }
    Ok(listings)
}

pub async fn all(conn: &mut Conn<'_>) -> Result<Vec<Product>> {
    Ok(sqlx::query_as(
        "SELECT products.id, products.category_id, products.name, products.price_cents \
         FROM products ORDER BY products.id",
    )
    .fetch_all(conn.run().await?)
    .await?)
}

pub async fn find(conn: &mut Conn<'_>, id: i64) -> Result<Product> {
    Ok(sqlx::query_as(
        "SELECT products.id, products.category_id, products.name, products.price_cents \
         FROM products WHERE products.id = ?",
    )
    .bind(id)
    .fetch_one(conn.run().await?)
    .await?)
}

pub async fn find_category(conn: &mut Conn<'_>, id: i64) -> Result<Category> {
    Ok(sqlx::query_as(
        "SELECT categories.id, categories.name FROM categories WHERE categories.id = ?",
    )
    .bind(id)
    .fetch_one(conn.run().await?)
    .await?)
}

pub async fn stock_of(conn: &mut Conn<'_>, product_id: i64) -> Result<i64> {
    Ok(
        sqlx::query_scalar("SELECT inventory.stock FROM inventory WHERE inventory.product_id = ?")
            .bind(product_id)
            .fetch_one(conn.run().await?)
            .await?,
    )
}

/// Sets a product's stock to a value the caller computed.
pub async fn set_stock(conn: &mut Conn<'_>, product_id: i64, stock: i64) -> Result<()> {
    sqlx::query("UPDATE inventory SET stock = ? WHERE product_id = ?")
        .bind(stock)
        .bind(product_id)
        .execute(conn.run().await?)
        .await?;
    Ok(())
}

/// Takes `quantity` off a product's stock if that much is there, in one
/// statement; false if it is not.
pub async fn take_stock(conn: &mut Conn<'_>, product_id: i64, quantity: i64) -> Result<bool> {
    let done =
        sqlx::query("UPDATE inventory SET stock = stock - ? WHERE product_id = ? AND stock >= ?")
            .bind(quantity)
            .bind(product_id)
            .bind(quantity)
            .execute(conn.run().await?)
            .await?;
    Ok(done.rows_affected() == 1)
}
