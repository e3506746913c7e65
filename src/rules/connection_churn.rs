//! `connection-churn`: a step that opens a new connection for every statement
//! or every few statements.

use foldhash::{HashMap, HashMapExt};

use super::{Rule, RuleMeta, RuleSetup, Statement, documented_rule, thousands};
use crate::model::{Finding, Severity, StepKey};

pub static META: RuleMeta = RuleMeta {
    id: "connection-churn",
    default_severity: Severity::Warning,
    summary: "a new connection per statement or per few statements",
    doc: ConnectionChurn::DOC,
    build,
    judges_transactions: false,
};

documented_rule! {
    /// ## What it does
    /// Counts, per step, the connections that first appear in it and the
    /// statements they run there. When at least `min_connections` (default 5)
    /// connections were opened and they ran `max_statements_per_connection`
    /// (default 3) statements or fewer each on average, the step is flagged
    /// with the number of connections, of statements, and the time spent
    /// connecting when the source measured it (the proxy does: TCP connect,
    /// authentication and session start, up to the server's first
    /// ReadyForQuery). Markers do not count as statements. A connection
    /// belongs to the step of its first statement; connections reused from
    /// earlier steps, as a pool's are, never count.
    ///
    /// ## Why is this bad?
    /// Opening a PostgreSQL connection starts a server process and runs the
    /// authentication exchange: milliseconds each time, often more than the
    /// statement it was opened for, and under load it exhausts
    /// `max_connections`.
    ///
    /// ## Example
    /// A request handler that calls `psycopg.connect()` (or `new Client()`)
    /// for every query: 20 statements, 20 connections, 60 ms connecting.
    ///
    /// ## How to fix
    /// Use a connection pool (the framework's, or PgBouncer in front of the
    /// database) and take connections from it for the whole request.
    ///
    /// ## Settings
    /// `min_connections` (integer, default 5): connections a step must open
    /// before it is judged. `max_statements_per_connection` (number, default
    /// 3): at or below this average the step is flagged.
    pub struct ConnectionChurn {
        severity: Severity,
        min_connections: u64,
        max_per_connection: f64,
        /// Open connection → the step it was opened in.
        opened_in: HashMap<u64, usize>,
        /// Step → the connections opened in it that have closed since.
        closed: HashMap<usize, u64>,
        steps: HashMap<usize, StepChurn>,
    }
}

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
struct Settings {
    min_connections: u64,
    max_statements_per_connection: f64,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            min_connections: 5,
            max_statements_per_connection: 3.0,
        }
    }
}

fn build(setup: &RuleSetup<'_>) -> Result<Box<dyn Rule>, toml::de::Error> {
    let settings: Settings = setup.settings()?;
    if settings.max_statements_per_connection.is_nan()
        || settings.max_statements_per_connection < 1.0
    {
        return Err(serde::de::Error::custom(
            "max_statements_per_connection: must be a number of 1 or more",
        ));
    }
    // Churn is judged over several connections; a smaller value was silently
    // read as 2 before (issue 15).
    if settings.min_connections < 2 {
        return Err(serde::de::Error::custom(format!(
            "min_connections: {} is too small: at least 2 connections",
            settings.min_connections
        )));
    }
    Ok(Box::new(ConnectionChurn {
        severity: setup.severity,
        min_connections: settings.min_connections,
        max_per_connection: settings.max_statements_per_connection,
        opened_in: HashMap::new(),
        closed: HashMap::new(),
        steps: HashMap::new(),
    }))
}

#[derive(Debug)]
struct StepChurn {
    key: StepKey,
    opened: u64,
    statements: u64,
    connect_us: u64,
    timed: u64,
    example: String,
}

