//! SQLite: `sqlite_schema` and the table-valued pragmas; the file is opened
//! read-only (`mode=ro`) and waits at most the timeout for a lock.

use std::str::FromStr;
use std::time::Duration;

use sqlx::ConnectOptions;
use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection};

use super::{Conn, Queries};
use crate::schema::SchemaError;
use crate::schema::model::{Dialect, Schema};

pub static QUERIES: Queries = Queries {
    tables: include_str!("../../../sql/introspect/sqlite/tables.sql"),
    columns: include_str!("../../../sql/introspect/sqlite/columns.sql"),
    keys: include_str!("../../../sql/introspect/sqlite/keys.sql"),
    foreign_keys: include_str!("../../../sql/introspect/sqlite/foreign_keys.sql"),
    indexes: include_str!("../../../sql/introspect/sqlite/indexes.sql"),
};

const ROW_COUNT: &str = include_str!("../../../sql/introspect/sqlite/row_count.sql");

pub async fn open(url: &str, timeout: Duration) -> Result<SqliteConnection, sqlx::Error> {
    SqliteConnectOptions::from_str(url)?
        .read_only(true)
        .create_if_missing(false)
        .busy_timeout(timeout)
        .connect()
        .await
}

/// SQLite keeps no row estimate: each table is counted.
pub async fn count_rows(conn: &mut Conn, schema: &mut Schema) -> Result<(), SchemaError> {
    for table in &mut schema.tables {
        let sql = ROW_COUNT.replace("{table}", &Dialect::Sqlite.quote(&table.name));
        table.rows = conn.scalar(&sql).await?.and_then(|n| n.parse().ok());
    }
    Ok(())
}
