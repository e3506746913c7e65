//! In-process capture: sources that observe the statements an application runs
//! from inside its own process and turn each into an [`crate::model::Event`].

pub mod expanded;
pub mod sqlite;
