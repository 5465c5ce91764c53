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

/// Revokes the user's token (LOGOUT).
pub fn revoke(conn: &mut impl Queryable, userid: i32) -> Result<(), DbError> {
    conn.exec_drop("DELETE FROM token WHERE userid = ?", (userid,))?;
    Ok(())
}
