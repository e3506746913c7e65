//! Introspection through sqlx: one module per dialect opens a read-only,
//! time-bounded connection and names its catalogue queries
//! (`sql/introspect/<dialect>/*.sql`); every query answers in the same row
//! shapes, all text, which [`assemble`] turns into a [`Schema`].

mod mysql;
mod postgres;
mod sqlite;

use std::collections::BTreeMap;
use std::time::Duration;

use sqlx::Connection;

use super::SchemaError;
use super::model::{Column, Dialect, Enforcement, ForeignKey, Index, Schema, Table};

/// The catalogue queries of one dialect, in the order [`assemble`] reads them.
#[derive(Debug)]
pub struct Queries {
    pub tables: &'static str,
    pub columns: &'static str,
    pub keys: &'static str,
    pub foreign_keys: &'static str,
    pub indexes: &'static str,
}

/// A row of text cells, as every introspection query returns.
pub type Row = Vec<Option<String>>;

/// An open connection to one of the supported databases.
#[derive(Debug)]
pub enum Conn {
    Postgres(sqlx::PgConnection),
    Mysql(sqlx::MySqlConnection),
    Sqlite(sqlx::SqliteConnection),
}

impl Conn {
    /// Opens `url` read-only, with `timeout` on every statement.
    pub async fn open(url: &str, timeout: Duration) -> Result<Self, SchemaError> {
        let shown = crate::redact::url(url);
        let connect = async {
            match dialect_of(url) {
                Some(Dialect::Postgres) => postgres::open(url, timeout).await.map(Conn::Postgres),
                Some(Dialect::Mysql) => mysql::open(url, timeout).await.map(Conn::Mysql),
                Some(Dialect::Sqlite) => sqlite::open(url, timeout).await.map(Conn::Sqlite),
                None => Err(sqlx::Error::Configuration(
                    "the URL must start with postgres://, postgresql://, mysql://, mariadb://, \
                     sqlite:// or sqlite:"
                        .into(),
                )),
            }
        };
        match tokio::time::timeout(timeout.max(Duration::from_secs(1)), connect).await {
            Ok(Ok(conn)) => Ok(conn),
            Ok(Err(source)) => Err(SchemaError::Connect {
                url: shown,
                message: source.to_string(),
            }),
            Err(_) => Err(SchemaError::Connect {
                url: shown,
                message: format!("no answer within {} s", timeout.as_secs()),
            }),
        }
    }

    pub fn dialect(&self) -> Dialect {
        match self {
            Conn::Postgres(_) => Dialect::Postgres,
            Conn::Mysql(_) => Dialect::Mysql,
            Conn::Sqlite(_) => Dialect::Sqlite,
        }
    }

    /// Runs a query whose every column is text (or NULL).
    pub async fn rows(&mut self, sql: &str) -> Result<Vec<Row>, SchemaError> {
        use sqlx::Row as _;
        let owned = sqlx::AssertSqlSafe(sql.to_owned());
        let wrap = |source: sqlx::Error| SchemaError::Query {
            query: first_line(sql),
            message: source.to_string(),
        };
        macro_rules! collect {
            ($conn:expr) => {{
                let rows = sqlx::raw_sql(owned)
                    .fetch_all(&mut *$conn)
                    .await
                    .map_err(wrap)?;
                rows.iter()
                    .map(|row| {
                        (0..row.len())
                            .map(|i| row.try_get::<Option<String>, _>(i))
                            .collect::<Result<Row, _>>()
                    })
                    .collect::<Result<Vec<Row>, _>>()
                    .map_err(wrap)
            }};
        }
        match self {
            Conn::Postgres(c) => collect!(c),
            Conn::Mysql(c) => collect!(c),
            Conn::Sqlite(c) => collect!(c),
        }
    }

    /// One text cell: the first column of the first row.
    pub async fn scalar(&mut self, sql: &str) -> Result<Option<String>, SchemaError> {
        Ok(self
            .rows(sql)
            .await?
            .into_iter()
            .next()
            .and_then(|r| r.into_iter().next().flatten()))
    }

    pub async fn close(self) {
        let _ = match self {
            Conn::Postgres(c) => c.close().await,
            Conn::Mysql(c) => c.close().await,
            Conn::Sqlite(c) => c.close().await,
        };
    }

    /// The database a MySQL URL names, if any: the default schema to review.
    pub async fn default_schema(&mut self) -> Result<Option<String>, SchemaError> {
        match self {
            Conn::Mysql(_) => self.scalar("SELECT CAST(DATABASE() AS CHAR)").await,
            _ => Ok(None),
        }
    }

    fn queries(&self) -> &'static Queries {
        match self {
            Conn::Postgres(_) => &postgres::QUERIES,
            Conn::Mysql(_) => &mysql::QUERIES,
            Conn::Sqlite(_) => &sqlite::QUERIES,
        }
    }
}

/// Which schemas (PostgreSQL) or databases (MySQL) to review.
#[derive(Debug, Clone, Default)]
pub struct SchemaFilter {
    /// Only these; empty: every user schema (for MySQL, the URL's database
    /// when it names one).
    pub include: Vec<String>,
    pub exclude: Vec<String>,
}

