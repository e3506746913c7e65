pub mod mysql;
pub mod pg;
pub mod raw_pg;
pub mod server_logs;
