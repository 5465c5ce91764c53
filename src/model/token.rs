//! Table `token`: the hash of each user's current resume token.

use std::time::Duration;

use mysql::prelude::Queryable;

use crate::db::DbError;

/// Makes `hash` the user's one valid token for `ttl`, replacing any other
/// (a new session replaces the old one's token).
pub fn replace(conn: &mut impl Queryable, userid: i32, hash: &[u8], ttl: Duration) -> Result<(), DbError> {
    conn.exec_drop(
        "INSERT INTO token (userid, hash, expires) VALUES (?, ?, NOW() + INTERVAL ? SECOND) \
         ON DUPLICATE KEY UPDATE hash = VALUES(hash), expires = VALUES(expires)",
        (userid, hash, ttl.as_secs()),
    )?;
    Ok(())
}

/// The user's name if `hash` is their token and has not expired.
pub fn holder_name(conn: &mut impl Queryable, userid: i32, hash: &[u8]) -> Result<Option<String>, DbError> {
    Ok(conn.exec_first(
        "SELECT u.name FROM token t JOIN user u ON u.id = t.userid \
         WHERE t.userid = ? AND t.hash = ? AND t.expires > NOW()",
        (userid, hash),
    )?)
}

/// If `old` is the user's token and has not expired, replaces it with `new`
/// for `ttl` and marks the user online in table user, in one statement;
/// false, changing nothing, when it is not. Run it under the user's row
/// lock: it reads the token row as it is now, so a revocation that
/// committed first is seen.
pub fn rotate_going_online(
    conn: &mut impl Queryable,
    userid: i32,
    old: &[u8],
    new: &[u8],
    ttl: Duration,
) -> Result<bool, DbError> {
    let done = conn.exec_iter(
        "UPDATE user u JOIN token t ON t.userid = u.id \
         SET u.state = 'online', t.hash = ?, t.expires = NOW() + INTERVAL ? SECOND \
         WHERE u.id = ? AND t.hash = ? AND t.expires > NOW()",
        (new, ttl.as_secs(), userid, old),
    )?;
    // The token row changes whenever it matched (a new hash).
    Ok(done.affected_rows() > 0)
}

/// A token login of a user no one holds, in one statement: if `old` is the
/// user's token and has not expired and their `online` row says no one
/// holds them, replaces the token with `new` for `ttl`, claims the row for
/// `server` and marks the user online; false, changing nothing, otherwise
/// (a first login has no `online` row yet). It locks the user row first,
/// as every login and leave does.
pub fn resume(
    conn: &mut impl Queryable,
    userid: i32,
    old: &[u8],
    new: &[u8],
    ttl: Duration,
    server: &str,
) -> Result<bool, DbError> {
    let done = conn.exec_iter(
        "UPDATE user u JOIN token t ON t.userid = u.id JOIN online o ON o.userid = u.id \
         SET u.state = 'online', t.hash = ?, t.expires = NOW() + INTERVAL ? SECOND, o.server = ? \
         WHERE u.id = ? AND t.hash = ? AND t.expires > NOW() AND o.server = ?",
        (new, ttl.as_secs(), server, userid, old, super::online::NOBODY),
    )?;
    Ok(done.affected_rows() > 0)
}

/// Revokes the user's token (LOGOUT).
pub fn revoke(conn: &mut impl Queryable, userid: i32) -> Result<(), DbError> {
    conn.exec_drop("DELETE FROM token WHERE userid = ?", (userid,))?;
    Ok(())
}
