//! The transaction status of a MySQL/MariaDB session, followed from the
//! statements it ran, for sources that do not report it (the general log,
//! a trace without `txn`). Issue 13, defect 5: pymysql turns autocommit off
//! at connect (`SET AUTOCOMMIT = 0`), and from then on every statement runs
//! in a transaction that only COMMIT or ROLLBACK ends.
//!
//! What it follows (MySQL manual, 15.3.1 "START TRANSACTION, COMMIT, and
//! ROLLBACK Statements" and 15.3.3 "Statements That Cause an Implicit
//! Commit"):
//!
//! - `SET autocommit = 0|1|ON|OFF|TRUE|FALSE|DEFAULT`, also as
//!   `@@autocommit`, `@@session.autocommit`, `@@local.autocommit`,
//!   `SESSION autocommit`, `LOCAL autocommit`, in any case and spacing, among
//!   other assignments; `GLOBAL` and `PERSIST` do not change the session.
//!   Turning it on from off commits the open transaction.
//! - `BEGIN` / `START TRANSACTION` open one, committing an open one first.
//! - `COMMIT` / `ROLLBACK` end it (`… AND CHAIN` opens the next at once);
//!   `ROLLBACK TO SAVEPOINT` does not.
//! - DDL, `LOCK TABLES`, and the table-maintenance statements commit an open
//!   transaction and run on their own (not `CREATE/DROP TEMPORARY TABLE`).
//! - With autocommit off, the next statement that reads or writes data opens
//!   a transaction implicitly. `SET`, `SHOW`, `USE` and other session
//!   statements do not, so that a session ends no transaction made of them
//!   alone (InnoDB starts its transaction at the first table access too).
//!
//! A statement is labelled with the status it ran in, as the proxy labels
//! PostgreSQL's: `open` inside a transaction, including the statement that
//! opened one implicitly; `idle` outside one, including BEGIN and the
//! statements that commit implicitly before they run.

use super::{after_comments, first_word};
use crate::model::TxnStatus;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MysqlSession {
    autocommit: bool,
    open: bool,
}

impl Default for MysqlSession {
    fn default() -> Self {
        // The server's default, which a client changes per session.
        Self {
            autocommit: true,
            open: false,
        }
    }
}

impl MysqlSession {
    /// The status `sql` ran in; the session moves on past it.
    pub fn statement(&mut self, sql: &str) -> TxnStatus {
        let current = if self.open {
            TxnStatus::Open
        } else {
            TxnStatus::Idle
        };
        let lower = after_comments(sql).to_ascii_lowercase();
        let mut words = lower
            .split(|c: char| !c.is_ascii_alphanumeric() && c != '_')
            .filter(|w| !w.is_empty());
        let verb = first_word(sql);
        let second = words.nth(1);
        let third = words.next();
        match verb.as_str() {
            "begin" if second != Some("not") => {
                self.open = true;
                TxnStatus::Idle
            }
            "start" if second == Some("transaction") => {
                self.open = true;
                TxnStatus::Idle
            }
            "commit" | "rollback"
                if second != Some("to") && !(second == Some("work") && third == Some("to")) =>
            {
                self.open = lower.contains(" and chain") && !lower.contains(" and no chain");
                current
            }
            "set" => match autocommit_assignment(&lower) {
                Some(on) => {
                    let was = self.autocommit;
                    self.autocommit = on;
                    if on && !was && self.open {
                        // Turning autocommit on commits the open transaction.
                        self.open = false;
                        TxnStatus::Idle
                    } else {
                        current
                    }
                }
                None => current,
            },
            _ if commits_implicitly(&verb, second, &lower) => {
                self.open = false;
                TxnStatus::Idle
            }
            _ if self.open => TxnStatus::Open,
            _ if !self.autocommit && opens(&verb) => {
                self.open = true;
                TxnStatus::Open
            }
            _ => TxnStatus::Idle,
        }
    }
}

/// Statements that read or write data, the ones that open a transaction when
/// autocommit is off.
fn opens(verb: &str) -> bool {
    matches!(
        verb,
        "select"
            | "insert"
            | "update"
            | "delete"
            | "replace"
            | "with"
            | "table"
            | "values"
            | "call"
            | "load"
            | "handler"
            | "execute"
    )
}

/// DDL and the other statements that commit before they run (manual 15.3.3).
fn commits_implicitly(verb: &str, second: Option<&str>, lower: &str) -> bool {
    match verb {
        "create" | "drop" => second != Some("temporary"),
        "alter" | "truncate" | "rename" | "grant" | "revoke" | "analyze" | "optimize"
        | "repair" | "flush" | "install" | "uninstall" | "cache" => true,
        "lock" => second == Some("tables") || second == Some("table"),
        "unlock" => lower.contains("tables"),
        _ => false,
    }
}

