//! Capture: the sources that observe the statements an application runs and
//! turn each into an [`crate::model::Event`]: in-process (the embedded SQLite of
//! the demo), on the wire (the PostgreSQL proxy) and the database servers' own
//! logs.

pub mod expanded;
pub mod logs;
pub mod mysql;
pub mod pipeline;
pub mod proxy;
pub mod sqlite;
