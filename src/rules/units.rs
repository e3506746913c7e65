//! What the transaction rules share: the dialect a statement ran on, the
//! *unit of work* each statement belonged to (an explicit transaction, or
//! autocommit), how each unit ended, and what an UPDATE or a SELECT keyed
//! on.
//!
//! # Dialects
//!
//! The dialect comes from each event's `source`: `mysql-log` (and `mysql`,
//! `mariadb`) is MySQL/InnoDB, `sqlite` is SQLite, anything else
//! (`proxy`, `pg-log`, `postgres`, `trace`, none) is PostgreSQL. They differ
//! where it matters here:
//!
//! - PostgreSQL: after an error the transaction is aborted; a COMMIT then
//!   rolls it back (its command tag says ROLLBACK) and nothing of it is kept.
//!   `ROLLBACK TO SAVEPOINT` recovers.
//! - MySQL/InnoDB: an error undoes only the failed statement; a COMMIT after
//!   it keeps every earlier write. DDL commits an open transaction implicitly
//!   (MySQL manual, 15.3.3 "Statements That Cause an Implicit Commit"; not
//!   `CREATE/DROP TEMPORARY TABLE`), so the statements after it run in
//!   autocommit.
//! - SQLite: most errors (constraints, run-time errors) undo only the failed
//!   statement, as in MySQL.

use foldhash::HashMap;

use sqlparser::ast::{
    BinaryOperator, Expr, SetExpr, Statement as Ast, TableFactor, Value, visit_expressions,
};
use sqlparser::dialect::{GenericDialect, MySqlDialect, PostgreSqlDialect, SQLiteDialect};
use sqlparser::parser::Parser;

use super::Statement;
use crate::attribute::TxnOp;
use crate::fingerprint::StatementKind;
use crate::model::{Event, TxnStatus};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    Postgres,
    MySql,
    Sqlite,
}

impl Dialect {
    pub fn of(event: &Event) -> Self {
        match event.source.as_deref() {
            Some("mysql-log" | "mysql" | "mariadb") => Dialect::MySql,
            Some("sqlite") => Dialect::Sqlite,
            _ => Dialect::Postgres,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Dialect::Postgres => "PostgreSQL",
            Dialect::MySql => "MySQL",
            Dialect::Sqlite => "SQLite",
        }
    }
}

/// Whether the statement failed, as far as the source said.
pub fn failed(event: &Event) -> bool {
    event.error.is_some()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Committed,
    RolledBack,
}

#[derive(Debug, Clone)]
pub struct Unit {
    pub id: u64,
    /// The audit's transaction id the unit follows.
    txn: u64,
    /// The first failed statement in it, not recovered by ROLLBACK TO.
    pub failed: Option<u64>,
    /// The example of that failed statement.
    pub failed_example: Option<String>,
    /// Step (index) and its key where the unit began.
    pub step: usize,
    pub flow_step: (String, String),
}

/// A unit that ended, and how.
#[derive(Debug, Clone)]
pub struct Ended {
    pub unit: Unit,
    pub outcome: Outcome,
    /// The COMMIT that found the unit failed (for `commit-after-error`).
    pub commit_after_error: bool,
}

/// What the tracker says of one statement.
#[derive(Debug, Default)]
pub struct Seen {
    /// The unit the statement ran in; `None` in autocommit.
    pub unit: Option<u64>,
    /// Units that ended at this statement or just before it.
    pub ended: Vec<Ended>,
}

/// Follows units of work per connection.
#[derive(Debug, Default)]
pub struct Tracker {
    open: HashMap<u64, Unit>,
    /// Per connection: an audit transaction that MySQL committed implicitly
    /// (DDL); its later statements run in autocommit.
    implicitly_done: HashMap<u64, u64>,
    next: u64,
}

