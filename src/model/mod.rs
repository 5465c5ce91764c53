//! One struct and one set of queries per table.
//!
//! Every function takes the connection it runs on: `&mut impl Queryable`
//! (a pooled `Conn` or a `Transaction`) for single statements, `&mut Conn`
//! for the few that need a transaction of their own. Every value travels as
//! a statement parameter, never inside the SQL text.

pub mod friend;
pub mod group;
pub mod group_user;
pub mod login;
pub mod offline_message;
pub mod online;
pub mod server;
pub mod token;
pub mod user;

pub use friend::Friend;
pub use group::Group;
pub use group_user::{GroupMember, Role};
pub use offline_message::OfflineMessage;
pub use user::{State, User};

use mysql::{Error as MyError, Value};

use crate::db::DbError;

/// `?,?,...,?` with `n` placeholders, for `IN (...)` and multi-row inserts.
fn placeholders(n: usize) -> String {
    vec!["?"; n].join(",")
}

/// Turns the id MySQL reports for an insert into the column's type; a
/// missing or out-of-range id is a conversion error, not a panic.
fn inserted_id<T: TryFrom<u64>>(id: Option<u64>) -> Result<T, DbError> {
    let id = id.ok_or(DbError::Query(MyError::FromValueError(Value::NULL)))?;
    T::try_from(id).map_err(|_| DbError::Query(MyError::FromValueError(Value::UInt(id))))
}

/// An ENUM column held a value this code does not know.
fn unknown_enum(value: String) -> DbError {
    DbError::Query(MyError::FromValueError(Value::Bytes(value.into_bytes())))
}

/// `Ok(on_duplicate)` for a duplicate-key error, the error otherwise.
fn duplicate_is<T>(err: MyError, on_duplicate: T) -> Result<T, DbError> {
    let err = DbError::from(err);
    if err.is_duplicate_key() { Ok(on_duplicate) } else { Err(err) }
}
