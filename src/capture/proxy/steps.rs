//! What the proxy knows of the run's steps while statements pass: the current
//! flow and step, from markers (run-wide, as for the audit) and sqlcommenter
//! tags (one statement's own). Fault injection counts statements per step
//! with it, and the data invariants run when a step ends.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};

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

    /// Follows a statement about to be sent; the (flow, step) it ends, if any.
    pub fn see(&self, sql: &str, application_name: Option<&str>) -> Option<(String, String)> {
        self.tracker
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .see(sql, application_name)
            .ended
    }

    /// The check of a step that ended.
    pub fn check(&self, flow: String, step: String) -> Check {
        (self.run)(flow, step)
    }

    /// The step current when the run ends.
    pub fn current(&self) -> Option<(String, String)> {
        self.tracker
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .current()
    }
}

/// The step a statement belongs to, as far as the proxy can tell when the
/// statement is sent.
#[derive(Debug, Default, Clone)]
pub struct StepTracker {
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
    /// The (flow, step) that ended because this statement starts another.
    pub ended: Option<(String, String)>,
}

impl StepTracker {
    fn flow(&self) -> &str {
        self.flow.as_deref().unwrap_or(crate::model::UNATTRIBUTED)
    }

    /// Follows one statement sent by a client with `application_name`.
    pub fn see(&mut self, sql: &str, application_name: Option<&str>) -> Seen {
        let before = self.step.clone().map(|s| (self.flow().to_owned(), s));
        if let Some(marker) = parse_marker(sql) {
            match marker {
                Marker::Flow(flow) => self.flow = Some(flow),
                Marker::Step(step) => self.step = Some(step),
            }
            let after = self.step.clone().map(|s| (self.flow().to_owned(), s));
            return Seen {
                marker: true,
                step: self.step.clone(),
                ended: before.filter(|b| Some(b) != after.as_ref()),
            };
        }
        let step = parse_tags(sql)
            .step()
            .or_else(|| self.step.clone())
            .or_else(|| application_name.map(str::to_owned));
        Seen {
            marker: false,
            step,
            ended: None,
        }
    }

    /// The step still current when the run ends.
    pub fn current(&self) -> Option<(String, String)> {
        self.step.clone().map(|s| (self.flow().to_owned(), s))
    }
}

#[cfg(test)]
mod tests {
    use super::StepTracker;

    #[test]
    fn markers_start_steps_and_end_the_previous_one() {
        let mut t = StepTracker::default();
        let s = t.see("SET flowaudit.flow = 'shop'", None);
        assert!(s.marker && s.ended.is_none());
        let s = t.see("SET flowaudit.step = 'browse'", None);
        assert_eq!(s.step.as_deref(), Some("browse"));
        assert!(s.ended.is_none());
        let s = t.see("select 1 /*step='cart'*/", None);
        assert_eq!(
            s.step.as_deref(),
            Some("cart"),
            "tags name one statement's step"
        );
        let s = t.see("select 2", Some("app"));
        assert_eq!(s.step.as_deref(), Some("browse"));
        let s = t.see("SET flowaudit.step = 'checkout'", None);
        assert_eq!(s.ended, Some(("shop".into(), "browse".into())));
        assert_eq!(t.current(), Some(("shop".into(), "checkout".into())));
        let s = t.see("SET flowaudit.step = 'checkout'", None);
        assert!(s.ended.is_none(), "the same step again does not end it");
    }
}
