//! GROUP_CHAT: a message to every other member, live or stored.

use std::sync::Arc;

use super::Outcome;
use crate::model::{group, group_user};
use crate::service::clock;
use crate::service::context::Ctx;
use crate::service::error::ServiceError;
use crate::service::message::Delivery;
use crate::service::protocol::{self, Errno};
use crate::service::router;
use crate::service::session::User;

pub fn apply(ctx: &Arc<Ctx>, me: &User, groupid: i32, msg: &str) -> Result<Outcome, ServiceError> {
    let members = ctx.db.run(|c| group_user::member_ids(c, groupid))?;
    if !members.contains(&me.id) {
        let errno = if members.is_empty() && !ctx.db.run(|c| group::exists(c, groupid))? {
            Errno::NoSuchGroup
        } else {
            Errno::NotMember
        };
        return Ok(Outcome::reply(protocol::error(errno)));
    }
    let payload: Arc<str> = protocol::group_chat(me.id, &me.name, groupid, msg, &clock::now_stamp()).into();
    let deliveries =
        members.into_iter().filter(|&id| id != me.id).map(|to| Delivery::chat(to, Arc::clone(&payload))).collect();
    let full = router::route_new(ctx, deliveries)?.0;
    if !full.is_empty() {
        let ids: Vec<String> = full.iter().map(i32::to_string).collect();
        let text =
            format!("the offline store of user {} is full: this message was not stored for them", ids.join(", "));
        return Ok(Outcome::reply(protocol::error_with(Errno::StoreFull, &text)));
    }
    Ok(Outcome::nothing())
}
