//! Capture: the sources that observe the statements an application runs and
//! turn each into an [`crate::model::Event`]: in-process (the embedded SQLite of
//! the demo), on the wire (the PostgreSQL proxy) the database servers' own
//! logs, and OpenTelemetry traces.

pub mod expanded;
pub mod logs;
pub mod mysql;
pub mod otlp;
pub mod pipeline;
pub mod proxy;
pub mod sqlite;
