pub mod pg;
pub mod server_logs;
