//! What the proxy knows of the run's steps while statements pass: the current
//! flow and step of each connection, from markers (per connection, as for the
//! audit) and sqlcommenter tags (one statement's own). Fault injection counts statements per step
//! with it, and the data invariants run when a step ends.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};

use foldhash::HashMap;

use crate::attribute::{Marker, parse_marker, parse_tags};

/// A check to await before the statement that started a new step goes on.
pub type Check = Pin<Box<dyn Future<Output = ()> + Send>>;

type RunCheck = dyn Fn(String, String) -> Check + Send + Sync;

/// Checks that run when a step ends (the data invariants). The relay awaits
/// them before it forwards the statement that starts the next step, so that
/// they see the data as the ended step left it, not half of the next one.
#[derive(Clone)]
pub struct StepChecks {
    tracker: Arc<Mutex<StepTracker>>,
    run: Arc<RunCheck>,
}

impl std::fmt::Debug for StepChecks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StepChecks")
    }
}

impl StepChecks {
    /// `run(flow, step)` checks the step that ended.
    pub fn new(run: impl Fn(String, String) -> Check + Send + Sync + 'static) -> Self {
        StepChecks {
            tracker: Arc::default(),
            run: Arc::new(run),
        }
    }

    /// Follows a statement connection `conn` (of application instance
    /// `instance`, when known) is about to send; the (flow, step) pairs it
    /// ends.
    pub fn see(
        &self,
        conn: u64,
        instance: Option<u64>,
        sql: &str,
        application_name: Option<&str>,
    ) -> Vec<(String, String)> {
        self.tracker
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .see_in(conn, instance, sql, application_name)
            .ended
    }

    /// The check of a step that ended.
    pub fn check(&self, flow: String, step: String) -> Check {
        (self.run)(flow, step)
    }

    /// The steps current when the run ends.
    pub fn current(&self) -> Vec<(String, String)> {
        self.tracker
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .current()
    }
}

/// The step a statement belongs to, as far as the proxy can tell when the
/// statement is sent. Markers follow the audit's rule (DESIGN.md, "Flow and
/// step attribution"; issue 13, defect 6): a marker sets the flow or step of
/// its own connection; a connection that never set one follows the latest
/// marker of the run, or of its application instance when it is known to
/// belong to one (`run --race-instances N`, issue 19: the instances run the
/// same steps side by side, and an ORM's connections follow the markers its
/// own instance sends on another connection), as `src/attribute.rs` does.
#[derive(Debug, Default, Clone)]
pub struct StepTracker {
    /// The latest markers of the run (`None`: connections of no known
    /// instance) and of each instance, whoever sent them.
    runs: HashMap<Option<u64>, Run>,
    /// What each connection's own markers set.
    conns: HashMap<u64, Conn>,
}

/// The latest markers of a run, and whether a connection following it (one
/// that never set its step) ran a statement in its current step.
#[derive(Debug, Default, Clone)]
struct Run {
    marks: Marks,
    used: bool,
}

#[derive(Debug, Default, Clone)]
struct Conn {
    marks: Marks,
    instance: Option<u64>,
}

#[derive(Debug, Default, Clone)]
struct Marks {
    flow: Option<String>,
    step: Option<String>,
}

/// What one statement meant for the steps.
#[derive(Debug, PartialEq, Eq)]
pub struct Seen {
    /// The statement is a marker: attribution, not a statement of the step.
    pub marker: bool,
    /// The step the statement belongs to (a marker: the step it starts).
    pub step: Option<String>,
    /// The (flow, step) pairs that ended because this statement starts
    /// another: the sending connection's own step, and the run's step when
    /// connections that follow the run ran in it.
    pub ended: Vec<(String, String)>,
}

impl StepTracker {
    fn run(&self, instance: Option<u64>) -> Option<&Marks> {
        self.runs.get(&instance).map(|r| &r.marks)
    }

    /// The (flow, step) of a connection: what it set itself, else its run's.
    fn of(&self, conn: u64, instance: Option<u64>) -> Option<(String, String)> {
        let own = self.conns.get(&conn).map(|c| &c.marks);
        let run = self.run(instance);
        let step = own
            .and_then(|m| m.step.as_ref())
            .or(run.and_then(|m| m.step.as_ref()))?;
        let flow = own
            .and_then(|m| m.flow.as_ref())
            .or(run.and_then(|m| m.flow.as_ref()))
            .map_or(crate::model::UNATTRIBUTED, String::as_str);
        Some((flow.to_owned(), step.clone()))
    }

