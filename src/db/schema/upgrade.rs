//! Upgrades: from one schema version to the next, in place, keeping every
//! row.
//!
//! MariaDB commits each ALTER TABLE on its own, so an upgrade cannot be one
//! transaction. Instead each step looks first whether its change is there
//! already (information_schema) and does nothing then, and each ALTER is a
//! single statement, which InnoDB applies whole or not at all. The last
//! changes (rows only) and the new version's row are one transaction. An
//! upgrade stopped anywhere (a crash, a kill, a lost connection) is simply
//! run again from its first step at the next start.

use mysql::prelude::Queryable;
use mysql::{Conn, Transaction, TxOpts};

use super::{PLAINTEXT_MARK, sql, version};
use crate::db::DbError;

/// One change of an upgrade, safe to run again.
struct Step {
    /// What it does, for the log and for errors.
    what: &'static str,
    run: fn(&mut Conn, &str) -> Result<(), DbError>,
}

/// From version `to - 1` to `to`.
struct Upgrade {
    to: i32,
    /// In `schema_version.note`.
    note: &'static str,
    steps: &'static [Step],
    /// Row changes, in one transaction with the new version's row.
    finish: fn(&mut Transaction<'_>) -> Result<(), DbError>,
    /// What `finish` does, in words.
    finish_what: &'static str,
}

/// Every upgrade, oldest first; the last one's `to` is the current version.
/// Version 0 is the original C++ ChatServer's `chat.sql`.
const UPGRADES: &[Upgrade] = &[Upgrade {
    to: 1,
    note: "from the original C++ ChatServer's tables",
    steps: &[
        Step { what: "user: utf8mb4, names compared exactly, room for password hashes", run: user },
        Step { what: "friend: an index for who added a user", run: friend },
        Step { what: "allgroup: utf8mb4, group names compared exactly", run: allgroup },
        Step { what: "groupuser: a role for every member, an index by user", run: groupuser },
        Step { what: "offlinemessage: an id in the order the messages were stored", run: offlinemessage },
        Step { what: "the tables ChatServer adds (server, online, token)", run: |conn, _| sql::apply(conn) },
    ],
    finish: from_original,
    finish_what: "plaintext passwords marked as such, every user offline, version 1 recorded",
}];

/// The version this server's schema has: where the last upgrade leads.
pub const CURRENT: i32 = UPGRADES[UPGRADES.len() - 1].to;

/// An upgrade step that failed.
#[derive(Debug)]
pub struct Failed {
    /// The step, in words.
    pub step: &'static str,
    pub source: DbError,
}

/// Brings a database of version `from` to [`CURRENT`], logging each step.
pub(super) fn run(conn: &mut Conn, database: &str, from: i32) -> Result<(), Failed> {
    for upgrade in UPGRADES.iter().filter(|u| u.to > from) {
        let total = upgrade.steps.len() + 1;
        for (i, step) in upgrade.steps.iter().enumerate() {
            crate::info!(
                "upgrading database `{database}` to schema {}, step {} of {total}: {}",
                upgrade.to,
                i + 1,
                step.what
            );
            (step.run)(conn, database).map_err(|source| Failed { step: step.what, source })?;
        }
        let last = upgrade.finish_what;
        crate::info!("upgrading database `{database}` to schema {}, step {total} of {total}: {last}", upgrade.to);
        finish(conn, upgrade).map_err(|source| Failed { step: last, source })?;
    }
    Ok(())
}

fn finish(conn: &mut Conn, upgrade: &Upgrade) -> Result<(), DbError> {
    let mut tx = conn.start_transaction(TxOpts::default())?;
    (upgrade.finish)(&mut tx)?;
    version::record_in(&mut tx, upgrade.to, upgrade.note)?;
    tx.commit()?;
    Ok(())
}

/// One column as the steps need to see it.
struct Column {
    max_length: Option<u64>,
    nullable: bool,
    collation: Option<String>,
}

/// `table.column` as it is now; `None` if the table or column is missing.
fn column(conn: &mut Conn, database: &str, table: &str, name: &str) -> Result<Option<Column>, DbError> {
    let row: Option<(Option<u64>, String, Option<String>)> = conn.exec_first(
        "SELECT CHARACTER_MAXIMUM_LENGTH, IS_NULLABLE, COLLATION_NAME FROM information_schema.COLUMNS \
         WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ? AND COLUMN_NAME = ?",
        (database, table, name),
    )?;
    Ok(row.map(|(max_length, nullable, collation)| Column { max_length, nullable: nullable == "YES", collation }))
}

/// Whether `table` has an index called `index`.
fn has_index(conn: &mut Conn, database: &str, table: &str, index: &str) -> Result<bool, DbError> {
    let found: Option<u8> = conn.exec_first(
        "SELECT 1 FROM information_schema.STATISTICS WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ? AND INDEX_NAME = ? \
         LIMIT 1",
        (database, table, index),
    )?;
    Ok(found.is_some())
}

/// Whether `table` exists.
fn has_table(conn: &mut Conn, database: &str, table: &str) -> Result<bool, DbError> {
    let found: Option<u8> = conn.exec_first(
        "SELECT 1 FROM information_schema.TABLES WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ?",
        (database, table),
    )?;
    Ok(found.is_some())
}

/// Exact name comparison, as `chat.sql` has it.
const EXACT: &str = "utf8mb4_bin";

/// The original's VARCHAR(50) cannot hold a hash; its names compare
/// without case; a NULL state must become 'offline' before the column may
/// refuse NULL.
fn user(conn: &mut Conn, database: &str) -> Result<(), DbError> {
    let Some(password) = column(conn, database, "user", "password")? else { return Ok(()) };
    let name = column(conn, database, "user", "name")?;
    let state = column(conn, database, "user", "state")?;
    let exact = name.is_some_and(|n| n.collation.as_deref() == Some(EXACT));
    if password.max_length.is_some_and(|n| n >= 255) && exact && state.is_some_and(|s| !s.nullable) {
        return Ok(());
    }
    conn.query_drop("UPDATE user SET state = 'offline' WHERE state IS NULL")?;
    conn.query_drop(
        "ALTER TABLE user \
         MODIFY name VARCHAR(50) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL, \
         MODIFY password VARCHAR(255) CHARACTER SET utf8mb4 NOT NULL, \
         MODIFY state ENUM('online', 'offline') CHARACTER SET utf8mb4 NOT NULL DEFAULT 'offline', \
         DEFAULT CHARSET = utf8mb4",
    )?;
    Ok(())
}

fn friend(conn: &mut Conn, database: &str) -> Result<(), DbError> {
    if !has_table(conn, database, "friend")? || has_index(conn, database, "friend", "friendid")? {
        return Ok(());
    }
    conn.query_drop("ALTER TABLE friend ADD KEY friendid (friendid), DEFAULT CHARSET = utf8mb4")?;
    Ok(())
}

fn allgroup(conn: &mut Conn, database: &str) -> Result<(), DbError> {
    let Some(name) = column(conn, database, "allgroup", "groupname")? else { return Ok(()) };
    let desc = column(conn, database, "allgroup", "groupdesc")?;
    if name.collation.as_deref() == Some(EXACT) && desc.is_some_and(|d| !d.nullable) {
        return Ok(());
    }
    conn.query_drop("UPDATE allgroup SET groupdesc = '' WHERE groupdesc IS NULL")?;
    conn.query_drop(
        "ALTER TABLE allgroup \
         MODIFY groupname VARCHAR(50) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL, \
         MODIFY groupdesc VARCHAR(200) CHARACTER SET utf8mb4 NOT NULL DEFAULT '', \
         DEFAULT CHARSET = utf8mb4",
    )?;
    Ok(())
}

fn groupuser(conn: &mut Conn, database: &str) -> Result<(), DbError> {
    let Some(role) = column(conn, database, "groupuser", "grouprole")? else { return Ok(()) };
    let mut changes = Vec::new();
    if role.nullable {
        conn.query_drop("UPDATE groupuser SET grouprole = 'normal' WHERE grouprole IS NULL")?;
        changes.push("MODIFY grouprole ENUM('creator', 'normal') CHARACTER SET utf8mb4 NOT NULL");
    }
    if !has_index(conn, database, "groupuser", "userid")? {
        changes.push("ADD KEY userid (userid)");
    }
    if !changes.is_empty() {
        conn.query_drop(format!("ALTER TABLE groupuser {}, DEFAULT CHARSET = utf8mb4", changes.join(", ")))?;
    }
    Ok(())
}

/// The original's table has no key: InnoDB keeps its rows in the order
/// they were inserted (its hidden row id), and the new AUTO_INCREMENT
/// column numbers them in that order, so the ids keep the stored order.
fn offlinemessage(conn: &mut Conn, database: &str) -> Result<(), DbError> {
    if !has_table(conn, database, "offlinemessage")? || column(conn, database, "offlinemessage", "id")?.is_some() {
        return Ok(());
    }
    conn.query_drop(
        "ALTER TABLE offlinemessage \
         ADD COLUMN id BIGINT NOT NULL AUTO_INCREMENT FIRST, \
         ADD PRIMARY KEY (id), \
         MODIFY message MEDIUMTEXT CHARACTER SET utf8mb4 NOT NULL, \
         ADD KEY userid_id (userid, id), \
         DEFAULT CHARSET = utf8mb4",
    )?;
    Ok(())
}

/// The original's passwords are plaintext: each is marked so a login can
/// tell it from a hash (and replace it with one). Users it left online
/// after a crash are offline; no ChatServer holds them.
fn from_original(tx: &mut Transaction<'_>) -> Result<(), DbError> {
    tx.exec_drop(
        "UPDATE user SET password = CONCAT(?, password) WHERE password NOT LIKE '$argon2%'",
        (PLAINTEXT_MARK,),
    )?;
    tx.query_drop("UPDATE user SET state = 'offline' WHERE state <> 'offline'")?;
    Ok(())
}