impl SchemaFilter {
    fn keeps(&self, schema: &str) -> bool {
        (self.include.is_empty() || self.include.iter().any(|s| s == schema))
            && !self.exclude.iter().any(|s| s == schema)
    }
}

/// Reads the whole schema through `conn`.
pub async fn introspect(conn: &mut Conn, filter: &SchemaFilter) -> Result<Schema, SchemaError> {
    let mut filter = filter.clone();
    if filter.include.is_empty()
        && let Some(db) = conn.default_schema().await?
    {
        filter.include.push(db);
    }
    let q = conn.queries();
    let tables = conn.rows(q.tables).await?;
    let columns = conn.rows(q.columns).await?;
    let keys = conn.rows(q.keys).await?;
    let foreign_keys = conn.rows(q.foreign_keys).await?;
    let indexes = conn.rows(q.indexes).await?;
    let mut schema = assemble(
        conn.dialect(),
        &filter,
        Catalog {
            tables,
            columns,
            keys,
            foreign_keys,
            indexes,
        },
    );
    if let Conn::Sqlite(_) = conn {
        sqlite::count_rows(conn, &mut schema).await?;
    }
    Ok(schema)
}

/// The answers of the catalogue queries.
#[derive(Debug, Default)]
pub struct Catalog {
    pub tables: Vec<Row>,
    pub columns: Vec<Row>,
    pub keys: Vec<Row>,
    pub foreign_keys: Vec<Row>,
    pub indexes: Vec<Row>,
}

fn cell(row: &Row, i: usize) -> String {
    row.get(i).cloned().flatten().unwrap_or_default()
}

fn flag(row: &Row, i: usize) -> bool {
    matches!(cell(row, i).as_str(), "true" | "t" | "1" | "YES")
}

/// Builds the model from the catalogue's rows, keeping the filtered schemas.
pub fn assemble(dialect: Dialect, filter: &SchemaFilter, catalog: Catalog) -> Schema {
    let mut tables: BTreeMap<(String, String), Table> = BTreeMap::new();
    for row in &catalog.tables {
        let (schema, name) = (cell(row, 0), cell(row, 1));
        if !filter.keeps(&schema) {
            continue;
        }
        tables.insert(
            (schema.clone(), name.clone()),
            Table {
                schema,
                name,
                columns: Vec::new(),
                primary_key: Vec::new(),
                uniques: Vec::new(),
                foreign_keys: Vec::new(),
                indexes: Vec::new(),
                rows: row.get(2).cloned().flatten().and_then(|r| r.parse().ok()),
                engine: row.get(3).cloned().flatten(),
            },
        );
    }
    let key = |row: &Row| (cell(row, 0), cell(row, 1));

    for row in &catalog.columns {
        if let Some(t) = tables.get_mut(&key(row)) {
            t.columns.push(Column {
                name: cell(row, 2),
                data_type: cell(row, 3),
                nullable: flag(row, 4),
            });
        }
    }

    // Keys: rows arrive ordered by constraint, then position.
    let mut uniques: BTreeMap<(String, String, String), Vec<String>> = BTreeMap::new();
    for row in &catalog.keys {
        let Some(t) = tables.get_mut(&key(row)) else {
            continue;
        };
        if cell(row, 3) == "p" {
            t.primary_key.push(cell(row, 5));
        } else {
            uniques
                .entry((cell(row, 0), cell(row, 1), cell(row, 2)))
                .or_default()
                .push(cell(row, 5));
        }
    }
    for ((schema, table, _), columns) in uniques {
        if let Some(t) = tables.get_mut(&(schema, table)) {
            t.uniques.push(columns);
        }
    }

    let mut fks: BTreeMap<(String, String, String), ForeignKey> = BTreeMap::new();
    for row in &catalog.foreign_keys {
        if !tables.contains_key(&key(row)) {
            continue;
        }
        let fk = fks
            .entry((cell(row, 0), cell(row, 1), cell(row, 2)))
            .or_insert_with(|| ForeignKey {
                name: cell(row, 2),
                columns: Vec::new(),
                ref_schema: cell(row, 5),
                ref_table: cell(row, 6),
                ref_columns: Vec::new(),
                on_delete: cell(row, 8).to_uppercase(),
                on_update: cell(row, 9).to_uppercase(),
                enforcement: match cell(row, 10).as_str() {
                    "enforced" => Enforcement::Enforced,
                    "not-valid" => Enforcement::NotValid,
                    "per-connection" => Enforcement::PerConnection,
                    _ => Enforcement::NotEnforced,
                },
            });
        fk.columns.push(cell(row, 4));
        // SQLite leaves the parent column out when the key names the parent's
        // primary key; it is filled in below.
        fk.ref_columns.push(cell(row, 7));
    }
    let primary_keys: BTreeMap<(String, String), Vec<String>> = tables
        .iter()
        .map(|(k, t)| (k.clone(), t.primary_key.clone()))
        .collect();
    for ((schema, table, _), mut fk) in fks {
        if fk.ref_columns.iter().any(String::is_empty)
            && let Some(pk) = primary_keys.get(&(fk.ref_schema.clone(), fk.ref_table.clone()))
            && pk.len() == fk.columns.len()
        {
            fk.ref_columns.clone_from(pk);
        }
        if let Some(t) = tables.get_mut(&(schema, table)) {
            t.foreign_keys.push(fk);
        }
    }

    let mut indexes: BTreeMap<(String, String, String), Index> = BTreeMap::new();
    for row in &catalog.indexes {
        if !tables.contains_key(&key(row)) {
            continue;
        }
        let index = indexes
            .entry((cell(row, 0), cell(row, 1), cell(row, 2)))
            .or_insert_with(|| Index {
                name: cell(row, 2),
                columns: Vec::new(),
                unique: flag(row, 3),
                partial: flag(row, 4),
                expression: false,
                valid: flag(row, 5),
            });
        index.columns.push(cell(row, 7));
        index.expression |= flag(row, 8);
    }
    for ((schema, table, _), index) in indexes {
        if let Some(t) = tables.get_mut(&(schema, table)) {
            t.indexes.push(index);
        }
    }

    Schema {
        dialect,
        tables: tables.into_values().collect(),
    }
}

