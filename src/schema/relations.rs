//! Relationships between tables: the declared foreign keys, and the ones a
//! schema only implies — a column named after another table (`customer_id`
//! → `customers.id`, `customerId`, `category_id` → `categories`), or two
//! columns a trace joins on.

use std::collections::BTreeSet;

use serde::Serialize;

use super::model::{Enforcement, Schema, Table};

/// Where a relationship comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Origin {
    /// A foreign-key constraint.
    Declared,
    /// A column named after the parent table.
    Naming,
    /// A JOIN condition seen in a trace.
    Trace,
}

/// One child → parent relationship, declared or implied.
#[derive(Debug, Clone, Serialize)]
pub struct Relationship {
    pub origin: Origin,
    /// The constraint's name, when declared.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub constraint: Option<String>,
    /// Qualified child table (`schema.table`).
    pub child: String,
    pub columns: Vec<String>,
    /// Qualified parent table.
    pub parent: String,
    pub parent_columns: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub on_delete: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub on_update: Option<String>,
    /// A valid, non-partial index (or the primary key) starts with the columns.
    pub indexed: bool,
    /// Some child column accepts NULL.
    pub nullable: bool,
    /// `None` for implied relationships: nothing enforces them.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub enforcement: Option<Enforcement>,
}

impl Relationship {
    /// Whether existing rows may break it: implied, or declared but not
    /// enforced on every row.
    pub fn unchecked(&self) -> bool {
        self.enforcement != Some(Enforcement::Enforced)
    }

    /// `orders(customer_id) → customers(id)`, with names as the schema shows them.
    pub fn describe(&self, schema: &Schema) -> String {
        format!(
            "{}({}) → {}({})",
            shown(schema, &self.child),
            self.columns.join(", "),
            shown(schema, &self.parent),
            self.parent_columns.join(", ")
        )
    }
}

/// A qualified name as reports show it.
pub fn shown(schema: &Schema, qualified: &str) -> String {
    match qualified.split_once('.') {
        Some((s, t)) => schema.shown(s, t),
        None => qualified.to_owned(),
    }
}

/// Whether an index or the primary key of `table` starts with `columns`.
pub fn indexed(table: &Table, columns: &[String]) -> bool {
    let leading = |key: &[String]| {
        key.len() >= columns.len()
            && key[..columns.len()]
                .iter()
                .all(|k| columns.iter().any(|c| c.eq_ignore_ascii_case(k)))
    };
    (!table.primary_key.is_empty() && leading(&table.primary_key))
        || table.indexes.iter().any(|i| i.covers(columns))
}

/// A pair of columns a trace joined on: (`table`, `column`) each, lowercased.
pub type JoinPair = ((String, String), (String, String));

