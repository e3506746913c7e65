//! Capture: sources that observe the statements an application runs and turn
//! each into an [`crate::model::Event`]: in-process (the embedded demo) and the
//! database servers' own logs.

pub mod expanded;
pub mod logs;
pub mod sqlite;
