//! GROUP_CHAT: a message to every other member, live or stored.

use std::sync::Arc;
use std::time::Instant;

use super::Outcome;
use crate::model::{group, group_user};
use crate::service::clock;
use crate::service::context::Ctx;
use crate::service::error::ServiceError;
use crate::service::message::Delivery;
use crate::service::protocol::{self, Errno};
use crate::service::router;
use crate::service::session::User;

fn deliveries(me: &User, groupid: i32, msg: &str, members: &[i32]) -> Vec<Delivery> {
    let payload = clock::with_now(|time| protocol::group_chat(me.id, &me.name, groupid, msg, time));
    members.iter().filter(|&&id| id != me.id).map(|&to| Delivery::chat(to, Arc::clone(&payload))).collect()
}

/// The fast path, run on the event loop: when the members are cached, the
/// sender is one of them and every other member is online (here, or known
/// on another server), nothing needs MySQL. False when the job path must
/// take over.
pub fn try_live(ctx: &Arc<Ctx>, me: &User, groupid: i32, msg: &str) -> bool {
    let Some(members) = ctx.members.get(groupid, Instant::now()) else { return false };
    let reachable = |id: i32| id == me.id || ctx.registry.get(id).is_some() || ctx.bus.knows(id);
    if members.binary_search(&me.id).is_err() || !members.iter().all(|&id| reachable(id)) {
        return false;
    }
    let missed = router::send_from_loop(ctx, deliveries(me, groupid, msg, &members));
    // Someone left in between: stored on their lane, behind their leaving.
    router::store_later(ctx, missed);
    true
}

/// The members of `groupid` (sorted; empty for no such group), cached.
fn members(ctx: &Ctx, groupid: i32) -> Result<Arc<[i32]>, ServiceError> {
    let now = Instant::now();
    if let Some(members) = ctx.members.get(groupid, now) {
        return Ok(members);
    }
    let epoch = ctx.members.epoch();
    let members: Arc<[i32]> = ctx.db.run(|c| group_user::member_ids(c, groupid))?.into();
    if !members.is_empty() {
        ctx.members.put(groupid, Arc::clone(&members), epoch, now);
    }
    Ok(members)
}

pub fn apply(ctx: &Arc<Ctx>, me: &User, groupid: i32, msg: &str) -> Result<Outcome, ServiceError> {
    let members = members(ctx, groupid)?;
    if members.binary_search(&me.id).is_err() {
        let errno = if members.is_empty() && !ctx.db.run(|c| group::exists(c, groupid))? {
            Errno::NoSuchGroup
        } else {
            Errno::NotMember
        };
        return Ok(Outcome::reply(protocol::error(errno)));
    }
    let full = router::route_new(ctx, deliveries(me, groupid, msg, &members))?.0;
    if !full.is_empty() {
        let ids: Vec<String> = full.iter().map(i32::to_string).collect();
        let text =
            format!("the offline store of user {} is full: this message was not stored for them", ids.join(", "));
        return Ok(Outcome::reply(protocol::error_with(Errno::StoreFull, &text)));
    }
    Ok(Outcome::nothing())
}
