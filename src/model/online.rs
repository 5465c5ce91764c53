//! Table `online`: which server each logged-in user is on.
//!
//! A user's row is kept when they go offline, its `server` set to [`NOBODY`]:
//! a login and a leave are then one UPDATE each (see
//! [`super::token::resume`]), with no row to insert or delete.

use std::collections::HashMap;
use std::time::Duration;

use mysql::Value;
use mysql::prelude::Queryable;

use super::placeholders;
use crate::db::DbError;

/// Ids per `... IN (...)`, well under any placeholder limit.
const CHUNK: usize = 500;

/// The `server` of a row whose user is offline. No server has this id, so
/// every query that joins `server` sees no holder in it.
pub const NOBODY: &str = "";

/// Claims `userid` for `server` unless a live server (heartbeat younger than
/// `alive`, or `server` itself, which is running since it asks) has them
/// already; true when the claim won. Run it in the
/// transaction that holds the user's row (see [`super::user::lock`]), so two
/// logins of one user cannot both win.
pub fn claim(conn: &mut impl Queryable, userid: i32, server: &str, alive: Duration) -> Result<bool, DbError> {
    if holder(conn, userid, server, alive)?.is_some() {
        return Ok(false);
    }
    take(conn, userid, server)?;
    Ok(true)
}

/// Claims `userid` for `server` whoever holds them (a takeover); run it
/// under the user's row lock.
pub fn take(conn: &mut impl Queryable, userid: i32, server: &str) -> Result<(), DbError> {
    take_row(conn, userid, server)?;
    conn.exec_drop("UPDATE user SET state = 'online' WHERE id = ?", (userid,))?;
    Ok(())
}

/// [`take`] without marking `user.state`, for a caller that marks it in a
/// statement of its own (see [`super::token::rotate_going_online`]).
pub fn take_row(conn: &mut impl Queryable, userid: i32, server: &str) -> Result<(), DbError> {
    conn.exec_drop(
        "INSERT INTO online (userid, server) VALUES (?, ?) ON DUPLICATE KEY UPDATE server = VALUES(server)",
        (userid, server),
    )?;
    Ok(())
}

/// The live server holding `userid`, if any: one whose heartbeat is younger
/// than `alive`, or `me` (the asking server is alive even while MySQL was
/// too far away for its heartbeat).
pub fn holder(conn: &mut impl Queryable, userid: i32, me: &str, alive: Duration) -> Result<Option<String>, DbError> {
    Ok(conn.exec_first(
        "SELECT o.server FROM online o LEFT JOIN server s ON s.id = o.server \
         WHERE o.userid = ? AND (o.server = ? OR s.heartbeat > NOW(3) - INTERVAL ? SECOND)",
        (userid, me, alive.as_secs()),
    )?)
}

/// The live servers holding any of `userids` (see [`holder`]), by user.
pub fn holders(
    conn: &mut impl Queryable,
    userids: &[i32],
    me: &str,
    alive: Duration,
) -> Result<HashMap<i32, String>, DbError> {
    let mut found = HashMap::new();
    for chunk in userids.chunks(CHUNK) {
        let sql = format!(
            "SELECT o.userid, o.server FROM online o LEFT JOIN server s ON s.id = o.server \
             WHERE o.userid IN ({}) AND (o.server = ? OR s.heartbeat > NOW(3) - INTERVAL ? SECOND)",
            placeholders(chunk.len())
        );
        let mut params: Vec<Value> = chunk.iter().map(|&id| Value::from(id)).collect();
        params.push(Value::from(me));
        params.push(Value::from(alive.as_secs()));
        found.extend(conn.exec::<(i32, String), _, _>(sql, params)?);
    }
    Ok(found)
}

/// Every logged-in user on a live server, with that server.
pub fn everyone(conn: &mut impl Queryable, alive: Duration) -> Result<Vec<(i32, String)>, DbError> {
    Ok(conn.exec(
        "SELECT o.userid, o.server FROM online o JOIN server s ON s.id = o.server \
         WHERE s.heartbeat > NOW(3) - INTERVAL ? SECOND",
        (alive.as_secs(),),
    )?)
}

/// The dead server holding `userid`, if any: a row of a server other than
/// `me` whose heartbeat is older than `alive` (or gone).
pub fn dead_holder(
    conn: &mut impl Queryable,
    userid: i32,
    me: &str,
    alive: Duration,
) -> Result<Option<String>, DbError> {
    Ok(conn.exec_first(
        "SELECT o.server FROM online o LEFT JOIN server s ON s.id = o.server \
         WHERE o.userid = ? AND o.server NOT IN (?, ?) \
         AND (s.id IS NULL OR s.heartbeat <= NOW(3) - INTERVAL ? SECOND)",
        (userid, me, NOBODY, alive.as_secs()),
    )?)
}

/// Releases `userid` if `server` holds them, marking them offline, in one
/// statement that locks their user row and then their online row (as a
/// login does); true when released. Held elsewhere (a takeover) or by no
/// one, nothing changes.
pub fn release_one(conn: &mut impl Queryable, userid: i32, server: &str) -> Result<bool, DbError> {
    let done = conn.exec_iter(
        "UPDATE user u JOIN online o ON o.userid = u.id SET u.state = 'offline', o.server = ? \
         WHERE u.id = ? AND o.server = ?",
        (NOBODY, userid, server),
    )?;
    Ok(done.affected_rows() > 0)
}

/// [`release_one`] for each of `userids` (which must differ), in one
/// statement: it locks their user rows in id order (the index is forced: a
/// scan would lock rows of users logging in), each then its online row.
/// Who is offline afterwards, [`super::friend::offline_with_followers`] tells.
pub fn release_many(conn: &mut impl Queryable, userids: &[i32], server: &str) -> Result<(), DbError> {
    for chunk in userids.chunks(CHUNK) {
        let sql = format!(
            "UPDATE user u FORCE INDEX (PRIMARY) STRAIGHT_JOIN online o ON o.userid = u.id \
             SET u.state = 'offline', o.server = ? WHERE u.id IN ({}) AND o.server = ?",
            placeholders(chunk.len())
        );
        let mut params: Vec<Value> = vec![Value::from(NOBODY)];
        params.extend(chunk.iter().map(|&id| Value::from(id)));
        params.push(Value::from(server));
        conn.exec_drop(sql, params)?;
    }
    Ok(())
}

/// Releases every user `server` holds (it stopped or died); returns them.
/// Locks the users' rows first, in the same order as a login does (user,
/// then online), so a reap and a login of one of its users cannot deadlock.
pub fn release_server(conn: &mut impl Queryable, server: &str) -> Result<Vec<i32>, DbError> {
    let users: Vec<i32> = conn.exec("SELECT userid FROM online WHERE server = ?", (server,))?;
    super::user::lock(conn, &users)?;
    conn.exec_drop(
        "UPDATE user u JOIN online o ON o.userid = u.id SET u.state = 'offline' WHERE o.server = ?",
        (server,),
    )?;
    conn.exec_drop("UPDATE online SET server = ? WHERE server = ?", (NOBODY, server))?;
    Ok(users)
}

/// The users `server` holds.
pub fn of_server(conn: &mut impl Queryable, server: &str) -> Result<Vec<i32>, DbError> {
    Ok(conn.exec("SELECT userid FROM online WHERE server = ?", (server,))?)
}
