//! PostgreSQL: `pg_catalog` queries; the session is read-only
//! (`default_transaction_read_only`) and bounded by `statement_timeout`.

use std::time::Duration;

use sqlx::{Connection, Executor, PgConnection};

use super::Queries;

pub static QUERIES: Queries = Queries {
    tables: include_str!("../../../sql/introspect/postgres/tables.sql"),
    columns: include_str!("../../../sql/introspect/postgres/columns.sql"),
    keys: include_str!("../../../sql/introspect/postgres/keys.sql"),
    foreign_keys: include_str!("../../../sql/introspect/postgres/foreign_keys.sql"),
    indexes: include_str!("../../../sql/introspect/postgres/indexes.sql"),
};

pub async fn open(url: &str, timeout: Duration) -> Result<PgConnection, sqlx::Error> {
    let mut conn = PgConnection::connect(url).await?;
    let ms = timeout.as_millis();
    conn.execute(sqlx::AssertSqlSafe(format!(
        "SET statement_timeout = {ms}; SET lock_timeout = {ms}; \
         SET default_transaction_read_only = on; SET application_name = 'flowaudit schema'"
    )))
    .await?;
    Ok(conn)
}
