//! Table `user`: accounts and the cluster-wide online flag.

use std::fmt;

use mysql::Value;
use mysql::prelude::Queryable;

use super::{duplicate_is, inserted_id, placeholders, unknown_enum};
use crate::db::DbError;

/// Ids per `UPDATE ... IN (...)`, well under any placeholder limit.
const CHUNK: usize = 500;

/// Whether a user is logged in somewhere in the cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum State {
    Online,
    Offline,
}

impl State {
    /// The column (and wire) spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            State::Online => "online",
            State::Offline => "offline",
        }
    }

    /// The inverse of [`State::as_str`].
    pub fn parse(s: &str) -> Option<State> {
        match s {
            "online" => Some(State::Online),
            "offline" => Some(State::Offline),
            _ => None,
        }
    }

    /// Reads the `state` ENUM column.
    pub(crate) fn from_column(value: String) -> Result<State, DbError> {
        State::parse(&value).ok_or_else(|| unknown_enum(value))
    }
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A row of `user`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub id: i32,
    pub name: String,
    /// The argon2id PHC string; for an original user who has not logged in
    /// since the upgrade, their plaintext password behind
    /// [`crate::db::schema::PLAINTEXT_MARK`].
    pub password: String,
    pub state: State,
}

/// Registers a user (offline); `None` when the name is taken.
pub fn insert(conn: &mut impl Queryable, name: &str, password_hash: &str) -> Result<Option<i32>, DbError> {
    let result = conn.exec_iter("INSERT INTO user (name, password) VALUES (?, ?)", (name, password_hash));
    match result {
        Ok(done) => inserted_id(done.last_insert_id()).map(Some),
        Err(err) => duplicate_is(err, None),
    }
}

/// The user with this id, if any.
pub fn find(conn: &mut impl Queryable, id: i32) -> Result<Option<User>, DbError> {
    let row: Option<(i32, String, String, String)> =
        conn.exec_first("SELECT id, name, password, state FROM user WHERE id = ?", (id,))?;
    row.map(|(id, name, password, state)| Ok(User { id, name, password, state: State::from_column(state)? }))
        .transpose()
}

/// Replaces the password `old` of user `id` with `new` (an original user's
/// plaintext with its hash, at their first login); false when it was no
/// longer `old` (another login replaced it first).
pub fn replace_password(conn: &mut impl Queryable, id: i32, old: &str, new: &str) -> Result<bool, DbError> {
    let done = conn.exec_iter("UPDATE user SET password = ? WHERE id = ? AND password = ?", (new, id, old))?;
    Ok(done.affected_rows() == 1)
}

/// Locks the rows of `ids` until the caller's transaction ends, in id order
/// (so two lockers never wait on each other); returns the ids that exist.
/// This is the cluster-wide lock that orders "store a message for an offline
/// user" against "log in and read the stored messages".
pub fn lock(conn: &mut impl Queryable, ids: &[i32]) -> Result<Vec<i32>, DbError> {
    let mut found = Vec::with_capacity(ids.len());
    let mut sorted = ids.to_vec();
    sorted.sort_unstable();
    sorted.dedup();
    for chunk in sorted.chunks(CHUNK) {
        let sql = format!("SELECT id FROM user WHERE id IN ({}) ORDER BY id FOR UPDATE", placeholders(chunk.len()));
        let params: Vec<Value> = chunk.iter().map(|&id| Value::from(id)).collect();
        found.extend(conn.exec::<i32, _, _>(sql, params)?);
    }
    Ok(found)
}

/// Locks the row of `id` as [`lock`] does and reads, in the same statement,
/// the user's name and the live server holding them (as
/// [`super::online::holder`] says); None when there is no such user.
///
/// MariaDB locks only the outer table's rows of a FOR UPDATE: the subquery
/// is a plain read, so `online` and `server` rows stay free (heartbeats and
/// other logins do not wait on them). Correlated with the locked row, it
/// runs once the lock is granted, so the transaction's snapshot is taken
/// under the lock, as its later reads need (tests/models.rs checks both).
pub fn lock_with_holder(
    conn: &mut impl Queryable,
    id: i32,
    me: &str,
    alive: std::time::Duration,
) -> Result<Option<(String, Option<String>)>, DbError> {
    Ok(conn.exec_first(
        "SELECT u.name, (SELECT o.server FROM online o LEFT JOIN server s ON s.id = o.server \
         WHERE o.userid = u.id AND (o.server = ? OR s.heartbeat > NOW(3) - INTERVAL ? SECOND)) \
         FROM user u WHERE u.id = ? FOR UPDATE",
        (me, alive.as_secs(), id),
    )?)
}
