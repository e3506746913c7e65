//! The static check of an invariant's SQL: it must be exactly one query
//! (SELECT, WITH … SELECT, VALUES, TABLE) that writes nothing and calls no
//! function known to act outside its transaction. Rule files are checked when
//! they load, before any connection; [`super::InvariantRunner`] checks again
//! with the dialect of the database it connects to.
//!
//! At load the database is not known yet, so the SQL is read with the
//! PostgreSQL, MySQL and SQLite dialects of sqlparser: at least one must read
//! it, and every one that does must find a single safe query. Text that one
//! dialect reads as one statement and another as two (a backslash in a string
//! literal, which MySQL takes as an escape) is refused.
//!
//! What is refused:
//!
//! - more than one statement, or a statement that is not a query;
//! - a data-modifying WITH (`WITH d AS (DELETE … RETURNING *) SELECT …`),
//!   `SELECT … INTO`, and locking clauses (`FOR UPDATE`, `FOR SHARE`);
//! - calls of the functions in [`REFUSED`], by name whatever the schema or
//!   case: their effects escape the read-only transaction the query runs in
//!   (signals to other sessions, other connections, files, session locks,
//!   settings), or they run SQL given as text, which this check cannot read;
//! - MySQL executable comments (`/*! … */`, `/*M! … */`), whose content MySQL
//!   and MariaDB run while sqlparser skips it, and PostgreSQL Unicode-escaped
//!   identifiers (`U&"…"`), which could spell a refused function's name.
//!
//! The check is one layer of several (see the module documentation of
//! [`crate::invariants`]): writes inside the transaction are the read-only
//! transaction's to refuse, so `nextval()` or a volatile function that writes
//! is left to the server. What no layer sees is the body of a function or
//! view defined in the database: a function of the application that calls
//! `pg_terminate_backend` runs it.

use std::ops::ControlFlow;

use sqlparser::ast::{
    Expr, ObjectName, Query, Select, SetExpr, Statement, TableFactor, Visit, Visitor,
};
use sqlparser::dialect::{Dialect as SqlDialect, MySqlDialect, PostgreSqlDialect, SQLiteDialect};
use sqlparser::parser::Parser;

pub use crate::rules::units::Dialect;

/// The dialects an invariant may be written in.
pub const DIALECTS: [Dialect; 3] = [Dialect::Postgres, Dialect::MySql, Dialect::Sqlite];

/// Functions refused by name (the last part of a qualified name, compared
/// without case); a name ending in `*` is a prefix. Each with why.
pub const REFUSED: &[(&str, &str)] = &[
    // PostgreSQL: other sessions and the server itself.
    ("pg_terminate_backend", SERVER),
    ("pg_cancel_backend", SERVER),
    ("pg_reload_conf", SERVER),
    ("pg_rotate_logfile", SERVER),
    ("pg_log_backend_memory_contexts", SERVER),
    ("pg_promote", SERVER),
    ("pg_switch_wal", SERVER),
    ("pg_create_restore_point", SERVER),
    ("pg_backup_start", SERVER),
    ("pg_backup_stop", SERVER),
    ("pg_start_backup", SERVER),
    ("pg_stop_backup", SERVER),
    ("pg_wal_replay_pause", SERVER),
    ("pg_wal_replay_resume", SERVER),
    ("pg_stat_reset*", SERVER),
    ("pg_stat_statements_reset", SERVER),
    ("pg_create_physical_replication_slot", SERVER),
    ("pg_create_logical_replication_slot", SERVER),
    ("pg_drop_replication_slot", SERVER),
    ("pg_copy_physical_replication_slot", SERVER),
    ("pg_copy_logical_replication_slot", SERVER),
    ("pg_replication_slot_advance", SERVER),
    ("pg_logical_*", SERVER),
    ("pg_replication_origin_*", SERVER),
    // Connections of their own, which are not read-only.
    ("dblink*", CONNECTION),
    ("pg_background*", CONNECTION),
    // Files and large objects.
    ("lo_import", FILES),
    ("lo_export", FILES),
    ("lo_unlink", FILES),
    ("lo_create", FILES),
    ("lo_creat", FILES),
    ("lo_put", FILES),
    ("lo_from_bytea", FILES),
    ("lo_truncate", FILES),
    ("lo_truncate64", FILES),
    ("lowrite", FILES),
    ("pg_file_*", FILES),
    // Settings and locks that belong to the session.
    ("set_config", SETTINGS),
    ("pg_advisory*", LOCKS),
    ("pg_try_advisory*", LOCKS),
    ("get_lock", LOCKS),
    ("release_lock", LOCKS),
    ("release_all_locks", LOCKS),
    // SQL given as text.
    ("query_to_xml*", TEXT),
    ("query_to_xmlschema", TEXT),
    ("cursor_to_xml*", TEXT),
    ("ts_stat", TEXT),
    ("ts_rewrite", TEXT),
    // SQLite: code loaded into the process.
    ("load_extension", CODE),
];

