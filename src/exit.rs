//! Exit codes, decided here and nowhere else (DESIGN.md, "Commands").

/// No finding at or above `--fail-on`.
pub const OK: u8 = 0;
/// Findings at or above `--fail-on` (or, for `run`, the wrapped command failed).
pub const FINDINGS: u8 = 1;
/// The tool could not do its job: bad arguments, unreadable or malformed input, no database.
pub const TOOL_ERROR: u8 = 2;
