//! ADD_FRIEND: one-way friendship, as in the original.

use std::sync::Arc;

use serde_json::json;

use super::Outcome;
use crate::model::{friend, user};
use crate::service::context::Ctx;
use crate::service::error::ServiceError;
use crate::service::protocol::{self, Errno, msgid};
use crate::service::session::User;

fn refuse(errno: Errno, errmsg: &str) -> Result<Outcome, ServiceError> {
    Ok(Outcome::reply(protocol::ack_error(msgid::ADD_FRIEND_ACK, errno, errmsg)))
}

pub fn apply(ctx: &Arc<Ctx>, me: &User, friendid: i32) -> Result<Outcome, ServiceError> {
    if friendid == me.id {
        return refuse(Errno::Exists, "you cannot add yourself as a friend");
    }
    let mut conn = ctx.db.get()?;
    let Some(other) = conn.run(|c| user::find(c, friendid))? else {
        return refuse(Errno::NoSuchUser, Errno::NoSuchUser.text());
    };
    if !conn.run(|c| friend::add(c, me.id, friendid))? {
        return refuse(Errno::Exists, "already a friend");
    }
    let fields = json!({"friend": {"id": other.id, "name": other.name, "state": other.state.as_str()}});
    Ok(Outcome::reply(protocol::ack_ok(msgid::ADD_FRIEND_ACK, fields)))
}
