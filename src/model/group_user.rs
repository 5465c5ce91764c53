//! Table `groupuser`: who is in which group, and as what.

use std::fmt;

use mysql::prelude::Queryable;

use super::{State, duplicate_is, unknown_enum};
use crate::db::DbError;

/// A member's role in a group.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    Creator,
    Normal,
}

impl Role {
    /// The column (and wire) spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Creator => "creator",
            Role::Normal => "normal",
        }
    }

    /// The inverse of [`Role::as_str`].
    pub fn parse(s: &str) -> Option<Role> {
        match s {
            "creator" => Some(Role::Creator),
            "normal" => Some(Role::Normal),
            _ => None,
        }
    }

    /// Reads the `grouprole` ENUM column.
    pub(crate) fn from_column(value: String) -> Result<Role, DbError> {
        Role::parse(&value).ok_or_else(|| unknown_enum(value))
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A member as listed in a group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupMember {
    pub id: i32,
    pub name: String,
    pub state: State,
    pub role: Role,
}

/// Adds `userid` to `groupid`; `false` if already a member.
pub fn add(conn: &mut impl Queryable, groupid: i32, userid: i32, role: Role) -> Result<bool, DbError> {
    match conn.exec_drop(
        "INSERT INTO groupuser (groupid, userid, grouprole) VALUES (?, ?, ?)",
        (groupid, userid, role.as_str()),
    ) {
        Ok(()) => Ok(true),
        Err(err) => duplicate_is(err, false),
    }
}

/// Ids of all members of `groupid`, ascending.
pub fn member_ids(conn: &mut impl Queryable, groupid: i32) -> Result<Vec<i32>, DbError> {
    Ok(conn.exec("SELECT userid FROM groupuser WHERE groupid = ? ORDER BY userid", (groupid,))?)
}
