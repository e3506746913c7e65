//! What the transaction rules share: the dialect a statement ran on, the
//! *unit of work* each statement belonged to (an explicit transaction, or
//! autocommit), how each unit ended, and what an UPDATE or a SELECT keyed
//! on.
//!
//! # Dialects
//!
//! The dialect comes from each event's `source`: `mysql-log`, `mysql-proxy`, `otlp-mysql` (and
//! `mysql`, `mariadb`) is MySQL/InnoDB, `sqlite` and `otlp-sqlite` are SQLite, anything else
//! (`proxy`, `pg-log`, `otlp`, `postgres`, `trace`, none) is PostgreSQL. They differ
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
            Some("mysql-log" | "mysql-proxy" | "mysql" | "mariadb" | "otlp-mysql") => {
                Dialect::MySql
            }
            Some("sqlite" | "otlp-sqlite") => Dialect::Sqlite,
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
    // A statement the proxy's own stop cut off did not fail in the
    // application (issue 13, defect 11).
    event.error.is_some() && !event.cut_by_stop
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

    /// Connection `conn` ended. A unit it left open stays: it is still
    /// open when the trace ends, which is what `open-transaction` reports.
    pub fn connection_closed(&mut self, conn: u64) {
        self.implicitly_done.remove(&conn);
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
        location: None,
        driver: None,
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

impl Keyed {
    /// The row the statement names, as a hash of its table and its key
    /// columns and values. The pairs' hashes are added, so that `a = ? AND
    /// b = ?` and `b = ? AND a = ?` name the same row. Runs on every keyed
    /// statement, so it neither allocates nor sorts; the hash only has to
    /// hold within one run. `None` when a value is not known (a placeholder
    /// without its parameter).
    pub fn row(&self, event: &Event) -> Option<u64> {
        use std::hash::BuildHasher;
        let state = foldhash::fast::FixedState::with_seed(0);
        let mut combined = state.hash_one(self.table.as_str());
        for (col, v) in &self.keys {
            combined = combined.wrapping_add(state.hash_one((col.as_str(), v.resolve(event)?)));
        }
        Some(combined)
    }
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
    /// The assignments whose value is a bind value or a literal (behind
    /// casts too): `SET stock = $1` gives `("stock", Param(0))`.
    pub sets: Vec<(String, ValueRef)>,
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
    let sql = numbered_placeholders(crate::attribute::strip_tags(sql));
    let sql = sql.as_ref();
    Parser::parse_sql(&PostgreSqlDialect {}, sql)
        .or_else(|_| Parser::parse_sql(&MySqlDialect {}, sql))
        .or_else(|_| Parser::parse_sql(&SQLiteDialect {}, sql))
        .or_else(|_| Parser::parse_sql(&GenericDialect {}, sql))
        .ok()
}

/// Writes `$n` for a placeholder: a name keeps the number of its first
/// appearance, anything else takes the next.
fn number<'a>(out: &mut String, name: Option<&'a str>, seen: &mut Vec<Option<&'a str>>) {
    let n = match name.and_then(|name| seen.iter().position(|x| *x == Some(name))) {
        Some(k) => k + 1,
        None => {
            seen.push(name);
            seen.len()
        }
    };
    out.push('$');
    out.push_str(&n.to_string());
}

