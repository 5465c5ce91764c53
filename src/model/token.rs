//! Table `token`: the hash of each user's current resume token.

use std::time::Duration;

use mysql::Value;
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

/// A user's token login as [`resume`] takes it: their id, the hash of the
/// token they sent, and the hash of the one their LOGIN_ACK hands out.
pub struct Resume<'a> {
    pub userid: i32,
    pub old: &'a [u8],
    pub new: &'a [u8],
}

/// Token logins of users no one holds, in one statement: each of `logins`
/// whose `old` is the user's token and has not expired, and whose `online`
/// row says no one holds them, gets `new` for `ttl`, is claimed for
/// `server` and marked online; the others change nothing (a first login
/// has no `online` row yet). Which ones held, [`super::login::lists_of_resumed`]
/// tells. It locks user rows first and in id order (the index is forced: a
/// scan would lock other users' rows), each then its token and online row,
/// as every login and leave does. The ids must differ.
pub fn resume(conn: &mut impl Queryable, logins: &[Resume<'_>], ttl: Duration, server: &str) -> Result<(), DbError> {
    if logins.is_empty() {
        return Ok(());
    }
    let cases = vec!["WHEN ? THEN ?"; logins.len()].join(" ");
    let sql = format!(
        "UPDATE user u FORCE INDEX (PRIMARY) STRAIGHT_JOIN token t ON t.userid = u.id \
         STRAIGHT_JOIN online o ON o.userid = u.id \
         SET u.state = 'online', t.hash = CASE u.id {cases} END, t.expires = NOW() + INTERVAL ? SECOND, o.server = ? \
         WHERE u.id IN ({}) AND t.hash = CASE u.id {cases} END AND t.expires > NOW() AND o.server = ?",
        super::placeholders(logins.len())
    );
    let mut params: Vec<Value> = Vec::with_capacity(5 * logins.len() + 3);
    params.extend(logins.iter().flat_map(|l| [Value::from(l.userid), Value::from(l.new)]));
    params.extend([Value::from(ttl.as_secs()), Value::from(server)]);
    params.extend(logins.iter().map(|l| Value::from(l.userid)));
    params.extend(logins.iter().flat_map(|l| [Value::from(l.userid), Value::from(l.old)]));
    params.push(Value::from(super::online::NOBODY));
    conn.exec_drop(sql, params)?;
    Ok(())
}

/// Revokes the user's token (LOGOUT).
pub fn revoke(conn: &mut impl Queryable, userid: i32) -> Result<(), DbError> {
    conn.exec_drop("DELETE FROM token WHERE userid = ?", (userid,))?;
    Ok(())
}