/// Every relationship: declared ones first, then the implied ones no
/// constraint covers, sorted by child, columns and parent.
pub fn relationships(schema: &Schema, joins: &[JoinPair]) -> Vec<Relationship> {
    let mut out = Vec::new();
    for table in &schema.tables {
        for fk in &table.foreign_keys {
            out.push(Relationship {
                origin: Origin::Declared,
                constraint: Some(fk.name.clone()),
                child: table.qualified(),
                columns: fk.columns.clone(),
                parent: format!("{}.{}", fk.ref_schema, fk.ref_table),
                parent_columns: fk.ref_columns.clone(),
                on_delete: Some(fk.on_delete.clone()),
                on_update: Some(fk.on_update.clone()),
                indexed: indexed(table, &fk.columns),
                nullable: nullable(table, &fk.columns),
                enforcement: Some(fk.enforcement),
            });
        }
    }
    let mut seen: BTreeSet<(String, String)> = out
        .iter()
        .flat_map(|r| {
            r.columns
                .iter()
                .map(|c| (r.child.clone(), c.to_lowercase()))
        })
        .collect();

    let mut implied = Vec::new();
    for table in &schema.tables {
        for column in &table.columns {
            if seen.contains(&(table.qualified(), column.name.to_lowercase())) {
                continue;
            }
            let Some(parent) = parent_by_name(schema, table, &column.name) else {
                continue;
            };
            seen.insert((table.qualified(), column.name.to_lowercase()));
            implied.push(implied_relationship(
                Origin::Naming,
                table,
                &column.name,
                parent,
                &parent.primary_key[0],
            ));
        }
    }
    for ((t1, c1), (t2, c2)) in joins {
        let (Some(a), Some(b)) = (find_table(schema, t1), find_table(schema, t2)) else {
            continue;
        };
        let (Some(ca), Some(cb)) = (a.column(c1), b.column(c2)) else {
            continue;
        };
        let a_key = a.is_unique_key(std::slice::from_ref(&ca.name));
        let b_key = b.is_unique_key(std::slice::from_ref(&cb.name));
        // The side whose column is a key is the parent; when both or neither
        // are, the direction is unknown and nothing is implied.
        let (child, cc, parent, pc) = match (a_key, b_key) {
            (false, true) => (a, &ca.name, b, &cb.name),
            (true, false) => (b, &cb.name, a, &ca.name),
            _ => continue,
        };
        if !seen.insert((child.qualified(), cc.to_lowercase())) {
            continue;
        }
        implied.push(implied_relationship(Origin::Trace, child, cc, parent, pc));
    }
    implied
        .sort_by(|a, b| (&a.child, &a.columns, &a.parent).cmp(&(&b.child, &b.columns, &b.parent)));
    out.sort_by(|a, b| (&a.child, &a.columns, &a.parent).cmp(&(&b.child, &b.columns, &b.parent)));
    out.extend(implied);
    out
}

fn implied_relationship(
    origin: Origin,
    child: &Table,
    column: &str,
    parent: &Table,
    parent_column: &str,
) -> Relationship {
    let columns = vec![column.to_owned()];
    Relationship {
        origin,
        constraint: None,
        child: child.qualified(),
        indexed: indexed(child, &columns),
        nullable: nullable(child, &columns),
        columns,
        parent: parent.qualified(),
        parent_columns: vec![parent_column.to_owned()],
        on_delete: None,
        on_update: None,
        enforcement: None,
    }
}

fn nullable(table: &Table, columns: &[String]) -> bool {
    columns
        .iter()
        .any(|c| table.column(c).is_none_or(|col| col.nullable))
}

/// A table by its name as a trace wrote it: `orders` or `public.orders`.
fn find_table<'a>(schema: &'a Schema, name: &str) -> Option<&'a Table> {
    schema
        .tables
        .iter()
        .find(|t| t.qualified().eq_ignore_ascii_case(name) || t.name.eq_ignore_ascii_case(name))
}

/// The table a column's name points at: `customer_id`, `customerId`,
/// `CustomerID` → `customer(s)`, `category_id` → `categories`. The parent
/// needs a one-column primary key; a table's own key never points at itself.
pub fn parent_by_name<'a>(schema: &'a Schema, table: &Table, column: &str) -> Option<&'a Table> {
    let stem = id_stem(column)?;
    let candidates = plural_forms(&stem);
    let matching = |t: &&Table| {
        t.primary_key.len() == 1
            && candidates.contains(&normalise(&t.name))
            && !(t.qualified() == table.qualified()
                && table
                    .primary_key
                    .iter()
                    .any(|k| k.eq_ignore_ascii_case(column)))
    };
    // The same schema first, then a single match elsewhere.
    let here: Vec<&Table> = schema
        .tables
        .iter()
        .filter(|t| t.schema == table.schema)
        .filter(matching)
        .collect();
    if let [one] = here[..] {
        return Some(one);
    }
    let anywhere: Vec<&Table> = schema.tables.iter().filter(matching).collect();
    match anywhere[..] {
        [one] => Some(one),
        _ => None,
    }
}

