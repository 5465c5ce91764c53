//! Table `online`: which server each logged-in user is on.

use std::time::Duration;

use mysql::prelude::Queryable;

use crate::db::DbError;

/// Claims `userid` for `server` unless a live server (heartbeat younger than
/// `alive`, or `server` itself, which is running since it asks) has them
/// already; true when the claim won. Run it in the
/// transaction that holds the user's row (see [`super::user::lock`]), so two
/// logins of one user cannot both win.
pub fn claim(conn: &mut impl Queryable, userid: i32, server: &str, alive: Duration) -> Result<bool, DbError> {
    if holder(conn, userid, server, alive)?.is_some() {
        return Ok(false);
    }
    conn.exec_drop("REPLACE INTO online (userid, server) VALUES (?, ?)", (userid, server))?;
    conn.exec_drop("UPDATE user SET state = 'online' WHERE id = ?", (userid,))?;
    Ok(true)
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

/// Releases `userid` if `server` holds them, marking them offline.
pub fn release(conn: &mut impl Queryable, userid: i32, server: &str) -> Result<(), DbError> {
    let done = conn.exec_iter("DELETE FROM online WHERE userid = ? AND server = ?", (userid, server))?;
    if done.affected_rows() > 0 {
        drop(done);
        conn.exec_drop("UPDATE user SET state = 'offline' WHERE id = ?", (userid,))?;
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
    conn.exec_drop("DELETE FROM online WHERE server = ?", (server,))?;
    Ok(users)
}

/// The users `server` holds.
pub fn of_server(conn: &mut impl Queryable, server: &str) -> Result<Vec<i32>, DbError> {
    Ok(conn.exec("SELECT userid FROM online WHERE server = ?", (server,))?)
}
