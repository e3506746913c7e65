//! What introspection learns of a schema: tables, their columns, keys,
//! constraints and indexes, in one shape for every dialect. No I/O here.

use serde::Serialize;

/// The database families flowaudit introspects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Dialect {
    Postgres,
    Mysql,
    Sqlite,
}

impl Dialect {
    pub fn as_str(self) -> &'static str {
        match self {
            Dialect::Postgres => "postgres",
            Dialect::Mysql => "mysql",
            Dialect::Sqlite => "sqlite",
        }
    }

    /// Quotes an identifier for this dialect.
    pub fn quote(self, ident: &str) -> String {
        match self {
            Dialect::Mysql => format!("`{}`", ident.replace('`', "``")),
            _ => format!("\"{}\"", ident.replace('"', "\"\"")),
        }
    }
}

/// A whole schema (or the included part of it), tables sorted by name.
#[derive(Debug, Clone, Serialize)]
pub struct Schema {
    pub dialect: Dialect,
    pub tables: Vec<Table>,
}

impl Schema {
    /// Looks a table up by its qualified name (`schema.table`).
    pub fn table(&self, qualified: &str) -> Option<&Table> {
        self.tables.iter().find(|t| t.qualified() == qualified)
    }

    /// Whether the tables span more than one schema (then names show it).
    pub fn many_schemas(&self) -> bool {
        self.tables
            .first()
            .is_some_and(|first| self.tables.iter().any(|t| t.schema != first.schema))
    }

    /// A table's name as reports show it: qualified only when needed.
    pub fn shown(&self, schema: &str, name: &str) -> String {
        if self.many_schemas() {
            format!("{schema}.{name}")
        } else {
            name.to_owned()
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Table {
    /// The PostgreSQL schema, the MySQL database, or `main` for SQLite.
    pub schema: String,
    pub name: String,
    pub columns: Vec<Column>,
    /// Primary-key columns in key order; empty when there is none.
    pub primary_key: Vec<String>,
    /// Unique constraints, each its columns in order.
    pub uniques: Vec<Vec<String>>,
    pub foreign_keys: Vec<ForeignKey>,
    pub indexes: Vec<Index>,
    /// The catalogue's estimate of its rows (a count for SQLite).
    pub rows: Option<i64>,
    /// MySQL's storage engine, when it matters (MyISAM does not enforce keys).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub engine: Option<String>,
}

impl Table {
    pub fn qualified(&self) -> String {
        format!("{}.{}", self.schema, self.name)
    }

    pub fn column(&self, name: &str) -> Option<&Column> {
        self.columns
            .iter()
            .find(|c| c.name.eq_ignore_ascii_case(name))
    }

    /// Whether `columns` are exactly the primary key or a unique constraint (or
    /// a unique, non-partial index), in any order.
    pub fn is_unique_key(&self, columns: &[String]) -> bool {
        let same = |key: &[String]| {
            key.len() == columns.len()
                && key
                    .iter()
                    .all(|k| columns.iter().any(|c| c.eq_ignore_ascii_case(k)))
        };
        same(&self.primary_key)
            || self.uniques.iter().any(|u| same(u))
            || self
                .indexes
                .iter()
                .any(|i| i.unique && !i.partial && i.valid && same(&i.columns))
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Column {
    pub name: String,
    /// The declared type as the catalogue spells it (`integer`, `bigint`,
    /// `varchar(20)`, `int(11) unsigned`).
    pub data_type: String,
    pub nullable: bool,
}

/// What a foreign key does when its parent row is deleted or updated.
#[derive(Debug, Clone, Serialize)]
pub struct ForeignKey {
    pub name: String,
    pub columns: Vec<String>,
    pub ref_schema: String,
    pub ref_table: String,
    pub ref_columns: Vec<String>,
    /// `CASCADE`, `SET NULL`, `SET DEFAULT`, `RESTRICT` or `NO ACTION`.
    pub on_delete: String,
    pub on_update: String,
    pub enforcement: Enforcement,
}

/// Whether the database enforces a declared foreign key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Enforcement {
    /// Checked on every write, and every existing row was checked.
    Enforced,
    /// PostgreSQL `NOT VALID`: new rows are checked, existing ones never were.
    NotValid,
    /// SQLite: checked only on connections that run `PRAGMA foreign_keys = ON`.
    PerConnection,
    /// Not checked at all (a MyISAM table, a constraint declared `NOT ENFORCED`).
    NotEnforced,
}

impl Enforcement {
    pub fn as_str(self) -> &'static str {
        match self {
            Enforcement::Enforced => "yes",
            Enforcement::NotValid => "not valid",
            Enforcement::PerConnection => "if pragma",
            Enforcement::NotEnforced => "no",
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Index {
    pub name: String,
    /// Key columns in order; an expression key appears as its text.
    pub columns: Vec<String>,
    pub unique: bool,
    /// Has a `WHERE` clause: it covers only some rows.
    pub partial: bool,
    /// Some key is an expression rather than a plain column.
    pub expression: bool,
    /// Usable (PostgreSQL marks an index invalid while or after a failed
    /// `CREATE INDEX CONCURRENTLY`).
    pub valid: bool,
}

impl Index {
    /// Whether this index serves lookups by `columns`: valid, not partial, and
    /// its leading keys are those columns (in any order among themselves).
    pub fn covers(&self, columns: &[String]) -> bool {
        self.valid
            && !self.partial
            && self.columns.len() >= columns.len()
            && self.columns[..columns.len()]
                .iter()
                .all(|k| columns.iter().any(|c| c.eq_ignore_ascii_case(k)))
    }
}
