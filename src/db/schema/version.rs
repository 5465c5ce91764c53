//! Table `schema_version`: which version of the schema the database has.
//!
//! One row per version reached, with when and how; the largest is the
//! database's version. A version's row is written in the same transaction
//! as the last change that makes it, so a database never claims a version
//! it does not have.

use mysql::prelude::Queryable;
use mysql::{Conn, TxOpts, Value, from_value_opt};

use crate::db::DbError;

/// Kept apart from `chat.sql`: it must exist before an upgrade changes
/// anything, and only this module writes it.
const CREATE: &str = "CREATE TABLE IF NOT EXISTS schema_version (
    version INT NOT NULL,
    applied DATETIME NOT NULL DEFAULT CURRENT_TIMESTAMP,
    note VARCHAR(200) NOT NULL,
    PRIMARY KEY (version)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4";

/// What `schema_version` says.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Recorded {
    /// No version: a new database, the original's, or ours from before
    /// versions were kept.
    Nothing,
    Version(i32),
    /// A table of that name that is not ours (other tools use the name).
    NotOurs,
}

/// The database's version.
pub(super) fn current(conn: &mut Conn, database: &str) -> Result<Recorded, DbError> {
    let columns: Vec<String> = conn.exec(
        "SELECT COLUMN_NAME FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = ? AND TABLE_NAME = 'schema_version' \
         ORDER BY COLUMN_NAME",
        (database,),
    )?;
    if columns.is_empty() {
        return Ok(Recorded::Nothing);
    }
    if columns != ["applied", "note", "version"] {
        return Ok(Recorded::NotOurs);
    }
    // Read as a plain value: a typed read would panic on a surprise.
    let max: Option<Value> = conn.query_first("SELECT MAX(version) FROM schema_version")?;
    Ok(match max {
        None | Some(Value::NULL) => Recorded::Nothing,
        Some(value) => from_value_opt::<i32>(value).map_or(Recorded::NotOurs, Recorded::Version),
    })
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