impl Rule for ConnectionChurn {
    fn observe(&mut self, s: &Statement<'_>) {
        let opened_in = *self.opened_in.entry(s.conn).or_insert(s.step);
        if opened_in != s.step {
            return;
        }
        let churn = self.steps.entry(s.step).or_insert_with(|| StepChurn {
            key: s.key.clone(),
            opened: 0,
            statements: 0,
            connect_us: 0,
            timed: 0,
            example: s.example(),
        });
        churn.statements += 1;
        if let Some(us) = s.event.connect_us {
            churn.connect_us += us;
            churn.timed += 1;
        }
    }

    fn connection_closed(&mut self, conn: u64) {
        // Counted for its step; the connection itself need not be kept.
        if let Some(step) = self.opened_in.remove(&conn) {
            *self.closed.entry(step).or_default() += 1;
        }
    }

    fn finish(&mut self, out: &mut Vec<Finding>) {
        // Count the connections each step opened.
        let mut opened = std::mem::take(&mut self.closed);
        for step in self.opened_in.values() {
            *opened.entry(*step).or_default() += 1;
        }
        for (step, churn) in &mut self.steps {
            churn.opened = opened.get(step).copied().unwrap_or(0);
            if churn.opened < self.min_connections {
                continue;
            }
            let per = churn.statements as f64 / churn.opened as f64;
            if per > self.max_per_connection {
                continue;
            }
            let connecting = if churn.timed > 0 {
                format!(
                    "; {} spent connecting ({} measured)",
                    crate::report::duration(churn.connect_us),
                    thousands(churn.timed)
                )
            } else {
                String::new()
            };
            out.push(Finding {
                location: None,
                driver: None,
                rule: META.id,
                severity: self.severity,
                flow: churn.key.flow.clone(),
                step: churn.key.step.clone(),
                message: format!(
                    "opened {} for {} ({per:.1} a connection){connecting}",
                    super::plural(churn.opened, "connection", "connections"),
                    super::plural(churn.statements, "statement", "statements"),
                ),
                fingerprint: None,
                fingerprint_hash: None,
                count: churn.opened,
                examples: vec![churn.example.clone()],
                help: "use a connection pool (the framework's, or PgBouncer) and keep one \
                       connection for the whole request"
                    .to_owned(),
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::model::Event;
    use crate::rules::testing::{audit, fired};

    fn event(conn: u64, sql: &str, connect_us: Option<u64>) -> Event {
        Event {
            sql: sql.to_owned(),
            conn: Some(conn),
            connect_us,
            ..Event::default()
        }
    }

    #[test]
    fn a_connection_per_statement_is_churn() {
        let mut events = vec![event(0, "SET flowaudit.step = 'browse'", None)];
        for conn in 1..=8 {
            events.push(event(
                conn,
                "select * from products where id = $1",
                Some(3000),
            ));
        }
        let all = audit(events, "");
        let findings = fired(&all, "connection-churn");
        assert_eq!(findings.len(), 1, "{findings:#?}");
        let f = &findings[0];
        assert_eq!(f.step, "browse");
        assert_eq!(f.count, 8);
        assert!(
            f.message.contains("opened 8 connections for 8 statements"),
            "{}",
            f.message
        );
        assert!(
            f.message.contains("24.0 ms spent connecting"),
            "{}",
            f.message
        );
    }

    #[test]
    fn pooled_connections_reused_across_steps_are_not_churn() {
        let mut events = Vec::new();
        for step in ["a", "b", "c", "d", "e", "f"] {
            events.push(event(1, &format!("SET flowaudit.step = '{step}'"), None));
            for conn in 1..=3 {
                events.push(event(conn, "select 1", None));
            }
        }
        assert!(fired(&audit(events, ""), "connection-churn").is_empty());
    }

    #[test]
    fn many_connections_each_doing_real_work_are_not_churn() {
        let mut events = Vec::new();
        for conn in 1..=8 {
            for _ in 0..10 {
                events.push(event(
                    conn,
                    "select abalance from pgbench_accounts where aid = $1",
                    None,
                ));
            }
        }
        assert!(fired(&audit(events, ""), "connection-churn").is_empty());
    }
}
