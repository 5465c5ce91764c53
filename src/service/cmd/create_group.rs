//! CREATE_GROUP: a new group with its creator as first member.

use std::sync::Arc;

use serde_json::json;

use super::{Outcome, within};
use crate::model::group;
use crate::service::context::Ctx;
use crate::service::error::ServiceError;
use crate::service::protocol::{self, Errno, msgid};
use crate::service::session::User;
use crate::text;

pub fn apply(ctx: &Arc<Ctx>, me: &User, name: &str, desc: &str) -> Result<Outcome, ServiceError> {
    if !within(name, 1, 50) || !within(desc, 0, 200) {
        let why = "group name must be 1 to 50 characters, description at most 200";
        return Ok(Outcome::reply(protocol::ack_error(msgid::CREATE_GROUP_ACK, Errno::Malformed, why)));
    }
    if !text::is_fit_name(name) {
        let why = "group name must not be blank or contain control characters";
        return Ok(Outcome::reply(protocol::ack_error(msgid::CREATE_GROUP_ACK, Errno::Malformed, why)));
    }
    let reply = match ctx.db.run(|c| group::create(c, name, desc, me.id))? {
        Some(id) => protocol::ack_ok(msgid::CREATE_GROUP_ACK, json!({"groupid": id, "groupname": name})),
        None => protocol::ack_error(msgid::CREATE_GROUP_ACK, Errno::Exists, "group name taken"),
    };
    Ok(Outcome::reply(reply))
}
