//! What a LOGIN_ACK lists (friends, groups with their members, stored
//! messages) and who is told of the login, read in one statement.

use mysql::prelude::Queryable;

use super::{Friend, Group, GroupMember, OfflineMessage, Role, State};
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

/// One row of the UNION: `kind` says which columns it fills (0 friend,
/// 1 follower, 2 group member, 3 stored message, 4 the user's own name);
/// the others are NULL.
type Row = (
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

/// Reads everything of [`Lists`] for `userid`. One statement instead of
/// three: at login MariaDB's cost is per statement, not per row. Sorted
/// here, since ordering a UNION costs MariaDB a temporary table per login.
/// Each column holds one kind of value, so collations never mix.
pub fn lists(conn: &mut impl Queryable, userid: i32) -> Result<Lists, DbError> {
    let mut rows: Vec<Row> = conn.exec(
        "SELECT 0, u.id, NULL, u.name, u.state, NULL, NULL, NULL, NULL \
         FROM friend f JOIN user u ON u.id = f.friendid WHERE f.userid = ? \
         UNION ALL SELECT 1, f.userid, NULL, NULL, NULL, NULL, NULL, NULL, NULL FROM friend f WHERE f.friendid = ? \
         UNION ALL SELECT 2, g.id, u.id, u.name, u.state, g.groupname, g.groupdesc, m.grouprole, NULL \
         FROM groupuser me \
         JOIN allgroup g ON g.id = me.groupid \
         JOIN groupuser m ON m.groupid = me.groupid \
         JOIN user u ON u.id = m.userid \
         WHERE me.userid = ? \
         UNION ALL SELECT 3, id, NULL, NULL, NULL, NULL, NULL, NULL, message FROM offlinemessage WHERE userid = ? \
         UNION ALL SELECT 4, id, NULL, name, NULL, NULL, NULL, NULL, NULL FROM user WHERE id = ?",
        (userid, userid, userid, userid, userid),
    )?;
    rows.sort_unstable_by_key(|&(kind, id, member, ..)| (kind, id, member));
    let mut lists = Lists::default();
    for (kind, id, member, name, state, gname, gdesc, role, message) in rows {
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
            3 => lists.offline.push(OfflineMessage { id, userid, message: some(message)? }),
            _ => lists.name = some(name)?,
        }
    }
    Ok(lists)
}

/// A column its row's kind fills (NOT NULL in its table).
fn some<T>(value: Option<T>) -> Result<T, DbError> {
    value.ok_or(DbError::Query(mysql::Error::FromValueError(mysql::Value::NULL)))
}

/// The BIGINT column back to the INT id it holds for friends and groups.
fn narrow(id: i64) -> Result<i32, DbError> {
    i32::try_from(id).map_err(|_| DbError::Query(mysql::Error::FromValueError(mysql::Value::Int(id))))
}
