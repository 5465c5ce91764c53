//! ONE_CHAT: a message to one user, live or stored.

use std::sync::Arc;

use super::Outcome;
use crate::model::user;
use crate::service::clock;
use crate::service::context::Ctx;
use crate::service::error::ServiceError;
use crate::service::message::Delivery;
use crate::service::protocol::{self, Errno};
use crate::service::router;
use crate::service::session::User;

fn delivery(me: &User, toid: i32, msg: &str) -> Delivery {
    let payload = protocol::one_chat(me.id, &me.name, toid, msg, &clock::now_stamp());
    Delivery { to: toid, payload: payload.into(), keep: true }
}

/// The fast path, run on the event loop: when the receiver is online here
/// nothing needs storage. False when the job path must take over.
pub fn try_live(ctx: &Arc<Ctx>, me: &User, toid: i32, msg: &str) -> bool {
    ctx.registry.get(toid).is_some() && router::send_live(ctx, &delivery(me, toid, msg))
}

pub fn apply(ctx: &Arc<Ctx>, me: &User, toid: i32, msg: &str) -> Result<Outcome, ServiceError> {
    if ctx.registry.get(toid).is_none() && ctx.db.run(|c| user::find(c, toid))?.is_none() {
        return Ok(Outcome::reply(protocol::error(Errno::NoSuchUser)));
    }
    router::route(ctx, vec![delivery(me, toid, msg)])?;
    Ok(Outcome::nothing())
}
