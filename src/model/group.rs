//! Table `allgroup`: groups, and a user's groups with their members.

use mysql::prelude::Queryable;
use mysql::{Conn, TxOpts};

use super::{GroupMember, Role, State, duplicate_is, group_user, inserted_id};
use crate::db::DbError;

/// A group with its members.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Group {
    pub id: i32,
    pub name: String,
    pub desc: String,
    pub users: Vec<GroupMember>,
}

/// Creates a group with `creator_id` as its creator, both rows or neither;
/// `None` when the name is taken.
pub fn create(conn: &mut Conn, name: &str, desc: &str, creator_id: i32) -> Result<Option<i32>, DbError> {
    let mut tx = conn.start_transaction(TxOpts::default())?;
    let inserted = tx
        .exec_iter("INSERT INTO allgroup (groupname, groupdesc) VALUES (?, ?)", (name, desc))
        .map(|done| done.last_insert_id());
    let id: i32 = match inserted {
        Ok(id) => inserted_id(id)?,
        // Dropping `tx` rolls back.
        Err(err) => return duplicate_is(err, None),
    };
    group_user::add(&mut tx, id, creator_id, Role::Creator)?;
    tx.commit()?;
    Ok(Some(id))
}

/// Whether a group with this id exists.
pub fn exists(conn: &mut impl Queryable, id: i32) -> Result<bool, DbError> {
    let found: Option<u8> = conn.exec_first("SELECT 1 FROM allgroup WHERE id = ?", (id,))?;
    Ok(found.is_some())
}

/// The groups `userid` is in, each with all its members, ordered by group id
/// then member id; one query, so the lists are one consistent snapshot.
pub fn list_for_user(conn: &mut impl Queryable, userid: i32) -> Result<Vec<Group>, DbError> {
    let mut rows: Vec<(i32, String, String, i32, String, String, String)> = conn.exec(
        "SELECT g.id, g.groupname, g.groupdesc, u.id, u.name, u.state, m.grouprole \
         FROM groupuser me \
         JOIN allgroup g ON g.id = me.groupid \
         JOIN groupuser m ON m.groupid = me.groupid \
         JOIN user u ON u.id = m.userid \
         WHERE me.userid = ?",
        (userid,),
    )?;
    // Sorted here: ordering by columns of two tables costs MariaDB a
    // temporary table and a filesort (EXPLAIN) at every login.
    rows.sort_unstable_by_key(|&(gid, _, _, uid, ..)| (gid, uid));
    let mut groups: Vec<Group> = Vec::new();
    for (gid, gname, gdesc, uid, uname, state, role) in rows {
        let member =
            GroupMember { id: uid, name: uname, state: State::from_column(state)?, role: Role::from_column(role)? };
        match groups.last_mut() {
            Some(group) if group.id == gid => group.users.push(member),
            _ => groups.push(Group { id: gid, name: gname, desc: gdesc, users: vec![member] }),
        }
    }
    Ok(groups)
}
