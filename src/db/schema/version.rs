//! Table `schema_version`: which version of the schema the database has.
//!
//! One row per version reached, with when and how; the largest is the
//! database's version. A version's row is written in the same transaction
//! as the last change that makes it, so a database never claims a version
//! it does not have.

use mysql::prelude::Queryable;
use mysql::{Conn, TxOpts};

use crate::db::DbError;

/// Kept apart from `chat.sql`: it must exist before an upgrade changes
/// anything, and only this module writes it.
const CREATE: &str = "CREATE TABLE IF NOT EXISTS schema_version (
    version INT NOT NULL,
    applied DATETIME NOT NULL DEFAULT CURRENT_TIMESTAMP,
    note VARCHAR(200) NOT NULL,
    PRIMARY KEY (version)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4";

/// The database's version; `None` when none is recorded (a new database,
/// the original's, or ours from before versions were kept).
pub(super) fn current(conn: &mut Conn, database: &str) -> Result<Option<i32>, DbError> {
    let exists: Option<u8> = conn.exec_first(
        "SELECT 1 FROM information_schema.TABLES WHERE TABLE_SCHEMA = ? AND TABLE_NAME = 'schema_version'",
        (database,),
    )?;
    if exists.is_none() {
        return Ok(None);
    }
    let version: Option<Option<i32>> = conn.query_first("SELECT MAX(version) FROM schema_version")?;
    Ok(version.flatten())
}

/// Records `version` on its own (nothing else changes with it).
pub(super) fn record(conn: &mut Conn, version: i32, note: &str) -> Result<(), DbError> {
    conn.query_drop(CREATE)?;
    let mut tx = conn.start_transaction(TxOpts::default())?;
    record_in(&mut tx, version, note)?;
    tx.commit()?;
    Ok(())
}

/// Records `version` inside the caller's transaction (the table exists).
pub(super) fn record_in(conn: &mut impl Queryable, version: i32, note: &str) -> Result<(), DbError> {
    conn.exec_drop("INSERT IGNORE INTO schema_version (version, note) VALUES (?, ?)", (version, note))?;
    Ok(())
}
