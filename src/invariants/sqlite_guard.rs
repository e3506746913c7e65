#![allow(unsafe_code)]
//! SQLite's own check that an invariant only reads: an authorizer
//! (`sqlite3_set_authorizer`, <https://sqlite.org/c3ref/set_authorizer.html>)
//! on the invariants' connection. SQLite asks it about every action of every
//! statement while compiling it; anything but reading is denied, so such a
//! statement fails to compile ("not authorized") and never runs.
//!
//! It matters because sqlx runs every statement of a SQLite query text, one
//! after another, where PostgreSQL and MySQL refuse a second statement in a
//! prepared one: if the static check ([`super::check`]) ever read as one
//! statement what SQLite reads as two, the second could not be
//! `PRAGMA query_only = OFF`, an `ATTACH` or a `VACUUM INTO` a file (which
//! SQLite allows on a read-only connection).
//!
//! Allowed: SELECT, reading a column, recursive CTEs, transaction control
//! (flowaudit's own BEGIN and ROLLBACK; on a read-only connection nothing can
//! be committed), function calls except `load_extension`, the read-only
//! pragmas that table-valued functions such as `pragma_foreign_key_check()`
//! run, and the schema "update" SQLite reports when such a function's virtual
//! table is first used (the connection is opened read-only, and
//! `writable_schema`, a pragma, is denied).
//!
//! # Why this is sound
//!
//! The callback reads only the strings SQLite passes in, which are valid
//! NUL-terminated strings or null for the duration of the call (the
//! authorizer documentation), keeps no state and ignores its context pointer,
//! which is null. It is installed through the handle sqlx lends while the
//! connection is locked, so no statement runs on it meanwhile. A panic never
//! crosses the FFI boundary: the body runs under `catch_unwind` and a panic
//! denies.

use std::ffi::{CStr, c_char, c_int, c_void};
use std::panic::catch_unwind;
use std::ptr;

use libsqlite3_sys::{
    SQLITE_DENY, SQLITE_FUNCTION, SQLITE_OK, SQLITE_PRAGMA, SQLITE_READ, SQLITE_RECURSIVE,
    SQLITE_SELECT, SQLITE_TRANSACTION, SQLITE_UPDATE, sqlite3_set_authorizer,
};
use sqlx::sqlite::SqliteConnection;

/// Pragmas that only read, which table-valued functions (`pragma_table_info('t')`)
/// may run.
const READ_PRAGMAS: &[&str] = &[
    "collation_list",
    "compile_options",
    "database_list",
    "foreign_key_check",
    "foreign_key_list",
    "function_list",
    "index_info",
    "index_list",
    "index_xinfo",
    "integrity_check",
    "module_list",
    "pragma_list",
    "quick_check",
    "table_info",
    "table_list",
    "table_xinfo",
];

/// Installs the authorizer on a connection. Meant for
/// `SqlitePoolOptions::after_connect`, after sqlx's own pragmas ran.
pub async fn install(conn: &mut SqliteConnection) -> Result<(), sqlx::Error> {
    let mut handle = conn.lock_handle().await?;
    let db = handle.as_raw_handle();
    // SAFETY: the locked handle gives this thread exclusive use of the
    // connection; the callback keeps no state (module docs).
    let rc = unsafe { sqlite3_set_authorizer(db.as_ptr(), Some(authorize), ptr::null_mut()) };
    if rc == SQLITE_OK {
        Ok(())
    } else {
        Err(sqlx::Error::Protocol(format!(
            "sqlite3_set_authorizer failed with code {rc}"
        )))
    }
}

/// The callback (`xAuth`): the action code and up to four strings whose
/// meaning depends on it.
unsafe extern "C" fn authorize(
    _context: *mut c_void,
    action: c_int,
    first: *const c_char,
    second: *const c_char,
    _database: *const c_char,
    _trigger: *const c_char,
) -> c_int {
    // SAFETY: SQLite passes null or NUL-terminated strings valid for the call.
    let text = |p: *const c_char| (!p.is_null()).then(|| unsafe { CStr::from_ptr(p) });
    let (first, second) = (text(first), text(second));
    catch_unwind(|| decide(action, first, second)).unwrap_or(SQLITE_DENY)
}

fn decide(action: c_int, first: Option<&CStr>, second: Option<&CStr>) -> c_int {
    let is = |s: Option<&CStr>, names: &[&str]| {
        s.and_then(|s| s.to_str().ok())
            .is_some_and(|s| names.iter().any(|n| s.eq_ignore_ascii_case(n)))
    };
    let allowed = match action {
        SQLITE_SELECT | SQLITE_READ | SQLITE_RECURSIVE | SQLITE_TRANSACTION => true,
        SQLITE_FUNCTION => !is(second, &["load_extension"]),
        SQLITE_PRAGMA => is(first, READ_PRAGMAS),
        SQLITE_UPDATE => is(
            first,
            &["sqlite_master", "sqlite_schema", "sqlite_temp_master"],
        ),
        _ => false,
    };
    if allowed { SQLITE_OK } else { SQLITE_DENY }
}
