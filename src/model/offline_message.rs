//! Table `offlinemessage`: messages kept for users who were offline.

use std::collections::HashMap;

use mysql::Value;
use mysql::prelude::Queryable;

use super::{inserted_id, placeholders};
use crate::db::DbError;

/// Rows per multi-row insert.
const CHUNK_ROWS: usize = 200;
/// Message bytes per multi-row insert, far below any max_allowed_packet
/// (4 MiB on old MySQL, 16 MiB on MariaDB).
const CHUNK_BYTES: usize = 1 << 20;

/// A stored message: the JSON object that would have been delivered live.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OfflineMessage {
    /// Increases with every insert: gives the order and the delete bound.
    pub id: i64,
    pub userid: i32,
    pub message: String,
}

/// Stores one message for `userid`; returns its id.
pub fn insert(conn: &mut impl Queryable, userid: i32, message: &str) -> Result<i64, DbError> {
    let done = conn.exec_iter("INSERT INTO offlinemessage (userid, message) VALUES (?, ?)", (userid, message))?;
    crate::stats::STORED.add(1);
    inserted_id(done.last_insert_id())
}

/// Stores many `(userid, message)` rows (a group message for its offline
/// members) in the order given, a few statements at most. Run it in a
/// transaction to store all of them or none.
pub fn insert_many(conn: &mut impl Queryable, rows: &[(i32, &str)]) -> Result<(), DbError> {
    for chunk in chunks(rows) {
        insert_chunk(conn, chunk)?;
    }
    Ok(())
}

/// How many messages are stored for each of `users` (those with none are
/// left out).
pub fn counts(conn: &mut impl Queryable, users: &[i32]) -> Result<HashMap<i32, u64>, DbError> {
    if users.is_empty() {
        return Ok(HashMap::new());
    }
    let sql = format!(
        "SELECT userid, COUNT(*) FROM offlinemessage WHERE userid IN ({}) GROUP BY userid",
        placeholders(users.len())
    );
    Ok(conn.exec_map(sql, users.to_vec(), |(userid, count)| (userid, count))?.into_iter().collect())
}

/// Deletes the messages of `userid` with id up to `max_id` (those a login
/// delivered), keeping any stored since; returns how many went.
pub fn delete_up_to(conn: &mut impl Queryable, userid: i32, max_id: i64) -> Result<u64, DbError> {
    let done = conn.exec_iter("DELETE FROM offlinemessage WHERE userid = ? AND id <= ?", (userid, max_id))?;
    Ok(done.affected_rows())
}

/// One multi-row insert.
fn insert_chunk(conn: &mut impl Queryable, rows: &[(i32, &str)]) -> Result<(), DbError> {
    if rows.is_empty() {
        return Ok(());
    }
    let sql = format!(
        "INSERT INTO offlinemessage (userid, message) VALUES {}",
        vec![format!("({})", placeholders(2)); rows.len()].join(",")
    );
    let mut params = Vec::with_capacity(rows.len() * 2);
    for &(userid, message) in rows {
        params.push(Value::from(userid));
        params.push(Value::from(message));
    }
    conn.exec_drop(sql, params)?;
    crate::stats::STORED.add(rows.len() as u64);
    Ok(())
}

/// Splits `rows` into runs small enough for one statement each.
fn chunks<'r, 'm>(rows: &'r [(i32, &'m str)]) -> Vec<&'r [(i32, &'m str)]> {
    let mut out = Vec::new();
    let (mut start, mut bytes) = (0, 0);
    for (i, (_, message)) in rows.iter().enumerate() {
        let full = i - start == CHUNK_ROWS || bytes + message.len() > CHUNK_BYTES;
        if full && i > start {
            out.push(&rows[start..i]);
            (start, bytes) = (i, 0);
        }
        bytes += message.len();
    }
    if start < rows.len() {
        out.push(&rows[start..]);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_respect_rows_and_bytes() {
        assert!(chunks(&[]).is_empty());
        let small: Vec<(i32, &str)> = (0..450).map(|i| (i, "hi")).collect();
        let sizes: Vec<usize> = chunks(&small).iter().map(|c| c.len()).collect();
        assert_eq!(sizes, [200, 200, 50]);
        let big = "x".repeat(CHUNK_BYTES / 2 + 1);
        let large = [(1, big.as_str()), (2, big.as_str()), (3, "a")];
        let sizes: Vec<usize> = chunks(&large).iter().map(|c| c.len()).collect();
        assert_eq!(sizes, [1, 2]);
    }
}
