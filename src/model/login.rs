//! What a LOGIN_ACK lists (friends, groups with their members, stored
//! messages) and who is told of the login, read in one statement for one
//! user or a batch of them.

use std::collections::{HashMap, HashSet};

use mysql::Value;
use mysql::prelude::Queryable;

use super::{Friend, Group, GroupMember, OfflineMessage, Role, State, placeholders};
use crate::db::DbError;

/// What [`lists`] reads.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Lists {
    /// The user's own name (empty if there is no such user).
    pub name: String,
    /// Whom the user added, by id.
    pub friends: Vec<Friend>,
    /// Who added the user (told of their presence), by id.
    pub followers: Vec<i32>,
    /// The user's groups by id, each with its members by id.
    pub groups: Vec<Group>,
    /// The messages stored for the user, oldest first.
    pub offline: Vec<OfflineMessage>,
}

/// One row of the UNION: the user it is for, then `kind`, which says which
/// columns it fills (0 friend, 1 follower, 2 group member, 3 stored
/// message, 4 the user's own name); the others are NULL.
type Row = (
    i32,
    u8,
    i64,
    Option<i32>,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
);

/// Reads everything of [`Lists`] for `userid` (with an empty name if
/// there is no such user).
pub fn lists(conn: &mut impl Queryable, userid: i32) -> Result<Lists, DbError> {
    Ok(read(conn, &[userid], &[])?.remove(&userid).unwrap_or_default())
}

/// The [`Lists`] of each of `logins` (user, token hash) whose token is now
/// that hash: the claims of [`super::token::resume`] that held.
pub fn lists_of_resumed(conn: &mut impl Queryable, logins: &[(i32, &[u8])]) -> Result<HashMap<i32, Lists>, DbError> {
    let (ids, hashes): (Vec<i32>, Vec<&[u8]>) = logins.iter().copied().unzip();
    read(conn, &ids, &hashes)
}

/// Reads the [`Lists`] of `ids` in one statement: at login MariaDB's cost
/// is per statement, not per row. With `hashes`, only users whose token is
/// one of them are named, and only named users are answered. Sorted here,
/// since ordering a UNION costs MariaDB a temporary table per login. Each
/// column holds one kind of value, so collations never mix.
fn read(conn: &mut impl Queryable, ids: &[i32], hashes: &[&[u8]]) -> Result<HashMap<i32, Lists>, DbError> {
    if ids.is_empty() {
        return Ok(HashMap::new());
    }
    let list = placeholders(ids.len());
    let named = if hashes.is_empty() {
        format!("FROM user u WHERE u.id IN ({list})")
    } else {
        format!(
            "FROM user u JOIN token t ON t.userid = u.id WHERE u.id IN ({list}) AND t.hash IN ({})",
            placeholders(hashes.len())
        )
    };
    let sql = format!(
        "SELECT f.userid, 0, u.id, NULL, u.name, u.state, NULL, NULL, NULL, NULL \
         FROM friend f JOIN user u ON u.id = f.friendid WHERE f.userid IN ({list}) \
         UNION ALL SELECT f.friendid, 1, f.userid, NULL, NULL, NULL, NULL, NULL, NULL, NULL \
         FROM friend f WHERE f.friendid IN ({list}) \
         UNION ALL SELECT me.userid, 2, g.id, u.id, u.name, u.state, g.groupname, g.groupdesc, m.grouprole, NULL \
         FROM groupuser me \
         JOIN allgroup g ON g.id = me.groupid \
         JOIN groupuser m ON m.groupid = me.groupid \
         JOIN user u ON u.id = m.userid \
         WHERE me.userid IN ({list}) \
         UNION ALL SELECT userid, 3, id, NULL, NULL, NULL, NULL, NULL, NULL, message \
         FROM offlinemessage WHERE userid IN ({list}) \
         UNION ALL SELECT u.id, 4, u.id, NULL, u.name, NULL, NULL, NULL, NULL, NULL {named}"
    );
    let mut params: Vec<Value> = Vec::with_capacity(5 * ids.len() + hashes.len());
    for _ in 0..5 {
        params.extend(ids.iter().map(|&id| Value::from(id)));
    }
    params.extend(hashes.iter().map(|&h| Value::from(h)));
    let mut rows: Vec<Row> = conn.exec(sql, params)?;
    rows.sort_unstable_by_key(|&(owner, kind, id, member, ..)| (owner, kind, id, member));
    let mut all: HashMap<i32, Lists> = HashMap::new();
    let mut with_name = HashSet::new();
    for (owner, kind, id, member, name, state, gname, gdesc, role, message) in rows {
        let lists = all.entry(owner).or_default();
        match kind {
            0 => lists.friends.push(Friend {
                id: narrow(id)?,
                name: some(name)?,
                state: State::from_column(some(state)?)?,
            }),
            1 => lists.followers.push(narrow(id)?),
            2 => {
                let gid = narrow(id)?;
                let member = GroupMember {
                    id: some(member)?,
                    name: some(name)?,
                    state: State::from_column(some(state)?)?,
                    role: Role::from_column(some(role)?)?,
                };
                match lists.groups.last_mut() {
                    Some(group) if group.id == gid => group.users.push(member),
                    _ => lists.groups.push(Group {
                        id: gid,
                        name: some(gname)?,
                        desc: some(gdesc)?,
                        users: vec![member],
                    }),
                }
            }
            3 => lists.offline.push(OfflineMessage { id, userid: owner, message: some(message)? }),
            _ => {
                lists.name = some(name)?;
                with_name.insert(owner);
            }
        }
    }
    all.retain(|owner, _| with_name.contains(owner));
    Ok(all)
}

/// A column its row's kind fills (NOT NULL in its table).
fn some<T>(value: Option<T>) -> Result<T, DbError> {
    value.ok_or(DbError::Query(mysql::Error::FromValueError(mysql::Value::NULL)))
}

/// The BIGINT column back to the INT id it holds for friends and groups.
fn narrow(id: i64) -> Result<i32, DbError> {
    i32::try_from(id).map_err(|_| DbError::Query(mysql::Error::FromValueError(mysql::Value::Int(id))))
}
