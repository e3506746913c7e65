pub mod pg;
pub mod server_logs;
pub mod raw_pg;