/// The value a `SET` gives the session's `autocommit`, if it gives it one.
fn autocommit_assignment(lower: &str) -> Option<bool> {
    let rest = after_comments(lower).trim_start().strip_prefix("set")?;
    let mut found = None;
    for part in rest.split(',') {
        let Some((lhs, rhs)) = part.split_once('=') else {
            continue;
        };
        let lhs = lhs.trim().trim_end_matches(':').trim();
        let mut name = lhs;
        for scope in ["session ", "local "] {
            if let Some(r) = name.strip_prefix(scope) {
                name = r.trim_start();
            }
        }
        if name.starts_with("global ")
            || name.starts_with("persist")
            || name.starts_with("@@global.")
            || name.starts_with("@@persist")
        {
            continue;
        }
        let name = name
            .strip_prefix("@@session.")
            .or_else(|| name.strip_prefix("@@local."))
            .or_else(|| name.strip_prefix("@@"))
            .unwrap_or(name)
            .trim_matches('`');
        if name != "autocommit" {
            continue;
        }
        let value = rhs
            .trim()
            .trim_end_matches(';')
            .trim()
            .trim_matches(['\'', '"']);
        found = match value {
            "0" | "off" | "false" => Some(false),
            "1" | "on" | "true" | "default" => Some(true),
            _ => found,
        };
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;
    use TxnStatus::{Idle, Open};

    fn run(statements: &[&str]) -> Vec<TxnStatus> {
        let mut s = MysqlSession::default();
        statements.iter().map(|sql| s.statement(sql)).collect()
    }

    #[test]
    fn autocommit_off_in_every_spelling() {
        // issue 13, defect 5.
        for set in [
            "SET AUTOCOMMIT = 0",
            "set autocommit=0",
            "SET autocommit = OFF",
            "SET autocommit = false",
            "SET @@autocommit = 0",
            "SET @@session.autocommit=0",
            "SET @@SESSION.AUTOCOMMIT = 'OFF'",
            "SET SESSION autocommit = 0",
            "SET LOCAL autocommit := 0",
            "SET  NAMES utf8mb4 ,  autocommit   =   0",
            "/* pymysql */ SET AUTOCOMMIT = 0;",
        ] {
            assert_eq!(
                run(&[
                    set,
                    "INSERT INTO a VALUES (1)",
                    "INSERT INTO b VALUES (1)",
                    "COMMIT"
                ]),
                [Idle, Open, Open, Open],
                "{set}"
            );
        }
        for other in [
            "SET GLOBAL autocommit = 0",
            "SET @@global.autocommit = 0",
            "SET autocommit = 1",
            "SET @autocommit = 0",
            "SET autocommit_x = 0",
        ] {
            assert_eq!(
                run(&[other, "INSERT INTO a VALUES (1)"]),
                [Idle, Idle],
                "{other}"
            );
        }
    }

    #[test]
    fn commit_rollback_begin_and_implicit_commits_with_autocommit_off() {
        assert_eq!(
            run(&[
                "SET autocommit = 0",
                "SHOW VARIABLES LIKE 'sql_mode'",
                "SELECT 1 FROM a",
                "COMMIT",
                "SET @flowaudit_step = 'x'",
                "UPDATE a SET b = 1",
                "ROLLBACK TO SAVEPOINT s",
                "ROLLBACK",
                "INSERT INTO a VALUES (1)",
                "CREATE TABLE c (id INT)",
                "CREATE TEMPORARY TABLE t (id INT)",
                "INSERT INTO a VALUES (2)",
                "START TRANSACTION",
                "INSERT INTO a VALUES (3)",
                "SET autocommit = ON",
                "INSERT INTO a VALUES (4)",
                "BEGIN",
                "COMMIT AND CHAIN",
                "DELETE FROM a",
                "COMMIT",
            ]),
            [
                Idle, Idle, Open, Open, Idle, Open, Open, Open, Open, Idle, Idle, Open, Idle, Open,
                Idle, Idle, Idle, Open, Open, Open
            ]
        );
    }

    #[test]
    fn autocommit_on_follows_begin_and_commit() {
        assert_eq!(
            run(&[
                "INSERT INTO a VALUES (1)",
                "BEGIN",
                "INSERT INTO a VALUES (2)",
                "ALTER TABLE a ADD c INT",
                "INSERT INTO a VALUES (3)",
                "start transaction read only",
                "select * from a",
                "commit work",
                "select 1",
            ]),
            [Idle, Idle, Open, Idle, Idle, Idle, Open, Open, Idle]
        );
    }
}