impl Tracker {
    pub fn observe(&mut self, s: &Statement<'_>) -> Seen {
        let dialect = Dialect::of(s.event);
        let mut seen = Seen::default();
        // The audit's transaction changed under an open unit: it ended without
        // COMMIT or ROLLBACK of its own (the source's status went idle).
        if let Some(unit) = self.open.get(&s.conn)
            && s.txn != Some(unit.txn)
            && let Some(unit) = self.open.remove(&s.conn)
        {
            seen.ended.push(Ended {
                outcome: if unit.failed.is_some() && dialect == Dialect::Postgres {
                    Outcome::RolledBack
                } else {
                    Outcome::Committed
                },
                unit,
                commit_after_error: false,
            });
        }
        let Some(txn) = s.txn else {
            self.implicitly_done.remove(&s.conn);
            return seen;
        };
        if self.implicitly_done.get(&s.conn) == Some(&txn) {
            return seen;
        }
        let unit = self.open.entry(s.conn).or_insert_with(|| {
            self.next += 1;
            Unit {
                id: self.next,
                txn,
                failed: None,
                failed_example: None,
                step: s.step,
                flow_step: (s.key.flow.clone(), s.key.step.clone()),
            }
        });
        seen.unit = Some(unit.id);
        let is_failed = failed(s.event) || s.event.txn == Some(TxnStatus::Failed);
        match s.txn_op {
            Some(TxnOp::Commit) => {
                let after_error = unit.failed.is_some();
                let outcome = if failed(s.event) || (after_error && dialect == Dialect::Postgres) {
                    Outcome::RolledBack
                } else {
                    Outcome::Committed
                };
                if let Some(unit) = self.open.remove(&s.conn) {
                    seen.ended.push(Ended {
                        unit,
                        outcome,
                        commit_after_error: after_error,
                    });
                }
            }
            Some(TxnOp::Rollback) => {
                if let Some(unit) = self.open.remove(&s.conn) {
                    seen.ended.push(Ended {
                        unit,
                        outcome: Outcome::RolledBack,
                        commit_after_error: false,
                    });
                }
            }
            Some(TxnOp::Savepoint) if s.fingerprint.text.starts_with("rollback") => {
                unit.failed = None;
                unit.failed_example = None;
            }
            _ => {
                if is_failed && unit.failed.is_none() {
                    unit.failed = Some(s.seq);
                    unit.failed_example = Some(s.example());
                }
                if dialect == Dialect::MySql
                    && s.fingerprint.kind == StatementKind::Ddl
                    && !s.fingerprint.text.contains(" temporary ")
                {
                    // The DDL commits what came before it and runs on its own.
                    if let Some(unit) = self.open.remove(&s.conn) {
                        seen.ended.push(Ended {
                            unit,
                            outcome: Outcome::Committed,
                            commit_after_error: false,
                        });
                    }
                    self.implicitly_done.insert(s.conn, txn);
                    seen.unit = None;
                }
            }
        }
        seen
    }

    /// Units still open at the end of the trace.
    pub fn finish(&mut self) -> Vec<Unit> {
        let mut open: Vec<Unit> = self.open.drain().map(|(_, u)| u).collect();
        open.sort_by_key(|u| u.id);
        open
    }
}

/// A finding about a step, as the transaction rules make them.
pub fn step_finding(
    meta: &super::RuleMeta,
    severity: crate::model::Severity,
    flow_step: &(String, String),
    message: String,
    count: u64,
    examples: Vec<String>,
    help: &str,
) -> crate::model::Finding {
    crate::model::Finding {
        rule: meta.id,
        severity,
        flow: flow_step.0.clone(),
        step: flow_step.1.clone(),
        message,
        fingerprint: None,
        fingerprint_hash: None,
        count,
        examples,
        help: help.to_owned(),
    }
}

/// The finding about one statement's fingerprint.
pub fn fingerprinted(
    mut finding: crate::model::Finding,
    text: &str,
    hash: u64,
) -> crate::model::Finding {
    finding.fingerprint = Some(text.to_owned());
    finding.fingerprint_hash = Some(format!("{hash:016x}"));
    finding
}

/// The settings of a rule that takes none besides `enabled` and `severity`.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NoSettings {}

/// Most examples a finding lists.
pub const MAX_EXAMPLES: usize = 10;

/// A value in a key predicate or an assignment: a bind parameter (by index
/// into `params`) or a literal (by its text).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ValueRef {
    Param(usize),
    Literal(String),
}