const SERVER: &str = "which acts on other sessions or on the server, outside the transaction";
const CONNECTION: &str = "which opens a connection of its own, not a read-only one";
const FILES: &str = "which writes files or large objects";
const SETTINGS: &str = "which changes the session's settings";
const LOCKS: &str = "which takes or drops a lock that belongs to the session";
const TEXT: &str = "which runs SQL given as text, which this check cannot read";
const CODE: &str = "which loads code into the database";

/// Why an invariant's SQL is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("flowaudit cannot read it as SQL ({0})")]
    Unreadable(String),
    #[error("read as {dialect}, it is {count} statements; an invariant is one query")]
    Statements { dialect: &'static str, count: usize },
    #[error(
        "read as {dialect}, it is a {keyword} statement; an invariant is one query \
         (SELECT, WITH … SELECT, VALUES)"
    )]
    NotAQuery {
        dialect: &'static str,
        keyword: String,
    },
    #[error("it has a data-modifying WITH ({keyword}); an invariant only reads")]
    ModifyingWith { keyword: &'static str },
    #[error("SELECT … INTO writes its rows somewhere; an invariant only reads")]
    SelectInto,
    #[error("it locks rows (FOR UPDATE / FOR SHARE); an invariant only reads")]
    Locks,
    #[error("it calls {name}(), {why}")]
    Function { name: String, why: &'static str },
    #[error(
        "it holds an executable comment (/*! … */): MySQL and MariaDB run its content; \
         write the SQL without it"
    )]
    ExecutableComment,
    #[error(
        "it holds a Unicode-escaped identifier (U&\"…\"), which could name any \
         function; write the name plainly"
    )]
    UnicodeIdentifier,
}

/// The load-time check: the SQL as any of the three dialects reads it.
pub fn any_dialect(sql: &str) -> Result<(), Refusal> {
    text_rules(sql)?;
    let mut read = 0;
    let mut errors = Vec::new();
    for dialect in DIALECTS {
        match parse(sql, dialect) {
            Ok(statements) => {
                statements_rules(&statements, dialect)?;
                read += 1;
            }
            Err(e) => errors.push(format!("{}: {e}", dialect.name())),
        }
    }
    if read == 0 {
        // The same complaint from every parser is said once.
        let first = errors[0].split_once(": ").map_or("", |(_, e)| e);
        let same = errors.iter().all(|e| e.ends_with(first));
        let text = if same {
            first.to_owned()
        } else {
            errors.join("; ")
        };
        return Err(Refusal::Unreadable(text));
    }
    Ok(())
}

/// The check for one database's dialect: it must read the SQL, as one safe
/// query.
pub fn for_dialect(sql: &str, dialect: Dialect) -> Result<(), Refusal> {
    text_rules(sql)?;
    let statements =
        parse(sql, dialect).map_err(|e| Refusal::Unreadable(format!("{}: {e}", dialect.name())))?;
    statements_rules(&statements, dialect)
}

fn parse(sql: &str, dialect: Dialect) -> Result<Vec<Statement>, String> {
    let d: &dyn SqlDialect = match dialect {
        Dialect::Postgres => &PostgreSqlDialect {},
        Dialect::MySql => &MySqlDialect {},
        Dialect::Sqlite => &SQLiteDialect {},
    };
    Parser::parse_sql(d, sql).map_err(|e| {
        e.to_string()
            .trim_start_matches("sql parser error: ")
            .to_owned()
    })
}

/// Rules on the text itself, for what the dialects' parsers do not show.
fn text_rules(sql: &str) -> Result<(), Refusal> {
    // Inside a string literal too: refusing those is cheaper than telling
    // them apart the way every server's lexer would.
    if sql.contains("/*!") || sql.contains("/*M!") || sql.contains("/*m!") {
        return Err(Refusal::ExecutableComment);
    }
    let lower = sql.to_ascii_lowercase();
    if lower.contains("u&\"") {
        return Err(Refusal::UnicodeIdentifier);
    }
    Ok(())
}

fn statements_rules(statements: &[Statement], dialect: Dialect) -> Result<(), Refusal> {
    let [statement] = statements else {
        return Err(Refusal::Statements {
            dialect: dialect.name(),
            count: statements.len(),
        });
    };
    if !matches!(statement, Statement::Query(_)) {
        let text = statement.to_string();
        let keyword = text
            .split_whitespace()
            .next()
            .unwrap_or_default()
            .to_ascii_uppercase();
        return Err(Refusal::NotAQuery {
            dialect: dialect.name(),
            keyword,
        });
    }
    match statement.visit(&mut Guard) {
        ControlFlow::Break(refusal) => Err(refusal),
        ControlFlow::Continue(()) => Ok(()),
    }
}

