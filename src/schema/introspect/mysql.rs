//! MySQL and MariaDB: `information_schema` queries; the session's
//! transactions are read-only and its statements bounded
//! (`max_statement_time` in MariaDB, `max_execution_time` in MySQL).

use std::time::Duration;

use sqlx::{Connection, Executor, MySqlConnection};

use super::Queries;

pub static QUERIES: Queries = Queries {
    tables: include_str!("../../../sql/introspect/mysql/tables.sql"),
    columns: include_str!("../../../sql/introspect/mysql/columns.sql"),
    keys: include_str!("../../../sql/introspect/mysql/keys.sql"),
    foreign_keys: include_str!("../../../sql/introspect/mysql/foreign_keys.sql"),
    indexes: include_str!("../../../sql/introspect/mysql/indexes.sql"),
};

pub async fn open(url: &str, timeout: Duration) -> Result<MySqlConnection, sqlx::Error> {
    // sqlx knows the scheme as mysql://; mariadb:// is accepted as a synonym.
    let url = match url.strip_prefix("mariadb://") {
        Some(rest) => format!("mysql://{rest}"),
        None => url.to_owned(),
    };
    let mut conn = MySqlConnection::connect(&url).await?;
    let seconds = timeout.as_secs_f64();
    if conn
        .execute(sqlx::AssertSqlSafe(format!(
            "SET SESSION max_statement_time = {seconds}"
        )))
        .await
        .is_err()
    {
        conn.execute(sqlx::AssertSqlSafe(format!(
            "SET SESSION max_execution_time = {}",
            timeout.as_millis()
        )))
        .await?;
    }
    conn.execute("SET SESSION TRANSACTION READ ONLY").await?;
    Ok(conn)
}
