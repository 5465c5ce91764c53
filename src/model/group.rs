//! Table `allgroup`: groups, and a user's groups with their members.

use mysql::prelude::Queryable;
use mysql::{Conn, TxOpts};

use super::{GroupMember, Role, duplicate_is, group_user, inserted_id};
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
