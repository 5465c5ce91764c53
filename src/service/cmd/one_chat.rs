//! ONE_CHAT: a message to one user, live or stored.

use std::sync::Arc;

use super::Outcome;
use crate::model::user;
use crate::service::clock;
use crate::service::context::Ctx;
use crate::service::error::ServiceError;
use crate::service::message::Delivery;
use crate::service::protocol::{self, Errno};
use crate::service::registry::Found;
use crate::service::router;
use crate::service::session::User;

fn delivery(me: &User, toid: i32, msg: &str) -> Delivery {
    let payload = clock::with_now(|time| protocol::one_chat(me.id, &me.name, toid, msg, time));
    Delivery::chat(toid, payload)
}

/// The fast path, run on the event loop: when the receiver is online here,
/// or known to be on another server (queued for the bus, which writes it
/// at the end of the loop's turn, never waiting for Redis),
/// nothing needs storage. False when the job path must take over.
pub fn try_live(ctx: &Arc<Ctx>, me: &User, toid: i32, msg: &str) -> bool {
    // Serialised before the lookup: a miss goes to the bus or the job path,
    // both of which need the frame too (or are slow enough not to matter).
    let delivery = delivery(me, toid, msg);
    match router::send_live(ctx, &delivery) {
        Found::Live(()) => true,
        Found::Leaving => false,
        Found::Absent => ctx.bus.knows(toid) && ctx.bus.queue(vec![delivery.outgoing()]).is_empty(),
    }
}

/// Live here, over the bus, or stored. MySQL is asked only when no server
/// took the message: whether the id exists, then to store it.
pub fn apply(ctx: &Arc<Ctx>, me: &User, toid: i32, msg: &str) -> Result<Outcome, ServiceError> {
    let missed = router::send_where_online(ctx, vec![delivery(me, toid, msg)]);
    if missed.is_empty() {
        return Ok(Outcome::nothing());
    }
    if ctx.db.run(|c| user::find(c, toid))?.is_none() {
        return Ok(Outcome::reply(protocol::error(Errno::NoSuchUser)));
    }
    if !router::store_new(ctx, missed)?.0.is_empty() {
        return Ok(Outcome::reply(protocol::error(Errno::StoreFull)));
    }
    Ok(Outcome::nothing())
}