/// The statement with the placeholders no parser reads, or reads one per
/// occurrence, rewritten as `$n`: psycopg's and Django's `%s` (and psycopg 3's
/// `%b`, `%t`) numbered in turn, `%(name)s` and SQLAlchemy's `:name` numbered
/// by name in order of first appearance (a name used twice is one parameter,
/// as psycopg binds it), `%%` back to `%`. Strings, quoted names, comments and
/// `::` casts are left alone, and so is `:name` after an operand (an array
/// slice, `a[lo:hi]`). Statements without such placeholders are returned as
/// they are. Issue 13, defect 4: SQLAlchemy with psycopg logs
/// `WHERE inventory.product_id = %(pk_1)s::BIGINT`.
fn numbered_placeholders(sql: &str) -> std::borrow::Cow<'_, str> {
    let b = sql.as_bytes();
    if !b.iter().any(|&c| c == b'%' || c == b':') {
        return sql.into();
    }
    let ident = |c: u8| c.is_ascii_alphanumeric() || c == b'_' || c >= 0x80;
    let mut out = String::with_capacity(sql.len() + 8);
    let mut seen: Vec<Option<&str>> = Vec::new();
    let mut changed = false;
    // The last byte outside blanks, to tell `= :id` from `a[lo:hi]`.
    let mut prev = b' ';
    let mut i = 0;
    let mut copied = 0;
    while i < b.len() {
        let c = b[i];
        let skip_to = match c {
            b'\'' | b'"' | b'`' => {
                let mut j = i + 1;
                while j < b.len() {
                    if b[j] == c {
                        if b.get(j + 1) == Some(&c) {
                            j += 2;
                            continue;
                        }
                        break;
                    }
                    j += 1;
                }
                Some(j + 1)
            }
            b'-' if b.get(i + 1) == Some(&b'-') => {
                Some(memchr::memchr(b'\n', &b[i..]).map_or(b.len(), |n| i + n))
            }
            b'/' if b.get(i + 1) == Some(&b'*') => {
                Some(memchr::memmem::find(&b[i + 2..], b"*/").map_or(b.len(), |n| i + 2 + n + 2))
            }
            b':' if b.get(i + 1) == Some(&b':') => Some(i + 2),
            _ => None,
        };
        if let Some(to) = skip_to {
            prev = c;
            i = to.min(b.len());
            continue;
        }
        let named_end = |from: usize| from + b[from..].iter().take_while(|&&c| ident(c)).count();
        let replaced: Option<(usize, Option<&str>)> = match c {
            b'%' => match b.get(i + 1) {
                Some(b's' | b'b' | b't') if !b.get(i + 2).is_some_and(|&c| ident(c)) => {
                    Some((i + 2, None))
                }
                Some(b'(') => {
                    let end = named_end(i + 2);
                    match (b.get(end), b.get(end + 1)) {
                        (Some(b')'), Some(b's' | b'b' | b't')) if end > i + 2 => {
                            Some((end + 2, Some(&sql[i + 2..end])))
                        }
                        _ => None,
                    }
                }
                Some(b'%') => {
                    out.push_str(&sql[copied..i + 1]);
                    copied = i + 2;
                    changed = true;
                    i += 2;
                    continue;
                }
                _ => None,
            },
            b':' if b
                .get(i + 1)
                .is_some_and(|c| c.is_ascii_alphabetic() || *c == b'_')
                && !(ident(prev) || matches!(prev, b')' | b']' | b'"' | b'`')) =>
            {
                let end = named_end(i + 1);
                Some((end, Some(&sql[i + 1..end])))
            }
            _ => None,
        };
        match replaced {
            Some((end, name)) => {
                out.push_str(&sql[copied..i]);
                number(&mut out, name, &mut seen);
                copied = end;
                changed = true;
                prev = b'0';
                i = end;
            }
            None => {
                if !c.is_ascii_whitespace() {
                    prev = c;
                }
                i += 1;
            }
        }
    }
    if !changed {
        return sql.into();
    }
    out.push_str(&sql[copied..]);
    out.into()
}

/// Numbers the placeholders of a statement in the order they appear: `?` in
/// turn, `$n` / `?n` by their number.
struct Placeholders {
    next: usize,
}

