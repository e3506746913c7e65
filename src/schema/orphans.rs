//! Counts the child rows whose parent is missing, for every relationship the
//! database does not check on every row (implied ones; declared ones that are
//! `NOT VALID`, unenforced, or SQLite's, enforced per connection). The
//! queries (`sql/orphans/*.sql`) run on the review's read-only, time-bounded
//! connection; a child table estimated above the limit is skipped with a note.

use serde::Serialize;

use super::SchemaError;
use super::introspect::Conn;
use super::model::{Dialect, Schema};
use super::relations::Relationship;

const COUNT: &str = include_str!("../../sql/orphans/count.sql");
const SAMPLE: &str = include_str!("../../sql/orphans/sample.sql");

/// How far the orphan search goes.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Child tables estimated above this many rows are not searched.
    pub max_table_rows: i64,
    /// Rows shown per finding.
    pub sample_rows: usize,
}

/// What the search found for one relationship.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Outcome {
    /// Child rows whose parent is missing: their number and the first ones.
    Found { count: u64, sample: Vec<String> },
    /// Not searched, and why.
    Skipped { reason: String },
}

/// The outcome for `relationships[index]`.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    pub index: usize,
    pub outcome: Outcome,
}

/// Searches every unchecked relationship whose tables both exist.
pub async fn search(
    conn: &mut Conn,
    schema: &Schema,
    relationships: &[Relationship],
    wanted: impl Fn(&Relationship) -> bool,
    limits: Limits,
) -> Result<Vec<Check>, SchemaError> {
    let mut checks = Vec::new();
    for (index, r) in relationships.iter().enumerate() {
        if !r.unchecked() || !wanted(r) {
            continue;
        }
        let (Some(child), Some(parent)) = (schema.table(&r.child), schema.table(&r.parent)) else {
            continue;
        };
        if let Some(rows) = child.rows
            && rows > limits.max_table_rows
        {
            checks.push(Check {
                index,
                outcome: Outcome::Skipped {
                    reason: format!(
                        "{} has about {rows} rows, over the orphan-rows limit of {} \
                         (max_table_rows)",
                        super::relations::shown(schema, &r.child),
                        limits.max_table_rows
                    ),
                },
            });
            continue;
        }
        let d = schema.dialect;
        let text = match d {
            Dialect::Mysql => "CHAR",
            _ => "TEXT",
        };
        let as_text =
            |alias: &str, column: &str| format!("CAST({alias}.{} AS {text})", d.quote(column));
        let present = r
            .columns
            .iter()
            .map(|c| format!("c.{} IS NOT NULL", d.quote(c)))
            .collect::<Vec<_>>()
            .join(" AND ");
        let matches = r
            .columns
            .iter()
            .zip(&r.parent_columns)
            .map(|(c, p)| {
                let same_type = child
                    .column(c)
                    .zip(parent.column(p))
                    .is_some_and(|(a, b)| a.data_type.eq_ignore_ascii_case(&b.data_type));
                if same_type {
                    format!("p.{} = c.{}", d.quote(p), d.quote(c))
                } else {
                    format!("{} = {}", as_text("p", p), as_text("c", c))
                }
            })
            .collect::<Vec<_>>()
            .join(" AND ");
        let table_name = |qualified: &str| match (d, qualified.split_once('.')) {
            (Dialect::Sqlite, Some((_, t))) => d.quote(t),
            (_, Some((s, t))) => format!("{}.{}", d.quote(s), d.quote(t)),
            (_, None) => d.quote(qualified),
        };
        let fill = |template: &str| {
            template
                .replace("{child}", &table_name(&r.child))
                .replace("{parent}", &table_name(&r.parent))
                .replace("{present}", &present)
                .replace("{matches}", &matches)
                .replace("{text}", text)
        };
        let count: u64 = conn
            .scalar(&fill(COUNT))
            .await?
            .and_then(|n| n.parse().ok())
            .unwrap_or(0);
        let mut sample = Vec::new();
        if count > 0 {
            let mut shown: Vec<&String> = child.primary_key.iter().collect();
            for c in &r.columns {
                if !shown.iter().any(|s| s.eq_ignore_ascii_case(c)) {
                    shown.push(c);
                }
            }
            let order = shown
                .iter()
                .map(|c| format!("c.{}", d.quote(c)))
                .collect::<Vec<_>>()
                .join(", ");
            let sql = fill(SAMPLE)
                .replace(
                    "{shown}",
                    &shown
                        .iter()
                        .map(|c| as_text("c", c))
                        .collect::<Vec<_>>()
                        .join(", "),
                )
                .replace("{order}", &order)
                .replace("{limit}", &limits.sample_rows.to_string());
            for row in conn.rows(&sql).await? {
                let cells: Vec<String> = shown
                    .iter()
                    .zip(row)
                    .map(|(name, v)| format!("{name}={}", v.as_deref().unwrap_or("NULL")))
                    .collect();
                sample.push(cells.join(", "));
            }
        }
        checks.push(Check {
            index,
            outcome: Outcome::Found { count, sample },
        });
    }
    Ok(checks)
}
