//! Table `friend`: one-way friendship (userid added friendid).

use mysql::prelude::Queryable;

use mysql::Value;

use super::{State, duplicate_is, placeholders};
use crate::db::DbError;

/// A friend as shown in a friend list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Friend {
    pub id: i32,
    pub name: String,
    pub state: State,
}

/// Records that `userid` added `friendid`; `false` if they already had.
pub fn add(conn: &mut impl Queryable, userid: i32, friendid: i32) -> Result<bool, DbError> {
    match conn.exec_drop("INSERT INTO friend (userid, friendid) VALUES (?, ?)", (userid, friendid)) {
        Ok(()) => Ok(true),
        Err(err) => duplicate_is(err, false),
    }
}

/// Ids per `IN (...)`, well under any placeholder limit.
const CHUNK: usize = 500;

/// For many users at once (a server's users going offline together): each
/// `(user, user's name, a user who added them)`, in one query per chunk.
pub fn followers_of_many(conn: &mut impl Queryable, ids: &[i32]) -> Result<Vec<(i32, String, i32)>, DbError> {
    let mut rows = Vec::new();
    for chunk in ids.chunks(CHUNK) {
        let sql = format!(
            "SELECT f.friendid, u.name, f.userid FROM friend f JOIN user u ON u.id = f.friendid \
             WHERE f.friendid IN ({}) ORDER BY f.friendid, f.userid",
            placeholders(chunk.len())
        );
        let params: Vec<Value> = chunk.iter().map(|&id| Value::from(id)).collect();
        rows.extend(conn.exec::<(i32, String, i32), _, _>(sql, params)?);
    }
    Ok(rows)
}

/// Those of `ids` whom no server holds now, each with the users who added
/// them (to tell of their leaving): (id, name, followers).
pub fn offline_with_followers(conn: &mut impl Queryable, ids: &[i32]) -> Result<Vec<(i32, String, Vec<i32>)>, DbError> {
    let mut left: Vec<(i32, String, Vec<i32>)> = Vec::new();
    for chunk in ids.chunks(CHUNK) {
        let sql = format!(
            "SELECT o.userid, u.name, f.userid FROM online o JOIN user u ON u.id = o.userid \
             LEFT JOIN friend f ON f.friendid = o.userid WHERE o.userid IN ({}) AND o.server = ? \
             ORDER BY o.userid, f.userid",
            placeholders(chunk.len())
        );
        let mut params: Vec<Value> = chunk.iter().map(|&id| Value::from(id)).collect();
        params.push(Value::from(super::online::NOBODY));
        for (id, name, follower) in conn.exec::<(i32, String, Option<i32>), _, _>(sql, params)? {
            match left.last_mut() {
                Some((last, _, followers)) if *last == id => followers.extend(follower),
                _ => left.push((id, name, follower.into_iter().collect())),
            }
        }
    }
    Ok(left)
}