/// The part of an `…_id` / `…Id` / `…ID` column before the suffix, normalised
/// (lowercase, no underscores); `None` for other names and a bare `id`.
fn id_stem(column: &str) -> Option<String> {
    let stem = if let Some(s) = column
        .strip_suffix("_id")
        .or_else(|| column.strip_suffix("_ID"))
        .or_else(|| column.strip_suffix("_Id"))
    {
        s
    } else if let Some(s) = column
        .strip_suffix("Id")
        .or_else(|| column.strip_suffix("ID"))
    {
        // camelCase: the letter before the suffix must be lowercase or a digit
        // (`customerId`, `CustomerID`), so that `paid` or `void` do not count.
        if !s
            .chars()
            .last()
            .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
        {
            return None;
        }
        s
    } else {
        return None;
    };
    let stem = normalise(stem);
    (!stem.is_empty()).then_some(stem)
}

fn normalise(name: &str) -> String {
    name.chars()
        .filter(|c| *c != '_')
        .flat_map(char::to_lowercase)
        .collect()
}

/// The names a table for `stem` may have: singular and English plurals.
fn plural_forms(stem: &str) -> Vec<String> {
    let mut forms = vec![stem.to_owned(), format!("{stem}s"), format!("{stem}es")];
    if let Some(base) = stem.strip_suffix('y') {
        forms.push(format!("{base}ies"));
    }
    if let Some(base) = stem.strip_suffix('s') {
        forms.push(base.to_owned());
    }
    forms
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::schema::model::{Column, Dialect};

    fn table(name: &str, columns: &[&str], pk: &[&str]) -> Table {
        Table {
            schema: "public".into(),
            name: name.into(),
            columns: columns
                .iter()
                .map(|c| Column {
                    name: (*c).into(),
                    data_type: "integer".into(),
                    nullable: false,
                })
                .collect(),
            primary_key: pk.iter().map(|c| (*c).to_owned()).collect(),
            uniques: vec![],
            foreign_keys: vec![],
            indexes: vec![],
            rows: None,
            engine: None,
        }
    }

    fn schema(tables: Vec<Table>) -> Schema {
        Schema {
            dialect: Dialect::Postgres,
            tables,
        }
    }

    #[test]
    fn names_point_at_tables_in_their_forms() {
        let s = schema(vec![
            table("customers", &["id"], &["id"]),
            table("category", &["id"], &["id"]),
            table("OrderItems", &["id"], &["id"]),
            table("boxes", &["id"], &["id"]),
            table("people", &["person_id"], &["person_id"]),
            table("t", &["x"], &[]),
        ]);
        let t = &s.tables[5];
        let parent = |c: &str| parent_by_name(&s, t, c).map(|p| p.name.clone());
        assert_eq!(parent("customer_id").as_deref(), Some("customers"));
        assert_eq!(parent("customerId").as_deref(), Some("customers"));
        assert_eq!(parent("CustomerID").as_deref(), Some("customers"));
        assert_eq!(parent("customers_id").as_deref(), Some("customers"));
        assert_eq!(parent("category_id").as_deref(), Some("category"));
        assert_eq!(parent("order_item_id").as_deref(), Some("OrderItems"));
        assert_eq!(parent("box_id").as_deref(), Some("boxes"));
        assert_eq!(parent("id"), None);
        assert_eq!(parent("paid"), None);
        assert_eq!(parent("supplier_id"), None);
        // A table's own key does not point at itself.
        assert!(parent_by_name(&s, &s.tables[4], "person_id").is_none());
    }

    #[test]
    fn joins_imply_the_direction_from_the_key() {
        let s = schema(vec![
            table("accounts", &["id"], &["id"]),
            table("ledger", &["id", "acct"], &["id"]),
        ]);
        let join = (
            ("ledger".to_owned(), "acct".to_owned()),
            ("accounts".to_owned(), "id".to_owned()),
        );
        let r = relationships(&s, std::slice::from_ref(&join));
        assert_eq!(r.len(), 1);
        assert_eq!(r[0].origin, Origin::Trace);
        assert_eq!(r[0].describe(&s), "ledger(acct) → accounts(id)");
        assert!(!r[0].indexed);
        // Reversed, the same.
        let r = relationships(&s, &[(join.1, join.0)]);
        assert_eq!(r[0].child, "public.ledger");
        // Key to key says nothing.
        let r = relationships(
            &s,
            &[(
                ("ledger".into(), "id".into()),
                ("accounts".into(), "id".into()),
            )],
        );
        assert!(r.is_empty());
    }
}