    fn run_step(&self, instance: Option<u64>) -> Option<(String, String)> {
        let run = self.run(instance)?;
        let flow = run.flow.as_deref().unwrap_or(crate::model::UNATTRIBUTED);
        run.step.clone().map(|s| (flow.to_owned(), s))
    }

    /// Follows one statement that connection `conn`, whose `application_name`
    /// is given, is about to send.
    pub fn see(&mut self, conn: u64, sql: &str, application_name: Option<&str>) -> Seen {
        self.see_in(conn, None, sql, application_name)
    }

    /// [`Self::see`] for a connection of application instance `instance`
    /// (`None`: not known), whose markers move that instance's run.
    pub fn see_in(
        &mut self,
        conn: u64,
        instance: Option<u64>,
        sql: &str,
        application_name: Option<&str>,
    ) -> Seen {
        if let Some(marker) = parse_marker(sql) {
            let had_own_step = self
                .conns
                .get(&conn)
                .is_some_and(|c| c.marks.step.is_some());
            let own_before = self.of(conn, instance).filter(|_| had_own_step);
            let run_used = self.runs.get(&instance).is_some_and(|r| r.used);
            let run_before = self.run_step(instance).filter(|_| run_used);
            let run = self.runs.entry(instance).or_default();
            let own = self.conns.entry(conn).or_default();
            own.instance = instance;
            for marks in [&mut run.marks, &mut own.marks] {
                match &marker {
                    Marker::Flow(flow) => marks.flow = Some(flow.clone()),
                    Marker::Step(step) => marks.step = Some(step.clone()),
                }
            }
            let own_after = self.of(conn, instance);
            let run_after = self.run_step(instance);
            let mut ended = Vec::new();
            if let Some(b) = own_before.filter(|b| Some(b) != own_after.as_ref()) {
                ended.push(b);
            }
            if let Some(b) = run_before.filter(|b| Some(b) != run_after.as_ref()) {
                if let Some(run) = self.runs.get_mut(&instance) {
                    run.used = false;
                }
                if !ended.contains(&b) {
                    ended.push(b);
                }
            }
            return Seen {
                marker: true,
                step: own_after.map(|(_, step)| step),
                ended,
            };
        }
        let own_step = self.conns.get(&conn).and_then(|c| c.marks.step.clone());
        let run_step = self.run(instance).and_then(|m| m.step.clone());
        let step = match parse_tags(sql).step() {
            Some(tagged) => Some(tagged),
            None if own_step.is_some() => own_step,
            None if run_step.is_some() => {
                if let Some(run) = self.runs.get_mut(&instance) {
                    run.used = true;
                }
                run_step
            }
            None => application_name.map(str::to_owned),
        };
        Seen {
            marker: false,
            step,
            ended: Vec::new(),
        }
    }

    /// Connection `conn` closed: its own markers go with it (its instance's
    /// run keeps what they set).
    pub fn forget(&mut self, conn: u64) {
        self.conns.remove(&conn);
    }

    /// The steps still current when the run ends: each marking connection's
    /// latest, and each run's, once each, in a stable order.
    pub fn current(&self) -> Vec<(String, String)> {
        let mut ids: Vec<u64> = self.conns.keys().copied().collect();
        ids.sort_unstable();
        let mut runs: Vec<Option<u64>> = self.runs.keys().copied().collect();
        runs.sort_unstable();
        let mut current: Vec<(String, String)> = Vec::new();
        for key in ids
            .into_iter()
            .filter_map(|id| self.of(id, self.conns.get(&id).and_then(|c| c.instance)))
            .chain(runs.into_iter().filter_map(|i| self.run_step(i)))
        {
            if !current.contains(&key) {
                current.push(key);
            }
        }
        current
    }
}

#[cfg(test)]
mod tests {
    use super::StepTracker;

    fn pair(flow: &str, step: &str) -> (String, String) {
        (flow.into(), step.into())
    }

