//! Capture: the sources that observe the statements an application runs and
//! turn each into an [`crate::model::Event`]: in-process (the embedded SQLite of
//! the demo) and on the wire (the PostgreSQL proxy).

pub mod expanded;
pub mod proxy;
pub mod sqlite;