impl ValueRef {
    pub fn resolve<'e>(&'e self, event: &'e Event) -> Option<&'e str> {
        match self {
            ValueRef::Param(i) => event.params.as_ref()?.get(*i)?.as_deref(),
            ValueRef::Literal(text) => Some(text),
        }
    }
}

/// What a statement reads or writes by key: `table`, `col = value` pairs of its
/// WHERE (only when the WHERE is nothing but such equalities joined by AND).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Keyed {
    pub table: String,
    pub keys: Vec<(String, ValueRef)>,
}

/// A SELECT that reads one table by key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyedRead {
    pub keyed: Keyed,
    /// `FOR UPDATE` / `FOR SHARE` (or any lock clause).
    pub locked: bool,
}

/// An UPDATE by key that sets columns to values the application computed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyedWrite {
    pub keyed: Keyed,
    /// Every assignment is a plain value (no column on its right side).
    pub absolute: bool,
}

/// What `UPDATE`/`DELETE` statements lack a WHERE: `Some(true)` when it has
/// none, `None` when the statement does not parse.
pub fn lacks_where(sql: &str) -> Option<bool> {
    let ast = parse(sql)?;
    Some(match ast.first()? {
        Ast::Update(u) => u.selection.is_none(),
        Ast::Delete(d) => d.selection.is_none(),
        _ => false,
    })
}

fn parse(sql: &str) -> Option<Vec<Ast>> {
    let sql = crate::attribute::strip_tags(sql);
    Parser::parse_sql(&PostgreSqlDialect {}, sql)
        .or_else(|_| Parser::parse_sql(&MySqlDialect {}, sql))
        .or_else(|_| Parser::parse_sql(&SQLiteDialect {}, sql))
        .or_else(|_| Parser::parse_sql(&GenericDialect {}, sql))
        .ok()
}

/// Numbers the placeholders of a statement in the order they appear: `?` in
/// turn, `$n` / `?n` by their number.
struct Placeholders {
    next: usize,
}

impl Placeholders {
    fn value(&mut self, expr: &Expr) -> Option<ValueRef> {
        let Expr::Value(v) = expr else { return None };
        Some(match &v.value {
            Value::Placeholder(p) => {
                let digits = p.trim_start_matches(['$', '?', ':']);
                match digits.parse::<usize>() {
                    Ok(n) if n >= 1 => ValueRef::Param(n - 1),
                    _ => {
                        let i = self.next;
                        self.next += 1;
                        ValueRef::Param(i)
                    }
                }
            }
            Value::Number(n, _) => ValueRef::Literal(n.clone()),
            Value::SingleQuotedString(s) => ValueRef::Literal(s.clone()),
            _ => return None,
        })
    }
}

fn column(expr: &Expr) -> Option<String> {
    match expr {
        Expr::Identifier(i) => Some(i.value.to_ascii_lowercase()),
        Expr::CompoundIdentifier(parts) => parts.last().map(|i| i.value.to_ascii_lowercase()),
        _ => None,
    }
}

/// The `col = value` pairs of a WHERE made only of them and AND.
fn keys(expr: &Expr, ph: &mut Placeholders, out: &mut Vec<(String, ValueRef)>) -> bool {
    match expr {
        Expr::BinaryOp {
            left,
            op: BinaryOperator::And,
            right,
        } => keys(left, ph, out) && keys(right, ph, out),
        Expr::BinaryOp {
            left,
            op: BinaryOperator::Eq,
            right,
        } => {
            let (Some(col), Some(v)) = (column(left), ph.value(right)) else {
                return false;
            };
            out.push((col, v));
            true
        }
        Expr::Nested(inner) => keys(inner, ph, out),
        _ => false,
    }
}

fn table_name(factor: &TableFactor) -> Option<String> {
    match factor {
        TableFactor::Table { name, .. } => name
            .0
            .last()
            .map(|p| p.to_string().trim_matches(['"', '`']).to_ascii_lowercase()),
        _ => None,
    }
}