impl Placeholders {
    /// The value an expression stands for: a placeholder or a literal, also
    /// behind casts (`$1::BIGINT`, `CAST($1 AS INTEGER)`, `'7'::bigint`,
    /// `$1::VARCHAR(20)`, `bigint '7'`), so that a literal resolves to the text
    /// a bind value of it would have (issue 13, defect 4).
    fn value(&mut self, expr: &Expr) -> Option<ValueRef> {
        let v = match expr {
            Expr::Value(v) => v,
            Expr::Cast { expr, .. } | Expr::Nested(expr) => return self.value(expr),
            Expr::TypedString(t) => {
                return t.value.value.clone().into_string().map(ValueRef::Literal);
            }
            Expr::UnaryOp {
                op: sqlparser::ast::UnaryOperator::Minus,
                expr,
            } => {
                return match self.value(expr)? {
                    ValueRef::Literal(n) => Some(ValueRef::Literal(format!("-{n}"))),
                    ValueRef::Param(_) => None,
                };
            }
            _ => return None,
        };
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
            Value::Null | Value::Boolean(_) => return None,
            other => ValueRef::Literal(other.clone().into_string()?),
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
            // `col = value`, or `value = col` (the order in which `?` are
            // numbered is the text's either way).
            let pair = match column(left) {
                Some(col) => ph.value(right).map(|v| (col, v)),
                None => ph.value(left).zip(column(right)).map(|(v, col)| (col, v)),
            };
            let Some((col, v)) = pair else {
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
    let mut sets = Vec::new();
    for a in &u.assignments {
        let target = a.target.to_string();
        let target = target.rsplit('.').next().unwrap_or(&target);
        let mut probe = Placeholders { next: ph.next };
        if let Some(v) = probe.value(&a.value) {
            sets.push((target.trim_matches(['"', '`']).to_ascii_lowercase(), v));
        }
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
        sets,
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
        assert_eq!(
            w.sets,
            vec![("balance".to_owned(), ValueRef::Literal("90".into()))]
        );
        let w = keyed_write(
            "UPDATE products SET name = 'x', stock = $2::INTEGER, \"updated\" = now() WHERE id = $1",
        )
        .expect("keyed");
        assert_eq!(
            w.sets,
            vec![
                ("name".to_owned(), ValueRef::Literal("x".into())),
                ("stock".to_owned(), ValueRef::Param(1)),
            ]
        );
        let w = keyed_write("UPDATE t SET a = ?, b = ? WHERE id = ?").expect("keyed");
        assert_eq!(
            w.sets,
            vec![
                ("a".to_owned(), ValueRef::Param(0)),
                ("b".to_owned(), ValueRef::Param(1))
            ]
        );
        assert_eq!(w.keyed.keys[0].1, ValueRef::Param(2));
    }

    #[test]
    fn keys_behind_casts_and_in_every_placeholder_style() {
        // issue 13, defect 4: SQLAlchemy with psycopg 3 casts every
        // placeholder; psycopg, Django and SQLAlchemy log their own styles.
        let key = |sql: &str| {
            keyed_read(sql)
                .unwrap_or_else(|| panic!("not keyed: {sql}"))
                .keyed
                .keys
        };
        let id = |v: ValueRef| vec![("id".to_owned(), v)];
        for (sql, expected) in [
            ("SELECT a FROM t WHERE id = $1::INTEGER", ValueRef::Param(0)),
            (
                "SELECT a FROM t WHERE id = CAST($1 AS INTEGER)",
                ValueRef::Param(0),
            ),
            ("SELECT a FROM t WHERE id = ?::int4", ValueRef::Param(0)),
            (
                "SELECT a FROM t WHERE id = $1::VARCHAR(20)",
                ValueRef::Param(0),
            ),
            (
                "SELECT a FROM t WHERE id = $1::INTEGER[]",
                ValueRef::Param(0),
            ),
            (
                "SELECT a FROM t WHERE id = ($1)::numeric(10, 2)",
                ValueRef::Param(0),
            ),
            ("SELECT a FROM t WHERE id = %s", ValueRef::Param(0)),
            ("SELECT a FROM t WHERE id = %s::BIGINT", ValueRef::Param(0)),
            (
                "SELECT a FROM t WHERE id = %(pk_1)s::BIGINT",
                ValueRef::Param(0),
            ),
            ("SELECT a FROM t WHERE id = :pk_1", ValueRef::Param(0)),
            (
                "SELECT a FROM t WHERE id = CAST(:pk_1 AS BIGINT)",
                ValueRef::Param(0),
            ),
            ("SELECT a FROM t WHERE $1 = id", ValueRef::Param(0)),
            (
                "SELECT a FROM t WHERE id = 2::integer",
                ValueRef::Literal("2".into()),
            ),
            (
                "SELECT a FROM t WHERE id = '7'::bigint",
                ValueRef::Literal("7".into()),
            ),
            (
                "SELECT a FROM t WHERE id = CAST('7' AS BIGINT)",
                ValueRef::Literal("7".into()),
            ),
            (
                "SELECT a FROM t WHERE id = bigint '7'",
                ValueRef::Literal("7".into()),
            ),
            (
                "SELECT a FROM t WHERE id = -3",
                ValueRef::Literal("-3".into()),
            ),
        ] {
            assert_eq!(key(sql), id(expected), "{sql}");
        }
        // The SQLAlchemy lost update as psycopg 3 sends it and as it is logged.
        let read = keyed_read(
            "SELECT inventory.product_id, inventory.stock FROM inventory \
             WHERE inventory.product_id = %(pk_1)s::BIGINT",
        )
        .expect("keyed");
        assert_eq!(
            read.keyed.keys,
            vec![("product_id".to_owned(), ValueRef::Param(0))]
        );
        for (sql, param) in [
            (
                "UPDATE inventory SET stock=$1::BIGINT WHERE inventory.product_id = $2::BIGINT",
                1,
            ),
            (
                "UPDATE inventory SET stock=%(stock)s::BIGINT \
                 WHERE inventory.product_id = %(inventory_product_id)s::BIGINT",
                1,
            ),
            (
                "UPDATE inventory SET stock=:stock WHERE inventory.product_id = :pid",
                1,
            ),
            ("UPDATE inventory SET stock = %s WHERE product_id = %s", 1),
            // A name used twice is one parameter.
            (
                "UPDATE inventory SET stock = :n, note = :n WHERE product_id = :pid",
                1,
            ),
        ] {
            let w = keyed_write(sql).unwrap_or_else(|| panic!("not keyed: {sql}"));
            assert!(w.absolute, "{sql}");
            assert_eq!(
                w.keyed.keys,
                vec![("product_id".to_owned(), ValueRef::Param(param))],
                "{sql}"
            );
        }
        let w = keyed_write("UPDATE t SET a = a - %s::int WHERE id = %s").expect("keyed");
        assert!(!w.absolute);
    }

    #[test]
    fn placeholders_numbered_outside_strings_comments_and_casts() {
        for (sql, expected) in [
            ("select 1", "select 1"),
            ("select a::text from t", "select a::text from t"),
            (
                "select '%s', \":x\" from t -- %s\n where id = %s /* :y */ and b = :b",
                "select '%s', \":x\" from t -- %s\n where id = $1 /* :y */ and b = $2",
            ),
            (
                "update t set a = %(a)s, b = %(b)s where id = %(a)s and c like 'x%%' || %%",
                "update t set a = $1, b = $2 where id = $1 and c like 'x%%' || %",
            ),
            (
                "select a[lo:hi] from t where id = :id",
                "select a[lo:hi] from t where id = $1",
            ),
            (
                "select x from t where id=:id::int",
                "select x from t where id=$1::int",
            ),
        ] {
            assert_eq!(numbered_placeholders(sql), expected, "{sql}");
        }
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
