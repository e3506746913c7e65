//! flowaudit audits the SQL an application issues while its user flows run.
//!
//! The pipeline: capture (a trace file, …) produces [`model::Event`]s;
//! [`attribute`] ties each to a flow and step; [`audit`] feeds them to the
//! [`rules`]; [`report`] renders the findings. The CLI in [`cli`] is the only
//! part that prints.

pub mod attribute;
pub mod audit;
pub mod baseline;
pub mod capture;
pub mod cli;
pub mod date;
pub mod demo;
pub mod exit;
pub mod fault;
pub mod fingerprint;
pub mod invariants;
pub mod model;
pub mod race;
pub mod redact;
pub mod report;
pub mod rules;
pub mod scale;
pub mod schema;
pub mod trace;