/// Placeholders in expressions before the WHERE, counted so that the WHERE's
/// `?` get their right index.
fn count_anonymous(expr: &Expr) -> usize {
    let mut n = 0;
    let _ = visit_expressions(expr, |e: &Expr| {
        if let Expr::Value(v) = e
            && let Value::Placeholder(p) = &v.value
            && p.trim_start_matches(['$', '?', ':'])
                .parse::<usize>()
                .is_err()
        {
            n += 1;
        }
        std::ops::ControlFlow::<()>::Continue(())
    });
    n
}

/// A SELECT of one table whose WHERE is key equalities.
pub fn keyed_read(sql: &str) -> Option<KeyedRead> {
    let ast = parse(sql)?;
    let Ast::Query(q) = ast.first()? else {
        return None;
    };
    let SetExpr::Select(select) = q.body.as_ref() else {
        return None;
    };
    if select.from.len() != 1 || !select.from[0].joins.is_empty() {
        return None;
    }
    let table = table_name(&select.from[0].relation)?;
    let mut ph = Placeholders { next: 0 };
    for item in &select.projection {
        if let sqlparser::ast::SelectItem::UnnamedExpr(e)
        | sqlparser::ast::SelectItem::ExprWithAlias { expr: e, .. } = item
        {
            ph.next += count_anonymous(e);
        }
    }
    let mut out = Vec::new();
    if !keys(select.selection.as_ref()?, &mut ph, &mut out) {
        return None;
    }
    Some(KeyedRead {
        keyed: Keyed { table, keys: out },
        locked: !q.locks.is_empty(),
    })
}

/// An UPDATE of one table whose WHERE is key equalities (no guard).
pub fn keyed_write(sql: &str) -> Option<KeyedWrite> {
    let ast = parse(sql)?;
    let Ast::Update(u) = ast.first()? else {
        return None;
    };
    if !u.table.joins.is_empty() || u.from.is_some() {
        return None;
    }
    let table = table_name(&u.table.relation)?;
    let mut ph = Placeholders { next: 0 };
    let mut absolute = true;
    for a in &u.assignments {
        let mut refers_to_column = false;
        let _ = visit_expressions(&a.value, |e: &Expr| {
            if column(e).is_some() {
                refers_to_column = true;
            }
            std::ops::ControlFlow::<()>::Continue(())
        });
        absolute &= !refers_to_column;
        ph.next += count_anonymous(&a.value);
    }
    let mut out = Vec::new();
    if !keys(u.selection.as_ref()?, &mut ph, &mut out) {
        return None;
    }
    Some(KeyedWrite {
        keyed: Keyed { table, keys: out },
        absolute,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_and_writes_by_key() {
        let r = keyed_read("SELECT inventory.stock FROM inventory WHERE inventory.product_id = ?")
            .expect("keyed");
        assert_eq!(r.keyed.table, "inventory");
        assert_eq!(
            r.keyed.keys,
            vec![("product_id".to_owned(), ValueRef::Param(0))]
        );
        assert!(!r.locked);
        let r = keyed_read("select stock from inventory where product_id = $1 for update")
            .expect("keyed");
        assert!(r.locked);
        let w = keyed_write("UPDATE inventory SET stock = ? WHERE product_id = ?").expect("keyed");
        assert!(w.absolute);
        assert_eq!(
            w.keyed.keys,
            vec![("product_id".to_owned(), ValueRef::Param(1))]
        );
        let w = keyed_write("UPDATE inventory SET stock = stock - ? WHERE product_id = ?")
            .expect("keyed");
        assert!(!w.absolute);
        assert!(
            keyed_write("UPDATE inventory SET stock = ? WHERE product_id = ? AND stock >= ?")
                .is_none(),
            "a guard predicate is not a bare key"
        );
        let w = keyed_write("update accounts set balance = 90 where id = 7").expect("keyed");
        assert_eq!(w.keyed.keys[0].1, ValueRef::Literal("7".into()));
    }

    #[test]
    fn where_or_not() {
        assert_eq!(lacks_where("DELETE FROM cart_items"), Some(true));
        assert_eq!(lacks_where("update t set a = 1 where id = 2"), Some(false));
        assert_eq!(
            lacks_where("UPDATE t SET a = (SELECT b FROM u WHERE u.id = 1)"),
            Some(true)
        );
        assert_eq!(lacks_where("select 1"), Some(false));
    }
}
