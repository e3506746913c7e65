//! Relationships a trace shows: the column pairs its statements join on
//! (`JOIN customers c ON c.id = o.customer_id`, or the same equality in a
//! WHERE), with aliases resolved to tables, read with sqlparser's visitor.

use std::collections::{BTreeMap, BTreeSet};
use std::ops::ControlFlow;

use sqlparser::ast::{BinaryOperator, Expr, ObjectNamePart, TableFactor, Visit, Visitor};
use sqlparser::dialect::{Dialect, GenericDialect, MySqlDialect, PostgreSqlDialect, SQLiteDialect};
use sqlparser::parser::Parser;

use super::relations::JoinPair;

/// The `table.column = table.column` pairs of one statement, each pair in a
/// fixed order (the smaller side first), tables and columns lowercased.
pub fn join_pairs(sql: &str) -> Vec<JoinPair> {
    let dialects: [&dyn Dialect; 4] = [
        &PostgreSqlDialect {},
        &MySqlDialect {},
        &SQLiteDialect {},
        &GenericDialect {},
    ];
    let Some(statements) = dialects
        .iter()
        .find_map(|d| Parser::parse_sql(*d, sql).ok())
    else {
        return Vec::new();
    };
    let mut v = Collector::default();
    let _ = statements.visit(&mut v);
    let resolve = |qualifier: &str| -> Option<String> {
        v.aliases.get(qualifier).cloned().or_else(|| {
            v.tables
                .iter()
                .find(|t| *t == qualifier || t.rsplit('.').next() == Some(qualifier))
                .cloned()
        })
    };
    let mut out = BTreeSet::new();
    for ((qa, ca), (qb, cb)) in v.equalities {
        let (Some(ta), Some(tb)) = (resolve(&qa), resolve(&qb)) else {
            continue;
        };
        if ta == tb {
            continue;
        }
        let a = (ta, ca);
        let b = (tb, cb);
        out.insert(if a <= b { (a, b) } else { (b, a) });
    }
    out.into_iter().collect()
}

#[derive(Default)]
struct Collector {
    /// Alias → table.
    aliases: BTreeMap<String, String>,
    tables: Vec<String>,
    /// (qualifier, column) pairs compared with `=`.
    equalities: Vec<((String, String), (String, String))>,
}

fn name_of(parts: &[ObjectNamePart]) -> String {
    parts
        .iter()
        .map(|p| match p {
            ObjectNamePart::Identifier(i) => i.value.to_lowercase(),
            ObjectNamePart::Function(_) => p.to_string().to_lowercase(),
        })
        .collect::<Vec<_>>()
        .join(".")
}

fn qualified_column(expr: &Expr) -> Option<(String, String)> {
    match expr {
        Expr::CompoundIdentifier(parts) if parts.len() >= 2 => {
            let column = parts[parts.len() - 1].value.to_lowercase();
            let qualifier = parts[..parts.len() - 1]
                .iter()
                .map(|p| p.value.to_lowercase())
                .collect::<Vec<_>>()
                .join(".");
            Some((qualifier, column))
        }
        Expr::Nested(inner) => qualified_column(inner),
        _ => None,
    }
}

impl Visitor for Collector {
    type Break = ();

    fn pre_visit_table_factor(&mut self, factor: &TableFactor) -> ControlFlow<()> {
        if let TableFactor::Table { name, alias, .. } = factor {
            let table = name_of(&name.0);
            if let Some(alias) = alias {
                self.aliases
                    .insert(alias.name.value.to_lowercase(), table.clone());
            }
            self.tables.push(table);
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_expr(&mut self, expr: &Expr) -> ControlFlow<()> {
        if let Expr::BinaryOp {
            left,
            op: BinaryOperator::Eq,
            right,
        } = expr
            && let (Some(a), Some(b)) = (qualified_column(left), qualified_column(right))
        {
            self.equalities.push((a, b));
        }
        ControlFlow::Continue(())
    }
}

#[cfg(test)]
mod tests {
    use super::join_pairs;

    fn pair(a: (&str, &str), b: (&str, &str)) -> super::JoinPair {
        (
            (a.0.to_owned(), a.1.to_owned()),
            (b.0.to_owned(), b.1.to_owned()),
        )
    }

    #[test]
    fn resolves_aliases_in_joins_and_wheres() {
        assert_eq!(
            join_pairs(
                "SELECT o.id FROM orders o JOIN customers AS c ON c.id = o.customer_id \
                 WHERE o.total > 5"
            ),
            vec![pair(("customers", "id"), ("orders", "customer_id"))]
        );
        assert_eq!(
            join_pairs("select * from ledger, accounts where ledger.acct = accounts.id"),
            vec![pair(("accounts", "id"), ("ledger", "acct"))]
        );
        assert_eq!(
            join_pairs("SELECT * FROM public.a JOIN b ON a.x = b.y"),
            vec![pair(("b", "y"), ("public.a", "x"))]
        );
    }

    #[test]
    fn ignores_literals_self_joins_and_unparsable_sql() {
        assert!(join_pairs("SELECT * FROM orders o WHERE o.id = 5").is_empty());
        assert!(join_pairs("SELECT * FROM t a JOIN t b ON a.x = b.y").is_empty());
        assert!(join_pairs("this is not sql").is_empty());
    }
}
