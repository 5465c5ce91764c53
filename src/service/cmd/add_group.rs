//! ADD_GROUP: join a group as a normal member.

use std::sync::Arc;

use serde_json::json;

use super::Outcome;
use crate::model::{Role, group, group_user};
use crate::service::context::Ctx;
use crate::service::error::ServiceError;
use crate::service::protocol::{self, Errno, msgid};
use crate::service::session::User;

pub fn apply(ctx: &Arc<Ctx>, me: &User, groupid: i32) -> Result<Outcome, ServiceError> {
    let mut conn = ctx.db.get()?;
    let reply = if !conn.run(|c| group::exists(c, groupid))? {
        protocol::ack_error(msgid::ADD_GROUP_ACK, Errno::NoSuchGroup, Errno::NoSuchGroup.text())
    } else if !conn.run(|c| group_user::add(c, groupid, me.id, Role::Normal))? {
        protocol::ack_error(msgid::ADD_GROUP_ACK, Errno::Exists, "already a member")
    } else {
        // Before the ACK: a GROUP_CHAT sent after it, here or on another
        // server, reaches the new member.
        ctx.members.changed(groupid);
        ctx.bus.group_changed(groupid);
        protocol::ack_ok(msgid::ADD_GROUP_ACK, json!({"groupid": groupid}))
    };
    Ok(Outcome::reply(reply))
}