/// Walks the query, stopping at the first thing refused.
struct Guard;

impl Visitor for Guard {
    type Break = Refusal;

    fn pre_visit_query(&mut self, query: &Query) -> ControlFlow<Refusal> {
        if !query.locks.is_empty() {
            return ControlFlow::Break(Refusal::Locks);
        }
        modifying(&query.body)
    }

    fn pre_visit_select(&mut self, select: &Select) -> ControlFlow<Refusal> {
        if select.into.is_some() {
            return ControlFlow::Break(Refusal::SelectInto);
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_expr(&mut self, expr: &Expr) -> ControlFlow<Refusal> {
        match expr {
            Expr::Function(f) => function(&f.name),
            _ => ControlFlow::Continue(()),
        }
    }

    fn pre_visit_table_factor(&mut self, factor: &TableFactor) -> ControlFlow<Refusal> {
        match factor {
            // `FROM name(args)`: a table function, not a table.
            TableFactor::Table {
                name,
                args: Some(_),
                ..
            }
            | TableFactor::Function { name, .. } => function(name),
            _ => ControlFlow::Continue(()),
        }
    }
}

/// A query body that writes: the data-modifying statements sqlparser accepts
/// where a query goes (in WITH, mostly).
fn modifying(body: &SetExpr) -> ControlFlow<Refusal> {
    let keyword = match body {
        SetExpr::Insert(_) => "INSERT",
        SetExpr::Update(_) => "UPDATE",
        SetExpr::Delete(_) => "DELETE",
        SetExpr::Merge(_) => "MERGE",
        SetExpr::SetOperation { left, right, .. } => {
            modifying(left)?;
            return modifying(right);
        }
        SetExpr::Select(_) | SetExpr::Query(_) | SetExpr::Values(_) | SetExpr::Table(_) => {
            return ControlFlow::Continue(());
        }
    };
    ControlFlow::Break(Refusal::ModifyingWith { keyword })
}

fn function(name: &ObjectName) -> ControlFlow<Refusal> {
    let Some(last) = name.0.last().and_then(|part| part.as_ident()) else {
        return ControlFlow::Continue(());
    };
    let called = last.value.to_lowercase();
    match refused(&called) {
        Some(why) => ControlFlow::Break(Refusal::Function { name: called, why }),
        None => ControlFlow::Continue(()),
    }
}

/// Why a function of this (lowercase) name is refused, if it is.
pub fn refused(name: &str) -> Option<&'static str> {
    REFUSED.iter().find_map(|(pattern, why)| {
        let hit = match pattern.strip_suffix('*') {
            Some(prefix) => name.starts_with(prefix),
            None => name == *pattern,
        };
        hit.then_some(*why)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refusal(sql: &str) -> Refusal {
        any_dialect(sql).expect_err(sql)
    }

    #[test]
    fn queries_pass() {
        for sql in [
            "SELECT 1",
            "select id from orders where total < 0;",
            "WITH r AS (SELECT 1 AS n) SELECT n FROM r",
            "VALUES (1), (2)",
            "SELECT a FROM t UNION ALL SELECT b FROM u ORDER BY 1 LIMIT 3",
            "SELECT * FROM orders WHERE NOT EXISTS (SELECT 1 FROM items WHERE items.order_id = orders.id)",
            "SELECT pg_sleep(1)",
            "SELECT nextval('counter')",
            "SELECT * FROM generate_series(1, 3)",
            "SELECT 'a /* b */ c', \"get_lock\" FROM t",
            "SELECT 1 -- a comment",
        ] {
            assert_eq!(any_dialect(sql), Ok(()), "{sql}");
        }
    }

    #[test]
    fn the_attacks_of_issue_15_are_refused() {
        // Each reaches past the subquery it used to be pasted into.
        let e = refusal(
            "SELECT 1) x; COMMIT; BEGIN READ WRITE; DELETE FROM stock; SELECT * FROM (SELECT 1",
        );
        assert!(matches!(e, Refusal::Unreadable(_)), "{e}");
        let e = refusal("SELECT 1; COMMIT; BEGIN READ WRITE; DELETE FROM stock");
        assert!(matches!(e, Refusal::Statements { count: 4, .. }), "{e}");
        let e = refusal("SET SESSION TRANSACTION READ WRITE; DELETE FROM stock");
        assert!(matches!(e, Refusal::Statements { .. }), "{e}");
        let e = refusal("PRAGMA query_only = OFF; DELETE FROM stock");
        assert!(
            matches!(e, Refusal::Statements { .. } | Refusal::Unreadable(_)),
            "{e}"
        );
        let e = refusal("SELECT pg_terminate_backend(pid) FROM pg_stat_activity");
        assert_eq!(
            e.to_string(),
            "it calls pg_terminate_backend(), which acts on other sessions or on the server, \
             outside the transaction"
        );
    }

    #[test]
    fn single_statements_that_are_not_queries_are_refused() {
        for (sql, keyword) in [
            ("DELETE FROM stock", "DELETE"),
            ("UPDATE stock SET qty = 0", "UPDATE"),
            ("INSERT INTO stock VALUES (1)", "INSERT"),
            ("DROP TABLE stock", "DROP"),
            ("COMMIT", "COMMIT"),
            ("EXPLAIN ANALYZE DELETE FROM stock", "EXPLAIN"),
        ] {
            match refusal(sql) {
                Refusal::NotAQuery { keyword: k, .. } => assert_eq!(k, keyword, "{sql}"),
                other => panic!("{sql}: {other}"),
            }
        }
    }

    #[test]
    fn writes_inside_a_query_are_refused() {
        assert_eq!(
            refusal("WITH d AS (DELETE FROM stock RETURNING *) SELECT * FROM d"),
            Refusal::ModifyingWith { keyword: "DELETE" }
        );
        assert_eq!(
            refusal("WITH d AS (UPDATE stock SET qty = 0 RETURNING *) SELECT * FROM d"),
            Refusal::ModifyingWith { keyword: "UPDATE" }
        );
        assert_eq!(
            refusal("WITH d AS (INSERT INTO stock VALUES (1) RETURNING *) SELECT 1"),
            Refusal::ModifyingWith { keyword: "INSERT" }
        );
        assert_eq!(
            refusal("SELECT * INTO copy FROM stock"),
            Refusal::SelectInto
        );
        assert_eq!(refusal("SELECT * FROM stock FOR UPDATE"), Refusal::Locks);
        assert_eq!(
            refusal("SELECT * FROM (SELECT * FROM stock FOR SHARE) s"),
            Refusal::Locks
        );
    }

    #[test]
    fn refused_functions_are_found_wherever_they_are_called() {
        for sql in [
            "SELECT pg_catalog.PG_TERMINATE_BACKEND(1)",
            "SELECT \"pg_cancel_backend\"(1)",
            "SELECT 1 WHERE pg_reload_conf()",
            "SELECT * FROM t WHERE id IN (SELECT set_config('a', 'b', false))",
            "SELECT * FROM dblink('dbname=x', 'delete from t') AS t(a int)",
            "SELECT * FROM t, LATERAL dblink_exec('delete from t') x",
            "SELECT lo_export(1, '/tmp/x')",
            "SELECT count(*) FROM t GROUP BY pg_advisory_lock(1)",
            "SELECT GET_LOCK('x', 1)",
            "SELECT query_to_xml('select pg_terminate_backend(1)', true, true, '')",
            "SELECT load_extension('x')",
            "WITH x AS (SELECT pg_try_advisory_lock(1)) SELECT * FROM x",
        ] {
            assert!(matches!(refusal(sql), Refusal::Function { .. }), "{sql}");
        }
    }

    #[test]
    fn what_the_parsers_would_not_show_is_refused() {
        assert_eq!(
            refusal("SELECT 1 /*! , (SELECT 1 FROM t FOR UPDATE) */"),
            Refusal::ExecutableComment
        );
        assert_eq!(
            refusal("SELECT 1 /*M! INTO OUTFILE '/tmp/x' */"),
            Refusal::ExecutableComment
        );
        assert_eq!(
            refusal("SELECT U&\"\\0070g_terminate_backend\"(1)"),
            Refusal::UnicodeIdentifier
        );
        // MySQL reads one string literal where PostgreSQL reads a DELETE.
        assert!(matches!(
            refusal("SELECT 'a\\'; DELETE FROM t; -- '"),
            Refusal::Statements { count: 2, .. }
        ));
    }

    #[test]
    fn each_database_is_checked_in_its_own_dialect() {
        assert_eq!(
            for_dialect("SELECT `id` FROM `orders`", Dialect::MySql),
            Ok(())
        );
        assert!(for_dialect("SELECT id FROM orders; DELETE FROM orders", Dialect::Sqlite).is_err());
        assert!(matches!(
            for_dialect("SELEC 1", Dialect::Postgres),
            Err(Refusal::Unreadable(_))
        ));
    }
}