/// The dialect a URL's scheme names.
pub fn dialect_of(url: &str) -> Option<Dialect> {
    // `sqlite:PATH` (no slashes) is a SQLite URL too, as sqlx reads it.
    let scheme = match url.split_once("://") {
        Some((scheme, _)) => scheme,
        None => {
            url.split_once(':')
                .filter(|(s, _)| s.eq_ignore_ascii_case("sqlite"))?
                .0
        }
    }
    .to_ascii_lowercase();
    match scheme.as_str() {
        "postgres" | "postgresql" => Some(Dialect::Postgres),
        "mysql" | "mariadb" => Some(Dialect::Mysql),
        "sqlite" => Some(Dialect::Sqlite),
        _ => None,
    }
}

fn first_line(sql: &str) -> String {
    sql.lines()
        .find(|l| !l.trim_start().starts_with("--") && !l.trim().is_empty())
        .unwrap_or("")
        .trim()
        .to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dialects_by_scheme() {
        assert_eq!(dialect_of("postgresql://x"), Some(Dialect::Postgres));
        assert_eq!(dialect_of("mariadb://x"), Some(Dialect::Mysql));
        assert_eq!(dialect_of("sqlite://shop.db"), Some(Dialect::Sqlite));
        assert_eq!(dialect_of("oracle://x"), None);
        assert_eq!(dialect_of("shop.db"), None);
    }

    fn row(cells: &[&str]) -> Row {
        cells
            .iter()
            .map(|c| (!c.is_empty()).then(|| (*c).to_owned()))
            .collect()
    }

    #[test]
    fn assembles_composite_keys_in_order_and_fills_sqlite_parent_keys() {
        let catalog = Catalog {
            tables: vec![row(&["main", "a", "", ""]), row(&["main", "b", "", ""])],
            columns: vec![
                row(&["main", "a", "x", "INTEGER", "NO"]),
                row(&["main", "a", "y", "INTEGER", "NO"]),
                row(&["main", "b", "ax", "INTEGER", "YES"]),
                row(&["main", "b", "ay", "INTEGER", "YES"]),
            ],
            keys: vec![
                row(&["main", "a", "pk", "p", "1", "x"]),
                row(&["main", "a", "pk", "p", "2", "y"]),
            ],
            foreign_keys: vec![
                row(&[
                    "main",
                    "b",
                    "fk0",
                    "1",
                    "ax",
                    "main",
                    "a",
                    "",
                    "CASCADE",
                    "NO ACTION",
                    "per-connection",
                ]),
                row(&[
                    "main",
                    "b",
                    "fk0",
                    "2",
                    "ay",
                    "main",
                    "a",
                    "",
                    "CASCADE",
                    "NO ACTION",
                    "per-connection",
                ]),
            ],
            indexes: vec![row(&[
                "main", "b", "b_ay", "false", "true", "true", "1", "ay", "false",
            ])],
        };
        let s = assemble(Dialect::Sqlite, &SchemaFilter::default(), catalog);
        let a = &s.tables[0];
        assert_eq!(a.primary_key, ["x", "y"]);
        let b = &s.tables[1];
        assert_eq!(b.foreign_keys[0].columns, ["ax", "ay"]);
        assert_eq!(b.foreign_keys[0].ref_columns, ["x", "y"]);
        assert_eq!(b.foreign_keys[0].enforcement, Enforcement::PerConnection);
        assert!(b.indexes[0].partial);
        assert!(b.columns[0].nullable);
        let none = assemble(
            Dialect::Sqlite,
            &SchemaFilter {
                include: vec![],
                exclude: vec!["main".into()],
            },
            Catalog {
                tables: vec![row(&["main", "a", "", ""])],
                ..Catalog::default()
            },
        );
        assert!(none.tables.is_empty());
    }
}