    #[test]
    fn markers_start_steps_and_end_the_previous_one() {
        let mut t = StepTracker::default();
        let s = t.see(1, "SET flowaudit.flow = 'shop'", None);
        assert!(s.marker && s.ended.is_empty());
        let s = t.see(1, "SET flowaudit.step = 'browse'", None);
        assert_eq!(s.step.as_deref(), Some("browse"));
        assert!(s.ended.is_empty());
        let s = t.see(1, "select 1 /*step='cart'*/", None);
        assert_eq!(
            s.step.as_deref(),
            Some("cart"),
            "tags name one statement's step"
        );
        let s = t.see(1, "select 2", Some("app"));
        assert_eq!(s.step.as_deref(), Some("browse"));
        let s = t.see(1, "SET flowaudit.step = 'checkout'", None);
        assert_eq!(s.ended, vec![pair("shop", "browse")]);
        assert_eq!(t.current(), vec![pair("shop", "checkout")]);
        let s = t.see(1, "SET flowaudit.step = 'checkout'", None);
        assert!(s.ended.is_empty(), "the same step again does not end it");
    }

    /// Issue 13, defect 6: each connection's markers set its own step, and a
    /// step ends when its connection moves on, not when another one does.
    #[test]
    fn connections_keep_their_own_steps() {
        let mut t = StepTracker::default();
        t.see(1, "SET flowaudit.step = 'request_a'", None);
        let s = t.see(2, "SET flowaudit.step = 'request_b'", None);
        assert!(s.ended.is_empty(), "{s:?}");
        assert_eq!(
            t.see(1, "select 1", None).step.as_deref(),
            Some("request_a")
        );
        assert_eq!(
            t.see(2, "select 2", None).step.as_deref(),
            Some("request_b")
        );
        let s = t.see(1, "SET flowaudit.step = 'request_c'", None);
        assert_eq!(s.ended, vec![pair("(unattributed)", "request_a")]);
        assert_eq!(
            t.see(2, "select 3", None).step.as_deref(),
            Some("request_b")
        );
        assert_eq!(
            t.current(),
            vec![
                pair("(unattributed)", "request_c"),
                pair("(unattributed)", "request_b")
            ]
        );
    }

    /// Issue 13, defect 6: a connection that never sent a marker follows the
    /// run's latest; the run's step ends for it when any marker moves the run on.
    #[test]
    fn unmarked_connections_follow_the_run() {
        let mut t = StepTracker::default();
        t.see(9, "SET flowaudit.step = 'browse'", None);
        assert_eq!(t.see(1, "select 1", None).step.as_deref(), Some("browse"));
        let s = t.see(9, "SET flowaudit.step = 'cart'", None);
        assert_eq!(s.ended, vec![pair("(unattributed)", "browse")]);
        assert_eq!(t.see(1, "select 2", None).step.as_deref(), Some("cart"));
        // Another connection's first marker moves the run on: the run's step
        // ended for connection 1, which ran in it.
        let s = t.see(2, "SET flowaudit.step = 'own'", None);
        assert_eq!(s.ended, vec![pair("(unattributed)", "cart")]);
        assert_eq!(t.see(1, "select 3", None).step.as_deref(), Some("own"));
    }

    /// Issue 19: instances racing side by side each send their markers on a
    /// connection of their own; an ORM connection that never marks follows
    /// the markers of its own instance, not the other's (as the audit does,
    /// `src/attribute.rs`).
    #[test]
    fn unmarked_connections_follow_the_markers_of_their_own_instance() {
        let mut t = StepTracker::default();
        t.see_in(1, Some(1), "SET flowaudit.step = 'add_to_cart'", None);
        t.see_in(2, Some(2), "SET flowaudit.step = 'register'", None);
        let step =
            |t: &mut StepTracker, conn, instance| t.see_in(conn, instance, "select 1", None).step;
        assert_eq!(step(&mut t, 3, Some(1)).as_deref(), Some("add_to_cart"));
        assert_eq!(step(&mut t, 4, Some(2)).as_deref(), Some("register"));
        assert_eq!(step(&mut t, 5, None), None, "no marker of its run");
        let s = t.see_in(2, Some(2), "SET flowaudit.step = 'checkout'", None);
        assert_eq!(s.ended, vec![pair("(unattributed)", "register")]);
        assert_eq!(step(&mut t, 4, Some(2)).as_deref(), Some("checkout"));
        assert_eq!(step(&mut t, 3, Some(1)).as_deref(), Some("add_to_cart"));
        assert_eq!(
            t.current(),
            vec![
                pair("(unattributed)", "add_to_cart"),
                pair("(unattributed)", "checkout")
            ]
        );
    }
}
