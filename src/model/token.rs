//! Table `token`: the hash of each user's current resume token.

use std::time::Duration;

use mysql::prelude::Queryable;

use crate::db::DbError;

/// Makes `hash` the user's one valid token for `ttl`, replacing any other
/// (a new session replaces the old one's token).
pub fn replace(conn: &mut impl Queryable, userid: i32, hash: &[u8], ttl: Duration) -> Result<(), DbError> {
    conn.exec_drop(
        "REPLACE INTO token (userid, hash, expires) VALUES (?, ?, NOW() + INTERVAL ? SECOND)",
        (userid, hash, ttl.as_secs()),
    )?;
    Ok(())
}

/// Whether `hash` is the user's token and has not expired.
pub fn valid(conn: &mut impl Queryable, userid: i32, hash: &[u8]) -> Result<bool, DbError> {
    let found: Option<i32> =
        conn.exec_first("SELECT userid FROM token WHERE userid = ? AND hash = ? AND expires > NOW()", (userid, hash))?;
    Ok(found.is_some())
}

/// Revokes the user's token (LOGOUT).
pub fn revoke(conn: &mut impl Queryable, userid: i32) -> Result<(), DbError> {
    conn.exec_drop("DELETE FROM token WHERE userid = ?", (userid,))?;
    Ok(())
}
